//! Domain → wire for assessments: what the service returns and what batch
//! rescoring writes, one conversion for both.

use chrono::{DateTime, Utc};

use crate::pb;
use crate::scoring::{Assessment, Reason, ReasonCategory, RecommendedAction, Route};
use crate::wire::declaration::timestamp_to_pb;
use crate::wire::inspection::{channel_to_pb, selection_reason_to_pb};

fn category(c: ReasonCategory) -> pb::ReasonCategory {
    match c {
        ReasonCategory::Valuation => pb::ReasonCategory::Valuation,
        ReasonCategory::Threshold => pb::ReasonCategory::Threshold,
        ReasonCategory::Description => pb::ReasonCategory::Description,
        ReasonCategory::Classification => pb::ReasonCategory::Classification,
        ReasonCategory::Weight => pb::ReasonCategory::Weight,
        ReasonCategory::Party => pb::ReasonCategory::Party,
        ReasonCategory::Fiscal => pb::ReasonCategory::Fiscal,
        ReasonCategory::DataQuality => pb::ReasonCategory::DataQuality,
        ReasonCategory::Random => pb::ReasonCategory::Random,
        ReasonCategory::Model => pb::ReasonCategory::Model,
    }
}

fn reason_to_pb(r: Reason) -> pb::ReasonCode {
    let Reason {
        code,
        category: c,
        goods_item_number,
        contribution,
        message,
        evidence,
    } = r;
    pb::ReasonCode {
        code: code.to_owned(),
        category: category(c) as i32,
        goods_item_number,
        contribution,
        message,
        evidence: evidence
            .into_iter()
            .map(|(k, value)| pb::Evidence {
                key: k.to_owned(),
                value,
            })
            .collect(),
    }
}

pub fn priority_to_pb(priority_value: f64, route: Option<Route>) -> pb::Priority {
    let Some(Route {
        channel,
        selection_reason,
        action,
        rank,
    }) = route
    else {
        return pb::Priority {
            priority_value,
            ..pb::Priority::default()
        };
    };
    pb::Priority {
        priority_value,
        channel: channel_to_pb(Some(channel)) as i32,
        recommended_action: (match action {
            RecommendedAction::Release => pb::RecommendedAction::Release,
            RecommendedAction::RequestDocuments => pb::RecommendedAction::RequestDocuments,
            RecommendedAction::Xray => pb::RecommendedAction::Xray,
            RecommendedAction::PhysicalExamination => pb::RecommendedAction::PhysicalExamination,
        }) as i32,
        selection_reason: selection_reason_to_pb(selection_reason) as i32,
        rank,
    }
}

/// The wire form of an assessment, stamped with the time it was made. Takes
/// the assessment by value: its strings move into the message.
pub fn assessment_to_pb(a: Assessment, assessed_at: DateTime<Utc>) -> pb::RiskAssessment {
    let Assessment {
        declaration_id,
        model_version,
        regime_version,
        overall_score,
        undervaluation_score,
        misdescription_score,
        declared_value_eur_cents,
        expected_value_eur_cents,
        revenue_at_risk_eur_cents,
        priority_value,
        reasons,
        items,
        route,
        top_features: _,
        lodged_at: _,
    } = a;
    pb::RiskAssessment {
        declaration_id: declaration_id.into(),
        model_version: model_version.to_string(),
        regime_version: regime_version.to_owned(),
        assessed_at: Some(timestamp_to_pb(assessed_at)),
        overall_score,
        undervaluation_score,
        misdescription_score,
        declared_value_eur_cents,
        expected_value_eur_cents,
        revenue_at_risk_eur_cents,
        priority: Some(priority_to_pb(priority_value, route)),
        reasons: reasons.into_iter().map(reason_to_pb).collect(),
        items: items
            .into_iter()
            .map(|i| pb::ItemAssessment {
                goods_item_number: i.goods_item_number,
                undervaluation_score: i.undervaluation_score,
                misdescription_score: i.misdescription_score,
                expected_value_eur_cents: i.expected_value_eur_cents,
                predicted_hs6: i
                    .predicted_hs6
                    .iter()
                    .map(|&(hs6, probability)| pb::HsCandidate {
                        hs6: hs6.as_str().to_owned(),
                        probability,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Reasons in the proto3 JSON form of `repeated ReasonCode`, serialised
/// straight from the domain (batch output writes it for every row): the
/// same fields, names, order and omitted defaults as the generated
/// serialiser of [`pb::ReasonCode`], without building the messages.
pub struct ReasonsJson<'a>(pub &'a [Reason]);

impl serde::Serialize for ReasonsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(WireReason))
    }
}

struct WireReason<'a>(&'a Reason);

impl serde::Serialize for WireReason<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.0;
        let category = category(r.category);
        let fields = [
            !r.code.is_empty(),
            category as i32 != 0,
            r.goods_item_number != 0,
            r.contribution != 0.0,
            !r.message.is_empty(),
            !r.evidence.is_empty(),
        ];
        let mut s = serializer.serialize_struct(
            "parcelrisk.v1.ReasonCode",
            fields.iter().filter(|f| **f).count(),
        )?;
        if fields[0] {
            s.serialize_field("code", r.code)?;
        }
        if fields[1] {
            s.serialize_field("category", &category)?;
        }
        if fields[2] {
            s.serialize_field("goodsItemNumber", &r.goods_item_number)?;
        }
        if fields[3] {
            s.serialize_field("contribution", &r.contribution)?;
        }
        if fields[4] {
            s.serialize_field("message", &r.message)?;
        }
        if fields[5] {
            s.serialize_field("evidence", &WireEvidence(&r.evidence))?;
        }
        s.end()
    }
}

struct WireEvidence<'a>(&'a [(&'static str, String)]);

impl serde::Serialize for WireEvidence<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        serializer.collect_seq(self.0.iter().map(|(key, value)| {
            struct One<'a>(&'a str, &'a str);
            impl serde::Serialize for One<'_> {
                fn serialize<S: serde::Serializer>(
                    &self,
                    serializer: S,
                ) -> Result<S::Ok, S::Error> {
                    let fields = usize::from(!self.0.is_empty()) + usize::from(!self.1.is_empty());
                    let mut s = serializer.serialize_struct("parcelrisk.v1.Evidence", fields)?;
                    if !self.0.is_empty() {
                        s.serialize_field("key", self.0)?;
                    }
                    if !self.1.is_empty() {
                        s.serialize_field("value", self.1)?;
                    }
                    s.end()
                }
            }
            One(key, value)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_json_is_the_generated_serialisers_json() {
        let reasons = vec![
            Reason {
                code: "VAL_BELOW_LAP_LIKE_BOUND",
                category: ReasonCategory::Valuation,
                goods_item_number: 2,
                contribution: 1.25,
                message: "Declared \"EUR 1.00\"/kg\n".to_owned(),
                evidence: vec![
                    ("declared_eur_per_kg", "1.00".to_owned()),
                    ("empty", String::new()),
                ],
            },
            Reason {
                code: "RSK_MODEL_SCORE",
                category: ReasonCategory::Model,
                goods_item_number: 0,
                contribution: 0.0,
                message: String::new(),
                evidence: vec![],
            },
            crate::scoring::reasons::random_sample(),
        ];
        let ours = serde_json::to_string(&ReasonsJson(&reasons)).unwrap();
        let generated: Vec<pb::ReasonCode> = reasons.into_iter().map(reason_to_pb).collect();
        assert_eq!(ours, serde_json::to_string(&generated).unwrap());
        assert_eq!(serde_json::to_string(&ReasonsJson(&[])).unwrap(), "[]");
    }
}
