//! The gRPC edge: `parcelrisk.v1.RiskService` with health and reflection.
//! Only this module, `wire`, `io` and `cli` see generated types.

pub mod auth;
pub mod budget;
pub mod convert;
pub mod echo;
pub mod idle;
pub mod rpc_metrics;
pub mod service;
pub mod state;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::pb;
use crate::pb::risk_service_server::RiskServiceServer;
use crate::security::Security;
pub use service::RiskService;
pub use state::ServiceState;

/// Transport settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Open connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// On shutdown, how long health says NOT_SERVING and calls are refused
    /// UNAVAILABLE while the port stays open, so that load balancers and
    /// clients move away before connections close.
    pub drain_notice: std::time::Duration,
    /// How long a new connection gets for its TLS handshake or HTTP/2
    /// preface before it is closed.
    pub handshake_timeout: std::time::Duration,
    /// What streams, calls and uploads may hold in all ([`budget`]).
    pub memory_budget_bytes: usize,
    /// While memory is short, how long a stream's client may leave its
    /// answers unread before they are dropped and the stream ends.
    pub stalled_stream: std::time::Duration,
    /// A connection with no call open for this long is closed ([`idle`]).
    pub idle_timeout: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            max_connections: 1024,
            drain_notice: std::time::Duration::from_secs(1),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            memory_budget_bytes: budget::DEFAULT_BUDGET_MIB as usize * 1024 * 1024,
            stalled_stream: budget::DEFAULT_STALLED_AFTER,
            idle_timeout: idle::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves on `listener` until `shutdown` resolves, in plaintext and without
/// credentials ([`Security::open`]); see [`serve_secured`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServiceState>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_secured(
        listener,
        state,
        config,
        Arc::new(Security::open()),
        shutdown,
    )
    .await
}

/// Serves on `listener` until `shutdown` resolves, with TLS when `security`
/// has it and every `RiskService` call authenticated and checked against
/// its role. Then open streams stop taking requests, answer those already
/// received and end; the future resolves once every connection has closed.
pub async fn serve_secured(
    listener: TcpListener,
    state: Arc<ServiceState>,
    config: ServerConfig,
    security: Arc<Security>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // The model was loaded before we got here: serving from the first request.
    health_reporter
        .set_serving::<RiskServiceServer<RiskService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc.BadRequest and the other error details: tools such as
        // grpcurl decode a status's details through reflection.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    if state.router().shared_state().is_some() {
        report_shared_state(Arc::downgrade(&state), health_reporter.clone());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let budget = Arc::new(budget::MemoryBudget::new(
        config.memory_budget_bytes,
        config.stalled_stream,
    ));
    reap_stalled_streams(Arc::downgrade(&budget));
    let service = RiskServiceServer::new(RiskService::new(state, stop_rx, budget))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let reporter = health_reporter.clone();
    let notice = config.drain_notice;
    let signal = async move {
        shutdown.await;
        tracing::info!(
            "shutting down: not serving; open streams answer what they received and end UNAVAILABLE"
        );
        // Health first, then the calls: both before the port closes.
        reporter
            .set_not_serving::<RiskServiceServer<RiskService>>()
            .await;
        let _ = stop_tx.send(true);
        tokio::time::sleep(notice).await;
        tracing::info!("closing the port; waiting for connections to end");
    };
    let connections = Arc::new(idle::Connections::default());
    let router = Server::builder()
        // Outermost: it sees the status codes as clients get them.
        .layer(rpc_metrics::RpcMetricsLayer::new(Some(Arc::clone(
            &connections,
        ))))
        .layer(tower::util::MapResponseLayer::new(client_error_codes))
        .max_concurrent_streams(config.max_concurrent_streams)
        // Dead peers and half-open connections are found and closed.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .trace_fn(|request| {
            let span =
                tracing::info_span!("rpc", path = %request.uri().path(), otel.kind = "server");
            crate::telemetry::continue_remote_trace(&span, request.headers());
            span
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(auth::Authorized::new(service, Arc::clone(&security)));
    let connections =
        futures_util::StreamExt::map(incoming(listener, config.max_connections), move |c| {
            c.map(|c| c.reaped_when_idle(&connections, config.idle_timeout))
        });
    let timeout = config.handshake_timeout;
    match security.tls() {
        Some(tls) => {
            let tls = Arc::clone(tls);
            let handshake = move |connection: Connection| {
                // The certificates in use when the handshake starts (they
                // reload on SIGHUP).
                let acceptor = tls.acceptor();
                async move {
                    acceptor
                        .accept(connection)
                        .await
                        .map_err(|e| format!("TLS handshake: {e}"))
                }
            };
            router
                .serve_with_incoming_shutdown(admitted(connections, timeout, handshake), signal)
                .await?;
        }
        None => {
            router
                .serve_with_incoming_shutdown(admitted(connections, timeout, http2_preface), signal)
                .await?;
        }
    }
    Ok(())
}

/// Once a second while the server runs (the service holds the budget),
/// ends the streams whose clients leave their answers unread while memory
/// is short.
fn reap_stalled_streams(budget: std::sync::Weak<budget::MemoryBudget>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(budget) = budget.upgrade() else {
                break;
            };
            budget.reap_stalled(std::time::Instant::now());
        }
    });
}

/// The health service name that says whether the shared state answers.
pub const SHARED_STATE_HEALTH: &str = "parcelrisk.v1.SharedState";

/// Once a second while the state lives, asks the shared state for a PING
/// (off the executor) and reports it in health under
/// [`SHARED_STATE_HEALTH`] and in `parcel_risk_shared_state_up`. The
/// service itself stays SERVING: it scores on local windows meanwhile.
fn report_shared_state(
    state: std::sync::Weak<ServiceState>,
    reporter: tonic_health::server::HealthReporter,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = None;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else {
                break;
            };
            let probe = tokio::task::spawn_blocking(move || {
                state.router().shared_state().is_some_and(|s| s.probe())
            });
            let up = probe.await.unwrap_or(false);
            metrics::gauge!("parcel_risk_shared_state_up").set(if up { 1.0 } else { 0.0 });
            if reported != Some(up) {
                let status = if up {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                reporter
                    .set_service_status(SHARED_STATE_HEALTH, status)
                    .await;
                reported = Some(up);
            }
        }
    });
}

/// How long a new connection gets to show it speaks gRPC (its TLS handshake
/// done, or its HTTP/2 preface sent) by default.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until a plaintext connection has sent the HTTP/2 preface (left in
/// the socket for the server to read), so that a socket that never speaks
/// can be closed.
async fn http2_preface(connection: Connection) -> Result<Connection, String> {
    let mut head = [0u8; HTTP2_PREFACE.len()];
    loop {
        let n = connection
            .stream
            .peek(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the HTTP/2 preface".into());
        }
        if head[..n] != HTTP2_PREFACE[..n] {
            return Err("not HTTP/2 (no preface)".into());
        }
        if n == HTTP2_PREFACE.len() {
            return Ok(connection);
        }
        // Part of it so far: peeking again at once would find the same bytes.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The `connections` that pass `admit` (a TLS handshake, the HTTP/2
/// preface) within `timeout`, each admitted in its own task so that a slow
/// client holds up no one. The others are closed (freeing their connection
/// slot), counted and logged: the first failure and then every power of two
/// as a warning, the rest at debug level.
pub fn admitted<IO, F, Fut>(
    connections: impl futures_util::Stream<Item = std::io::Result<Connection>> + Send + 'static,
    timeout: std::time::Duration,
    admit: F,
) -> impl futures_util::Stream<Item = std::io::Result<IO>>
where
    IO: Send + 'static,
    F: Fn(Connection) -> Fut + Send + 'static,
    Fut: Future<Output = Result<IO, String>> + Send + 'static,
{
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut connections = std::pin::pin!(connections);
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        loop {
            // The server dropped the stream (shutdown): stop accepting.
            let next = tokio::select! {
                next = connections.next() => next,
                () = tx.closed() => break,
            };
            let connection = match next {
                Some(Ok(c)) => c,
                Some(Err(_)) => continue,
                None => break,
            };
            let tx = tx.clone();
            let failed = Arc::clone(&failed);
            let peer = connection.stream.peer_addr().ok();
            let admitting = admit(connection);
            tokio::spawn(async move {
                let error = match tokio::time::timeout(timeout, admitting).await {
                    Ok(Ok(io)) => {
                        let _ = tx.send(Ok(io)).await;
                        return;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => format!(
                        "no TLS handshake or HTTP/2 preface within {} ms",
                        timeout.as_millis()
                    ),
                };
                metrics::counter!("parcel_risk_handshake_failures_total").increment(1);
                let n = failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(?peer, %error, failed_so_far = n, "connection closed before it spoke gRPC");
                } else {
                    tracing::debug!(?peer, %error, "connection closed before it spoke gRPC");
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Registers every metric the service exports, at zero and with its HELP
/// text, so that `/metrics` shows each series from the start (call it once
/// the recorder is installed).
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    rpc_metrics::describe();
    let counters: [(&'static str, &'static str); 23] = [
        (
            "parcel_risk_connections_idle_closed_total",
            "Connections closed after the idle timeout with no call open",
        ),
        (
            "parcel_risk_memory_waits_total",
            "Batches and calls that waited for the memory budget (backpressure)",
        ),
        (
            "parcel_risk_memory_refusals_total",
            "Streams and uploads refused RESOURCE_EXHAUSTED: memory budget spent",
        ),
        (
            "parcel_risk_streams_stalled_total",
            "Streams ended because their client left its answers unread while memory was short",
        ),
        (
            "parcel_risk_declarations_scored_total",
            "Declarations scored (stream, unary and plans)",
        ),
        (
            "parcel_risk_results_reported_total",
            "Inspection results accepted (new and duplicate)",
        ),
        (
            "parcel_risk_store_errors_total",
            "Routed declarations the store could not write",
        ),
        (
            "parcel_risk_routed_kept_first_total",
            "Routings ignored because the declaration id was routed before",
        ),
        (
            "parcel_risk_accept_errors_total",
            "Connections the system refused to accept (e.g. out of descriptors)",
        ),
        (
            "parcel_risk_connections_refused_total",
            "Connections closed at once: --max-connections reached",
        ),
        (
            "parcel_risk_handshake_failures_total",
            "TLS handshakes that failed or timed out",
        ),
        (
            "parcel_risk_calls_unauthenticated_total",
            "Calls refused UNAUTHENTICATED: no or a bad credential",
        ),
        (
            "parcel_risk_calls_forbidden_total",
            "Calls refused PERMISSION_DENIED: the caller lacks the role",
        ),
        (
            "parcel_risk_report_quota_refused_total",
            "Result reports refused: the caller's hourly quota was reached",
        ),
        (
            "parcel_risk_results_refused_random_claim_total",
            "Results refused: a random selection the service did not make",
        ),
        (
            "parcel_risk_model_reloads_total",
            "Model reloads by result (ok, refused)",
        ),
        (
            "parcel_risk_security_reloads_total",
            "Certificate and access-file reloads by result (ok, refused)",
        ),
        (
            "parcel_risk_errors_total",
            "Declarations answered with an error, by status code",
        ),
        (
            "parcel_risk_channel_total",
            "Declarations routed, by channel",
        ),
        (
            "parcel_risk_results_total",
            "Reported inspection results by outcome (recorded, duplicate, conflict, invalid, refused)",
        ),
        (
            "parcel_risk_shared_state_failures_total",
            "Batches whose shared-state round trip failed, by kind (unreachable, backing_off, protocol)",
        ),
        (
            "parcel_risk_shared_state_local_declarations_total",
            "Declarations scored on this replica's own windows because the shared state was not reached",
        ),
        (
            "parcel_risk_live_record_results_total",
            "Inspection results the live record learnt (reported, or read from the store at start and at a model swap)",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
    }
    for name in [
        "parcel_risk_declarations_scored_total",
        "parcel_risk_results_reported_total",
        "parcel_risk_store_errors_total",
        "parcel_risk_routed_kept_first_total",
        "parcel_risk_accept_errors_total",
        "parcel_risk_connections_refused_total",
        "parcel_risk_handshake_failures_total",
        "parcel_risk_calls_unauthenticated_total",
        "parcel_risk_calls_forbidden_total",
        "parcel_risk_report_quota_refused_total",
        "parcel_risk_results_refused_random_claim_total",
        "parcel_risk_memory_waits_total",
        "parcel_risk_streams_stalled_total",
        "parcel_risk_connections_idle_closed_total",
        "parcel_risk_shared_state_local_declarations_total",
        "parcel_risk_live_record_results_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    describe_gauge!(
        "parcel_risk_live_record_keys",
        "Keys the serving model's live record holds (record fields and party tables), bounded"
    );
    for what in ["stream", "upload"] {
        metrics::counter!("parcel_risk_memory_refusals_total", "what" => what).absolute(0);
    }
    describe_gauge!(
        "parcel_risk_memory_budget_bytes",
        Unit::Bytes,
        "What streams, calls and uploads may hold in all (--memory-budget-mib)"
    );
    describe_gauge!(
        "parcel_risk_memory_budget_used_bytes",
        Unit::Bytes,
        "Memory budget in use: stream reservations, batches, unsent answers, uploads"
    );
    for result in ["ok", "refused"] {
        metrics::counter!("parcel_risk_model_reloads_total", "result" => result).absolute(0);
        metrics::counter!("parcel_risk_security_reloads_total", "result" => result).absolute(0);
    }
    for outcome in ["recorded", "duplicate", "conflict", "invalid", "refused"] {
        metrics::counter!("parcel_risk_results_total", "outcome" => outcome).absolute(0);
    }
    metrics::counter!("parcel_risk_errors_total", "code" => "INVALID_ARGUMENT").absolute(0);
    for kind in ["unreachable", "backing_off", "protocol"] {
        metrics::counter!("parcel_risk_shared_state_failures_total", "kind" => kind).absolute(0);
    }
    describe_histogram!(
        "parcel_risk_scoring_seconds",
        Unit::Seconds,
        "Validation and scoring time per declaration (stream batches averaged)"
    );
    describe_gauge!("parcel_risk_model_info", "The serving model (1) by version");
    describe_gauge!(
        "parcel_risk_shared_state_up",
        "Whether the shared state (--shared-state) answered its last call (1) or not (0)"
    );
    describe_histogram!(
        "parcel_risk_shared_state_seconds",
        Unit::Seconds,
        "Round trip of one batch's windows to the shared state"
    );
    describe_gauge!(
        "parcel_risk_drift_psi",
        "Population stability index of a feature or score, live sample against the training traffic (0.1 moderate, 0.25 major)"
    );
    describe_gauge!(
        "parcel_risk_drift_max_psi",
        "The largest drift PSI of any feature or score"
    );
    describe_gauge!(
        "parcel_risk_drift_columns_shifted",
        "Features and scores whose drift PSI is 0.25 or more"
    );
}

/// The status of a call refused before any handler ran, as gRPC defines
/// it: tonic answers a message over the size limit with OUT_OF_RANGE (gRPC:
/// RESOURCE_EXHAUSTED) and bytes that do not decode with INTERNAL (gRPC:
/// INVALID_ARGUMENT; INTERNAL would blame the server for the client's
/// bytes). Such answers carry their status in the headers (trailers-only);
/// a stream's are remapped where it reads its requests
/// ([`status::inbound_error`]).
fn client_error_codes<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let code = headers.get("grpc-status").map(http::HeaderValue::as_bytes);
    let undecodable = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.starts_with("failed") && m.contains("decode"));
    let remapped = match code {
        Some(b"11") => Some("8"),
        Some(b"13") if undecodable => Some("3"),
        _ => None,
    };
    if let Some(code) = remapped {
        headers.insert("grpc-status", http::HeaderValue::from_static(code));
    }
    response
}

/// An accepted connection holding one of the server's connection slots
/// until it closes.
pub struct Connection {
    stream: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
    /// Ends the connection (reads see its end) once no call has been open
    /// on it for the idle timeout.
    idle: Option<idle::IdleCheck>,
}

impl Connection {
    /// Registers the connection with the server's idle reaping.
    fn reaped_when_idle(
        mut self,
        connections: &Arc<idle::Connections>,
        timeout: std::time::Duration,
    ) -> Self {
        if let Ok(peer) = self.stream.peer_addr() {
            self.idle = Some(idle::IdleCheck::new(connections.accepted(peer), timeout));
        }
        self
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let read = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if read.is_pending()
            && let Some(idle) = self.idle.as_mut()
            && idle.poll_idle(cx).is_ready()
        {
            // The end of the stream: the server closes the connection.
            self.idle = None;
            metrics::counter!("parcel_risk_connections_idle_closed_total").increment(1);
            tracing::debug!("connection closed: no call for the idle timeout");
            return std::task::Poll::Ready(Ok(()));
        }
        read
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How long accepting pauses after the system refused a connection (out of
/// file descriptors, say): the pending connection stays in the backlog, and
/// retrying at once would spin a core.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepted connections, at most `max_connections` open at once (one more
/// is closed at once, counted and logged: existing clients keep being
/// served), with Nagle's algorithm off: tonic's `tcp_nodelay` applies only
/// to listeners it binds itself, and without it small unary answers wait for
/// the peer's delayed ACK (about 40 ms).
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl futures_util::Stream<Item = std::io::Result<Connection>> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    futures_util::stream::unfold(
        (listener, slots, 0u64),
        move |(listener, slots, mut refused)| async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        metrics::counter!("parcel_risk_accept_errors_total").increment(1);
                        tracing::error!(error = %e, "cannot accept a connection; pausing accepts");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    refused += 1;
                    metrics::counter!("parcel_risk_connections_refused_total").increment(1);
                    // First, then every power of two: a flood does not flood the log.
                    if refused.is_power_of_two() {
                        tracing::warn!(
                            max_connections,
                            refused,
                            "connection limit reached; new connections are closed"
                        );
                    }
                    drop(stream);
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                return Some((
                    Ok(Connection {
                        stream,
                        _slot: slot,
                        idle: None,
                    }),
                    (listener, slots, refused),
                ));
            }
        },
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
