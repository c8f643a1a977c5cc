//! H7 validation through the wire conversion: every violation names its field,
//! and risk signals are flags, not rejections.

use parcel_risk::domain::{DataFlag, Declaration, InspectionResult, ValidationError};
use parcel_risk::pb;

use crate::common::{full_declaration, full_example, money};

fn violations(d: pb::Declaration) -> Vec<(String, String)> {
    let err: ValidationError = Declaration::try_from(d).expect_err("should be rejected");
    err.violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

fn fields(d: pb::Declaration) -> Vec<String> {
    violations(d).into_iter().map(|(f, _)| f).collect()
}

#[test]
fn the_full_declaration_is_valid_and_flags_its_risks() {
    let d = Declaration::try_from(full_declaration("D1")).unwrap();
    assert!(d.flags.contains(&DataFlag::VagueDescription {
        goods_item_number: 2
    }));
    assert!(d.flags.iter().any(|f| matches!(
        f,
        DataFlag::UnknownHs6 {
            goods_item_number: 2,
            ..
        }
    )));
    assert!(
        !d.flags
            .iter()
            .any(|f| matches!(f, DataFlag::H7ValueOver150 { .. }))
    );
}

#[test]
fn required_fields_are_named() {
    let mut d = full_declaration("");
    d.lrn.clear();
    d.lodged_at = None;
    d.dataset = 0;
    d.importer = None;
    d.transport_documents.clear();
    let got = fields(d);
    for expected in [
        "declaration_id",
        "lrn",
        "lodged_at",
        "dataset",
        "importer",
        "transport_documents",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "{expected} missing from {got:?}"
        );
    }
}

#[test]
fn malformed_codes_and_amounts_name_the_item_field() {
    let mut d = full_declaration("D1");
    d.items[1].hs6 = "85171".into();
    d.items[0].intrinsic_value = money("XXX", 100);
    d.items[1].intrinsic_value = money("EUR", -5);
    d.items[0].gross_mass_g = -1;
    d.items[0].additional_procedure_codes.push("F4".into());
    d.items[0].country_of_origin = "China".into();
    d.ioss_number = "IM12345".into();
    d.exporter
        .as_mut()
        .unwrap()
        .address
        .as_mut()
        .unwrap()
        .country = "cn".into();
    let got = fields(d);
    for expected in [
        "items[1].hs6",
        "items[0].intrinsic_value.currency",
        "items[1].intrinsic_value.amount_minor",
        "items[0].gross_mass_g",
        "items[0].additional_procedure_codes[2]",
        "items[0].country_of_origin",
        "ioss_number",
        "exporter.address.country",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "{expected} missing from {got:?}"
        );
    }
}

#[test]
fn string_limits_and_item_limits_are_enforced() {
    let mut d = full_declaration("D1");
    d.lrn = "L".repeat(23);
    d.items[0].description = "x".repeat(513);
    d.importer.as_mut().unwrap().name = "n".repeat(71);
    d.attributes.insert("Bad Key".into(), "v".into());
    let got = fields(d);
    for expected in [
        "lrn",
        "items[0].description",
        "importer.name",
        "attributes[\"Bad Key\"]",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "{expected} missing from {got:?}"
        );
    }

    let mut d = full_declaration("D1");
    let item = d.items[0].clone();
    d.items = (1..=1000)
        .map(|n| pb::GoodsItem {
            goods_item_number: n,
            ..item.clone()
        })
        .collect();
    let got = violations(d);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "items");
    assert!(got[0].1.contains("limit of 999"));
}

#[test]
fn duplicate_item_numbers_and_bad_enums_are_rejected() {
    let mut d = full_declaration("D1");
    d.items[1].goods_item_number = 1;
    d.carrier_channel = 42;
    d.transport_documents[0].kind = 0;
    let got = fields(d);
    assert!(
        got.contains(&"items[1].goods_item_number".to_owned()),
        "{got:?}"
    );
    assert!(got.contains(&"carrier_channel".to_owned()), "{got:?}");
    assert!(
        got.contains(&"transport_documents[0].kind".to_owned()),
        "{got:?}"
    );
}

#[test]
fn a_consignment_over_150_eur_is_accepted_and_flagged() {
    let mut d = full_declaration("D1");
    d.items[0].intrinsic_value = money("USD", 20_000);
    let checked = Declaration::try_from(d).unwrap();
    let over = checked
        .flags
        .iter()
        .find_map(|f| match f {
            DataFlag::H7ValueOver150 { total_eur_cents } => Some(*total_eur_cents),
            _ => None,
        })
        .expect("flagged");
    assert!(over > 15_000, "{over}");
}

#[test]
fn ioss_with_other_procedure_codes_is_flagged() {
    let mut d = full_declaration("D1");
    d.items[0].additional_procedure_codes = vec!["C07".into(), "F49".into()];
    let checked = Declaration::try_from(d).unwrap();
    assert!(
        checked
            .flags
            .contains(&DataFlag::InconsistentProcedureCodes {
                goods_item_number: 1
            })
    );
}

#[test]
fn inspection_results_are_validated() {
    let mut r = full_example("D1").result.unwrap();
    r.outcome = 0;
    r.selection_reason = 99;
    r.findings[0].corrected_hs6 = "abc".into();
    r.inspection_id.clear();
    let err = InspectionResult::try_from(r).unwrap_err();
    let got: Vec<String> = err.violations.into_iter().map(|v| v.field).collect();
    for expected in [
        "outcome",
        "selection_reason",
        "findings[0].corrected_hs6",
        "inspection_id",
    ] {
        assert!(
            got.contains(&expected.to_owned()),
            "{expected} missing from {got:?}"
        );
    }
}

#[test]
fn a_result_must_belong_to_its_declaration() {
    let mut e = full_example("D1");
    e.result.as_mut().unwrap().declaration_id = "OTHER".into();
    e.result.as_mut().unwrap().findings[0].goods_item_number = 7;
    let err = parcel_risk::domain::TrainingExample::try_from(e).unwrap_err();
    let got: Vec<String> = err.violations.into_iter().map(|v| v.field).collect();
    assert!(got.contains(&"result.declaration_id".to_owned()), "{got:?}");
    assert!(
        got.contains(&"result.findings[0].goods_item_number".to_owned()),
        "{got:?}"
    );
}

fn id_only(id: &str) -> Option<pb::Party> {
    Some(pb::Party {
        identification_number: id.into(),
        ..pb::Party::default()
    })
}

#[test]
fn a_bulk_full_declaration_is_accepted_with_ids_only() {
    // A B2B import as another national system records it: 60 t, about
    // EUR 4 M in won, parties by ID without names or addresses, no
    // transport document, no description.
    let mut d = full_declaration("H1-BULK");
    d.dataset = pb::DatasetType::H1 as i32;
    d.exporter = id_only("0VKY2BR");
    d.importer = id_only("QLRUBN9");
    d.declarant = id_only("ZZR1LT6");
    d.ioss_number.clear();
    d.transport_documents.clear();
    d.ens = None;
    d.items.truncate(1);
    let item = &mut d.items[0];
    item.description.clear();
    item.gross_mass_g = 60_000_000_000;
    item.intrinsic_value = money("KRW", 7_045_681_618);
    item.additional_procedure_codes.clear();
    let accepted = Declaration::try_from(d.clone()).unwrap();
    assert!(
        !accepted.flags.iter().any(|f| matches!(
            f,
            DataFlag::H7ValueOver150 { .. } | DataFlag::ImplausibleMass { .. }
        )),
        "{:?}",
        accepted.flags
    );
    assert!(accepted.flags.contains(&DataFlag::MissingDescription {
        goods_item_number: 1
    }));

    // The same goods as an H7 parcel: accepted, and flagged twice.
    d.dataset = pb::DatasetType::H7 as i32;
    d.importer = full_declaration("x").importer;
    d.exporter = full_declaration("x").exporter;
    d.transport_documents = full_declaration("x").transport_documents;
    let parcel = Declaration::try_from(d.clone()).unwrap();
    assert!(parcel.flags.contains(&DataFlag::ImplausibleMass {
        goods_item_number: 1,
        gross_mass_g: 60_000_000_000
    }));
    assert!(
        parcel
            .flags
            .iter()
            .any(|f| matches!(f, DataFlag::H7ValueOver150 { .. }))
    );

    // A party neither named nor identified, and a mass beyond any format,
    // are still refused.
    d.exporter = Some(pb::Party {
        address: full_declaration("x").exporter.unwrap().address,
        ..pb::Party::default()
    });
    d.items[0].gross_mass_g = i64::MAX;
    let got = fields(d);
    assert!(got.contains(&"exporter.name".to_owned()), "{got:?}");
    assert!(got.contains(&"items[0].gross_mass_g".to_owned()), "{got:?}");
}
