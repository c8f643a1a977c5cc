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
use parcel_risk::scoring::{PriorityConfig, Router, Scorer};

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
    let before = Router::new(model.clone(), PriorityConfig::default());
    let after = Router::new(loaded, PriorityConfig::default());
    let (b, a) = (before.scorer(), after.scorer());
    for e in examples.iter().take(500) {
        assert_eq!(
            before.assess(&b, &e.declaration),
            after.assess(&a, &e.declaration)
        );
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
    // The past record follows the same clock.
    let column = |name: &str| model.schema.names.iter().position(|n| n == name).unwrap();
    let (inspected, seen) = (
        column("rec.exporter.log_inspected"),
        column("rec.exporter.log_seen"),
    );
    assert_eq!(
        r.rows[(1, inspected)],
        0.0,
        "B was lodged before A's inspection"
    );
    assert_eq!(
        r.rows[(2, inspected)],
        1f64.ln_1p(),
        "C was lodged after it"
    );
    assert_eq!(r.rows[(0, seen)], 0.0);
    assert_eq!(r.rows[(1, seen)], 1f64.ln_1p());
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
            declaration_id: e.declaration.declaration_id.as_str().to_owned(),
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

#[test]
fn the_past_record_never_sees_a_label_before_it_is_known() {
    use parcel_risk::domain::InspectionOutcome;
    let (model, examples) = trained();
    let mut sorted = examples.clone();
    sort_by_time(&mut sorted);
    let delay = Duration::hours(48);
    let rows =
        |examples: &[TrainingExample]| replay(examples, &model.features, delay, |_| true).rows;
    let before = rows(&sorted);
    // Flip every label that becomes known after the middle declaration's
    // lodging: no row up to that declaration may change.
    let middle = sorted.len() / 2;
    let cut = sorted[middle].declaration.lodged_at;
    let mut flipped = sorted.clone();
    let mut changed = 0;
    for e in &mut flipped {
        let lodged = e.declaration.lodged_at;
        if let Some(r) = &mut e.result {
            let known = r.inspected_at.unwrap_or(lodged + delay).max(lodged);
            if known > cut {
                r.outcome = match r.outcome {
                    InspectionOutcome::NonCompliant => InspectionOutcome::Compliant,
                    _ => InspectionOutcome::NonCompliant,
                };
                r.fraud_kinds.clear();
                changed += 1;
            }
        }
    }
    assert!(changed > 100, "{changed}");
    let after = rows(&flipped);
    let record: Vec<usize> = model
        .schema
        .names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.starts_with("rec."))
        .map(|(i, _)| i)
        .collect();
    assert!(record.len() >= 20, "{:?}", model.schema.names);
    assert_eq!(
        before.slice(ndarray::s![..=middle, ..]),
        after.slice(ndarray::s![..=middle, ..])
    );
    // ... and the later rows do see the flipped labels.
    let later = |r: &ndarray::Array2<f64>| {
        record
            .iter()
            .map(|&c| r.column(c).slice(ndarray::s![middle + 1..]).sum())
            .sum::<f64>()
    };
    assert_ne!(later(&before), later(&after));
}

/// Small traffic whose labels name no fraud kind: only `any` can train.
fn kindless(parcels: u64) -> Vec<TrainingExample> {
    let mut examples = crate::common::traffic(parcels, 5);
    for e in &mut examples {
        if let Some(r) = &mut e.result {
            r.fraud_kinds.clear();
            for f in &mut r.findings {
                f.undervalued = false;
                f.misdescribed = false;
            }
        }
    }
    examples
}

#[test]
fn a_target_without_positives_is_skipped_and_the_rest_trains() {
    use parcel_risk::model::Target;
    use parcel_risk::model::train::{TrainParams, train};
    let examples = kindless(3_000);
    let params = TrainParams {
        candidates: vec![ClassifierKind::Logistic],
        ..TrainParams::default()
    };
    let model = train(examples.clone(), &params, "test", "kindless".into()).unwrap();
    assert!(model.classifiers.any.is_some());
    assert!(model.classifiers.undervaluation.is_none());
    assert!(model.classifiers.misdescription.is_none());
    let skipped: Vec<Target> = model.card.skipped.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        skipped,
        vec![Target::Undervaluation, Target::Misdescription]
    );
    assert!(
        model
            .card_markdown()
            .contains("undervaluation: not trained (0 positive")
    );
    // It is written, read back, and scores every target with `any`.
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = ModelArtifact::load(dir.path()).unwrap();
    let scorer = Scorer::new(Arc::new(loaded));
    let a = scorer.score(&examples[0].declaration, SplitSignal::default());
    assert_eq!(a.undervaluation_score, a.overall_score);
    assert_eq!(a.misdescription_score, a.overall_score);

    // With no usable label at all, training says so instead of writing a model.
    let unlabelled: Vec<TrainingExample> = examples
        .into_iter()
        .map(|mut e| {
            e.result = None;
            e
        })
        .collect();
    let err = train(unlabelled, &params, "test", "none".into()).unwrap_err();
    assert!(err.to_string().contains("every target"), "{err}");
}

#[test]
fn every_learner_round_trips_with_identical_scores() {
    use parcel_risk::cli::train::prove_round_trip;
    use parcel_risk::model::train::{TrainParams, train};
    let examples = crate::common::traffic(3_000, 9);
    let declarations: Vec<_> = examples
        .iter()
        .rev()
        .take(300)
        .map(|e| e.declaration.clone())
        .collect();
    for kind in ClassifierKind::ALL {
        let params = TrainParams {
            candidates: vec![kind],
            forest_trees: 5,
            boosting_max_trees: 40,
            ..TrainParams::default()
        };
        let model = train(examples.clone(), &params, "test", kind.name().into()).unwrap();
        assert!(
            model.card.chosen.iter().all(|(_, k)| *k == kind),
            "{:?}",
            model.card.chosen
        );
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        prove_round_trip(model, dir.path(), &declarations)
            .unwrap_or_else(|e| panic!("{}: {e:#}", kind.name()));
    }
}

#[test]
fn reason_evidence_and_the_assessment_give_one_expected_value() {
    let (model, examples) = trained();
    let scorer = Scorer::new(model.clone());
    let mut checked = 0;
    for e in examples.iter().take(4000) {
        let a = scorer.score(&e.declaration, SplitSignal::default());
        for r in a.reasons.iter().filter(|r| r.code.starts_with("VAL_")) {
            let Some((_, eur)) = r.evidence.iter().find(|(k, _)| *k == "expected_value_eur") else {
                continue;
            };
            let item = a
                .items
                .iter()
                .find(|i| i.goods_item_number == r.goods_item_number)
                .unwrap();
            let cents = (eur.parse::<f64>().unwrap() * 100.0).round() as i64;
            assert_eq!(
                cents, item.expected_value_eur_cents,
                "{}: evidence EUR {eur}, item {} cents",
                a.declaration_id, item.expected_value_eur_cents
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} valuation reasons checked");
}

#[test]
fn drift_is_quiet_on_training_like_traffic_and_loud_when_values_collapse() {
    use parcel_risk::model::drift::PSI_MAJOR;
    let (model, examples) = trained();
    let baseline = model
        .drift_baseline
        .as_ref()
        .expect("training fits a baseline");
    assert_eq!(baseline.columns.len(), model.schema.len() + 3);
    let measure = |declarations: Vec<parcel_risk::domain::Declaration>| {
        let router =
            Router::new(model.clone(), PriorityConfig::default()).monitor_drift(1, u64::MAX);
        let scorer = router.scorer();
        for d in &declarations {
            router.assess(&scorer, d);
        }
        let monitor = scorer.drift().unwrap();
        assert_eq!(monitor.sampled(), declarations.len() as u64);
        monitor.report()
    };
    let same = measure(examples.iter().map(|e| e.declaration.clone()).collect());
    // Recency columns measure the age of the frozen history, not traffic.
    let largest = same
        .iter()
        .find(|c| !parcel_risk::model::drift::is_history_measure(&c.column))
        .unwrap();
    assert!(
        largest.psi < 0.1,
        "largest PSI on the training traffic: {largest:?}"
    );
    // Every value declared at a fifth: the value features and the
    // undervaluation score move.
    let collapsed = measure(
        examples
            .iter()
            .map(|e| {
                let mut d = e.declaration.clone();
                for item in &mut d.items {
                    item.intrinsic_value.amount_minor /= 5;
                }
                d
            })
            .collect(),
    );
    let psi_of = |name: &str| collapsed.iter().find(|c| c.column == name).unwrap().psi;
    assert!(psi_of("score:undervaluation") > PSI_MAJOR, "{collapsed:?}");
    assert!(
        collapsed.iter().filter(|c| c.psi > PSI_MAJOR).count() >= 3,
        "{collapsed:?}"
    );
}
