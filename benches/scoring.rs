//! Scoring cost per declaration: features, the three classifiers on ready
//! rows, and all of it together, measured on generated traffic with the
//! default model; and what copying and freeing a checked declaration, and
//! validating one, cost (the floors under any decoder's figure). Prints
//! medians; no assertions.
//!
//! Then, per learner, a model trained here with that kind alone (on 30 000
//! generated parcels) scores the same declarations: the three classifiers
//! alone on ready rows, and the whole assessment.
//!
//! `cargo bench --bench scoring` (set PARCEL_RISK_MODEL to bench another
//! model; PARCEL_RISK_BENCH_LEARNERS=0 skips the per-learner part;
//! PARCEL_RISK_BENCH_PROFILE=score only scores, untimed, for a profiler;
//! PARCEL_RISK_BENCH_PROFILE=routed only routes, likewise).

// The allocator of the shipped binary (src/main.rs), so the figures are its figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use parcel_risk::domain::TrainingExample;
use parcel_risk::domain::validation::ReferenceData;
use parcel_risk::features::history::PartyKeys;
use parcel_risk::features::window::SplitSignal;
use parcel_risk::generate::{Generator, GeneratorConfig};
use parcel_risk::model::train::{TrainParams, train};
use parcel_risk::model::{ClassifierKind, ModelArtifact, Target};
use parcel_risk::scoring::{PriorityConfig, Router, Scorer};
use parcel_risk::wire::declaration::declaration_from_raw;
use parcel_risk::wire::raw::direct;

const ROUNDS: usize = 31;
const PER_ROUND: usize = 2_000;

fn summary(label: &str, mut per_item_ns: Vec<f64>) {
    per_item_ns.sort_by(f64::total_cmp);
    let q = |p: f64| per_item_ns[((per_item_ns.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label:<44} median {:>8.2} us   p10 {:>8.2} us   p90 {:>8.2} us   ({ROUNDS} rounds of {PER_ROUND})",
        q(0.5) / 1000.0,
        q(0.1) / 1000.0,
        q(0.9) / 1000.0
    );
}

/// Generated traffic as checked training examples, and each declaration
/// as a JSON line (the proto3 JSON mapping, as `generate` writes it).
fn generated(config: GeneratorConfig) -> (Vec<TrainingExample>, Vec<String>) {
    let generator = Generator::new(config).expect("valid config");
    (0..generator.chunk_count())
        .flat_map(|c| generator.chunk(c).0)
        .map(|e| {
            let line = serde_json::to_string(e.declaration.as_ref().expect("generated"))
                .expect("a wire message writes as JSON");
            let example = TrainingExample::try_from(e).expect("generated traffic is valid");
            (example, line)
        })
        .unzip()
}

/// The feature rows of the first [`PER_ROUND`] examples under `model`, for
/// timing its classifiers alone.
fn ready_rows(model: &ModelArtifact, examples: &[TrainingExample]) -> Vec<Vec<f64>> {
    let rates = parcel_risk::domain::RateTable::built_in();
    let regime = parcel_risk::domain::regime::Regime::built_in();
    examples
        .iter()
        .take(PER_ROUND)
        .map(|e| {
            let d = &e.declaration;
            let keys = PartyKeys::of(d);
            let s = model.features.signals(
                d,
                &model.history,
                &keys,
                SplitSignal::default(),
                rates,
                regime,
            );
            let mut row = Vec::new();
            model.features.row(d, &s, &mut row);
            row
        })
        .collect()
}

/// As [`rounds`], for two workloads, one round of each in turn.
fn paired_rounds(mut f: impl FnMut(usize), mut g: impl FnMut(usize)) -> (Vec<f64>, Vec<f64>) {
    let time = |h: &mut dyn FnMut(usize), round: usize| {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            h(round * PER_ROUND + i);
        }
        start.elapsed().as_nanos() as f64 / PER_ROUND as f64
    };
    (0..ROUNDS)
        .map(|round| (time(&mut f, round), time(&mut g, round)))
        .unzip()
}

fn rounds(mut f: impl FnMut(usize)) -> Vec<f64> {
    (0..ROUNDS)
        .map(|round| {
            let start = Instant::now();
            for i in 0..PER_ROUND {
                f(round * PER_ROUND + i);
            }
            start.elapsed().as_nanos() as f64 / PER_ROUND as f64
        })
        .collect()
}

fn main() {
    let path = std::env::var("PARCEL_RISK_MODEL")
        .map_or_else(|_| PathBuf::from("models/default"), PathBuf::from);
    let model = match ModelArtifact::load(&path) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("cannot load the model to bench: {e}");
            std::process::exit(1);
        }
    };
    let (examples, lines) = generated(GeneratorConfig {
        parcels: (ROUNDS * PER_ROUND) as u64,
        seed: 99,
        ..GeneratorConfig::default()
    });
    let n = examples.len();
    println!(
        "model {} ({} features), {n} generated declarations",
        model.model_version,
        model.schema.len()
    );

    let scorer = Scorer::new(model.clone());
    for e in &examples {
        black_box(scorer.score(&e.declaration, SplitSignal::default()));
    }
    let m = &model;
    // For a profiler (`perf record`): the bare score alone, 20 passes over
    // the traffic, and nothing else (no timings).
    if std::env::var("PARCEL_RISK_BENCH_PROFILE").as_deref() == Ok("score") {
        for _ in 0..20 {
            for e in &examples {
                black_box(scorer.score(&e.declaration, SplitSignal::default()));
            }
        }
        return;
    }
    let rates = parcel_risk::domain::RateTable::built_in();
    let regime = parcel_risk::domain::regime::Regime::built_in();
    let mut row = Vec::new();
    summary(
        "features (signals + row)",
        rounds(|i| {
            let d = &examples[i % n].declaration;
            let keys = PartyKeys::of(d);
            let s = m
                .features
                .signals(d, &m.history, &keys, SplitSignal::default(), rates, regime);
            m.features.row(d, &s, &mut row);
            black_box(&row);
        }),
    );
    // The default model's three classifiers alone, on rows made ready
    // before (the boosted trees are most of a score's model time).
    let rows = ready_rows(m, &examples);
    summary(
        "3 classifiers on a ready row",
        rounds(|i| {
            let row = &rows[i % rows.len()];
            for target in Target::ALL {
                black_box(m.classifiers.get(target).score(row));
            }
        }),
    );
    summary(
        "score (features + 3 models + reasons)",
        rounds(|i| {
            black_box(scorer.score(&examples[i % n].declaration, SplitSignal::default()));
        }),
    );
    // The least any decoder that hands on this domain type pays per
    // declaration, whatever it reads: writing a checked declaration (its
    // texts, items and boxes) and freeing it. Cloned from declarations
    // made long before, out of cache as a decoder's input is; the scale
    // for the decoders' figures in docs/speed.md.
    summary(
        &format!(
            "clone + drop of a declaration ({} B)",
            std::mem::size_of::<parcel_risk::domain::Declaration>()
        ),
        rounds(|i| {
            black_box(examples[i % n].declaration.clone());
        }),
    );
    // What validation costs on its own, whatever the format: the same
    // declarations as JSON lines (out of cache, as a file's are), read by
    // the direct reader into a raw declaration that borrows the line; then
    // that, the checks every gRPC request meets, the checked declaration's
    // text copied in, and the drop. Round by round in turn, on lines half
    // the traffic apart (neither finds the other's lines in cache); their
    // difference is what any decoder pays once it has found the cells.
    let reference = ReferenceData::built_in();
    // Every line takes the path timed: read directly, then valid.
    for line in &lines {
        let raw = direct::declaration(line).expect("the direct reader reads generated lines");
        declaration_from_raw(raw, &reference).expect("generated traffic is valid");
    }
    let (raw_rounds, checked_rounds) = paired_rounds(
        |i| {
            black_box(direct::declaration(&lines[i % n]));
        },
        |i| {
            if let Some(raw) = direct::declaration(&lines[(i + n / 2) % n]) {
                black_box(declaration_from_raw(raw, &reference).is_ok());
            }
        },
    );
    let validation: Vec<f64> = checked_rounds
        .iter()
        .zip(&raw_rounds)
        .map(|(checked, raw)| checked - raw)
        .collect();
    summary("JSON line -> raw declaration (direct reader)", raw_rounds);
    summary("JSON line -> checked declaration, dropped", checked_rounds);
    summary("  validation alone (their difference)", validation);
    // Routed: windows and the live record. The generated days are moved
    // past the model's training data, so the live record counts them (as
    // it counts live traffic), not only reads them.
    let offset = model
        .card
        .last_lodged_at
        .zip(examples.iter().map(|e| e.declaration.lodged_at).min())
        .map_or(chrono::TimeDelta::zero(), |(end, first)| {
            (end - first) + chrono::TimeDelta::days(1)
        });
    let later: Vec<_> = examples
        .iter()
        .map(|e| {
            let mut d = e.declaration.clone();
            d.lodged_at += offset;
            d
        })
        .collect();
    let router = Router::new(model.clone(), PriorityConfig::default());
    let routed = router.scorer();
    // For a profiler: the routed assessment alone, one pass over the
    // traffic (a second would be resends, which the live record only reads).
    if std::env::var("PARCEL_RISK_BENCH_PROFILE").as_deref() == Ok("routed") {
        for d in &later {
            black_box(router.assess(&routed, d));
        }
        return;
    }
    let frozen = Router::new(model.clone(), PriorityConfig::default()).without_live_record();
    let frozen_scorer = frozen.scorer();
    // Round by round in turn, so that the machine's load falls on both.
    let (live_rounds, frozen_rounds) = paired_rounds(
        |i| {
            black_box(router.assess(&routed, &later[i % n]));
        },
        |i| {
            black_box(frozen.assess(&frozen_scorer, &later[i % n]));
        },
    );
    summary("score with split window (Router::assess)", live_rounds);
    summary("same, frozen record (--frozen-record)", frozen_rounds);
    println!(
        "live record after the routed round: {} keys",
        routed.live_record_keys()
    );
    // What the service's drift sampling adds (one in 8, its default; one in
    // 1, the CLI's), alternated with the unsampled router above.
    for every in [8, 1] {
        let sampled = Router::new(model.clone(), PriorityConfig::default())
            .monitor_drift(every, parcel_risk::scoring::drift::DEFAULT_WINDOW);
        let sampled_scorer = sampled.scorer();
        summary(
            &format!("score with split window and drift 1 in {every}"),
            rounds(|i| {
                black_box(sampled.assess(&sampled_scorer, &later[i % n]));
            }),
        );
    }
    if std::env::var("PARCEL_RISK_BENCH_LEARNERS").as_deref() != Ok("0") {
        learners(&examples);
    }
}

/// Per learner: the classifiers alone on ready rows, and the assessment.
fn learners(examples: &[TrainingExample]) {
    let (training, _) = generated(GeneratorConfig {
        parcels: 30_000,
        seed: 5,
        days: 4,
        rule_inspection_rate: 0.15,
        random_inspection_rate: 0.05,
        ..GeneratorConfig::default()
    });
    let n = examples.len();
    for kind in ClassifierKind::ALL {
        let params = TrainParams {
            candidates: vec![kind],
            ..TrainParams::default()
        };
        let started = Instant::now();
        let model = match train(training.clone(), &params, "bench", kind.name().into()) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                eprintln!("{}: cannot train: {e}", kind.name());
                continue;
            }
        };
        let detail = if let parcel_risk::model::Classifier::GradientBoosting { model, .. } =
            model.classifiers.get(Target::Any)
        {
            format!(", {} trees of depth {} for any", model.trees(), model.depth)
        } else {
            String::new()
        };
        println!(
            "{} ({} features{detail}; trained in {:.1} s)",
            kind.name(),
            model.schema.len(),
            started.elapsed().as_secs_f64()
        );
        let rows = ready_rows(&model, examples);
        summary(
            &format!("  {}: 3 classifiers on a ready row", kind.name()),
            rounds(|i| {
                let row = &rows[i % rows.len()];
                for target in Target::ALL {
                    black_box(model.classifiers.get(target).score(row));
                }
            }),
        );
        let scorer = Scorer::new(model.clone());
        summary(
            &format!("  {}: score (features + 3 models + reasons)", kind.name()),
            rounds(|i| {
                black_box(scorer.score(&examples[i % n].declaration, SplitSignal::default()));
            }),
        );
    }
}
