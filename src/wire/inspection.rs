//! Inspection results, ground truth and training examples between wire and domain.

use std::collections::BTreeSet;

use crate::domain::validation::{ReferenceData, ValidationError, Violations, check_declaration};
use crate::domain::{
    Channel, FraudKind, GroundTruth, Hs6, InspectionOutcome, InspectionResult, ItemFinding,
    ItemTruth, SelectionReason, TrainingExample,
};
use crate::pb;

use super::declaration::{
    money_to_pb, parse_declaration, parse_money, parse_timestamp, timestamp_to_pb,
};
use super::raw::{RawDeclaration, RawMoney, RawText};

impl TryFrom<pb::InspectionResult> for InspectionResult {
    type Error = ValidationError;

    fn try_from(msg: pb::InspectionResult) -> Result<Self, Self::Error> {
        let mut v = Violations::default();
        let result = parse_result(msg, "", &ReferenceData::built_in(), &mut v);
        match result {
            Some(result) => v.finish(result),
            None => Err(v.finish(()).expect_err("a failed parse left a violation")),
        }
    }
}

impl TryFrom<pb::TrainingExample> for TrainingExample {
    type Error = ValidationError;

    fn try_from(msg: pb::TrainingExample) -> Result<Self, Self::Error> {
        training_example_from_pb(msg, &ReferenceData::built_in())
    }
}

/// Parses and validates one training example: the declaration, and the result
/// and truth, which must refer to it.
pub fn training_example_from_pb(
    msg: pb::TrainingExample,
    reference: &ReferenceData<'_>,
) -> Result<TrainingExample, ValidationError> {
    let pb::TrainingExample {
        declaration,
        result,
        truth,
    } = msg;
    training_example_from_parts(
        declaration.map(RawDeclaration::<String>::from),
        result,
        truth,
        reference,
    )
}

/// Where a training example's declaration fields are named in its violations.
const DECLARATION_PREFIX: &str = "declaration.";

/// As [`training_example_from_pb`], the declaration as read from a file
/// (its text borrowed from the file's cells) or from a wire message.
pub fn training_example_from_parts<S: RawText>(
    declaration: Option<RawDeclaration<S>>,
    result: Option<pb::InspectionResult>,
    truth: Option<pb::GroundTruth>,
    reference: &ReferenceData<'_>,
) -> Result<TrainingExample, ValidationError> {
    let mut v = Violations::default();
    let declaration = match declaration {
        Some(d) => parse_declaration(d, DECLARATION_PREFIX, reference, &mut v),
        None => {
            v.push("declaration", "is required");
            None
        }
    };
    let result = result.and_then(|r| parse_result(r, "result.", reference, &mut v));
    let truth = truth.and_then(|t| parse_truth(t, "truth.", reference, &mut v));
    let Some(mut declaration) = declaration else {
        return Err(v.finish(()).expect_err("a failed parse left a violation"));
    };
    // Built only to check a result's or truth's items: most records are bare
    // declarations, and the set was an allocation per row of a rescore.
    let item_numbers: BTreeSet<u32> = if result.is_some() || truth.is_some() {
        declaration
            .items
            .iter()
            .map(|i| i.goods_item_number)
            .collect()
    } else {
        BTreeSet::new()
    };
    if let Some(result) = &result {
        if result.declaration_id != declaration.declaration_id {
            v.push(
                "result.declaration_id",
                format!(
                    "{:?} does not match the declaration {:?}",
                    result.declaration_id, declaration.declaration_id
                ),
            );
        }
        for (i, finding) in result.findings.iter().enumerate() {
            if !item_numbers.contains(&finding.goods_item_number) {
                v.push(
                    format!("result.findings[{i}].goods_item_number"),
                    format!("no goods item {}", finding.goods_item_number),
                );
            }
        }
    }
    if let Some(truth) = &truth {
        for (i, item) in truth.items.iter().enumerate() {
            if !item_numbers.contains(&item.goods_item_number) {
                v.push(
                    format!("truth.items[{i}].goods_item_number"),
                    format!("no goods item {}", item.goods_item_number),
                );
            }
        }
    }
    declaration.flags = check_declaration(&declaration, DECLARATION_PREFIX, reference, &mut v);
    v.finish(TrainingExample {
        declaration,
        result,
        truth,
    })
}

/// Most findings one result may carry: the EUCDM's goods items per declaration.
pub const MAX_FINDINGS: usize = 999;

fn parse_fraud_kinds(kinds: Vec<i32>, field: &str, v: &mut Violations) -> Vec<FraudKind> {
    let mut out = BTreeSet::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        match pb::FraudKind::try_from(kind) {
            Ok(pb::FraudKind::Undervaluation) => out.insert(FraudKind::Undervaluation),
            Ok(pb::FraudKind::Misdescription) => out.insert(FraudKind::Misdescription),
            Ok(pb::FraudKind::Misclassification) => out.insert(FraudKind::Misclassification),
            Ok(pb::FraudKind::SplitConsignment) => out.insert(FraudKind::SplitConsignment),
            Ok(pb::FraudKind::IossMisuse) => out.insert(FraudKind::IossMisuse),
            Ok(pb::FraudKind::AddressReuse) => out.insert(FraudKind::AddressReuse),
            Ok(pb::FraudKind::Unspecified) | Err(_) => {
                v.push_at(
                    || format!("{field}[{i}]"),
                    format!("unknown fraud kind {kind}"),
                );
                false
            }
        };
    }
    out.into_iter().collect()
}

fn fraud_kind_to_pb(kind: FraudKind) -> i32 {
    (match kind {
        FraudKind::Undervaluation => pb::FraudKind::Undervaluation,
        FraudKind::Misdescription => pb::FraudKind::Misdescription,
        FraudKind::Misclassification => pb::FraudKind::Misclassification,
        FraudKind::SplitConsignment => pb::FraudKind::SplitConsignment,
        FraudKind::IossMisuse => pb::FraudKind::IossMisuse,
        FraudKind::AddressReuse => pb::FraudKind::AddressReuse,
    }) as i32
}

/// Maps a wire selection reason; `None` for UNSPECIFIED or unknown values.
pub fn selection_reason_from_pb(value: i32) -> Option<SelectionReason> {
    match pb::SelectionReason::try_from(value).ok()? {
        pb::SelectionReason::Unspecified => None,
        pb::SelectionReason::NotSelected => Some(SelectionReason::NotSelected),
        pb::SelectionReason::RiskScore => Some(SelectionReason::RiskScore),
        pb::SelectionReason::Rule => Some(SelectionReason::Rule),
        pb::SelectionReason::Random => Some(SelectionReason::Random),
        pb::SelectionReason::Manual => Some(SelectionReason::Manual),
    }
}

pub fn selection_reason_to_pb(reason: SelectionReason) -> pb::SelectionReason {
    match reason {
        SelectionReason::NotSelected => pb::SelectionReason::NotSelected,
        SelectionReason::RiskScore => pb::SelectionReason::RiskScore,
        SelectionReason::Rule => pb::SelectionReason::Rule,
        SelectionReason::Random => pb::SelectionReason::Random,
        SelectionReason::Manual => pb::SelectionReason::Manual,
    }
}

pub fn channel_from_pb(value: i32) -> Option<Channel> {
    match pb::Channel::try_from(value).ok()? {
        pb::Channel::Unspecified => None,
        pb::Channel::Green => Some(Channel::Green),
        pb::Channel::Blue => Some(Channel::Blue),
        pb::Channel::Yellow => Some(Channel::Yellow),
        pb::Channel::Red => Some(Channel::Red),
    }
}

pub fn channel_to_pb(channel: Option<Channel>) -> pb::Channel {
    match channel {
        None => pb::Channel::Unspecified,
        Some(Channel::Green) => pb::Channel::Green,
        Some(Channel::Blue) => pb::Channel::Blue,
        Some(Channel::Yellow) => pb::Channel::Yellow,
        Some(Channel::Red) => pb::Channel::Red,
    }
}

fn parse_result(
    msg: pb::InspectionResult,
    prefix: &str,
    reference: &ReferenceData<'_>,
    v: &mut Violations,
) -> Option<InspectionResult> {
    let pb::InspectionResult {
        declaration_id,
        inspection_id,
        selection_reason,
        control_type,
        outcome,
        fraud_kinds,
        findings,
        inspected_at,
        officer_notes,
    } = msg;
    let path = |name: &str| format!("{prefix}{name}");
    v.check_required(|| path("declaration_id"), &declaration_id, 64);
    v.check_required(|| path("inspection_id"), &inspection_id, 64);
    v.check_len(|| path("officer_notes"), &officer_notes, 2048);
    let reason = selection_reason_from_pb(selection_reason);
    if reason.is_none() {
        v.push(
            path("selection_reason"),
            "is required (UNSPECIFIED or unknown)",
        );
    }
    let control = channel_from_pb(control_type);
    if control.is_none() && control_type != 0 {
        v.push(
            path("control_type"),
            format!("unknown channel {control_type}"),
        );
    }
    let outcome = match pb::InspectionOutcome::try_from(outcome) {
        Ok(pb::InspectionOutcome::Compliant) => Some(InspectionOutcome::Compliant),
        Ok(pb::InspectionOutcome::NonCompliant) => Some(InspectionOutcome::NonCompliant),
        Ok(pb::InspectionOutcome::Inconclusive) => Some(InspectionOutcome::Inconclusive),
        Ok(pb::InspectionOutcome::Unspecified) | Err(_) => {
            v.push(path("outcome"), "is required (UNSPECIFIED or unknown)");
            None
        }
    };
    let fraud_kinds = parse_fraud_kinds(fraud_kinds, &path("fraud_kinds"), v);
    if outcome == Some(InspectionOutcome::Compliant) && !fraud_kinds.is_empty() {
        v.push(
            path("fraud_kinds"),
            "a compliant outcome cannot list frauds",
        );
    }
    let inspected_at = inspected_at.and_then(|ts| parse_timestamp(ts, || path("inspected_at"), v));
    // A finding is about one goods item, and a declaration has at most
    // MAX_FINDINGS of them: more is not a result, it is a flood.
    if findings.len() > MAX_FINDINGS {
        v.push(
            path("findings"),
            format!(
                "{} findings; at most {MAX_FINDINGS}, one per goods item",
                findings.len()
            ),
        );
    }
    let mut parsed_findings: Vec<ItemFinding> =
        Vec::with_capacity(findings.len().min(MAX_FINDINGS));
    let mut seen = BTreeSet::new();
    for (i, finding) in findings.into_iter().take(MAX_FINDINGS).enumerate() {
        let field = path(&format!("findings[{i}]"));
        let pb::ItemFinding {
            goods_item_number,
            undervalued,
            corrected_intrinsic_value,
            misdescribed,
            corrected_description,
            corrected_hs6,
        } = finding;
        if !seen.insert(goods_item_number) {
            v.push(
                format!("{field}.goods_item_number"),
                format!("item {goods_item_number} has two findings"),
            );
        }
        v.check_len(
            || format!("{field}.corrected_description"),
            &corrected_description,
            512,
        );
        let corrected_intrinsic_value = corrected_intrinsic_value.and_then(|m| {
            parse_money(
                RawMoney::<String>::from(m),
                &|| format!("{field}.corrected_intrinsic_value"),
                reference,
                v,
            )
        });
        let corrected_hs6 = if corrected_hs6.is_empty() {
            None
        } else {
            match Hs6::parse(&corrected_hs6) {
                Ok(code) => Some(code),
                Err(reason) => {
                    v.push(format!("{field}.corrected_hs6"), reason);
                    None
                }
            }
        };
        parsed_findings.push(ItemFinding {
            goods_item_number,
            undervalued,
            corrected_intrinsic_value,
            misdescribed,
            corrected_description,
            corrected_hs6,
        });
    }
    parsed_findings.sort_by_key(|f| f.goods_item_number);
    Some(InspectionResult {
        declaration_id,
        inspection_id,
        selection_reason: reason?,
        control_type: control,
        outcome: outcome?,
        fraud_kinds,
        findings: parsed_findings,
        inspected_at,
        officer_notes,
    })
}

fn parse_truth(
    msg: pb::GroundTruth,
    prefix: &str,
    reference: &ReferenceData<'_>,
    v: &mut Violations,
) -> Option<GroundTruth> {
    let pb::GroundTruth {
        fraud_kinds,
        items,
        seller_profile,
    } = msg;
    let fraud_kinds = parse_fraud_kinds(fraud_kinds, &format!("{prefix}fraud_kinds"), v);
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("{prefix}items[{i}]");
        let pb::ItemTruth {
            goods_item_number,
            hs6,
            description,
            intrinsic_value,
        } = item;
        let hs6 = Hs6::parse(&hs6)
            .map_err(|reason| v.push(format!("{field}.hs6"), reason))
            .ok();
        let value = match intrinsic_value {
            Some(m) => parse_money(
                RawMoney::<String>::from(m),
                &|| format!("{field}.intrinsic_value"),
                reference,
                v,
            ),
            None => {
                v.push(format!("{field}.intrinsic_value"), "is required");
                None
            }
        };
        if let (Some(hs6), Some(intrinsic_value)) = (hs6, value) {
            parsed.push(ItemTruth {
                goods_item_number,
                hs6,
                description,
                intrinsic_value,
            });
        }
    }
    parsed.sort_by_key(|t| t.goods_item_number);
    Some(GroundTruth {
        fraud_kinds,
        items: parsed,
        seller_profile,
    })
}

impl From<&InspectionResult> for pb::InspectionResult {
    fn from(r: &InspectionResult) -> Self {
        let InspectionResult {
            declaration_id,
            inspection_id,
            selection_reason,
            control_type,
            outcome,
            fraud_kinds,
            findings,
            inspected_at,
            officer_notes,
        } = r;
        pb::InspectionResult {
            declaration_id: declaration_id.clone(),
            inspection_id: inspection_id.clone(),
            selection_reason: selection_reason_to_pb(*selection_reason) as i32,
            control_type: channel_to_pb(*control_type) as i32,
            outcome: (match outcome {
                InspectionOutcome::Compliant => pb::InspectionOutcome::Compliant,
                InspectionOutcome::NonCompliant => pb::InspectionOutcome::NonCompliant,
                InspectionOutcome::Inconclusive => pb::InspectionOutcome::Inconclusive,
            }) as i32,
            fraud_kinds: fraud_kinds.iter().copied().map(fraud_kind_to_pb).collect(),
            findings: findings
                .iter()
                .map(|f| pb::ItemFinding {
                    goods_item_number: f.goods_item_number,
                    undervalued: f.undervalued,
                    corrected_intrinsic_value: f.corrected_intrinsic_value.map(money_to_pb),
                    misdescribed: f.misdescribed,
                    corrected_description: f.corrected_description.clone(),
                    corrected_hs6: f
                        .corrected_hs6
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                })
                .collect(),
            inspected_at: inspected_at.map(timestamp_to_pb),
            officer_notes: officer_notes.clone(),
        }
    }
}

impl From<&GroundTruth> for pb::GroundTruth {
    fn from(t: &GroundTruth) -> Self {
        let GroundTruth {
            fraud_kinds,
            items,
            seller_profile,
        } = t;
        pb::GroundTruth {
            fraud_kinds: fraud_kinds.iter().copied().map(fraud_kind_to_pb).collect(),
            items: items
                .iter()
                .map(|i| pb::ItemTruth {
                    goods_item_number: i.goods_item_number,
                    hs6: i.hs6.as_str().to_owned(),
                    description: i.description.clone(),
                    intrinsic_value: Some(money_to_pb(i.intrinsic_value)),
                })
                .collect(),
            seller_profile: seller_profile.clone(),
        }
    }
}

impl From<&TrainingExample> for pb::TrainingExample {
    fn from(e: &TrainingExample) -> Self {
        let TrainingExample {
            declaration,
            result,
            truth,
        } = e;
        pb::TrainingExample {
            declaration: Some(declaration.into()),
            result: result.as_ref().map(Into::into),
            truth: truth.as_ref().map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Generator, GeneratorConfig};

    fn fields_at_fault(example: pb::TrainingExample) -> Vec<String> {
        match TrainingExample::try_from(example) {
            Ok(_) => Vec::new(),
            Err(err) => err.violations.into_iter().map(|v| v.field).collect(),
        }
    }

    #[test]
    fn a_goods_item_number_used_twice_is_refused_on_its_second_item() {
        let example = Generator::new(GeneratorConfig {
            parcels: 1,
            seed: 5,
            ..GeneratorConfig::default()
        })
        .unwrap()
        .chunk(0)
        .0
        .remove(0);
        let item = example.declaration.as_ref().unwrap().items[0].clone();
        // Short declarations are checked item against item, long ones with a
        // set: both find the same repeats, in order.
        for items in [3u32, 5, 40] {
            let mut example = example.clone();
            let declaration = example.declaration.as_mut().unwrap();
            declaration.items = (1..=items)
                .map(|n| pb::GoodsItem {
                    goods_item_number: n,
                    ..item.clone()
                })
                .collect();
            // The result and truth name items by number: left out, so that
            // the repeated number is the example's only fault.
            example.result = None;
            example.truth = None;
            assert_eq!(fields_at_fault(example.clone()), Vec::<String>::new());
            let declaration = example.declaration.as_mut().unwrap();
            let last = items as usize - 1;
            declaration.items[last].goods_item_number = 1;
            declaration.items[1].goods_item_number = 1;
            // A declaration alone (gRPC) names its own fields; a training
            // example (files) names them under `declaration.`, as the rest.
            let alone = crate::domain::Declaration::try_from(declaration.clone()).unwrap_err();
            assert_eq!(
                alone
                    .violations
                    .iter()
                    .map(|v| v.field.as_str())
                    .collect::<Vec<_>>(),
                [
                    "items[1].goods_item_number".to_owned(),
                    format!("items[{last}].goods_item_number")
                ],
                "{items} items"
            );
            assert_eq!(
                fields_at_fault(example),
                [
                    "declaration.items[1].goods_item_number".to_owned(),
                    format!("declaration.items[{last}].goods_item_number")
                ],
                "{items} items"
            );
        }
    }

    #[test]
    fn results_and_truths_must_name_items_the_declaration_has() {
        let examples = Generator::new(GeneratorConfig {
            parcels: 200,
            seed: 5,
            random_inspection_rate: 0.5,
            ..GeneratorConfig::default()
        })
        .unwrap()
        .chunk(0)
        .0;
        let inspected = examples
            .into_iter()
            .find(|e| e.result.is_some() && e.truth.as_ref().is_some_and(|t| !t.items.is_empty()))
            .expect("an inspected parcel with its truth");
        assert_eq!(fields_at_fault(inspected.clone()), Vec::<String>::new());

        let mut truth_only = inspected.clone();
        truth_only.result = None;
        assert_eq!(fields_at_fault(truth_only.clone()), Vec::<String>::new());
        truth_only.truth = None;
        assert_eq!(fields_at_fault(truth_only), Vec::<String>::new());

        let mut finding_elsewhere = inspected.clone();
        let findings = &mut finding_elsewhere.result.as_mut().unwrap().findings;
        findings.push(pb::ItemFinding {
            goods_item_number: 999,
            ..Default::default()
        });
        let at = findings.len() - 1;
        assert_eq!(
            fields_at_fault(finding_elsewhere),
            [format!("result.findings[{at}].goods_item_number")]
        );

        let mut truth_elsewhere = inspected;
        truth_elsewhere.truth.as_mut().unwrap().items[0].goods_item_number = 999;
        assert_eq!(
            fields_at_fault(truth_elsewhere),
            ["truth.items[0].goods_item_number"]
        );
    }
}
