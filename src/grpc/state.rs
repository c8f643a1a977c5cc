//! What the service shares across connections: the router (serving model,
//! swappable without a restart; cross-declaration windows; channel
//! allocator), the store and the metric handles.

use std::path::Path;
use std::sync::Arc;

use crate::domain::Channel;
use crate::domain::{Declaration, ReferenceData};
use crate::model::ModelArtifact;
use crate::model::artifact::ArtifactError;
use crate::scoring::router::ModelCheckError;
use crate::scoring::{Assessment, PriorityConfig, Router, Scorer};
use crate::store::{RoutedRecord, Store};

/// Metric handles, registered once: looking a labelled metric up by name on
/// every declaration costs more than scoring parts of it.
#[derive(Debug)]
pub struct Meters {
    pub scored: metrics::Counter,
    pub invalid: metrics::Counter,
    pub latency: metrics::Histogram,
    /// By [`Channel::ROUTED`] index (BLUE is never routed).
    channels: [metrics::Counter; 3],
}

impl Meters {
    fn register() -> Self {
        Self {
            scored: metrics::counter!("parcel_risk_declarations_scored_total"),
            invalid: metrics::counter!("parcel_risk_errors_total", "code" => "INVALID_ARGUMENT"),
            latency: metrics::histogram!("parcel_risk_scoring_seconds"),
            channels: Channel::ROUTED
                .map(|c| metrics::counter!("parcel_risk_channel_total", "channel" => c.name())),
        }
    }

    fn count_channel(&self, c: Channel) {
        if let Some(i) = c.routed_index() {
            self.channels[i].increment(1);
        }
    }
}

/// The state behind every RPC.
#[derive(Debug)]
pub struct ServiceState {
    /// Scorer, windows and channel allocator of all streams.
    router: Router,
    reference: ReferenceData<'static>,
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
    Smoke(#[from] ModelCheckError),
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
            // Live traffic: no faulty client's lodging year moves the day on.
            router: Router::new(Arc::new(model), priority).live(),
            reference,
            meters: Meters::register(),
            store: None,
            report_quota: crate::security::quota::ReportQuota::new(
                crate::security::quota::ReportQuota::DEFAULT_PER_HOUR,
            ),
        }
    }

    /// Measures drift on one in `sample_every` scored declarations
    /// (`parcel_risk_drift_psi`).
    pub fn with_drift(mut self, sample_every: u64) -> Self {
        self.router = self
            .router
            .monitor_drift(sample_every, crate::scoring::drift::DEFAULT_WINDOW);
        self
    }

    /// Scores on the past record as training left it (no online learning).
    pub fn with_frozen_record(mut self) -> Self {
        self.router = self.router.without_live_record();
        self
    }

    /// Shares the cross-declaration windows with other replicas.
    pub fn with_shared_state(mut self, shared: crate::scoring::shared::SharedWindows) -> Self {
        self.router = self.router.with_shared_state(shared);
        self
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
                crate::scoring::check_model(&model)?;
                Ok(model)
            });
        match outcome {
            Ok(model) => {
                let version = model.model_version.clone();
                let previous = self.scorer().model().model_version.clone();
                self.swap_model(model);
                match self.learn_from_store() {
                    Ok(learnt) => {
                        tracing::info!(learnt, "live record: results learnt from the store")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live record: the store's results could not be read; it learns from new ones")
                    }
                }
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
        self.router.config()
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The scorer serving now; hold it for a whole batch so that one batch is
    /// scored by one model.
    pub fn scorer(&self) -> Arc<Scorer> {
        self.router.scorer()
    }

    /// Swaps in another model; requests in flight finish on the old one.
    pub fn swap_model(&self, model: ModelArtifact) {
        self.router.swap_model(Arc::new(model));
    }

    pub fn reference(&self) -> &ReferenceData<'static> {
        &self.reference
    }

    /// Scores a declaration and routes it to a channel.
    pub fn score(&self, scorer: &Scorer, d: &Declaration) -> Assessment {
        let mut all = self.score_all(scorer, std::slice::from_ref(d));
        all.pop().expect("one assessment per declaration")
    }

    /// Lets the live record of the serving model learn from newly recorded
    /// results, each with the declaration it inspected as it was routed
    /// (protobuf bytes from the store). A stored declaration that no longer
    /// decodes or validates is skipped: the result itself is recorded.
    pub fn learn(&self, inspected: Vec<(Vec<u8>, crate::domain::InspectionResult)>) {
        self.learn_routed(
            inspected.into_iter().filter_map(|(bytes, result)| {
                let pb =
                    <crate::pb::Declaration as prost::Message>::decode(bytes.as_slice()).ok()?;
                Some((pb, result))
            }),
            |_| true,
        );
    }

    /// Teaches the serving model's live record each result whose routed
    /// declaration still validates and that `keep` accepts; counts them in
    /// the live record's metrics. Returns how many were learnt.
    fn learn_routed(
        &self,
        inspected: impl Iterator<Item = (crate::pb::Declaration, crate::domain::InspectionResult)>,
        keep: impl Fn(&Declaration) -> bool,
    ) -> u64 {
        let scorer = self.scorer();
        let mut learnt = 0u64;
        for (pb, result) in inspected {
            if let Ok(d) = crate::wire::declaration_from_pb(pb, &self.reference)
                && keep(&d)
                && self.router.learn(&scorer, &d, &result)
            {
                learnt += 1;
            }
        }
        metrics::counter!("parcel_risk_live_record_results_total").increment(learnt);
        metrics::gauge!("parcel_risk_live_record_keys").set(scorer.live_record_keys() as f64);
        learnt
    }

    /// Teaches the live record of the serving model the results the store
    /// holds for declarations lodged after the model's training data: a
    /// restarted service, or a model swapped in, would otherwise start
    /// without what controls found since. Blocking (it reads the store):
    /// call it off the async executor. Returns the results learnt.
    pub fn learn_from_store(&self) -> Result<u64, crate::store::ExportError> {
        let (Some(store), scorer) = (&self.store, self.scorer()) else {
            return Ok(0);
        };
        if !scorer.learns_live() {
            return Ok(0);
        }
        let trained_until = scorer
            .model()
            .card
            .last_lodged_at
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let dir = store.path().parent().unwrap_or(Path::new("."));
        let mut inspected = Vec::new();
        // A result can only be received after its declaration was lodged:
        // the store's time filter keeps a superset, the lodging time decides.
        crate::store::export(dir, trained_until, &[], |example| {
            if let (Some(declaration), Some(result)) = (example.declaration, example.result)
                && let Ok(result) = crate::domain::InspectionResult::try_from(result)
            {
                inspected.push((declaration, result));
            }
            Ok(())
        })?;
        Ok(self.learn_routed(inspected.into_iter(), |d| d.lodged_at > trained_until))
    }

    /// Scores declarations in order, routes them, counts their channels and
    /// records the routed ones.
    pub fn score_all(&self, scorer: &Scorer, declarations: &[Declaration]) -> Vec<Assessment> {
        let assessments = self.router.score_all(scorer, declarations, |decision| {
            self.meters.count_channel(decision.channel)
        });

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
