//! Models: training on generated traffic, the artifact round trip, refusal of
//! bad artifacts, and leak-free party history.

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use parcel_risk::domain::TrainingExample;
use parcel_risk::features::window::SplitSignal;
use parcel_risk::model::artifact::{ArtifactError, MODEL_FILE};
use parcel_risk::model::train::{replay, sort_by_time};
use parcel_risk::model::{ClassifierKind, ModelArtifact};
use parcel_risk::pb;
use parcel_risk::scoring::{Scorer, Session};

use crate::common::full_example;

use crate::common::trained;

#[test]
fn training_compares_candidates_and_writes_a_card() {
    let (model, _) = trained();
    let card = &model.card;
    assert_eq!(card.comparison.len(), 9, "3 targets x 3 candidates");
    assert_eq!(card.chosen.len(), 3);
    assert!(
        card.labelled > 500 && card.labelled_random > 100,
        "{card:?}"
    );
    let markdown = model.card_markdown();
    assert!(markdown.contains("| undervaluation | logistic_regression |"));
    // On this traffic the features separate fraud well even with few labels.
    for m in card
        .comparison
        .iter()
        .filter(|m| m.kind == ClassifierKind::Logistic)
    {
        assert!(m.auc > 0.8, "{m:?}");
    }
}

#[test]
fn artifact_round_trip_gives_identical_scores() {
    let (model, examples) = trained();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = Arc::new(ModelArtifact::load(dir.path()).unwrap());
    let mut before = Session::new(Scorer::new(model.clone()));
    let mut after = Session::new(Scorer::new(loaded));
    for e in examples.iter().take(500) {
        assert_eq!(before.score(&e.declaration), after.score(&e.declaration));
    }
}

fn corrupt(edit: impl Fn(&mut serde_json::Value)) -> ArtifactError {
    let (model, _) = trained();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let path = dir.path().join(MODEL_FILE);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    ModelArtifact::load(dir.path()).unwrap_err()
}

#[test]
fn a_classifier_of_the_wrong_width_is_refused() {
    let err = corrupt(|j| {
        let params = &mut j["classifiers"]["any"]["model"]["params"]["data"];
        params.as_array_mut().unwrap().pop();
        let dim = &mut j["classifiers"]["any"]["model"]["params"]["dim"][0];
        *dim = serde_json::json!(dim.as_u64().unwrap() - 1);
    });
    assert!(
        matches!(err, ArtifactError::Classifier { target: "any", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("features"), "{err}");
}

#[test]
fn a_schema_that_does_not_match_the_features_is_refused() {
    let err = corrupt(|j| {
        j["schema"]["names"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("extra_feature"));
    });
    assert!(matches!(err, ArtifactError::Schema { .. }), "{err}");
}

#[test]
fn corrupt_and_foreign_files_are_refused_with_a_message() {
    let err = corrupt(|j| j["format_version"] = serde_json::json!(99));
    assert!(err.to_string().contains("format 99"), "{err}");
    let err = corrupt(|j| j["features"]["text"]["token_log_prob"][0] = serde_json::json!(0.5));
    assert!(matches!(err, ArtifactError::Features { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(MODEL_FILE),
        b"{\"format_version\": 1, \"model_version\": ",
    )
    .unwrap();
    let err = ModelArtifact::load(dir.path()).unwrap_err();
    assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
    let err = ModelArtifact::load(Path::new("/nonexistent/model")).unwrap_err();
    assert!(matches!(err, ArtifactError::Io { .. }), "{err}");
}

#[test]
fn party_features_never_see_the_future() {
    let (model, examples) = trained();
    let mut sorted = examples.clone();
    sort_by_time(&mut sorted);
    let delay = Duration::hours(48);
    let full = replay(&sorted, &model.features, delay, |_| true);
    let half = sorted.len() / 2;
    let prefix = replay(&sorted[..half], &model.features, delay, |_| true);
    // Rows of the first half do not change when later declarations exist.
    assert_eq!(prefix.rows, full.rows.slice(ndarray::s![..half, ..]));
}

#[test]
fn an_inspection_counts_only_after_it_happened() {
    let (model, _) = trained();
    let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
    let at = |hours: i64| pbjson_types::Timestamp {
        seconds: (t0 + Duration::hours(hours)).timestamp(),
        nanos: 0,
    };
    // The same seller three times: lodged at 0 h (inspected at 30 h, fraud), 10 h and 40 h.
    let make = |id: &str, lodged: i64| {
        let mut e = full_example(id);
        let d = e.declaration.as_mut().unwrap();
        d.lodged_at = Some(at(lodged));
        e.truth = None;
        e.result = None;
        e
    };
    let mut first = make("A", 0);
    let mut result = full_example("A").result.unwrap();
    result.inspected_at = Some(at(30));
    first.result = Some(result);
    let examples: Vec<TrainingExample> = [first, make("B", 10), make("C", 40)]
        .into_iter()
        .map(|e: pb::TrainingExample| TrainingExample::try_from(e).unwrap())
        .collect();
    let r = replay(&examples, &model.features, Duration::hours(48), |_| true);
    let column = model
        .schema
        .names
        .iter()
        .position(|n| n == "pty_exporter_caught_before")
        .unwrap();
    assert_eq!(r.rows[(0, column)], 0.0);
    assert_eq!(
        r.rows[(1, column)],
        0.0,
        "B was lodged before A's inspection"
    );
    assert_eq!(r.rows[(2, column)], 1.0, "C was lodged after it");
}

#[test]
fn scorer_is_shareable_and_scores_are_probabilities() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Scorer>();
    shareable::<ModelArtifact>();
    let (model, examples) = trained();
    let scorer = Scorer::new(model.clone());
    for e in examples.iter().take(200) {
        let a = scorer.score(&e.declaration, SplitSignal::default());
        for s in [
            a.overall_score,
            a.undervaluation_score,
            a.misdescription_score,
        ] {
            assert!((0.0..=1.0).contains(&s), "{s}");
        }
        assert_eq!(a.items.len(), e.declaration.items.len());
        assert!(
            a.reasons
                .windows(2)
                .all(|w| w[0].contribution >= w[1].contribution)
        );
    }
}

#[test]
fn what_random_controls_found_raises_the_stake_of_a_depressed_cell() {
    use parcel_risk::domain::{
        InspectionOutcome, InspectionResult, ItemFinding, Money, SelectionReason,
    };
    let (model, examples) = trained();
    // A cell declared far below its worth: random controls of items of one
    // HS6 found ten times the declared value.
    let mut counts = std::collections::HashMap::new();
    for e in examples.iter() {
        *counts.entry(e.declaration.items[0].hs6).or_insert(0) += 1;
    }
    let hs6 = counts
        .into_iter()
        .max_by_key(|(hs6, n)| (*n, *hs6))
        .map(|(hs6, _)| hs6)
        .unwrap();
    let cell: Vec<&TrainingExample> = examples
        .iter()
        .filter(|e| e.declaration.items.iter().all(|i| i.hs6 == hs6))
        .take(200)
        .collect();
    assert!(
        cell.len() >= 50,
        "only {} declarations of {hs6}",
        cell.len()
    );
    let results: Vec<InspectionResult> = cell
        .iter()
        .map(|e| InspectionResult {
            declaration_id: e.declaration.declaration_id.clone(),
            inspection_id: "R".into(),
            selection_reason: SelectionReason::Random,
            control_type: None,
            outcome: InspectionOutcome::NonCompliant,
            fraud_kinds: Vec::new(),
            findings: e
                .declaration
                .items
                .iter()
                .map(|i| ItemFinding {
                    goods_item_number: i.goods_item_number,
                    undervalued: true,
                    corrected_intrinsic_value: Some(Money {
                        amount_minor: i.intrinsic_value.amount_minor * 10,
                        ..i.intrinsic_value
                    }),
                    misdescribed: false,
                    corrected_description: String::new(),
                    corrected_hs6: None,
                })
                .collect(),
            inspected_at: None,
            officer_notes: String::new(),
        })
        .collect();
    let mut learned = (**model).clone();
    learned.features.learn_found_values(
        cell.iter().map(|e| &e.declaration).zip(&results),
        parcel_risk::domain::RateTable::built_in(),
    );
    assert!(!learned.features.references.found_eur_per_kg.is_empty());
    let d = &cell[0].declaration;
    let before = Scorer::new(model.clone()).score(d, SplitSignal::default());
    let after = Scorer::new(Arc::new(learned)).score(d, SplitSignal::default());
    assert!(
        after.expected_value_eur_cents > 3 * before.expected_value_eur_cents,
        "{} -> {}",
        before.expected_value_eur_cents,
        after.expected_value_eur_cents
    );
    assert!(after.revenue_at_risk_eur_cents > before.revenue_at_risk_eur_cents);
    // The model's own scores do not move: found values are never features.
    assert_eq!(before.overall_score, after.overall_score);
}
