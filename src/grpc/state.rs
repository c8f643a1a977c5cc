//! What the service shares across connections: the serving model (swappable
//! without a restart) and the split-consignment window.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::domain::Channel;
use crate::domain::{Declaration, RateTable, ReferenceData};
use crate::features::history::PartyKeys;
use crate::features::window::SplitWindow;
use crate::model::ModelArtifact;
use crate::model::artifact::ArtifactError;
use crate::scoring::{Assessment, CHANNEL_HALF_LIFE, ChannelAllocator, PriorityConfig, Scorer};
use crate::store::{RoutedRecord, Store};

/// Metric handles, registered once: looking a labelled metric up by name on
/// every declaration costs more than scoring parts of it.
#[derive(Debug)]
pub struct Meters {
    pub scored: metrics::Counter,
    pub invalid: metrics::Counter,
    pub latency: metrics::Histogram,
    channels: [metrics::Counter; 4],
}

impl Meters {
    fn register() -> Self {
        Self {
            scored: metrics::counter!("parcel_risk_declarations_scored_total"),
            invalid: metrics::counter!("parcel_risk_errors_total", "code" => "INVALID_ARGUMENT"),
            latency: metrics::histogram!("parcel_risk_scoring_seconds"),
            channels: [Channel::Green, Channel::Blue, Channel::Yellow, Channel::Red].map(
                |c| metrics::counter!("parcel_risk_channel_total", "channel" => channel_name(c)),
            ),
        }
    }

    fn channel(&self, c: Channel) -> &metrics::Counter {
        &self.channels[match c {
            Channel::Green => 0,
            Channel::Blue => 1,
            Channel::Yellow => 2,
            Channel::Red => 3,
        }]
    }
}

/// The state behind every RPC.
#[derive(Debug)]
pub struct ServiceState {
    scorer: ArcSwap<Scorer>,
    /// The split and party windows of all streams.
    window: SplitWindow,
    reference: ReferenceData<'static>,
    priority: PriorityConfig,
    /// One allocator for all streams: the RED share is a property of the
    /// whole traffic. Held for a few hundred nanoseconds per declaration.
    channels: Mutex<ChannelAllocator>,
    meters: Meters,
    /// Where routed declarations and inspection results go (none in tests
    /// that do not need it).
    store: Option<Store>,
    /// Inspection results per caller per hour.
    report_quota: crate::security::quota::ReportQuota,
}

/// Why a new model was not swapped in; the old one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("smoke test failed: {0}")]
    Smoke(String),
}

impl ServiceState {
    pub fn new(model: ModelArtifact, reference: ReferenceData<'static>) -> Self {
        Self::with_priority(model, reference, PriorityConfig::default())
    }

    pub fn with_priority(
        model: ModelArtifact,
        reference: ReferenceData<'static>,
        priority: PriorityConfig,
    ) -> Self {
        Self {
            scorer: ArcSwap::from_pointee(Scorer::with_priority(Arc::new(model), priority.clone())),
            window: SplitWindow::default(),
            reference,
            channels: Mutex::new(ChannelAllocator::new(priority.clone(), CHANNEL_HALF_LIFE)),
            priority,
            meters: Meters::register(),
            store: None,
            report_quota: crate::security::quota::ReportQuota::new(
                crate::security::quota::ReportQuota::DEFAULT_PER_HOUR,
            ),
        }
    }

    /// Records routed declarations and inspection results in `store`.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// At most `per_hour` inspection results per caller and hour (0: none).
    pub fn with_report_quota(mut self, per_hour: u64) -> Self {
        self.report_quota = crate::security::quota::ReportQuota::new(per_hour);
        self
    }

    pub fn report_quota(&self) -> &crate::security::quota::ReportQuota {
        &self.report_quota
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Loads the artifact at `path`, checks it (format, schema, a smoke
    /// score of generated declarations) and swaps it in; on any failure the
    /// serving model stays. Blocking: call it off the async executor.
    pub fn reload(&self, path: &Path) -> Result<String, ReloadError> {
        let outcome = ModelArtifact::load(path)
            .map_err(ReloadError::from)
            .and_then(|model| {
                smoke_test(&model)?;
                Ok(model)
            });
        match outcome {
            Ok(model) => {
                let version = model.model_version.clone();
                let previous = self.scorer().model().model_version.clone();
                self.swap_model(model);
                metrics::counter!("parcel_risk_model_reloads_total", "result" => "ok").increment(1);
                metrics::gauge!("parcel_risk_model_info", "model_version" => previous).set(0.0);
                metrics::gauge!("parcel_risk_model_info", "model_version" => version.clone())
                    .set(1.0);
                tracing::info!(%version, path = %path.display(), "model swapped in");
                Ok(version)
            }
            Err(e) => {
                metrics::counter!("parcel_risk_model_reloads_total", "result" => "refused")
                    .increment(1);
                tracing::error!(error = %e, path = %path.display(), "new model refused; the old one keeps serving");
                Err(e)
            }
        }
    }

    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    pub fn priority(&self) -> &PriorityConfig {
        &self.priority
    }

    /// The scorer serving now; hold it for a whole batch so that one batch is
    /// scored by one model.
    pub fn scorer(&self) -> Arc<Scorer> {
        self.scorer.load_full()
    }

    /// Swaps in another model; requests in flight finish on the old one.
    pub fn swap_model(&self, model: ModelArtifact) {
        self.scorer.store(Arc::new(Scorer::with_priority(
            Arc::new(model),
            self.priority.clone(),
        )));
    }

    pub fn reference(&self) -> &ReferenceData<'static> {
        &self.reference
    }

    /// Scores a checked declaration against a caller's own split window
    /// (a plan's batch), without routing it.
    pub fn assess_in(
        &self,
        scorer: &Scorer,
        d: &Declaration,
        window: &mut SplitWindow,
    ) -> Assessment {
        let keys = PartyKeys::of(d);
        let split = window.observe_declaration(&keys, d, self.reference.rates);
        scorer.score_with_keys(d, &keys, split)
    }

    /// Scores a checked declaration with `scorer` without routing it,
    /// updating the split window.
    pub fn assess(&self, scorer: &Scorer, d: &Declaration) -> Assessment {
        let keys = PartyKeys::of(d);
        let split = self.window.observe_shared(&keys, d, self.reference.rates);
        scorer.score_with_keys(d, &keys, split)
    }

    /// Scores a declaration and routes it to a channel.
    pub fn score(&self, scorer: &Scorer, d: &Declaration) -> Assessment {
        let mut all = self.score_all(scorer, std::slice::from_ref(d));
        all.pop().expect("one assessment per declaration")
    }

    /// Scores declarations in order and routes them, taking the channel
    /// allocator's lock once for the whole batch.
    pub fn score_all(&self, scorer: &Scorer, declarations: &[Declaration]) -> Vec<Assessment> {
        let mut assessments: Vec<Assessment> = declarations
            .iter()
            .map(|d| self.assess(scorer, d))
            .collect();
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (assessment, d) in assessments.iter_mut().zip(declarations) {
            let decision =
                channels.decide(&d.declaration_id, d.lodged_at, assessment.priority_value);
            self.meters.channel(decision.channel).increment(1);
            assessment.route(decision, 0);
        }
        drop(channels);
        self.record_routed(declarations, &assessments);
        assessments
    }

    /// Keeps the declarations sent to a control, with their assessments, so
    /// that inspection results join to what was scored.
    pub fn record_routed(&self, declarations: &[Declaration], assessments: &[Assessment]) {
        let Some(store) = &self.store else {
            return;
        };
        let now = chrono::Utc::now();
        let routed: Vec<RoutedRecord> = declarations
            .iter()
            .zip(assessments)
            .filter(|(_, a)| RoutedRecord::is_routed(a))
            .map(|(d, a)| RoutedRecord::new(d, a, now))
            .collect();
        if let Err(e) = store.record_routed(routed) {
            tracing::error!(error = %e, "routed declarations not recorded");
        }
    }
}

/// Scores a few generated declarations with a freshly loaded model: every
/// score must be a probability and every assessment must route.
fn smoke_test(model: &ModelArtifact) -> Result<(), ReloadError> {
    use crate::generate::{Generator, GeneratorConfig};
    let generator = Generator::new(GeneratorConfig {
        parcels: 64,
        seed: 1,
        ..GeneratorConfig::default()
    })
    .map_err(|e| ReloadError::Smoke(e.to_string()))?;
    let scorer = Scorer::new(Arc::new(model.clone()));
    let mut window = SplitWindow::default();
    // Per score kind, the lowest and highest score of the smoke set.
    let mut ranges = [(f64::INFINITY, f64::NEG_INFINITY); 3];
    for example in generator.chunk(0).0 {
        let Some(d) = example.declaration else {
            continue;
        };
        let d = crate::wire::declaration_from_pb(d, &ReferenceData::built_in())
            .map_err(|e| ReloadError::Smoke(e.to_string()))?;
        let keys = PartyKeys::of(&d);
        let split = window.observe_declaration(&keys, &d, RateTable::built_in());
        let a = scorer.score_with_keys(&d, &keys, split);
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
                return Err(ReloadError::Smoke(format!(
                    "{name} score {v} of {} is not a probability",
                    d.declaration_id
                )));
            }
        }
        if !a.priority_value.is_finite() {
            return Err(ReloadError::Smoke(format!(
                "priority of {} is {}",
                d.declaration_id, a.priority_value
            )));
        }
    }
    // A model that gives every parcel the same score ranks nothing (an
    // intercept blown to ±1e6 saturates every score to 1 or 0).
    for (name, (low, high)) in ["overall", "undervaluation", "misdescription"]
        .into_iter()
        .zip(ranges)
    {
        if high - low < DEGENERATE_SPREAD {
            return Err(ReloadError::Smoke(format!(
                "every {name} score of the smoke set is {low}: a degenerate model ranks nothing"
            )));
        }
    }
    Ok(())
}

/// Scores of a smoke set closer together than this are one score.
const DEGENERATE_SPREAD: f64 = 1e-9;

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Green => "green",
        Channel::Blue => "blue",
        Channel::Yellow => "yellow",
        Channel::Red => "red",
    }
}
