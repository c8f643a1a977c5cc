//! The `parcel-risk` command line: argument types (clap) and dispatch. Each
//! subcommand's body lives in its own module as `run(args) -> anyhow::Result`.

mod audit;
mod check;
mod client;
mod drift;
mod evaluate;
mod export;
mod generate;
mod replay;
mod rescore;
mod serve;
mod simulate;
mod token;
pub mod train;

use std::path::Path;

use clap::{Parser, Subcommand};

/// Risk scoring of EU H7 e-commerce customs declarations.
#[derive(Debug, Parser)]
#[command(name = "parcel-risk", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PARCEL_RISK_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Export traces (one span per RPC and per scored batch, continuing the
    /// caller's W3C `traceparent`) to this OpenTelemetry collector, OTLP over
    /// gRPC, e.g. `http://localhost:4317`. Off when not given.
    #[arg(long, global = true, env = "PARCEL_RISK_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (health, reflection, metrics) on a model.
    Serve(Box<serve::ServeArgs>),
    /// Generate synthetic Liège traffic with ground truth (TrainingExample lines).
    Generate(generate::GenerateArgs),
    /// Read a data file, validate every record and report the bad ones by line.
    Check(check::CheckArgs),
    /// Train a model from labelled declarations and write its artifact.
    Train(train::TrainArgs),
    /// Measure a model against baselines on labelled declarations.
    Evaluate(evaluate::EvaluateArgs),
    /// Simulate inspections at a capacity against random and highest-value selection.
    Simulate(simulate::SimulateArgs),
    /// Compare a file of traffic with the model's training traffic (PSI per feature and score).
    Drift(drift::DriftArgs),
    /// Play a generated file against a running service; report what controls of RED parcels find.
    Replay(replay::ReplayArgs),
    /// Export inspection results joined to their declarations, for training.
    Export(export::ExportArgs),
    /// Rescore a file of declarations (JSONL, CSV, Parquet; gzip/zstd) in order, on every core.
    Rescore(rescore::RescoreArgs),
    /// Show who reported which inspection result, when and from where.
    Audit(audit::AuditArgs),
    /// Make a bearer token for a client and print its access-file line.
    Token(token::TokenArgs),
}

/// Loads the model at `path`, or the default model built into the binary
/// when none is named (so an installed binary works from any directory).
pub fn load_model(path: Option<&std::path::Path>) -> anyhow::Result<crate::model::ModelArtifact> {
    use anyhow::Context;
    match path {
        Some(path) => crate::model::ModelArtifact::load(path)
            .with_context(|| format!("cannot load the model {}", path.display())),
        None => crate::model::ModelArtifact::embedded_default()
            .context("cannot load the built-in default model"),
    }
}

/// Parses `2026-09-05` (midnight UTC) or an RFC 3339 instant.
pub fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{s:?} is neither YYYY-MM-DD nor RFC 3339: {e}"))
}

/// A model and a labelled data file, for `evaluate` and `simulate`.
#[derive(Debug, clap::Args)]
pub struct ModelAndData {
    /// Model directory (default: the model built into the binary).
    #[arg(long, env = "PARCEL_RISK_MODEL")]
    pub model: Option<std::path::PathBuf>,
    /// TrainingExample lines (JSONL) or CSV.
    #[arg(long)]
    pub data: std::path::PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<crate::io::Format>,
    /// Only declarations lodged at or after this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_instant)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
}

impl ModelAndData {
    /// Loads the model and the records (ground truth kept); rejected records
    /// are listed on stderr and left out.
    pub fn load(
        &self,
    ) -> anyhow::Result<(
        std::sync::Arc<crate::model::ModelArtifact>,
        Vec<crate::domain::TrainingExample>,
    )> {
        let model = std::sync::Arc::new(load_model(self.model.as_deref())?);
        let (examples, rejected) = load_examples(&self.data, self.format, Truth::Keep)?;
        if rejected > 0 {
            eprintln!("{rejected} records rejected (the first ones listed above); using the rest");
        }
        Ok((model, examples))
    }
}

/// Whether to keep synthetic ground truth when loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    Keep,
    /// Training never reads it; dropping it on load saves memory.
    Drop,
}

/// Reads a whole data file; bad records are reported on stderr by line and skipped.
pub fn load_examples(
    path: &Path,
    format: Option<crate::io::Format>,
    truth: Truth,
) -> anyhow::Result<(Vec<crate::domain::TrainingExample>, usize)> {
    let reader = crate::io::open_examples(path, format, crate::domain::ReferenceData::built_in())?;
    let mut examples = Vec::new();
    let mut rejected = 0usize;
    for item in reader {
        match item? {
            Ok((_, mut example)) => {
                if truth == Truth::Drop {
                    example.truth = None;
                }
                examples.push(example);
            }
            Err(e) => {
                rejected += 1;
                if rejected <= 20 {
                    eprintln!("{}: {e}", path.display());
                }
            }
        }
    }
    Ok((examples, rejected))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Generate(args) => generate::run(args),
        Command::Check(args) => check::run(args),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Drift(args) => drift::run(args),
        Command::Rescore(args) => rescore::run(args),
        Command::Export(args) => export::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Token(args) => token::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_time_flag_takes_a_day_or_an_instant() {
        let midnight = chrono::DateTime::parse_from_rfc3339("2026-09-11T00:00:00Z").unwrap();
        assert_eq!(parse_instant("2026-09-11"), Ok(midnight.to_utc()));
        let instant = chrono::DateTime::parse_from_rfc3339("2026-09-11T06:30:00+02:00").unwrap();
        assert_eq!(
            parse_instant("2026-09-11T06:30:00+02:00"),
            Ok(instant.to_utc())
        );
        let error = parse_instant("11/09/2026").unwrap_err();
        assert!(
            error.contains("YYYY-MM-DD") && error.contains("RFC 3339"),
            "{error}"
        );
        // `rescore --score-from` took RFC 3339 only, unlike `train --until`
        // and `evaluate --from`.
        for day in ["2026-09-11", "2026-09-11T00:00:00Z"] {
            let cli = Cli::try_parse_from([
                "parcel-risk",
                "rescore",
                "--input",
                "in.jsonl",
                "--output",
                "out.csv",
                "--score-from",
                day,
            ])
            .unwrap();
            let Command::Rescore(args) = cli.command else {
                panic!("not rescore");
            };
            assert_eq!(args.score_from, Some(midnight.to_utc()), "{day}");
        }
    }
}

/// Whether the model's past record keeps learning after training (`serve`,
/// `rescore`, `evaluate`, `simulate`, `drift`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RecordArgs {
    /// Score on the past record as training left it. By default the record
    /// keeps learning: every declaration scored after the model's training
    /// data is counted (its importer, seller, codes and pairs are seen,
    /// recency runs to today) and `serve` counts every newly reported
    /// inspection result of a declaration it routed, in at most 16,384
    /// keys per field and 32,768 parties per party table (about 26 MiB
    /// with the default model). Replicas sharing state (`--shared-state`) always
    /// score on the frozen record, so that they agree.
    #[arg(long, env = "PARCEL_RISK_FROZEN_RECORD")]
    pub frozen_record: bool,
}

/// Where the cross-declaration windows are shared (`serve`, `rescore`).
#[derive(Debug, Clone, clap::Args)]
pub struct SharedStateArgs {
    /// Share the cross-declaration windows (split consignments, address
    /// fan-in, shared IOSS numbers) with the replicas using this Redis:
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://…` for TLS. `serve` also shares the day's
    /// traffic count (each replica takes its share of --red-per-day);
    /// `rescore` reads the live windows and adds its declarations to them
    /// (one already held is not added again, and is read against the
    /// windows as they are now) without counting in the fleet's traffic. Unreachable or slow, each batch is scored on
    /// the process's own windows and says so (DQ_WINDOWS_LOCAL_ONLY).
    #[arg(long = "shared-state", env = "PARCEL_RISK_SHARED_STATE")]
    pub url: Option<String>,
    /// --shared-state names nodes of a Redis Cluster, comma-separated
    /// (`redis://HOST:PORT,redis://HOST:PORT`); the others are learnt from
    /// them. The keys of a deployment share one hash slot (its prefix is a
    /// hash tag), so each batch is still one call, on one node.
    #[arg(
        long = "shared-state-cluster",
        env = "PARCEL_RISK_SHARED_STATE_CLUSTER",
        requires = "url"
    )]
    pub cluster: bool,
    /// Prefix of every shared-state key (two deployments can share one Redis).
    #[arg(long = "shared-state-prefix", default_value = crate::scoring::shared::DEFAULT_PREFIX, env = "PARCEL_RISK_SHARED_STATE_PREFIX")]
    pub prefix: String,
    /// Deadline of one batch's round trip to the shared state, in
    /// milliseconds; past it the batch is scored on local windows.
    #[arg(long = "shared-state-timeout-ms", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..), env = "PARCEL_RISK_SHARED_STATE_TIMEOUT_MS")]
    pub timeout_ms: u64,
    /// CA certificate (PEM) a `rediss://` server's certificate must chain
    /// to (a private CA); without it, the system's roots.
    #[arg(long = "shared-state-ca", env = "PARCEL_RISK_SHARED_STATE_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) presented to a `rediss://` Redis that
    /// asks its clients for one (`tls-auth-clients yes`); with
    /// --shared-state-key.
    #[arg(
        long = "shared-state-cert",
        env = "PARCEL_RISK_SHARED_STATE_CERT",
        requires = "key"
    )]
    pub cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --shared-state-cert.
    #[arg(
        long = "shared-state-key",
        env = "PARCEL_RISK_SHARED_STATE_KEY",
        requires = "cert"
    )]
    pub key: Option<std::path::PathBuf>,
}

impl SharedStateArgs {
    /// The shared windows, when a URL is given.
    pub fn connect(&self) -> anyhow::Result<Option<crate::scoring::shared::SharedWindows>> {
        use anyhow::Context as _;
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let read = |path: &std::path::PathBuf, what: &str| {
            std::fs::read(path).with_context(|| {
                format!("cannot read the shared state's {what} {}", path.display())
            })
        };
        let tls = crate::scoring::shared::RedisTls {
            ca_pem: self.ca.as_ref().map(|p| read(p, "CA")).transpose()?,
            client: match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => Some(crate::scoring::shared::ClientCertificate {
                    cert_pem: read(cert, "client certificate")?,
                    key_pem: read(key, "client key")?,
                }),
                // clap requires both or neither.
                _ => None,
            },
        };
        let timeout = std::time::Duration::from_millis(self.timeout_ms);
        let shared = if self.cluster {
            crate::scoring::shared::SharedWindows::cluster(url, &self.prefix, timeout, tls)
        } else {
            crate::scoring::shared::SharedWindows::with_tls(url, &self.prefix, timeout, tls)
        }
        .context("cannot use the shared state")?;
        tracing::info!(url = shared.url(), prefix = %self.prefix, cluster = self.cluster, "cross-declaration windows shared");
        Ok(Some(shared))
    }
}
