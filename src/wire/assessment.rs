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

fn priority_to_pb(priority_value: f64, route: Option<Route>) -> pb::Priority {
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
    } = a;
    pb::RiskAssessment {
        declaration_id,
        model_version,
        regime_version,
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
                    .into_iter()
                    .map(|(hs6, probability)| pb::HsCandidate {
                        hs6: hs6.as_str().to_owned(),
                        probability,
                    })
                    .collect(),
            })
            .collect(),
    }
}
