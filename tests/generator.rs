//! The traffic generator: deterministic per seed, valid, calibrated.

use parcel_risk::domain::{FraudKind, SelectionReason, TrainingExample};
use parcel_risk::generate::{Generator, GeneratorConfig, Stats};
use parcel_risk::pb;

fn generate(parcels: u64, seed: u64) -> (Vec<pb::TrainingExample>, Stats) {
    let generator = Generator::new(GeneratorConfig {
        parcels,
        seed,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let mut all = Vec::new();
    let mut stats = Stats::default();
    for c in 0..generator.chunk_count() {
        let (examples, s) = generator.chunk(c);
        all.extend(examples);
        stats.merge(&s);
    }
    (all, stats)
}

#[test]
fn same_seed_same_traffic_other_seed_other_traffic() {
    let (a, _) = generate(5_000, 42);
    let (b, _) = generate(5_000, 42);
    let (c, _) = generate(5_000, 43);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 5_000);
}

#[test]
fn rates_out_of_range_are_refused() {
    let err = Generator::new(GeneratorConfig {
        undervaluation_rate: 1.5,
        ..GeneratorConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("undervaluation_rate"));
}

#[test]
fn traffic_is_valid_and_calibrated() {
    let (examples, stats) = generate(20_000, 9);
    let examples: Vec<TrainingExample> = examples
        .into_iter()
        .map(|e| TrainingExample::try_from(e).expect("generated traffic validates"))
        .collect();

    let mean_item = stats.declared_item_eur / stats.items as f64;
    assert!(mean_item < 9.0, "mean item value {mean_item}");
    assert!((3.5..7.0).contains(&stats.median_declared_item_eur()));
    assert!(
        (0.87..0.95).contains(&stats.share(stats.sellers_cn)),
        "CN {}",
        stats.share(stats.sellers_cn)
    );
    assert!(
        (0.89..0.97).contains(&stats.share(stats.ioss)),
        "IOSS {}",
        stats.share(stats.ioss)
    );
    assert!((0.55..0.65).contains(&stats.share(stats.items_per_parcel[0])));
    assert!(
        examples
            .iter()
            .all(|e| (1..=8).contains(&e.declaration.items.len()) || is_split(e))
    );

    // Each fraud kind is present with its own label.
    for kind in FraudKind::ALL {
        let share = examples
            .iter()
            .filter(|e| e.truth.as_ref().unwrap().is(kind))
            .count() as f64
            / 20_000.0;
        assert!(share > 0.003, "{kind:?} {share}");
    }
    // Bunching: more declared totals just under 150 than in the band below.
    assert!(stats.declared_140_150 > stats.declared_130_140);

    // Fraud concentrates in rogue sellers.
    let rate = |profile: &str| {
        let group: Vec<&TrainingExample> = examples
            .iter()
            .filter(|e| e.truth.as_ref().unwrap().seller_profile == profile)
            .collect();
        group
            .iter()
            .filter(|e| !e.truth.as_ref().unwrap().fraud_kinds.is_empty())
            .count() as f64
            / group.len() as f64
    };
    assert!(
        rate("rogue") > 4.0 * rate("honest"),
        "rogue {} honest {}",
        rate("rogue"),
        rate("honest")
    );

    // Only a small share is labelled, with the reason recorded; random labels
    // measure the true prevalence, rule labels are enriched in fraud.
    let labelled: Vec<&TrainingExample> = examples.iter().filter(|e| e.result.is_some()).collect();
    let share = labelled.len() as f64 / 20_000.0;
    assert!((0.01..0.05).contains(&share), "labelled {share}");
    let random = labelled
        .iter()
        .filter(|e| e.result.as_ref().unwrap().selection_reason == SelectionReason::Random)
        .count();
    assert!(random > 40, "random {random}");
    assert!(
        stats.rule_non_compliant as f64 / stats.rule_inspected as f64
            > stats.random_non_compliant as f64 / stats.random_inspected as f64
    );
}

fn is_split(e: &TrainingExample) -> bool {
    e.truth.as_ref().unwrap().is(FraudKind::SplitConsignment)
}

#[test]
fn misdescribed_items_keep_their_true_mass_and_findings_tell_the_truth() {
    let (examples, _) = generate(20_000, 5);
    let mut checked = 0;
    for e in examples {
        let e = TrainingExample::try_from(e).unwrap();
        let truth = e.truth.as_ref().unwrap();
        if let Some(result) = &e.result {
            for finding in &result.findings {
                let item_truth = &truth.items[finding.goods_item_number as usize - 1];
                if finding.misdescribed {
                    assert_eq!(finding.corrected_description, item_truth.description);
                    checked += 1;
                }
                if let Some(hs6) = finding.corrected_hs6 {
                    assert_eq!(hs6, item_truth.hs6);
                }
            }
        }
    }
    assert!(checked > 5, "{checked}");
}
