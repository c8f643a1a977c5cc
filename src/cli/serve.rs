//! `parcel-risk serve`: the gRPC service on the default (or a named) model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::domain::{Limits, ReferenceData};
use crate::grpc::{ServerConfig, ServiceState, serve_secured, shutdown_signal};
use crate::scoring::priority;
use crate::security::{Security, ServerTls, TlsFiles};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT, the host a name or an IP
    /// (`localhost:50051`, `0.0.0.0:50051`, `[::1]:50051`).
    #[arg(long, default_value = "127.0.0.1:50051", env = "PARCEL_RISK_ADDR")]
    pub addr: String,
    /// Model directory, reloaded on SIGHUP and when its file changes
    /// (default: the model built into the binary, which is never reloaded).
    #[arg(long, env = "PARCEL_RISK_MODEL")]
    pub model: Option<PathBuf>,
    /// Prometheus metrics endpoint (`/metrics`); `off` to disable.
    #[arg(
        long,
        default_value = "127.0.0.1:9464",
        env = "PARCEL_RISK_METRICS_ADDR"
    )]
    pub metrics_addr: String,
    /// Largest gRPC message, bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, env = "PARCEL_RISK_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: usize,
    /// Most goods items per declaration.
    #[arg(long, default_value_t = 999, env = "PARCEL_RISK_MAX_ITEMS")]
    pub max_items: usize,
    /// Latest accepted lodging time, in hours after this server's clock: a
    /// declaration lodged later gets its own INVALID_ARGUMENT answer (a
    /// stream goes on), so that a wrong clock or a hostile client cannot
    /// push the windows' time ahead and expire every buyer and address.
    /// Raise it to replay synthetic traffic dated ahead.
    #[arg(long, default_value_t = 24, env = "PARCEL_RISK_MAX_LODGED_AHEAD_HOURS")]
    pub max_lodged_ahead_hours: u32,
    /// Largest declaration, bytes as encoded: a larger one gets its own
    /// RESOURCE_EXHAUSTED answer and a stream goes on (keep it below
    /// --max-message-bytes, which ends the stream).
    #[arg(long, default_value_t = Limits::default().max_declaration_bytes, env = "PARCEL_RISK_MAX_DECLARATION_BYTES")]
    pub max_declaration_bytes: usize,
    /// Concurrent streams per connection.
    #[arg(long, default_value_t = 256, env = "PARCEL_RISK_MAX_STREAMS")]
    pub max_concurrent_streams: u32,
    /// Open connections; one more is closed at once, counted and logged.
    #[arg(long, default_value_t = ServerConfig::default().max_connections, env = "PARCEL_RISK_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Seconds a new connection gets for its TLS handshake or HTTP/2
    /// preface; a socket that stays silent is closed (and its slot freed).
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds, env = "PARCEL_RISK_HANDSHAKE_TIMEOUT_SECONDS")]
    pub handshake_timeout_seconds: f64,
    /// What streams, calls and uploads may hold in all, MiB: requests being
    /// scored, answers not yet sent, the transport's send buffers (1 MiB a
    /// stream), uploads until their commit. Past it, streams read no more
    /// (backpressure) and new streams and uploads are refused
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = crate::grpc::budget::DEFAULT_BUDGET_MIB, value_parser = clap::value_parser!(u32).range(1..), env = "PARCEL_RISK_MEMORY_BUDGET_MIB")]
    pub memory_budget_mib: u32,
    /// While more than half the memory budget is in use, a stream whose
    /// client reads none of its answers for this long loses them and ends
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = crate::grpc::budget::DEFAULT_STALLED_AFTER.as_secs_f64(), value_parser = positive_seconds, env = "PARCEL_RISK_STALLED_STREAM_SECONDS")]
    pub stalled_stream_seconds: f64,
    /// A connection with no call open for this many seconds is closed
    /// (clients reconnect on their next call).
    #[arg(long, default_value_t = crate::grpc::idle::DEFAULT_IDLE_TIMEOUT.as_secs_f64(), value_parser = positive_seconds, env = "PARCEL_RISK_IDLE_TIMEOUT_SECONDS")]
    pub idle_timeout_seconds: f64,
    /// Seconds open streams get to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 10, env = "PARCEL_RISK_DRAIN_SECONDS")]
    pub drain_seconds: u64,
    #[command(flatten)]
    pub channels: ChannelArgs,
    /// Data directory of the store (SQLite, WAL): routed declarations and
    /// inspection results. Created if missing.
    #[arg(long, default_value = "parcel-risk-data", env = "PARCEL_RISK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Days routed declarations and results are kept.
    #[arg(long, default_value_t = 400, env = "PARCEL_RISK_RETENTION_DAYS")]
    pub retention_days: u32,
    /// Seconds between checks of the model file for a new artifact (0: only
    /// on SIGHUP). A new artifact is validated before it is swapped in.
    #[arg(long, default_value_t = 5, env = "PARCEL_RISK_MODEL_POLL_SECONDS")]
    pub model_poll_seconds: u64,
    /// One scored declaration in this many is counted for drift against the
    /// model's training traffic (`parcel_risk_drift_psi`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..), env = "PARCEL_RISK_DRIFT_SAMPLE_EVERY")]
    pub drift_sample_every: u64,
    #[command(flatten)]
    pub shared_state: super::SharedStateArgs,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Tokio worker threads (default: the number of cores).
    #[arg(long, env = "PARCEL_RISK_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// TLS, client credentials and quotas (docs/security.md).
#[derive(Debug, Clone, clap::Args)]
pub struct SecurityArgs {
    /// Server certificate chain (PEM): serve TLS. Reloaded on SIGHUP.
    #[arg(long, env = "PARCEL_RISK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM). Reloaded on SIGHUP.
    #[arg(long, env = "PARCEL_RISK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): clients must present a certificate it signed
    /// (mutual TLS). Reloaded on SIGHUP.
    #[arg(long, env = "PARCEL_RISK_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Access file: clients' names, roles and credentials (hashed bearer
    /// tokens, certificate names). Reloaded on SIGHUP. Without it and
    /// without --tls-client-ca every caller may do everything.
    #[arg(long, env = "PARCEL_RISK_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,
    /// Serve plaintext on an address other than loopback (tokens and
    /// declarations then cross the network in clear).
    #[arg(long, env = "PARCEL_RISK_INSECURE")]
    pub insecure: bool,
    /// Inspection results one caller may report per hour (0: no quota).
    #[arg(long, default_value_t = crate::security::quota::ReportQuota::DEFAULT_PER_HOUR, env = "PARCEL_RISK_REPORT_QUOTA_PER_HOUR")]
    pub report_quota_per_hour: u64,
}

impl SecurityArgs {
    /// Loads the TLS and access files; refuses plaintext off loopback
    /// unless `--insecure`.
    pub fn load(&self, bound: SocketAddr) -> anyhow::Result<Security> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            _ => None,
        };
        if !bound.ip().is_loopback() {
            anyhow::ensure!(
                tls.is_some() || self.insecure,
                "{bound} is not a loopback address: serve TLS there (--tls-cert, --tls-key) or pass --insecure to serve plaintext"
            );
            // Reachable from the network with no credentials asked, anyone
            // could report (and so train on) inspection results.
            anyhow::ensure!(
                self.auth_tokens.is_some() || self.tls_client_ca.is_some() || self.insecure,
                "{bound} is not a loopback address: require credentials there (--auth-tokens, --tls-client-ca) or pass --insecure to let every caller score and report"
            );
            if tls.is_none() {
                tracing::warn!(%bound, "serving plaintext off loopback (--insecure): tokens and declarations cross the network in clear");
            }
        }
        let security = Security::load(tls, self.auth_tokens.clone())?;
        let policy = security.policy();
        match security.tls() {
            Some(tls) => tracing::info!(
                cert = %tls.files().cert.display(),
                mutual = tls.mutual(),
                "TLS on"
            ),
            None => tracing::info!("TLS off (plaintext)"),
        }
        match &policy.list {
            Some(list) => tracing::info!(
                entries = list.len(),
                "access file loaded: calls need a listed credential"
            ),
            None if policy.mutual_tls => tracing::info!(
                "no access file: every client certificate the CA signed may score and report"
            ),
            None => tracing::warn!(
                "no credentials required: every caller may score and report (--auth-tokens or --tls-client-ca to require them)"
            ),
        }
        drop(policy);
        Ok(security)
    }
}

/// Inspection capacity and exploration (shared by `serve` and `simulate`).
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelArgs {
    /// RED (physical control) capacity per calendar day; overrides
    /// --red-share: RED per day holds at it whatever the volume.
    #[arg(long, env = "PARCEL_RISK_RED_PER_DAY")]
    pub red_per_day: Option<f64>,
    /// RED share of each day's traffic when no capacity per day is given.
    #[arg(long, default_value_t = priority::DEFAULT_RED_SHARE, env = "PARCEL_RISK_RED_SHARE")]
    pub red_share: f64,
    /// YELLOW (documentary check) share of traffic.
    #[arg(long, default_value_t = priority::DEFAULT_YELLOW_SHARE, env = "PARCEL_RISK_YELLOW_SHARE")]
    pub yellow_share: f64,
    /// Share of RED capacity picked at random among the rest.
    #[arg(long, default_value_t = priority::DEFAULT_EXPLORATION_SHARE, env = "PARCEL_RISK_EXPLORATION_SHARE")]
    pub exploration_share: f64,
    /// Uniform random compliance sample of all traffic (inside RED capacity).
    #[arg(long, default_value_t = priority::DEFAULT_COMPLIANCE_SHARE, env = "PARCEL_RISK_COMPLIANCE_SHARE")]
    pub compliance_share: f64,
    /// Time zone of the calendar day RED capacity is counted in (IANA
    /// name, e.g. Europe/Brussels), by lodging time.
    #[arg(long, default_value = priority::DEFAULT_TIME_ZONE, value_parser = priority::parse_time_zone, env = "PARCEL_RISK_TIME_ZONE")]
    pub time_zone: chrono_tz::Tz,
    /// Secret that keys the random picks (keep it out of logs and shells' history).
    #[arg(
        long,
        default_value_t = 0,
        env = "PARCEL_RISK_SELECTION_SECRET",
        hide_env_values = true
    )]
    pub selection_secret: u64,
    /// Safety/IPR category weights as HS-prefix=EUR, added to revenue at
    /// risk in the priority (repeat the flag, or comma-separate). Replaces
    /// the defaults: 9503=5 (toys), 85=3 (electronics), 3304=3 (cosmetics),
    /// 6404=2, 4202=2, 9102=2 (footwear, bags, watches: branded goods).
    #[arg(
        long = "category-weight",
        value_parser = clap::value_parser!(priority::CategoryWeight),
        value_delimiter = ',',
        env = "PARCEL_RISK_CATEGORY_WEIGHTS"
    )]
    pub category_weights: Vec<priority::CategoryWeight>,
    /// No category weights at all: priority is the fiscal expected loss only.
    #[arg(long, conflicts_with = "category_weights")]
    pub no_category_weights: bool,
    /// EUR a detected infringement is worth beyond the duties it recovers
    /// (the penalty, the deterrence), added to every declaration's stake in
    /// proportion to its fraud probability: the larger, the more RED goes
    /// to near-certain frauds over large but doubtful stakes.
    #[arg(long = "detection-value", default_value_t = priority::DEFAULT_DETECTION_VALUE_EUR, env = "PARCEL_RISK_DETECTION_VALUE")]
    pub detection_value_eur: f64,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

impl ChannelArgs {
    /// The checked settings; the library says what makes no sense.
    pub fn config(&self) -> anyhow::Result<priority::PriorityConfig> {
        Ok(priority::PriorityParams {
            red_per_day: self.red_per_day,
            red_share: self.red_share,
            yellow_share: self.yellow_share,
            exploration_share: self.exploration_share,
            compliance_share: self.compliance_share,
            secret_seed: self.selection_secret,
            category_weights: match (self.no_category_weights, self.category_weights.is_empty()) {
                (true, _) => Vec::new(),
                (false, true) => priority::PriorityParams::default().category_weights,
                (false, false) => self.category_weights.clone(),
            },
            detection_value_eur: self.detection_value_eur,
            time_zone: self.time_zone,
        }
        .check()?)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.build().context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let model = super::load_model(args.model.as_deref())?;
    tracing::info!(
        model_version = %model.model_version,
        features = model.schema.len(),
        path = %args.model.as_deref().map_or_else(
            || crate::model::artifact::EMBEDDED_DEFAULT_NAME.into(),
            |p| p.display().to_string()
        ),
        "model loaded"
    );
    // Installed before the service state registers its counters; served
    // once the TLS settings are loaded.
    let metrics_handle = if args.metrics_addr == "off" {
        None
    } else {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2])
            .context("metrics buckets")?
            // Calls last from a millisecond (unary) to hours (a stream).
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("parcel_risk_rpc_seconds".into()),
                &[
                    1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 60.0, 600.0,
                ],
            )
            .context("metrics buckets")?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .ok()
            .context("a metrics recorder is installed already")?;
        crate::grpc::describe_metrics();
        metrics::gauge!("parcel_risk_model_info", "model_version" => model.model_version.clone())
            .set(1.0);
        Some(handle)
    };
    let reference = ReferenceData {
        limits: Limits {
            max_items: args.max_items,
            max_declaration_bytes: args.max_declaration_bytes,
            max_lodged_ahead: Some(chrono::TimeDelta::hours(i64::from(
                args.max_lodged_ahead_hours,
            ))),
            ..Limits::default()
        },
        ..ReferenceData::built_in()
    };
    let store = Store::open(
        &args.data_dir,
        chrono::Duration::days(i64::from(args.retention_days)),
    )
    .context("cannot open the store")?;
    tracing::info!(path = %store.path().display(), retention_days = args.retention_days, "store open");
    let mut state = ServiceState::with_priority(model, reference, args.channels.config()?)
        .with_drift(args.drift_sample_every)
        .with_store(store)
        .with_report_quota(args.security.report_quota_per_hour);
    if args.record.frozen_record {
        state = state.with_frozen_record();
    }
    if let Some(shared) = args.shared_state.connect()? {
        state = state.with_shared_state(shared);
    }
    // What controls found since the model's training survives a restart.
    match state.learn_from_store() {
        Ok(learnt) => tracing::info!(learnt, "live record: results learnt from the store"),
        Err(e) => {
            tracing::warn!(error = %e, "live record: the store's results could not be read; it learns from new ones")
        }
    }
    let state = Arc::new(state);
    match &args.model {
        Some(path) => {
            tokio::spawn(watch_model(
                Arc::clone(&state),
                path.clone(),
                args.model_poll_seconds,
            ));
        }
        None => tracing::info!(
            "serving the built-in default model; start with --model DIR to serve, and reload, another"
        ),
    }
    let listener = tokio::net::TcpListener::bind(args.addr.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let bound = listener.local_addr()?;
    let security = Arc::new(args.security.load(bound)?);
    let metrics_tls = match metrics_handle {
        Some(handle) => serve_metrics(&args, handle, &security).await?,
        None => None,
    };
    tokio::spawn(reload_security_on_hangup(
        Arc::clone(&security),
        metrics_tls,
    ));
    tracing::info!(addr = %bound, tls = security.tls().is_some(), "serving parcelrisk.v1.RiskService");
    let config = ServerConfig {
        max_message_bytes: args.max_message_bytes,
        max_concurrent_streams: args.max_concurrent_streams,
        max_connections: args.max_connections,
        handshake_timeout: Duration::from_secs_f64(args.handshake_timeout_seconds),
        // A quarter of the drain time, at most a second, tells clients to go.
        drain_notice: Duration::from_secs(args.drain_seconds)
            .div_f64(4.0)
            .min(Duration::from_secs(1)),
        memory_budget_bytes: args.memory_budget_mib as usize * 1024 * 1024,
        stalled_stream: Duration::from_secs_f64(args.stalled_stream_seconds),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout_seconds),
    };
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    };
    let server = serve_secured(listener, state, config, security, shutdown);
    let drain = Duration::from_secs(args.drain_seconds);
    tokio::select! {
        result = server => result?,
        () = async move {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(seconds = args.drain_seconds, "drain time over; closing the remaining connections");
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Serves `/metrics` on `--metrics-addr`, with the service's certificate
/// when it has one (returned, to be reloaded with it).
async fn serve_metrics(
    args: &ServeArgs,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    security: &Security,
) -> anyhow::Result<Option<Arc<ServerTls>>> {
    let listener = tokio::net::TcpListener::bind(args.metrics_addr.as_str())
        .await
        .with_context(|| format!("cannot start the metrics endpoint on {}", args.metrics_addr))?;
    let addr = listener.local_addr()?;
    let tls = security
        .tls()
        .map(|t| ServerTls::load(t.files().clone(), crate::security::tls::ALPN_HTTP1))
        .transpose()?
        .map(Arc::new);
    if tls.is_none() && !addr.ip().is_loopback() {
        anyhow::ensure!(
            args.security.insecure,
            "metrics on {addr}, not a loopback address: serve TLS (--tls-cert, --tls-key) or pass --insecure"
        );
    }
    tracing::info!(%addr, tls = tls.is_some(), "metrics on /metrics");
    tokio::spawn(crate::metrics_endpoint::serve(
        listener,
        handle,
        tls.clone(),
    ));
    Ok(tls)
}

/// Reloads the certificates (of the service and of its metrics endpoint)
/// and the access file on SIGHUP; a file that fails to load is logged and
/// what is in use stays.
async fn reload_security_on_hangup(security: Arc<Security>, metrics_tls: Option<Arc<ServerTls>>) {
    #[cfg(unix)]
    {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("no SIGHUP handler; certificates and tokens reload only on restart");
            return;
        };
        while hangup.recv().await.is_some() {
            let security = Arc::clone(&security);
            let metrics_tls = metrics_tls.clone();
            let errors = tokio::task::spawn_blocking(move || {
                let mut errors = security.reload();
                if let Some(tls) = metrics_tls
                    && let Err(e) = tls.reload()
                {
                    errors.push(e.into());
                }
                errors
            })
            .await
            .unwrap_or_default();
            if errors.is_empty() {
                tracing::info!("certificates and access file reloaded");
                metrics::counter!("parcel_risk_security_reloads_total", "result" => "ok")
                    .increment(1);
            }
            for e in errors {
                tracing::error!(error = %e, "reload refused; the previous one stays in use");
                metrics::counter!("parcel_risk_security_reloads_total", "result" => "refused")
                    .increment(1);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (security, metrics_tls);
}

/// Reloads the model on SIGHUP and, every `poll_seconds`, when the artifact
/// file changed (size or modification time). A refused artifact is logged
/// and counted by [`ServiceState::reload`]; it is retried only once it
/// changes again.
async fn watch_model(state: Arc<ServiceState>, path: PathBuf, poll_seconds: u64) {
    let file = if path.is_dir() {
        path.join(crate::model::artifact::MODEL_FILE)
    } else {
        path.clone()
    };
    let stamp = |file: &std::path::Path| {
        std::fs::metadata(file)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let mut seen = stamp(&file);
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler; reload by file watch only");
            None
        }
    };
    let period = Duration::from_secs(poll_seconds.max(1));
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let forced = tokio::select! {
            got = signalled => got,
            () = tokio::time::sleep(period), if poll_seconds > 0 => false,
        };
        let now = stamp(&file);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let state = Arc::clone(&state);
        let path = path.clone();
        // Loading and checking a model is CPU and disk work.
        let _ = tokio::task::spawn_blocking(move || state.reload(&path)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The channel settings `argv` gives, or what clap or the library says
    /// against them.
    fn channel_config(argv: &[&str]) -> Result<priority::PriorityConfig, String> {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            channels: ChannelArgs,
        }
        Args::try_parse_from(std::iter::once("x").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())
            .and_then(|a| a.channels.config().map_err(|e| e.to_string()))
    }

    #[test]
    fn category_weight_flags_replace_the_defaults() {
        let config = |argv: &[&str]| channel_config(argv).unwrap().category_weights.clone();
        assert_eq!(
            config(&[]),
            crate::scoring::PriorityConfig::default().category_weights
        );
        let custom = config(&["--category-weight", "9503=7,3304=1"]);
        assert_eq!(custom.len(), 2);
        assert_eq!(custom[0].eur, 7.0);
        assert!(config(&["--no-category-weights"]).is_empty());
    }

    #[test]
    fn channel_flags_that_make_no_sense_are_refused_by_the_library() {
        let config = channel_config;
        assert_eq!(config(&[]).unwrap(), priority::PriorityConfig::default());
        assert!(
            config(&["--exploration-share", "1.5"])
                .unwrap_err()
                .contains("exploration share")
        );
        assert!(
            config(&["--red-per-day=-3"])
                .unwrap_err()
                .contains("red per day")
        );
        assert!(
            config(&["--time-zone", "Mars/Olympus"])
                .unwrap_err()
                .contains("time zone")
        );
        let brussels = config(&["--time-zone", "Europe/Brussels"]).unwrap();
        assert_eq!(brussels.time_zone, chrono_tz::Europe::Brussels);
    }
}
