//! One way to route a declaration: party keys → cross-declaration windows →
//! score → channel. The service, `rescore`, `simulate`, `evaluate` and
//! `PlanInspections` all go through a [`Router`], so they give the same
//! channels for the same stream.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::domain::{Declaration, InspectionResult, RateTable};
use crate::features::history::{Found, PartyKeys};
use crate::features::window::{SplitSignal, SplitWindow, declared_cents};
use crate::model::ModelArtifact;

use super::priority::{CHANNEL_HALF_LIFE, ChannelAllocator, Decision, PriorityConfig};
use super::shared::SharedWindows;
use super::{Assessment, Scorer, plan, reasons};

/// Owns the serving scorer (swappable while serving), the cross-declaration
/// windows and the channel allocator. Shared by reference between threads:
/// the windows are sharded and the allocator sits behind a lock taken once
/// per batch.
#[derive(Debug)]
pub struct Router {
    scorer: ArcSwap<Scorer>,
    window: SplitWindow,
    /// One allocator for the whole traffic: capacity is a property of the
    /// day, not of a stream.
    allocator: Mutex<ChannelAllocator>,
    config: PriorityConfig,
    rates: &'static RateTable,
    /// One scored declaration in this many is counted for drift, in
    /// windows of so many sampled.
    drift: Option<(u64, u64)>,
    /// Traffic arrives as it is lodged (the service): no lodging time later
    /// than an hour from now moves the allocator's clock.
    live: bool,
    /// Whether batches count in the fleet's traffic of their day (a
    /// serving replica's do; a batch rerun's must not shift the replicas'
    /// capacity shares).
    counts_in_fleet: bool,
    /// Windows shared with other replicas; `window` above is then this
    /// replica's own view, used while they cannot be reached.
    shared: Option<SharedWindows>,
    /// Whether the past record keeps learning from the traffic routed and
    /// the results reported ([`Scorer::with_live_record`]).
    live_record: bool,
}

/// What the windows said of a batch.
#[derive(Debug)]
pub struct WindowsRead {
    /// Per declaration, in order.
    pub signals: Vec<SplitSignal>,
    /// False when shared state is configured but was not reached (the
    /// signals are this replica's own).
    pub shared: bool,
    /// The batch's day (its start, Unix seconds) and the fleet's count of
    /// it, this batch included: with shared state only.
    pub fleet_today: Option<(i64, u64)>,
}

/// How far past the wall clock a live lodging time may move the
/// allocator's clock (clock skew between systems).
const LIVE_CLOCK_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// What the windows need of a declaration: its party keys and declared value
/// (EUR cents), derived where the declaration is hot in cache.
#[derive(Debug, Clone)]
pub struct WindowInput {
    pub keys: PartyKeys,
    pub declared_cents: i64,
    pub lodged_at: DateTime<Utc>,
}

impl WindowInput {
    pub fn of(d: &Declaration, rates: &RateTable) -> Self {
        Self {
            keys: PartyKeys::of(d),
            declared_cents: declared_cents(d, rates),
            lodged_at: d.lodged_at,
        }
    }
}

impl Router {
    pub fn new(model: Arc<ModelArtifact>, config: PriorityConfig) -> Self {
        Self {
            scorer: ArcSwap::from_pointee(
                Scorer::with_priority(model, config.clone()).with_live_record(),
            ),
            window: SplitWindow::default(),
            allocator: Mutex::new(ChannelAllocator::new(config.clone(), CHANNEL_HALF_LIFE)),
            config,
            rates: RateTable::built_in(),
            drift: None,
            live: false,
            shared: None,
            counts_in_fleet: true,
            live_record: true,
        }
    }

    /// Scores on the past record as training left it: no online updates
    /// from traffic or results. Replicas sharing windows do so, since each
    /// would otherwise learn from its own half of the traffic and the
    /// replicas would score one declaration differently.
    pub fn without_live_record(mut self) -> Self {
        self.live_record = false;
        let model = self.scorer().model().clone();
        self.swap_model(model);
        self
    }

    /// Reads and updates the cross-declaration windows in `shared` (one
    /// round trip per batch), falling back to this replica's own while it
    /// cannot be reached.
    pub fn with_shared_state(mut self, shared: SharedWindows) -> Self {
        self.shared = Some(shared);
        self.counts_in_fleet = true;
        self.without_live_record()
    }

    /// As [`Router::with_shared_state`], for a batch rerun: the windows are
    /// read and updated, the fleet's traffic count is neither read nor
    /// added to (this router's capacity is its own).
    pub fn with_shared_windows_only(mut self, shared: SharedWindows) -> Self {
        self.shared = Some(shared);
        self.counts_in_fleet = false;
        self.without_live_record()
    }

    /// The shared windows, when configured.
    pub fn shared_state(&self) -> Option<&SharedWindows> {
        self.shared.as_ref()
    }

    /// For live traffic: a lodging time more than an hour past the wall
    /// clock (a faulty client's year) is taken as an hour from now by the
    /// channel allocator, so it cannot move the day on for everyone. Batch
    /// work over past traffic keeps the lodging times as they are.
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    /// Measures drift on one in `sample_every` scored declarations, in
    /// windows of `window` sampled, for this model and every model swapped
    /// in later.
    pub fn monitor_drift(mut self, sample_every: u64, window: u64) -> Self {
        self.drift = Some((sample_every, window));
        let scorer = (*self.scorer()).clone().with_drift(sample_every, window);
        self.scorer.store(Arc::new(scorer));
        self
    }

    pub fn config(&self) -> &PriorityConfig {
        &self.config
    }

    /// The scorer serving now; hold it for a whole batch so that one batch is
    /// scored by one model.
    pub fn scorer(&self) -> Arc<Scorer> {
        self.scorer.load_full()
    }

    /// Swaps in another model; work in flight finishes on the old one.
    pub fn swap_model(&self, model: Arc<ModelArtifact>) {
        let mut scorer = Scorer::with_priority(model, self.config.clone());
        if self.live_record {
            scorer = scorer.with_live_record();
        }
        if let Some((every, window)) = self.drift {
            scorer = scorer.with_drift(every, window);
        }
        self.scorer.store(Arc::new(scorer));
    }

    /// Reads and updates the windows for a declaration (in stream order).
    pub fn observe(&self, input: &WindowInput) -> SplitSignal {
        self.window
            .observe_parcel(&input.keys, input.lodged_at, input.declared_cents)
    }

    /// Reads and updates the windows for a batch, in order: the shared
    /// windows when configured and reachable, else this replica's own
    /// ([`WindowsRead::shared`] false when shared state is configured but
    /// was not reached). The replica's own windows see every batch either
    /// way, so they are warm when the shared state goes away. With shared
    /// state, the batch is also counted in the fleet's traffic of its day.
    pub fn observe_batch(&self, inputs: &[WindowInput]) -> WindowsRead {
        let local: Vec<SplitSignal> = inputs.iter().map(|i| self.observe(i)).collect();
        let Some(shared) = &self.shared else {
            return WindowsRead {
                signals: local,
                shared: true,
                fleet_today: None,
            };
        };
        let now = Utc::now();
        let day = inputs.last().filter(|_| self.counts_in_fleet).map(|i| {
            self.allocator()
                .day_start(self.allocator_clock(i.lodged_at, now))
        });
        let started = std::time::Instant::now();
        match shared.observe_batch(inputs, day) {
            Ok(batch) => {
                metrics::histogram!("parcel_risk_shared_state_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::gauge!("parcel_risk_shared_state_up").set(1.0);
                WindowsRead {
                    signals: batch.signals,
                    shared: true,
                    fleet_today: day.zip(batch.fleet_today),
                }
            }
            Err(e) => {
                metrics::counter!("parcel_risk_shared_state_failures_total", "kind" => e.kind())
                    .increment(1);
                metrics::counter!("parcel_risk_shared_state_local_declarations_total")
                    .increment(inputs.len() as u64);
                metrics::gauge!("parcel_risk_shared_state_up").set(0.0);
                WindowsRead {
                    signals: local,
                    shared: false,
                    fleet_today: None,
                }
            }
        }
    }

    /// Scores a declaration against this process's windows, without
    /// routing it (one at a time; batches go through [`Router::score_all`],
    /// which reads the shared state when there is one).
    pub fn assess(&self, scorer: &Scorer, d: &Declaration) -> Assessment {
        let input = WindowInput::of(d, self.rates);
        let split = self.observe(&input);
        let live = scorer
            .observe_live(std::iter::once(Some((
                d,
                &input.keys,
                scorer.record_keys(d, &input.keys),
            ))))
            .pop()
            .flatten();
        scorer.score_live(d, &input.keys, split, live.as_ref())
    }

    /// Counts an inspection result in the live record of `scorer` (the
    /// model serving now), for the declaration it inspected: what the
    /// inspections find raises the rates of the importer, seller, codes
    /// and pairs it names, as the replay did in training.
    /// A result is counted once, however often it comes: the report that
    /// recorded it and the store's replay at a model swap can both bring
    /// it. Whether it was counted now.
    pub fn learn(&self, scorer: &Scorer, d: &Declaration, result: &InspectionResult) -> bool {
        let key =
            crate::features::history::result_key(&result.declaration_id, &result.inspection_id);
        Found::of(result).is_some_and(|found| scorer.learn_live(d, found, Some(key)))
    }

    /// As [`Router::learn`], given what the inspection found, for results
    /// without an identity (an evaluation's replayed labels).
    pub fn learn_found(&self, scorer: &Scorer, d: &Declaration, found: Found) {
        scorer.learn_live(d, found, None);
    }

    /// Routes scored declarations in order, taking the allocator's lock once.
    /// `each` hears every decision (counters, summaries).
    pub fn route(&self, assessments: &mut [Assessment], each: impl FnMut(Decision)) {
        self.route_in_fleet(assessments, None, each);
    }

    /// As [`Router::route`]; with `fleet_today` (a day's start and the
    /// fleet's count of it, this batch included), this replica first takes
    /// its share of the day's traffic as its share of `red_per_day`.
    fn route_in_fleet(
        &self,
        assessments: &mut [Assessment],
        fleet_today: Option<(i64, u64)>,
        mut each: impl FnMut(Decision),
    ) {
        let now = Utc::now();
        let mut allocator = self.allocator();
        if let Some((day, fleet)) = fleet_today {
            let (today, seen) = allocator.today();
            let own = if today == Some(day) { seen } else { 0.0 } + assessments.len() as f64;
            allocator.set_fleet_share(own / (fleet as f64).max(1.0));
        }
        for a in assessments {
            let at = self.allocator_clock(a.lodged_at, now);
            let decision = allocator.decide(&a.declaration_id, at, a.priority_value);
            each(decision);
            a.route(decision, 0);
        }
    }

    /// The time the channel allocator counts a declaration at: its lodging
    /// time, at most an hour past `now` for live traffic.
    fn allocator_clock(&self, lodged_at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.live {
            lodged_at.min(now + LIVE_CLOCK_TOLERANCE)
        } else {
            lodged_at
        }
    }

    /// Scores declarations in order and routes them: the windows are read
    /// for the whole batch first (one round trip when shared).
    pub fn score_all(
        &self,
        scorer: &Scorer,
        declarations: &[Declaration],
        each: impl FnMut(Decision),
    ) -> Vec<Assessment> {
        let inputs: Vec<WindowInput> = declarations
            .iter()
            .map(|d| WindowInput::of(d, self.rates))
            .collect();
        let read = self.observe_batch(&inputs);
        let live = scorer.observe_live(
            declarations
                .iter()
                .zip(&inputs)
                .map(|(d, input)| Some((d, &input.keys, scorer.record_keys(d, &input.keys)))),
        );
        let mut assessments: Vec<Assessment> = declarations
            .iter()
            .zip(&inputs)
            .zip(read.signals)
            .zip(live)
            .map(|(((d, input), split), live)| {
                let mut a = scorer.score_live(d, &input.keys, split, live.as_ref());
                if !read.shared {
                    a.reasons.push(reasons::windows_local_only());
                }
                a
            })
            .collect();
        self.route_in_fleet(&mut assessments, read.fleet_today, each);
        assessments
    }

    /// Plans one batch (a flight's manifest) at a capacity: scored against
    /// windows of its own (so that planning it twice gives the same plan),
    /// ranked, routed. Returns the assessments in input order and their
    /// indices in worklist order. The live windows and the day's capacity
    /// are not touched: a plan is a what-if.
    pub fn plan(
        &self,
        scorer: &Scorer,
        declarations: &[Declaration],
        capacity: usize,
    ) -> (Vec<Assessment>, Vec<usize>) {
        let mut window = SplitWindow::default();
        let mut assessments: Vec<Assessment> = declarations
            .iter()
            .map(|d| {
                let keys = PartyKeys::of(d);
                let split = window.observe_declaration(&keys, d, self.rates);
                let live = scorer.peek_live(d, &keys);
                scorer.score_live(d, &keys, split, live.as_ref())
            })
            .collect();
        let order = plan::plan(&mut assessments, capacity, &self.config);
        (assessments, order)
    }

    fn allocator(&self) -> MutexGuard<'_, ChannelAllocator> {
        // A panic elsewhere while holding it leaves counts, not broken state.
        self.allocator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a model is not fit to serve.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelCheckError(String);

/// Scores a few generated declarations with a freshly loaded model: every
/// score must be a probability, every priority finite, and the scores must
/// not all be one value (a model that gives every parcel the same score
/// ranks nothing: an intercept blown to ±1e6 saturates every score).
pub fn check_model(model: &ModelArtifact) -> Result<(), ModelCheckError> {
    use crate::generate::{Generator, GeneratorConfig};
    let generator = Generator::new(GeneratorConfig {
        parcels: 64,
        seed: 1,
        ..GeneratorConfig::default()
    })
    .map_err(|e| ModelCheckError(e.to_string()))?;
    let router = Router::new(Arc::new(model.clone()), PriorityConfig::default());
    let scorer = router.scorer();
    // Per score kind, the lowest and highest score of the smoke set.
    let mut ranges = [(f64::INFINITY, f64::NEG_INFINITY); 3];
    for example in generator.domain_chunk(0) {
        let d = example.declaration;
        let a = router.assess(&scorer, &d);
        for ((name, v), range) in [
            ("overall", a.overall_score),
            ("undervaluation", a.undervaluation_score),
            ("misdescription", a.misdescription_score),
        ]
        .into_iter()
        .zip(&mut ranges)
        {
            *range = (range.0.min(v), range.1.max(v));
            if !(0.0..=1.0).contains(&v) {
                return Err(ModelCheckError(format!(
                    "{name} score {v} of {} is not a probability",
                    d.declaration_id
                )));
            }
        }
        if !a.priority_value.is_finite() {
            return Err(ModelCheckError(format!(
                "priority of {} is {}",
                d.declaration_id, a.priority_value
            )));
        }
    }
    for (name, (low, high)) in ["overall", "undervaluation", "misdescription"]
        .into_iter()
        .zip(ranges)
    {
        if high - low < DEGENERATE_SPREAD {
            return Err(ModelCheckError(format!(
                "every {name} score of the smoke set is {low}: a degenerate model ranks nothing"
            )));
        }
    }
    Ok(())
}

/// Scores of a smoke set closer together than this are one score.
const DEGENERATE_SPREAD: f64 = 1e-9;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelArtifact;

    #[test]
    fn live_traffic_cannot_move_the_allocator_clock_past_the_wall_clock() {
        let model = Arc::new(ModelArtifact::embedded_default().expect("the default model"));
        let batch = Router::new(Arc::clone(&model), PriorityConfig::default());
        let live = Router::new(model, PriorityConfig::default()).live();
        let now = Utc::now();
        let faulty = now + chrono::TimeDelta::days(4 * 365);
        let soon = now + chrono::TimeDelta::minutes(30);
        let earlier = now - chrono::TimeDelta::days(2);
        // A faulty client's year is an hour from now for live traffic...
        assert_eq!(
            live.allocator_clock(faulty, now),
            now + LIVE_CLOCK_TOLERANCE
        );
        // ...clock skew within the hour and past times are kept...
        assert_eq!(live.allocator_clock(soon, now), soon);
        assert_eq!(live.allocator_clock(earlier, now), earlier);
        // ...and batch work over past traffic keeps every lodging time.
        assert_eq!(batch.allocator_clock(faulty, now), faulty);
    }
}
