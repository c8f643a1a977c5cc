//! Offline evaluation: rank a window of declarations with the model and with
//! three baselines, and measure precision, recall and revenue caught in the
//! top 1, 2, 5 and 10 %, and AUC, per fraud kind.
//!
//! Labels: the ground truth when every declaration has it (synthetic data),
//! otherwise the randomly selected inspections only, which are an unbiased
//! sample of traffic. Risk-selected labels would flatter whatever selected them;
//! they are used only when no inspection was random (the KCS history), and the
//! report says so.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::regime::Regime;
use crate::domain::{RateTable, SelectionReason, TrainingExample};
use crate::features::history::{Found, PartyKeys, fnv1a};
use crate::model::metrics::{auc, precision_at, ranking, recall_at, revenue_at};
use crate::model::{ModelArtifact, Target};
use crate::scoring::{PriorityConfig, Router};

/// The shares of traffic at which the top of each ranking is measured.
pub const SHARES: [f64; 4] = [0.01, 0.02, 0.05, 0.10];

/// Where the labels came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    GroundTruth,
    RandomInspections,
    /// Every inspection, when none was random (histories such as the KCS's,
    /// where every row was picked by risk rules): the figures then describe
    /// the ranking among what the rules picked, not among all traffic.
    AllInspections,
}

/// One ranking's figures for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct RankerMetrics {
    pub ranker: &'static str,
    pub precision: [f64; 4],
    pub recall: [f64; 4],
    pub revenue: [f64; 4],
    pub auc: f64,
}

/// All figures for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    pub target: Target,
    pub positives: usize,
    pub revenue_eur: f64,
    pub rankers: Vec<RankerMetrics>,
}

/// One evaluated declaration: what the model said and what was true, so
/// that a data scientist can rank, cut and compare it with their own tools
/// (`evaluate --scores`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedRow {
    pub declaration_id: String,
    pub lodged_at: DateTime<Utc>,
    /// Undervaluation, misdescription and any-fraud scores ([`Target::ALL`] order).
    pub scores: [f64; 3],
    pub priority_value: f64,
    /// The labels evaluated against, in the same order.
    pub labels: [bool; 3],
    /// Duty and VAT the declaration evaded (0 when compliant).
    pub evaded_eur: f64,
    pub reason_codes: Vec<&'static str>,
}

/// The evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    pub model_version: String,
    pub labels: LabelSource,
    pub evaluated: usize,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub targets: Vec<TargetReport>,
    /// Every evaluated declaration, in lodging order.
    pub rows: Vec<EvaluatedRow>,
}

/// The name of the model's own ranking in a report.
pub const MODEL_RANKER: &str = "model score";

/// Why evaluation cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvalError {
    #[error("no declarations in the evaluation window")]
    Empty,
    #[error("no ground truth and no inspection results to evaluate against")]
    NoLabels,
}

/// The random baseline: a fixed pseudo-random score per declaration id hash.
fn random_order(keys: &[u64]) -> Vec<f64> {
    keys.iter()
        .map(|k| (k.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15) as f64)
        .collect()
}

/// The riskiest-parties rule: the highest past fraud rate among the
/// declaration's seller, delivery address and IOSS number.
fn riskiest_party_rate(model: &ModelArtifact, d: &crate::domain::Declaration) -> f64 {
    let keys = PartyKeys::of(d);
    let h = &model.history;
    h.exporter(&keys)
        .fraud_rate
        .max(h.address(&keys).fraud_rate)
        .max(h.ioss(&keys).fraud_rate)
}

/// The inspection results of replayed traffic, handed to the router's live
/// record once known (`inspected_at`, else training's label delay after
/// lodging), as results reach the service in deployment and as training's
/// replay learnt them. Results of traffic the model was trained on are in
/// its record already.
struct Feedback {
    /// When known, which example, whether fraud was found.
    pending: BinaryHeap<Reverse<(DateTime<Utc>, usize, Found)>>,
    label_delay: chrono::Duration,
    trained_until: Option<DateTime<Utc>>,
}

impl Feedback {
    fn new(model: &ModelArtifact) -> Self {
        Self {
            pending: BinaryHeap::new(),
            label_delay: chrono::Duration::hours(
                crate::model::train::TrainParams::default().label_delay_hours,
            ),
            trained_until: model.card.last_lodged_at,
        }
    }

    /// Learns the results known by `now`.
    fn learn_due(
        &mut self,
        now: DateTime<Utc>,
        router: &Router,
        scorer: &crate::scoring::Scorer,
        examples: &[TrainingExample],
    ) {
        while let Some(Reverse((at, i, found))) = self.pending.peek().copied() {
            if at > now {
                break;
            }
            self.pending.pop();
            router.learn_found(scorer, &examples[i].declaration, found);
        }
    }

    fn is_new(&self, e: &TrainingExample) -> bool {
        self.trained_until
            .is_none_or(|until| e.declaration.lodged_at > until)
    }

    /// Queues the result of example `i`, if it has one the model has not.
    fn push(&mut self, i: usize, e: &TrainingExample) {
        let d = &e.declaration;
        if let Some(result) = &e.result
            && let Some(found) = Found::of(result)
            && self.is_new(e)
        {
            let at = crate::model::train::result_known_at(result, d.lodged_at, self.label_delay);
            self.pending.push(Reverse((at, i, found)));
        }
    }

    /// Queues what inspecting example `i` finds (its ground truth), known
    /// the label delay after its lodging: the service's own controls.
    fn push_found(&mut self, i: usize, e: &TrainingExample) {
        if let Some(t) = &e.truth
            && self.is_new(e)
        {
            let [uv, md, fraud] = Target::ALL.map(|target| target.truth(t));
            let at = e.declaration.lodged_at + self.label_delay;
            self.pending.push(Reverse((at, i, Found { fraud, uv, md })));
        }
    }
}

/// The router replayed traffic goes through: as the service's, with the
/// live record learning from the traffic and its results, or on the record
/// as training left it.
fn router_for(model: &Arc<ModelArtifact>, priority: PriorityConfig, live_record: bool) -> Router {
    let router = Router::new(Arc::clone(model), priority);
    if live_record {
        router
    } else {
        router.without_live_record()
    }
}

/// Evaluates `model` on the examples lodged in `[from, until)`; with
/// `live_record`, its past record keeps learning from the traffic and the
/// inspection results as they become known, as the service's does. Examples
/// before `from` still pass through the split window, as live traffic would.
pub fn evaluate(
    model: Arc<ModelArtifact>,
    mut examples: Vec<TrainingExample>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    live_record: bool,
) -> Result<EvalReport, EvalError> {
    crate::model::train::sort_by_time(&mut examples);
    let rates = RateTable::built_in();
    let regime = Regime::built_in();
    let model_version = model.model_version.clone();
    let router = router_for(&model, PriorityConfig::default(), live_record);
    let scorer = router.scorer();
    let in_window = |e: &TrainingExample| {
        from.is_none_or(|f| e.declaration.lodged_at >= f)
            && until.is_none_or(|u| e.declaration.lodged_at < u)
    };
    let window: Vec<&TrainingExample> = examples.iter().filter(|e| in_window(e)).collect();
    if window.is_empty() {
        return Err(EvalError::Empty);
    }
    let labels = if window.iter().all(|e| e.truth.is_some()) {
        LabelSource::GroundTruth
    } else if window.iter().any(|e| {
        e.result
            .as_ref()
            .is_some_and(|r| r.selection_reason == SelectionReason::Random)
    }) {
        LabelSource::RandomInspections
    } else {
        LabelSource::AllInspections
    };

    let mut model_scores: Vec<[f64; 3]> = Vec::new();
    let mut priority = Vec::new();
    let mut declared_value = Vec::new();
    let mut party_rate = Vec::new();
    let mut keys = Vec::new();
    let mut positives: Vec<[bool; 3]> = Vec::new();
    let mut revenue = Vec::new();
    let mut rows = Vec::new();
    let mut feedback = Feedback::new(&model);
    for (i, e) in examples.iter().enumerate() {
        feedback.learn_due(e.declaration.lodged_at, &router, &scorer, &examples);
        let assessment = router.assess(&scorer, &e.declaration);
        feedback.push(i, e);
        if !in_window(e) {
            continue;
        }
        let label: Option<[bool; 3]> = match labels {
            LabelSource::GroundTruth => e
                .truth
                .as_ref()
                .map(|t| Target::ALL.map(|target| target.truth(t))),
            LabelSource::RandomInspections => e
                .result
                .as_ref()
                .filter(|r| r.selection_reason == SelectionReason::Random)
                .and_then(|r| {
                    let l = Target::ALL.map(|target| target.label(r));
                    Some([l[0]?, l[1]?, l[2]?])
                }),
            LabelSource::AllInspections => e.result.as_ref().and_then(|r| {
                let l = Target::ALL.map(|target| target.label(r));
                Some([l[0]?, l[1]?, l[2]?])
            }),
        };
        let Some(label) = label else { continue };
        let scores = [
            assessment.undervaluation_score,
            assessment.misdescription_score,
            assessment.overall_score,
        ];
        let evaded_eur = crate::model::stake::evaded_eur(e, rates, regime);
        model_scores.push(scores);
        priority.push(assessment.priority_value);
        declared_value.push(assessment.declared_value_eur_cents as f64);
        party_rate.push(riskiest_party_rate(&model, &e.declaration));
        keys.push(fnv1a(&[&e.declaration.declaration_id]));
        positives.push(label);
        revenue.push(evaded_eur);
        rows.push(EvaluatedRow {
            declaration_id: e.declaration.declaration_id.as_str().to_owned(),
            lodged_at: e.declaration.lodged_at,
            scores,
            priority_value: assessment.priority_value,
            labels: label,
            evaded_eur,
            reason_codes: assessment.reasons.iter().map(|r| r.code).collect(),
        });
    }
    if positives.is_empty() {
        return Err(EvalError::NoLabels);
    }
    // The random baseline: a fixed pseudo-random order by declaration id.
    let random = random_order(&keys);

    let targets = Target::ALL
        .iter()
        .enumerate()
        .map(|(t, target)| {
            let pos: Vec<bool> = positives.iter().map(|p| p[t]).collect();
            let rev: Vec<f64> = revenue
                .iter()
                .zip(&pos)
                .map(|(r, p)| if *p { *r } else { 0.0 })
                .collect();
            let scores: Vec<f64> = model_scores.iter().map(|s| s[t]).collect();
            let measure = |ranker: &'static str, scores: &[f64]| {
                let order = ranking(scores, &keys);
                RankerMetrics {
                    ranker,
                    precision: SHARES.map(|s| precision_at(&order, &pos, s)),
                    recall: SHARES.map(|s| recall_at(&order, &pos, s)),
                    revenue: SHARES.map(|s| revenue_at(&order, &rev, s)),
                    auc: auc(scores, &pos),
                }
            };
            TargetReport {
                target: *target,
                positives: pos.iter().filter(|p| **p).count(),
                revenue_eur: rev.iter().sum(),
                rankers: vec![
                    measure(MODEL_RANKER, &scores),
                    measure("model priority (expected loss)", &priority),
                    measure("random", &random),
                    measure("highest declared value", &declared_value),
                    measure("riskiest parties (past fraud rate)", &party_rate),
                ],
            }
        })
        .collect();
    Ok(EvalReport {
        model_version,
        labels,
        evaluated: positives.len(),
        from,
        until,
        targets,
        rows,
    })
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {} on {} declarations ({}), window {} .. {}",
            self.model_version,
            self.evaluated,
            match self.labels {
                LabelSource::GroundTruth => "labels: ground truth",
                LabelSource::RandomInspections => "labels: random inspections",
                LabelSource::AllInspections => {
                    "labels: every inspection (none was random: figures among what was inspected)"
                }
            },
            self.from.map_or("start".into(), |t| t.to_rfc3339()),
            self.until.map_or("end".into(), |t| t.to_rfc3339()),
        )?;
        for t in &self.targets {
            writeln!(
                f,
                "\n{} ({} positive, evaded revenue EUR {:.0})",
                t.target.name(),
                t.positives,
                t.revenue_eur
            )?;
            writeln!(
                f,
                "| ranker | P@1% | P@2% | P@5% | P@10% | R@1% | R@5% | R@10% | rev@1% | rev@2% | rev@5% | rev@10% | AUC |"
            )?;
            writeln!(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
            for r in &t.rankers {
                writeln!(
                    f,
                    "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    r.ranker,
                    r.precision[0],
                    r.precision[1],
                    r.precision[2],
                    r.precision[3],
                    r.recall[0],
                    r.recall[2],
                    r.recall[3],
                    r.revenue[0],
                    r.revenue[1],
                    r.revenue[2],
                    r.revenue[3],
                    r.auc
                )?;
            }
        }
        Ok(())
    }
}

/// What one selection strategy catches at a given capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyResult {
    pub strategy: &'static str,
    pub selected: usize,
    /// Share of selected parcels with any fraud.
    pub precision: f64,
    /// Share of fraudulent parcels selected, per target (undervaluation, misdescription, any).
    pub caught: [f64; 3],
    /// Share of evaded revenue in the selected parcels.
    pub revenue: f64,
}

/// Inspection simulation on data with ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationReport {
    pub model_version: String,
    pub declarations: usize,
    pub red_share: f64,
    /// RED capacity per day, when one was set.
    pub red_per_day_target: Option<f64>,
    pub random_picks: usize,
    pub strategies: Vec<StrategyResult>,
    /// RED per calendar day (lodging time, in the configured time zone).
    pub days: Vec<DayCount>,
    /// The declarations parcel-risk sent RED, in stream order.
    pub red_ids: Vec<String>,
}

/// Streams the traffic through a [`Router`] as the service would (windows,
/// scores, priorities, daily capacity, random picks) and compares its RED
/// selection with random selection, the highest declared values and the
/// riskiest parties at the same count.
pub fn simulate(
    model: Arc<ModelArtifact>,
    mut examples: Vec<TrainingExample>,
    priority: PriorityConfig,
    from: Option<DateTime<Utc>>,
    live_record: bool,
) -> Result<SimulationReport, EvalError> {
    use crate::domain::Channel;
    crate::model::train::sort_by_time(&mut examples);
    let rates = RateTable::built_in();
    let regime = Regime::built_in();
    let red_share = priority.red_share;
    let red_per_day_target = priority.red_per_day;
    let time_zone = priority.time_zone;
    let router = router_for(&model, priority, live_record);
    let scorer = router.scorer();
    let mut selected = Vec::new();
    let mut random_picks = 0;
    let mut truth: Vec<[bool; 3]> = Vec::new();
    let mut revenue = Vec::new();
    let mut declared = Vec::new();
    let mut party_rate = Vec::new();
    let mut keys = Vec::new();
    let mut days: Vec<DayCount> = Vec::new();
    let mut red_ids = Vec::new();
    let mut feedback = Feedback::new(&model);
    for (i, e) in examples.iter().enumerate() {
        feedback.learn_due(e.declaration.lodged_at, &router, &scorer, &examples);
        let a = router
            .score_all(&scorer, std::slice::from_ref(&e.declaration), |_| ())
            .pop()
            .ok_or(EvalError::Empty)?;
        let Some(route) = a.route else {
            continue;
        };
        let red = route.channel == Channel::Red;
        // What the service's controls find comes back to it: the closed
        // loop a deployment runs (the traffic's own recorded inspections
        // are another selection's, not this one's).
        if red {
            feedback.push_found(i, e);
        }
        if from.is_some_and(|f| e.declaration.lodged_at < f) {
            continue;
        }
        if red {
            red_ids.push(a.declaration_id.as_str().to_owned());
        }
        let date = e
            .declaration
            .lodged_at
            .with_timezone(&time_zone)
            .date_naive();
        match days.last_mut() {
            Some(day) if day.date == date => {
                day.declarations += 1;
                day.red += u64::from(red);
            }
            _ => days.push(DayCount {
                date,
                declarations: 1,
                red: u64::from(red),
            }),
        }
        let t = e.truth.as_ref().ok_or(EvalError::NoLabels)?;
        truth.push(Target::ALL.map(|target| target.truth(t)));
        revenue.push(crate::model::stake::evaded_eur(e, rates, regime));
        declared.push(a.declared_value_eur_cents as f64);
        party_rate.push(riskiest_party_rate(&model, &e.declaration));
        keys.push(fnv1a(&[&e.declaration.declaration_id]));
        selected.push(red);
        random_picks += usize::from(red && route.selection_reason == SelectionReason::Random);
    }
    if truth.is_empty() {
        return Err(EvalError::Empty);
    }
    let count = selected.iter().filter(|s| **s).count();
    let measure = |strategy: &'static str, chosen: &[bool]| {
        let n = chosen.iter().filter(|c| **c).count().max(1);
        let caught = [0, 1, 2].map(|t| {
            let total = truth.iter().filter(|x| x[t]).count().max(1);
            chosen
                .iter()
                .zip(&truth)
                .filter(|(c, x)| **c && x[t])
                .count() as f64
                / total as f64
        });
        let total_revenue: f64 = revenue
            .iter()
            .zip(&truth)
            .filter(|(_, x)| x[2])
            .map(|(r, _)| r)
            .sum();
        let got: f64 = revenue
            .iter()
            .zip(&truth)
            .zip(chosen)
            .filter(|((_, x), c)| x[2] && **c)
            .map(|((r, _), _)| r)
            .sum();
        StrategyResult {
            strategy,
            selected: chosen.iter().filter(|c| **c).count(),
            precision: chosen
                .iter()
                .zip(&truth)
                .filter(|(c, x)| **c && x[2])
                .count() as f64
                / n as f64,
            caught,
            revenue: if total_revenue > 0.0 {
                got / total_revenue
            } else {
                0.0
            },
        }
    };
    let top = |scores: &[f64]| {
        let mut chosen = vec![false; scores.len()];
        for &i in ranking(scores, &keys).iter().take(count) {
            chosen[i] = true;
        }
        chosen
    };
    let random = random_order(&keys);
    Ok(SimulationReport {
        model_version: model.model_version.clone(),
        declarations: truth.len(),
        red_share,
        red_per_day_target,
        random_picks,
        strategies: vec![
            measure("parcel-risk channels (RED)", &selected),
            measure("random", &top(&random)),
            measure("highest declared value", &top(&declared)),
            measure("riskiest parties (past fraud rate)", &top(&party_rate)),
        ],
        days,
        red_ids,
    })
}

/// Declarations and RED decisions of one calendar day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayCount {
    pub date: chrono::NaiveDate,
    pub declarations: u64,
    pub red: u64,
}

impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.red_per_day_target {
            Some(n) => format!("RED capacity {n} per day"),
            None => format!("RED share target {:.4}", self.red_share),
        };
        writeln!(
            f,
            "model {} on {} declarations; {target}; {} of the RED picks random",
            self.model_version, self.declarations, self.random_picks
        )?;
        writeln!(
            f,
            "| strategy | selected | precision | undervaluation caught | misdescription caught | any fraud caught | revenue recovered |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        for s in &self.strategies {
            writeln!(
                f,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.strategy,
                s.selected,
                s.precision,
                s.caught[0],
                s.caught[1],
                s.caught[2],
                s.revenue
            )?;
        }
        writeln!(f, "\n| day | declarations | RED | RED share |")?;
        writeln!(f, "|---|---|---|---|")?;
        for d in &self.days {
            writeln!(
                f,
                "| {} | {} | {} | {:.4} |",
                d.date,
                d.declarations,
                d.red,
                d.red as f64 / d.declarations.max(1) as f64
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Generator, GeneratorConfig};

    #[test]
    fn the_rows_are_what_the_figures_were_computed_from() {
        let generator = Generator::new(GeneratorConfig {
            parcels: 3_000,
            days: 2,
            seed: 11,
            ..GeneratorConfig::default()
        })
        .unwrap();
        let examples: Vec<TrainingExample> = (0..generator.chunk_count())
            .flat_map(|c| generator.chunk(c).0)
            .map(|e| TrainingExample::try_from(e).unwrap())
            .collect();
        let from = examples
            .iter()
            .map(|e| e.declaration.lodged_at)
            .min()
            .unwrap()
            + chrono::TimeDelta::days(1);
        let in_window = examples
            .iter()
            .filter(|e| e.declaration.lodged_at >= from)
            .count();
        let model = Arc::new(ModelArtifact::embedded_default().unwrap());
        let report = evaluate(model, examples, Some(from), None, true).unwrap();
        assert_eq!(report.labels, LabelSource::GroundTruth);
        assert_eq!(report.rows.len(), report.evaluated);
        assert_eq!(report.rows.len(), in_window);
        assert!(report.rows.iter().all(|r| r.lodged_at >= from));
        assert!(report.rows.is_sorted_by_key(|r| r.lodged_at));
        let tie_keys: Vec<u64> = report
            .rows
            .iter()
            .map(|r| fnv1a(&[&r.declaration_id]))
            .collect();
        for (t, target) in report.targets.iter().enumerate() {
            let scores: Vec<f64> = report.rows.iter().map(|r| r.scores[t]).collect();
            let labels: Vec<bool> = report.rows.iter().map(|r| r.labels[t]).collect();
            assert_eq!(labels.iter().filter(|l| **l).count(), target.positives);
            let evaded: f64 = report
                .rows
                .iter()
                .filter(|r| r.labels[t])
                .map(|r| r.evaded_eur)
                .sum();
            assert!((evaded - target.revenue_eur).abs() < 1e-6);
            let order = ranking(&scores, &tie_keys);
            let model = &target.rankers[0];
            assert_eq!(model.ranker, MODEL_RANKER);
            for (s, share) in SHARES.iter().enumerate() {
                assert_eq!(precision_at(&order, &labels, *share), model.precision[s]);
            }
            assert_eq!(auc(&scores, &labels), model.auc);
        }
        // Reasons come with the scores: some evaluated parcel has one.
        assert!(report.rows.iter().any(|r| !r.reason_codes.is_empty()));
    }
}
