//! Scoring: one declaration in, an [`Assessment`] out: the three model scores,
//! expected value and revenue at risk, and reason codes with evidence.
//!
//! Synchronous and CPU-bound; the gRPC layer calls it off the async executor.
//! The model is shared behind an `Arc`; the split-consignment window is the
//! caller's, because the service shares it across streams and batch jobs do not.

pub mod drift;
pub mod plan;
pub mod priority;
pub mod reasons;
pub mod router;
pub mod shared;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::domain::regime::{DutiableLine, Regime};
use crate::domain::{Channel, Declaration, RateTable, SelectionReason, Text};
use crate::features::history::{Found, PartyKeys};
use crate::features::record::{LiveRead, LiveRecord, RecordKeys};
use crate::features::window::SplitSignal;
use crate::features::{ItemSignals, Signals};
use crate::model::{ModelArtifact, Target};

pub use priority::{
    CHANNEL_HALF_LIFE, ChannelAllocator, Decision, PriorityConfig, PriorityParams, Stakes,
};
pub use reasons::{Reason, ReasonCategory};
pub use router::{Router, WindowInput, check_model};

/// The model's view of one goods item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemAssessment {
    pub goods_item_number: u32,
    /// Item-level share of the declaration's scores, by evidence.
    pub undervaluation_score: f64,
    pub misdescription_score: f64,
    pub expected_value_eur_cents: i64,
    pub predicted_hs6: crate::features::text::Candidates,
}

/// The assessment of one declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub declaration_id: Text,
    /// The declaration's lodging time: the clock of the channel allocator.
    pub lodged_at: chrono::DateTime<chrono::Utc>,
    /// Interned ([`intern_version`]): no allocation or shared counter per
    /// assessment.
    pub model_version: &'static str,
    pub regime_version: &'static str,
    pub overall_score: f64,
    pub undervaluation_score: f64,
    pub misdescription_score: f64,
    pub declared_value_eur_cents: i64,
    pub expected_value_eur_cents: i64,
    /// Duties and taxes at stake if the suspicion is right, EUR cents: the
    /// larger of the tax gap on reference values and the undervaluation
    /// stake learnt from controls.
    pub revenue_at_risk_eur_cents: i64,
    /// Ranking key: expected revenue recovered by inspecting (see README).
    pub priority_value: f64,
    /// Sorted by contribution, descending.
    pub reasons: Vec<Reason>,
    pub items: Vec<ItemAssessment>,
    /// Set once a channel is decided ([`Assessment::route`]).
    pub route: Option<Route>,
    /// The features that raised the fraud log-odds most (logistic models),
    /// for the fallback reason of a risk-selected declaration.
    pub top_features: TopFeatures,
}

/// What to do with a declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecommendedAction {
    Release,
    RequestDocuments,
    Xray,
    PhysicalExamination,
}

/// The channel decision of an assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub channel: Channel,
    pub selection_reason: SelectionReason,
    pub action: RecommendedAction,
    /// 1 = first in a plan; 0 outside plans.
    pub rank: u32,
}

impl Assessment {
    /// Records a channel decision, the action that goes with it, and makes
    /// sure a selected declaration says why.
    pub fn route(&mut self, decision: Decision, rank: u32) {
        // Never release what the model is nearly sure of or what breaks a
        // rule outright, whatever its stake: at least a documentary check.
        let decision = if decision.channel == Channel::Green && self.never_release() {
            Decision {
                channel: Channel::Yellow,
                selection_reason: SelectionReason::RiskScore,
            }
        } else {
            decision
        };
        let action = match (decision.channel, decision.selection_reason) {
            (Channel::Red, SelectionReason::Random) => RecommendedAction::PhysicalExamination,
            // X-ray shows what the goods are; opening checks value and invoice.
            (Channel::Red, _) if self.misdescription_score >= self.undervaluation_score => {
                RecommendedAction::Xray
            }
            (Channel::Red, _) => RecommendedAction::PhysicalExamination,
            (Channel::Yellow, _) => RecommendedAction::RequestDocuments,
            (Channel::Green | Channel::Blue, _) => RecommendedAction::Release,
        };
        if decision.selection_reason == SelectionReason::Random {
            self.reasons.insert(0, reasons::random_sample());
        } else if decision.channel == Channel::Red && self.reasons.is_empty() {
            self.reasons
                .push(reasons::model_score(self.overall_score, &self.top_features));
        }
        self.route = Some(Route {
            channel: decision.channel,
            selection_reason: decision.selection_reason,
            action,
            rank,
        });
    }
}

/// A fraud probability from which a declaration is never released.
pub const CERTAIN_FRAUD: f64 = 0.9;

/// Reasons that say a declaration breaks a rule outright (H7 over EUR 150,
/// a code that does not exist, procedure codes H7 forbids together).
const RULE_BREAKING: &[&str] = &[
    "THR_H7_VALUE_OVER_150",
    "DQ_UNKNOWN_HS6",
    "FIS_IOSS_INVALID_OR_INCONSISTENT",
];

impl Assessment {
    /// Whether the declaration must not go GREEN: the model is nearly sure
    /// of fraud ([`CERTAIN_FRAUD`]), or a reason says a rule is broken,
    /// however small its expected loss (a priority of risk × revenue at risk
    /// released them when no reference value existed).
    pub fn never_release(&self) -> bool {
        self.overall_score >= CERTAIN_FRAUD
            || self.reasons.iter().any(|r| RULE_BREAKING.contains(&r.code))
    }
}

/// A declaration's dutiable lines, inline for the usual few items.
type Lines = smallvec::SmallVec<[DutiableLine; 8]>;

/// The features that raised the fraud log-odds most, kept inline.
pub type TopFeatures = smallvec::SmallVec<[(&'static str, f64); 3]>;

/// Per-thread buffers of [`Scorer::score_with_keys`].
#[derive(Default)]
struct Scratch {
    row: Vec<f64>,
    contributions: Vec<f64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The one `'static` copy of a model version (or feature name). A process
/// meets a handful of versions in its life (one per model loaded), each kept
/// once, and the few hundred feature names of their schemas, so
/// assessments carry a plain reference: an `Arc` would have every scoring
/// thread bump one shared counter per declaration.
pub fn intern_version(version: &str) -> &'static str {
    static VERSIONS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut versions = VERSIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = versions.iter().find(|v| **v == version) {
        return known;
    }
    let interned: &'static str = Box::leak(version.to_owned().into_boxed_str());
    versions.push(interned);
    interned
}

/// Scores declarations with one model.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: Arc<ModelArtifact>,
    model_version: &'static str,
    rates: &'static RateTable,
    regime: &'static Regime,
    priority: PriorityConfig,
    /// The schema's feature names, interned once per model, for the
    /// features a model-score reason lists.
    feature_names: Arc<[&'static str]>,
    /// Counts a sample of what is scored against the training traffic.
    drift: Option<Arc<drift::DriftMonitor>>,
    /// The past record as live traffic and reported inspections extend it
    /// after training; it belongs to this model (its fields), so a swapped
    /// model starts its own.
    live: Option<Arc<Mutex<LiveRecord>>>,
}

impl Scorer {
    pub fn new(model: Arc<ModelArtifact>) -> Self {
        Self::with_priority(model, PriorityConfig::default())
    }

    /// A scorer whose priority uses `priority`'s category weights.
    pub fn with_priority(model: Arc<ModelArtifact>, priority: PriorityConfig) -> Self {
        Self {
            model_version: intern_version(&model.model_version),
            feature_names: model
                .schema
                .names
                .iter()
                .map(|n| intern_version(n))
                .collect(),
            model,
            rates: RateTable::built_in(),
            regime: Regime::built_in(),
            priority,
            drift: None,
            live: None,
        }
    }

    /// Keeps the model's past record learning from what this scorer sees
    /// ([`LiveRecord`]): callers pass each declaration through
    /// [`Scorer::observe_live`] in stream order before scoring it, and
    /// inspection results through [`Scorer::learn_live`].
    pub fn with_live_record(mut self) -> Self {
        if !self.model.features.record.fields.is_empty() {
            self.live = Some(Arc::new(Mutex::new(LiveRecord::new(
                &self.model.features.record,
                self.model.card.last_lodged_at,
            ))));
        }
        self
    }

    fn live_record(&self) -> Option<MutexGuard<'_, LiveRecord>> {
        self.live
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The keys the live record needs of a declaration (none without one).
    pub fn record_keys(&self, d: &Declaration, keys: &PartyKeys) -> RecordKeys {
        if self.live.is_some() {
            self.model.features.record.keys(d, keys)
        } else {
            RecordKeys::new()
        }
    }

    /// Reads, in order, what the live record says of each declaration, then
    /// adds it (one lock for the batch). A `None` in (a rejected record of a
    /// batch) is a `None` out, so the answer lines up with the batch without
    /// a second copy; all `None`s without a live record.
    pub fn observe_live<'a>(
        &self,
        batch: impl ExactSizeIterator<Item = Option<(&'a Declaration, &'a PartyKeys, RecordKeys)>>,
    ) -> Vec<Option<LiveRead>> {
        match self.live_record() {
            Some(mut live) => {
                let read = batch
                    .map(|item| item.map(|(d, party, keys)| live.observe(keys, party, d)))
                    .collect();
                // Under the lock already taken: the size costs a few loads.
                metrics::gauge!("parcel_risk_live_record_keys").set(live.len() as f64);
                read
            }
            None => batch.map(|_| None).collect(),
        }
    }

    /// What the live record says of a declaration, without adding it (a
    /// what-if plan).
    pub fn peek_live(&self, d: &Declaration, keys: &PartyKeys) -> Option<LiveRead> {
        let record_keys = self.record_keys(d, keys);
        self.live_record().map(|live| live.read(record_keys, keys))
    }

    /// Counts an inspection's outcome in the live record, for the keys of
    /// the declaration it inspected. A result with a key
    /// ([`crate::features::history::result_key`]) is counted once however
    /// often it comes. Whether it was counted now.
    pub fn learn_live(&self, d: &Declaration, found: Found, result: Option<u64>) -> bool {
        if self.live.is_none() {
            return false;
        }
        let party = PartyKeys::of(d);
        let keys = self.record_keys(d, &party);
        let Some(mut live) = self.live_record() else {
            return false;
        };
        match result {
            Some(result) => live.learn_once(result, &keys, &party, found),
            None => {
                live.learn(&keys, &party, found);
                true
            }
        }
    }

    /// Whether this scorer's past record learns live.
    pub fn learns_live(&self) -> bool {
        self.live.is_some()
    }

    /// Keys the live record holds (0 without one).
    pub fn live_record_keys(&self) -> usize {
        self.live_record().map_or(0, |l| l.len())
    }

    /// Counts one in `sample_every` scored declarations for drift, in
    /// windows of `window` sampled (when the model has a baseline).
    pub fn with_drift(mut self, sample_every: u64, window: u64) -> Self {
        self.drift =
            drift::DriftMonitor::new(self.model.clone(), sample_every, window).map(Arc::new);
        self
    }

    /// The drift monitor, when drift is measured.
    pub fn drift(&self) -> Option<&Arc<drift::DriftMonitor>> {
        self.drift.as_ref()
    }

    pub fn priority_config(&self) -> &PriorityConfig {
        &self.priority
    }

    pub fn model(&self) -> &Arc<ModelArtifact> {
        &self.model
    }

    /// Scores a declaration given what the split window says about it.
    pub fn score(&self, d: &Declaration, split: SplitSignal) -> Assessment {
        self.score_with_keys(d, &PartyKeys::of(d), split)
    }

    /// As [`Scorer::score`], with the party keys already computed.
    pub fn score_with_keys(
        &self,
        d: &Declaration,
        keys: &PartyKeys,
        split: SplitSignal,
    ) -> Assessment {
        self.assess(d, keys, split, None, d.declaration_id.clone())
    }

    /// As [`Scorer::score_with_keys`], with what the live record said of the
    /// declaration ([`Scorer::observe_live`]).
    pub fn score_live(
        &self,
        d: &Declaration,
        keys: &PartyKeys,
        split: SplitSignal,
        live: Option<&LiveRead>,
    ) -> Assessment {
        self.assess(d, keys, split, live, d.declaration_id.clone())
    }

    /// As [`Scorer::score_with_keys`], taking the declaration's id into the
    /// assessment instead of copying it (batch runs score each declaration
    /// once). The declaration stays where it is: moving it out of its batch
    /// copied about 1.5 KB per declaration.
    pub fn score_taking_id(
        &self,
        d: &mut Declaration,
        keys: &PartyKeys,
        split: SplitSignal,
        live: Option<&LiveRead>,
    ) -> Assessment {
        let declaration_id = std::mem::take(&mut d.declaration_id);
        self.assess(d, keys, split, live, declaration_id)
    }

    /// Scores `d` under `declaration_id`. Reads every field of `d` but its
    /// id, which [`Scorer::score_taking_id`] has already taken.
    fn assess(
        &self,
        d: &Declaration,
        keys: &PartyKeys,
        split: SplitSignal,
        live: Option<&LiveRead>,
        declaration_id: Text,
    ) -> Assessment {
        let m = &self.model;
        let signals =
            m.features
                .signals_live(d, &m.history, keys, split, live, self.rates, self.regime);
        let (uv, md, any, reasons, top_features) = SCRATCH.with(|scratch| {
            // The row and its contributions live in per-thread buffers:
            // two allocations less per declaration.
            let mut scratch = scratch.borrow_mut();
            let Scratch { row, contributions } = &mut *scratch;
            m.features.row(d, &signals, row);
            let uv = m.classifiers.get(Target::Undervaluation).score(row);
            let md = m.classifiers.get(Target::Misdescription).score(row);
            let (any, explained) = m
                .classifiers
                .get(Target::Any)
                .score_explained(row, contributions);
            if let Some(drift) = &self.drift {
                drift.observe(row, [uv, md, any]);
            }
            let contributions = explained.then_some(contributions.as_slice());
            let reasons = reasons::explain(d, &signals, &m.features.record, contributions);
            (
                uv,
                md,
                any,
                reasons,
                top_features(&self.feature_names, contributions),
            )
        });
        let revenue = self.revenue_at_risk(d, &signals, md);
        // What an undervalued declaration of this value hides, from what
        // controls found (the reference gap misses whole undervalued cells
        // and the loss of H7 relief above EUR 150).
        let undervaluation_stake = m.value_stake.stake_eur(signals.declared_eur);
        Assessment {
            declaration_id,
            lodged_at: d.lodged_at,
            model_version: self.model_version,
            regime_version: self.regime.version(),
            overall_score: any,
            undervaluation_score: uv,
            misdescription_score: md,
            declared_value_eur_cents: cents(signals.declared_eur),
            expected_value_eur_cents: cents(
                signals
                    .items
                    .iter()
                    .map(|i| i.stake_eur.max(i.declared_eur))
                    .sum(),
            ),
            revenue_at_risk_eur_cents: cents(revenue.max(undervaluation_stake)),
            priority_value: self.priority.priority(
                Stakes {
                    p_any: any,
                    p_undervaluation: uv,
                    revenue_gap_eur: revenue,
                    undervaluation_eur: undervaluation_stake,
                },
                self.priority.category_weight(d.items.iter().map(|i| i.hs6)),
            ),
            items: items(&signals, uv, md),
            reasons,
            route: None,
            top_features,
        }
    }

    /// Taxes on the expected value minus taxes on the declared one, under the
    /// regime of the lodging date: what is at stake if the suspicion is right.
    /// Where the description classifier is confident the goods are something
    /// else, the expected lines use its sub-headings.
    fn revenue_at_risk(&self, d: &Declaration, s: &Signals, md: f64) -> f64 {
        let destination = d.importer.country();
        let transport = d
            .transport_and_insurance_costs
            .and_then(|m| self.rates.to_eur(m))
            .unwrap_or(0.0);
        let declared: Lines = s
            .items
            .iter()
            .map(|i| DutiableLine {
                hs6: i.hs6,
                value_eur: i.declared_eur,
            })
            .collect();
        let expected: Lines = s
            .items
            .iter()
            .map(|i| DutiableLine {
                hs6: match i.predicted.first() {
                    Some((hs6, p)) if md > 0.5 && *p > 0.5 => *hs6,
                    _ => i.hs6,
                },
                value_eur: i.stake_eur.max(i.declared_eur),
            })
            .collect();
        let owed = |lines: &[DutiableLine]| {
            self.regime
                .taxes_eur(d.lodged_at, destination, lines, transport)
        };
        (owed(&expected) - owed(&declared)).max(0.0)
    }
}

/// The three features that raised the log-odds most (one pass, no sort).
fn top_features(names: &[&'static str], contributions: Option<&[f64]>) -> TopFeatures {
    let Some(c) = contributions else {
        return TopFeatures::new();
    };
    let mut top: [Option<(&'static str, f64)>; 3] = [None; 3];
    for (name, &v) in names.iter().zip(c) {
        if v <= 0.0 {
            continue;
        }
        let mut entry = Some((*name, v));
        for slot in &mut top {
            if slot.is_none_or(|(_, held)| entry.is_some_and(|(_, new)| new > held)) {
                std::mem::swap(slot, &mut entry);
                if entry.is_none() {
                    break;
                }
            }
        }
    }
    top.into_iter().flatten().collect()
}

fn cents(eur: f64) -> i64 {
    (eur * 100.0).round() as i64
}

fn items(s: &Signals, uv: f64, md: f64) -> Vec<ItemAssessment> {
    // Share the declaration's scores among items by how strongly each item's
    // own evidence points at it.
    let uv_weight = |i: &ItemSignals| i.per_kg.map_or(0.0, |(r, _)| (-r).max(0.0)) + 1e-6;
    let md_weight = |i: &ItemSignals| {
        (1.0 - i.p_declared.unwrap_or(i.p_heading))
            + i.mass.map_or(0.0, |(z, _)| (z.abs() / 3.0).min(2.0))
            + 1e-6
    };
    // Weights are positive, so the item with the strongest evidence gets the
    // declaration's score and the others a proportional share of it.
    let max_uv = s.items.iter().map(uv_weight).fold(0.0, f64::max);
    let max_md = s.items.iter().map(md_weight).fold(0.0, f64::max);
    s.items
        .iter()
        .map(|i| ItemAssessment {
            goods_item_number: i.goods_item_number,
            undervaluation_score: uv * uv_weight(i) / max_uv,
            misdescription_score: md * md_weight(i) / max_md,
            expected_value_eur_cents: cents(i.stake_eur.max(i.declared_eur)),
            predicted_hs6: i.predicted,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::BASE_FEATURES;

    #[test]
    fn top_features_keeps_the_three_largest_positive_contributions_in_order() {
        let mut c = vec![0.0; BASE_FEATURES.len()];
        c[3] = 0.5;
        c[10] = 2.0;
        c[20] = -3.0;
        c[30] = 1.0;
        c[40] = 0.7;
        let top = top_features(BASE_FEATURES, Some(&c));
        let expected = vec![
            (BASE_FEATURES[10], 2.0),
            (BASE_FEATURES[30], 1.0),
            (BASE_FEATURES[40], 0.7),
        ];
        assert_eq!(top.as_slice(), expected);
        assert!(top_features(BASE_FEATURES, None).is_empty());
    }
}
