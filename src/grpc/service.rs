//! The `parcelrisk.v1.RiskService` handlers: thin, with the streaming
//! pipeline in [`score_stream`].
//!
//! Streams are scored in batches of whatever requests are already waiting
//! (up to `MAX_BATCH`, `MAX_BATCH_BYTES`) inside `block_in_place`: CPU work
//! stays off the async executor without a task spawn or channel hop per
//! message. The response stream pulls requests only when tonic pulls
//! responses, so a client that reads slowly stalls its own requests through
//! HTTP/2 flow control instead of growing a buffer here; a client that goes
//! away drops the stream and everything in it. What streams, calls and
//! uploads hold counts against the server's [`MemoryBudget`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::budget::{ANSWER_ESTIMATE_BYTES, MemoryBudget, Next, OpenStream};
use super::convert::validation_to_pb;
use super::state::ServiceState;
use super::status::{ServiceError, code_name, inbound_error};
use crate::domain::{InspectionResult, ValidationError};
use crate::pb;
use crate::scoring::Scorer;
use crate::security::Caller;
use crate::store::{Recorded, Reporter};
use crate::wire::assessment_to_pb;
use crate::wire::declaration_from_pb;

/// Most results one bulk upload may carry (all are held until the commit).
pub const MAX_RESULTS_PER_STREAM: usize = 100_000;
/// Most bytes of results one `ReportInspectionResults` call uploads (they
/// are held until committed together).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Most requests scored in one blocking task.
pub const MAX_BATCH: usize = 256;
/// A batch stops growing once its requests reach this many bytes: a client
/// that does not read holds at most one batch of answers.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The gRPC service.
#[derive(Clone)]
pub struct RiskService {
    state: Arc<ServiceState>,
    shutdown: watch::Receiver<bool>,
    budget: Arc<MemoryBudget>,
}

impl RiskService {
    pub fn new(
        state: Arc<ServiceState>,
        shutdown: watch::Receiver<bool>,
        budget: Arc<MemoryBudget>,
    ) -> Self {
        Self {
            state,
            shutdown,
            budget,
        }
    }

    /// New calls are refused once the server is shutting down.
    fn open(&self) -> Result<(), Status> {
        if *self.shutdown.borrow() {
            Err(draining())
        } else {
            Ok(())
        }
    }
}

/// Refuses a declaration larger than the configured limit before any work
/// on it (the transport's message limit is larger: the stream goes on).
fn within_size(declaration: &pb::Declaration, state: &ServiceState) -> Result<(), ServiceError> {
    let bytes = prost::Message::encoded_len(declaration);
    let limit = state.reference().limits.max_declaration_bytes;
    if bytes > limit {
        Err(ServiceError::TooLarge { bytes, limit })
    } else {
        Ok(())
    }
}

/// A stream answer for an error about the declaration as a whole.
fn declaration_error(err: &ServiceError, description: &str) -> pb::DeclarationError {
    pb::DeclarationError {
        code: code_name(err.code()).to_owned(),
        message: err.to_string(),
        field_violations: vec![pb::FieldViolation {
            field: "declaration".into(),
            description: description.to_owned(),
        }],
    }
}

/// Answers a batch of stream requests in order; a bad request gets an error
/// response and never fails the stream.
fn respond_batch(
    state: &ServiceState,
    scorer: &Scorer,
    batch: Vec<pb::ScoreDeclarationsRequest>,
) -> Vec<pb::ScoreDeclarationsResponse> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(batch.len());
    let mut checked: Vec<Result<usize, pb::DeclarationError>> = Vec::with_capacity(batch.len());
    let mut declarations = Vec::with_capacity(batch.len());
    for pb::ScoreDeclarationsRequest { declaration } in batch {
        let Some(declaration) = declaration else {
            ids.push(String::new());
            let err = ServiceError::Missing("declaration");
            checked.push(Err(declaration_error(&err, "is required")));
            continue;
        };
        ids.push(declaration.declaration_id.clone());
        if let Err(err) = within_size(&declaration, state) {
            checked.push(Err(declaration_error(&err, &err.to_string())));
            continue;
        }
        match declaration_from_pb(declaration, state.reference()) {
            Ok(d) => {
                checked.push(Ok(declarations.len()));
                declarations.push(d);
            }
            Err(err) => checked.push(Err(validation_to_pb(&err))),
        }
    }
    let mut assessments: Vec<Option<crate::scoring::Assessment>> = state
        .score_all(scorer, &declarations)
        .into_iter()
        .map(Some)
        .collect();
    let meters = state.meters();
    let scored = declarations.len();
    if scored > 0 {
        meters.scored.increment(scored as u64);
        // Validation and scoring per declaration, averaged over its batch.
        let each = started.elapsed().as_secs_f64() / (checked.len() as f64);
        for _ in 0..scored {
            meters.latency.record(each);
        }
    }
    meters.invalid.increment((checked.len() - scored) as u64);
    let now = Utc::now();
    ids.into_iter()
        .zip(checked)
        .map(|(declaration_id, outcome)| pb::ScoreDeclarationsResponse {
            declaration_id,
            outcome: Some(match outcome {
                Ok(i) => pb::score_declarations_response::Outcome::Assessment(assessment_to_pb(
                    assessments[i]
                        .take()
                        .expect("each assessment is taken once"),
                    now,
                )),
                Err(error) => pb::score_declarations_response::Outcome::Error(error),
            }),
        })
        .collect()
}

/// Runs CPU work for a batch without blocking the executor: on the
/// multi-thread runtime the worker hands its other tasks to the rest of the
/// pool for the duration (`block_in_place`), which costs far less than moving
/// the batch to the blocking pool and back (`cargo bench --bench grpc`, stream
/// throughput against the echo ceiling: 0.64 with `spawn_blocking` per batch,
/// 0.69 with `block_in_place`, 0.82 scoring on the executor itself). On a
/// current-thread runtime, where that is not possible, the batch runs inline.
fn off_executor<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

struct Pipeline<S> {
    inbound: S,
    state: Arc<ServiceState>,
    budget: Arc<MemoryBudget>,
    /// The stream's reservation and its answers not yet taken.
    stream: OpenStream,
    shutdown: watch::Receiver<bool>,
    /// A broken inbound stream, reported after the answers before it.
    failure: Option<Status>,
    ended: bool,
    /// The call's span: each batch's span is its child (answers are made
    /// after the handler has returned, outside the call's own span).
    span: tracing::Span,
}

/// Turns a stream of requests into the stream of responses, in order.
pub fn score_stream<S>(
    inbound: S,
    state: Arc<ServiceState>,
    shutdown: watch::Receiver<bool>,
    budget: Arc<MemoryBudget>,
    stream: OpenStream,
) -> impl Stream<Item = Result<pb::ScoreDeclarationsResponse, Status>> + Send + 'static
where
    S: Stream<Item = Result<pb::ScoreDeclarationsRequest, Status>> + Send + Unpin + 'static,
{
    let pipeline = Pipeline {
        inbound,
        state,
        budget,
        stream,
        shutdown,
        failure: None,
        ended: false,
        span: tracing::Span::current(),
    };
    futures_util::stream::unfold(pipeline, |mut p| async move {
        loop {
            match p.stream.unsent.next(Instant::now()) {
                Next::Answer(response) => return Some((Ok(*response), p)),
                Next::Dropped(n) => {
                    p.ended = true;
                    return Some((Err(stalled(n)), p));
                }
                Next::Empty => {}
            }
            if let Some(status) = p.failure.take() {
                return Some((Err(status), p));
            }
            if p.ended {
                return None;
            }
            // Draining: what was received is answered (above); the stream
            // then ends UNAVAILABLE, so that the client resends the rest
            // elsewhere. Checked before reading, or a busy client would
            // keep the stream going past the shutdown.
            if *p.shutdown.borrow() {
                p.ended = true;
                return Some((Err(draining()), p));
            }
            // Wait for one request (or shutdown), then take whatever else is
            // already there.
            let first = tokio::select! {
                biased;
                _ = p.shutdown.wait_for(|stop| *stop) => None,
                next = p.inbound.next() => Some(next),
            };
            let Some(first) = first else {
                p.ended = true;
                return Some((Err(draining()), p));
            };
            let mut batch = match first {
                Some(Ok(request)) => vec![request],
                Some(Err(status)) => {
                    p.ended = true;
                    return Some((Err(inbound_error(status)), p));
                }
                None => return None,
            };
            let mut bytes = prost::Message::encoded_len(&batch[0]);
            let mut failure = None;
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match p.inbound.next().now_or_never() {
                    Some(Some(Ok(request))) => {
                        bytes += prost::Message::encoded_len(&request);
                        batch.push(request);
                    }
                    Some(Some(Err(status))) => {
                        failure = Some(inbound_error(status));
                        break;
                    }
                    Some(None) => {
                        p.ended = true;
                        break;
                    }
                    None => break,
                }
            }
            // The batch's requests and answers count against the budget
            // until its last answer is taken; while it is spent, this
            // stream reads no more (its client is held back by flow control).
            let want = bytes + batch.len() * ANSWER_ESTIMATE_BYTES;
            // Shutting down: what was received is answered, budget or not.
            let held = tokio::select! {
                biased;
                _ = p.shutdown.wait_for(|stop| *stop) => p.budget.nothing(),
                held = p.budget.take(want) => held,
            };
            let state = p.state.clone();
            let span = tracing::info_span!(
                parent: &p.span,
                "score_batch",
                // Counts as i64: OpenTelemetry has no unsigned integers, and other
                // types are exported as text.
                declarations = batch.len() as i64,
                rejected = tracing::field::Empty,
            );
            let responses = off_executor(move || {
                span.in_scope(|| {
                    let responses = respond_batch(&state, &state.scorer(), batch);
                    span.record("rejected", rejected(&responses) as i64);
                    responses
                })
            });
            p.stream.unsent.queue(responses, held, Instant::now());
            if let Some(status) = failure {
                // Answer what came before the broken message, then fail.
                p.failure = Some(status);
                p.ended = true;
            }
        }
    })
}

/// Answers of a batch that are errors (declarations refused).
fn rejected(responses: &[pb::ScoreDeclarationsResponse]) -> usize {
    responses
        .iter()
        .filter(|r| {
            matches!(
                r.outcome,
                Some(pb::score_declarations_response::Outcome::Error(_))
            )
        })
        .count()
}

/// How a stream ends when its answers were dropped because its client did
/// not read them while memory was short.
fn stalled(dropped: usize) -> Status {
    Status::resource_exhausted(format!(
        "{dropped} answers were dropped: this stream read none of its answers for too long while the server's memory was short; resend those declarations (scoring is idempotent by declaration id)"
    ))
}

/// The status of calls and open streams once the server is shutting down.
fn draining() -> Status {
    Status::unavailable("the server is shutting down; send the rest to another replica")
}

/// Scores a batch, plans it, and lists the entries in worklist order; invalid
/// declarations come last with their errors.
fn plan_batch(
    state: &ServiceState,
    declarations: Vec<pb::Declaration>,
    capacity: usize,
) -> Vec<pb::PlannedDeclaration> {
    let scorer = state.scorer();
    let mut checked = Vec::with_capacity(declarations.len());
    let mut errors = Vec::new();
    for declaration in declarations {
        let id = declaration.declaration_id.clone();
        match declaration_from_pb(declaration, state.reference()) {
            Ok(d) => checked.push(d),
            Err(err) => errors.push(pb::PlannedDeclaration {
                declaration_id: id,
                outcome: Some(pb::planned_declaration::Outcome::Error(validation_to_pb(
                    &err,
                ))),
            }),
        }
    }
    let (assessments, order) = state.router().plan(&scorer, &checked, capacity);
    // Planned controls join their results like streamed ones.
    state.record_routed(&checked, &assessments);
    drop(checked);
    let mut slots: Vec<Option<crate::scoring::Assessment>> =
        assessments.into_iter().map(Some).collect();
    let now = Utc::now();
    let mut entries: Vec<pb::PlannedDeclaration> = order
        .into_iter()
        .filter_map(|i| slots[i].take())
        .map(|a| pb::PlannedDeclaration {
            declaration_id: a.declaration_id.as_str().to_owned(),
            outcome: Some(pb::planned_declaration::Outcome::Assessment(
                assessment_to_pb(a, now),
            )),
        })
        .collect();
    entries.extend(errors);
    entries
}

#[tonic::async_trait]
impl pb::risk_service_server::RiskService for RiskService {
    type ScoreDeclarationsStream = ResponseStream<pb::ScoreDeclarationsResponse>;

    #[tracing::instrument(name = "ScoreDeclarations", skip_all)]
    async fn score_declarations(
        &self,
        request: Request<Streaming<pb::ScoreDeclarationsRequest>>,
    ) -> Result<Response<Self::ScoreDeclarationsStream>, Status> {
        self.open()?;
        let reserved = self.budget.open_stream().map_err(ServiceError::from)?;
        let stream = score_stream(
            request.into_inner(),
            self.state.clone(),
            self.shutdown.clone(),
            Arc::clone(&self.budget),
            reserved,
        );
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(name = "ScoreDeclaration", skip_all)]
    async fn score_declaration(
        &self,
        request: Request<pb::ScoreDeclarationRequest>,
    ) -> Result<Response<pb::ScoreDeclarationResponse>, Status> {
        self.open()?;
        let pb::ScoreDeclarationRequest { declaration } = request.into_inner();
        let declaration = declaration.ok_or(ServiceError::Missing("declaration"))?;
        let _held = self
            .budget
            .take(prost::Message::encoded_len(&declaration) + ANSWER_ESTIMATE_BYTES)
            .await;
        let state = self.state.clone();
        let assessment = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            within_size(&declaration, &state)?;
            let d = declaration_from_pb(declaration, state.reference())?;
            let scorer = state.scorer();
            let assessment = state.score(&scorer, &d);
            // Validation and scoring, as the stream measures it.
            state
                .meters()
                .latency
                .record(started.elapsed().as_secs_f64());
            Ok::<_, ServiceError>(assessment)
        })
        .await
        .map_err(ServiceError::from)?
        .inspect_err(|e| {
            metrics::counter!("parcel_risk_errors_total", "code" => code_name(e.code()))
                .increment(1);
        })?;
        self.state.meters().scored.increment(1);
        Ok(Response::new(pb::ScoreDeclarationResponse {
            assessment: Some(assessment_to_pb(assessment, Utc::now())),
        }))
    }

    #[tracing::instrument(name = "PlanInspections", skip_all, fields(declarations))]
    async fn plan_inspections(
        &self,
        request: Request<pb::PlanInspectionsRequest>,
    ) -> Result<Response<pb::PlanInspectionsResponse>, Status> {
        self.open()?;
        let pb::PlanInspectionsRequest {
            declarations,
            capacity,
        } = request.into_inner();
        tracing::Span::current().record("declarations", declarations.len() as i64);
        let request_bytes: usize = declarations.iter().map(prost::Message::encoded_len).sum();
        let _held = self
            .budget
            .take(request_bytes + declarations.len() * ANSWER_ESTIMATE_BYTES)
            .await;
        let state = self.state.clone();
        let span = tracing::Span::current();
        let entries = tokio::task::spawn_blocking(move || {
            span.in_scope(|| plan_batch(&state, declarations, capacity as usize))
        })
        .await
        .map_err(ServiceError::from)?;
        Ok(Response::new(pb::PlanInspectionsResponse {
            declarations: entries,
        }))
    }

    #[tracing::instrument(name = "ReportInspectionResult", skip_all)]
    async fn report_inspection_result(
        &self,
        request: Request<pb::ReportInspectionResultRequest>,
    ) -> Result<Response<pb::ReportInspectionResultResponse>, Status> {
        self.open()?;
        let store = self.state.store().ok_or(ServiceError::NoStore)?;
        let reporter = reporter(&request);
        self.state
            .report_quota()
            .take(&reporter.name, 1)
            .map_err(ServiceError::from)?;
        let result = request
            .into_inner()
            .result
            .ok_or(ServiceError::Missing("result"))?;
        let result = InspectionResult::try_from(result)
            .map_err(|e| ServiceError::InvalidResult(prefixed(e, "result.")))?;
        let recorded = record_and_learn(&self.state, store, vec![result], reporter).await?;
        count_recorded(&recorded);
        Ok(Response::new(pb::ReportInspectionResultResponse {
            newly_recorded: recorded.first() == Some(&Recorded::New),
        }))
    }

    /// Validates every result as it arrives; at the end of the stream all of
    /// them are committed in one transaction and only then acknowledged. An
    /// invalid result ends the call with INVALID_ARGUMENT naming its index
    /// (`results[17].outcome`) and nothing of the stream is stored.
    #[tracing::instrument(name = "ReportInspectionResults", skip_all)]
    async fn report_inspection_results(
        &self,
        request: Request<Streaming<pb::ReportInspectionResultsRequest>>,
    ) -> Result<Response<pb::ReportInspectionResultsResponse>, Status> {
        self.open()?;
        let store = self.state.store().ok_or(ServiceError::NoStore)?;
        let reporter = reporter(&request);
        let mut stream = request.into_inner();
        let mut results = Vec::new();
        let mut bytes = 0usize;
        let mut held = None;
        while let Some(request) = stream.message().await.map_err(inbound_error)? {
            let index = results.len();
            if index >= MAX_RESULTS_PER_STREAM {
                return Err(ServiceError::TooManyResults(MAX_RESULTS_PER_STREAM).into());
            }
            // Held until the commit: the upload's memory is bounded too,
            // alone and with everything else the server holds.
            bytes = bytes.saturating_add(prost::Message::encoded_len(&request));
            if bytes > MAX_UPLOAD_BYTES {
                return Err(ServiceError::UploadTooLarge(MAX_UPLOAD_BYTES).into());
            }
            self.budget
                .grow_upload(&mut held, bytes)
                .map_err(ServiceError::from)?;
            let Some(result) = request.result else {
                return Err(ServiceError::MissingAt(format!("results[{index}]")).into());
            };
            let result = InspectionResult::try_from(result).map_err(|e| {
                ServiceError::InvalidResult(prefixed(e, &format!("results[{index}].")))
            })?;
            results.push(result);
        }
        // tonic ends a request stream the client cancelled (RST_STREAM
        // CANCEL) as if the client had finished it (tonic's codec/decode.rs
        // maps a Cancelled request body to the end of the stream). hyper
        // drops this call's future once it is pending and sees the reset:
        // being pending once before the commit makes a cancelled upload
        // commit nothing, where it committed what had arrived.
        tokio::task::yield_now().await;
        let count = results.len();
        self.state
            .report_quota()
            .take(&reporter.name, count as u64)
            .map_err(ServiceError::from)?;
        let recorded = record_and_learn(&self.state, store, results, reporter).await?;
        let new = count_recorded(&recorded);
        Ok(Response::new(pb::ReportInspectionResultsResponse {
            recorded_count: u32::try_from(new).unwrap_or(u32::MAX),
            duplicate_count: u32::try_from(count - new).unwrap_or(u32::MAX),
        }))
    }

    #[tracing::instrument(name = "GetModelInfo", skip_all)]
    async fn get_model_info(
        &self,
        _request: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        let scorer = self.state.scorer();
        let m = scorer.model();
        let metrics = m
            .card
            .comparison
            .iter()
            .filter(|c| m.card.chosen.contains(&(c.target, c.kind)))
            .flat_map(|c| {
                [
                    pb::ModelMetric {
                        name: format!("{}.auc", c.target.name()),
                        value: c.auc,
                    },
                    pb::ModelMetric {
                        name: format!("{}.average_precision", c.target.name()),
                        value: c.average_precision,
                    },
                ]
            })
            .collect();
        Ok(Response::new(pb::GetModelInfoResponse {
            model_version: m.model_version.clone(),
            created_at: Some(crate::wire::declaration::timestamp_to_pb(m.created_at)),
            feature_names: m.schema.names.clone(),
            feature_schema_hash: m.schema.hash.clone(),
            metrics,
            training_data_fingerprint: m.card.data_fingerprint.clone(),
            drift: scorer
                .drift()
                .map(|monitor| {
                    monitor
                        .report()
                        .into_iter()
                        .map(|c| pb::ColumnDrift {
                            recency: crate::model::drift::is_history_measure(&c.column),
                            column: c.column,
                            psi: c.psi,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            drift_sampled: scorer.drift().map_or(0, |monitor| monitor.sampled()),
        }))
    }
}

/// Records results; the newly recorded ones whose declaration this service
/// routed then teach the live record (off the executor), so the next
/// declarations of the importer, seller and codes they name read what the
/// inspection found.
async fn record_and_learn(
    state: &Arc<ServiceState>,
    store: &crate::store::Store,
    results: Vec<InspectionResult>,
    reporter: Reporter,
) -> Result<Vec<Recorded>, ServiceError> {
    let kept = results.clone();
    let outcomes = store.record_results_joined(results, reporter).await?;
    let recorded = outcomes.iter().map(|(r, _)| *r).collect();
    let inspected: Vec<_> = outcomes
        .into_iter()
        .zip(kept)
        .filter_map(|((recorded, declaration), result)| {
            (recorded == Recorded::New)
                .then_some(declaration)
                .flatten()
                .map(|d| (d, result))
        })
        .collect();
    if !inspected.is_empty() {
        let state = Arc::clone(state);
        tokio::task::spawn_blocking(move || state.learn(inspected)).await?;
    }
    Ok(recorded)
}

/// Counts accepted results, new and duplicate; returns the new ones.
fn count_recorded(recorded: &[Recorded]) -> usize {
    let new = recorded.iter().filter(|r| **r == Recorded::New).count();
    let duplicate = recorded.len() - new;
    metrics::counter!("parcel_risk_results_reported_total").increment(recorded.len() as u64);
    metrics::counter!("parcel_risk_results_total", "outcome" => "recorded").increment(new as u64);
    metrics::counter!("parcel_risk_results_total", "outcome" => "duplicate")
        .increment(duplicate as u64);
    new
}

/// Who reports: the caller that [`super::auth::Authorized`] let in.
fn reporter<T>(request: &Request<T>) -> Reporter {
    match request.extensions().get::<Caller>() {
        Some(caller) => Reporter {
            name: caller.name.clone(),
            credential: caller.credential.name(),
            address: caller.peer,
        },
        // Only a service mounted without `Authorized` (never by `serve`).
        None => Reporter {
            name: String::new(),
            credential: "",
            address: request.remote_addr(),
        },
    }
}

/// Puts a result's field paths under where it sits in the request.
fn prefixed(mut err: ValidationError, prefix: &str) -> ValidationError {
    for v in &mut err.violations {
        v.field = format!("{prefix}{}", v.field);
    }
    err
}
