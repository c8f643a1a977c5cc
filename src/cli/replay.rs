//! `parcel-risk replay`: plays a generated file against a running service,
//! as a clearance system and its officers would: streams the declarations,
//! and for every parcel the service sends RED reports what a control finds
//! (from the file's ground truth). The synthetic half of the learning loop.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use crate::pb;
use crate::pb::score_declarations_response::Outcome;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The service.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Generated TrainingExample lines (JSONL or CSV) with ground truth.
    #[arg(long)]
    pub data: PathBuf,
    /// Only declarations lodged at or after this instant.
    #[arg(long, value_parser = super::parse_instant)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only declarations lodged before this instant.
    #[arg(long, value_parser = super::parse_instant)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Report the results of RED parcels (the simulated officers).
    #[arg(long)]
    pub report_results: bool,
    /// Results per bulk upload.
    #[arg(long, default_value_t = 1000)]
    pub upload_batch: usize,
    #[command(flatten)]
    pub client: super::client::ClientArgs,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(replay(args))
}

/// Declarations sent and not yet answered, at most: the file streams
/// through in bounded memory whatever its size.
const IN_FLIGHT: usize = 4096;

/// What the reader thread hands over.
enum Read {
    Example(Box<pb::TrainingExample>),
    /// A fatal read error (the file cannot be read on).
    Failed(crate::io::IoError),
}

/// Reads the file on a thread of its own, keeping the records in the time
/// window; bad records are listed on stderr (the first 20) and counted.
fn read_file(
    args: &ReplayArgs,
    tx: tokio::sync::mpsc::Sender<Read>,
) -> anyhow::Result<std::thread::JoinHandle<usize>> {
    let reader =
        crate::io::open_examples(&args.data, None, crate::domain::ReferenceData::built_in())
            .with_context(|| format!("cannot read {}", args.data.display()))?;
    let (from, until, path) = (args.from, args.until, args.data.display().to_string());
    Ok(std::thread::spawn(move || {
        let mut rejected = 0usize;
        for item in reader {
            let example = match item {
                Ok(Ok((_, example))) => example,
                Ok(Err(e)) => {
                    rejected += 1;
                    if rejected <= 20 {
                        eprintln!("{path}: {e}");
                    }
                    continue;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Read::Failed(e));
                    break;
                }
            };
            let lodged = example.declaration.lodged_at;
            if from.is_some_and(|f| lodged < f) || until.is_some_and(|u| lodged >= u) {
                continue;
            }
            let wire = pb::TrainingExample::from(&example);
            if tx.blocking_send(Read::Example(Box::new(wire))).is_err() {
                break;
            }
        }
        rejected
    }))
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut client = args
        .client
        .connect(&args.addr)
        .await?
        .max_decoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<Read>(1024);
    let reader = read_file(&args, tx)?;
    // Responses come in request order: the examples in flight, in order.
    let in_flight: Arc<Mutex<VecDeque<pb::TrainingExample>>> = Arc::default();
    let window = Arc::new(Semaphore::new(IN_FLIGHT));
    let read_failure: Arc<Mutex<Option<crate::io::IoError>>> = Arc::default();
    let state = (
        rx,
        Arc::clone(&in_flight),
        Arc::clone(&window),
        Arc::clone(&read_failure),
    );
    let requests = futures_util::stream::unfold(
        state,
        |(mut rx, in_flight, window, read_failure)| async move {
            let example = match rx.recv().await? {
                Read::Example(example) => example,
                Read::Failed(e) => {
                    *lock(&read_failure) = Some(e);
                    return None;
                }
            };
            window.acquire().await.ok()?.forget();
            let request = pb::ScoreDeclarationsRequest {
                declaration: example.declaration.clone(),
            };
            lock(&in_flight).push_back(*example);
            Some((request, (rx, in_flight, window, read_failure)))
        },
    );
    let mut responses = client.score_declarations(requests).await?.into_inner();
    let (mut scored, mut errors, mut red, mut random) = (0u64, 0u64, 0u64, 0u64);
    let mut versions: Vec<(String, u64)> = Vec::new();
    let mut results = Vec::new();
    while let Some(response) = responses.next().await {
        let response = response?;
        let example = lock(&in_flight).pop_front();
        window.add_permits(1);
        match response.outcome {
            Some(Outcome::Assessment(a)) => {
                scored += 1;
                match versions.last_mut() {
                    Some((v, n)) if *v == a.model_version => *n += 1,
                    _ => versions.push((a.model_version.clone(), 1)),
                }
                let priority = a.priority.unwrap_or_default();
                if priority.channel != pb::Channel::Red as i32 {
                    continue;
                }
                red += 1;
                let reason = pb::SelectionReason::try_from(priority.selection_reason)
                    .unwrap_or(pb::SelectionReason::RiskScore);
                random += u64::from(reason == pb::SelectionReason::Random);
                let Some(example) = example.filter(|e| {
                    e.declaration
                        .as_ref()
                        .is_some_and(|d| d.declaration_id == a.declaration_id)
                }) else {
                    anyhow::bail!(
                        "the answer for {} came out of order; stopping",
                        a.declaration_id
                    );
                };
                let lodged = example
                    .declaration
                    .as_ref()
                    .and_then(|d| d.lodged_at)
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                    .unwrap_or_default();
                results.extend(crate::generate::officer_finds(
                    &example,
                    format!("R-{}", a.declaration_id),
                    reason,
                    pb::Channel::Red,
                    lodged + chrono::Duration::hours(6),
                ));
            }
            Some(Outcome::Error(_)) | None => errors += 1,
        }
    }
    let rejected = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread stopped"))?;
    if let Some(e) = lock(&read_failure).take() {
        return Err(anyhow::Error::new(e).context("reading the data"));
    }
    if rejected > 0 {
        eprintln!("{rejected} records rejected and skipped");
    }
    println!("scored {scored}, errors {errors}, RED {red} (random {random})");
    for (version, n) in &versions {
        println!("  model {version}: {n} assessments");
    }
    if args.report_results && !results.is_empty() {
        let (mut new, mut duplicate) = (0u64, 0u64);
        for chunk in results.chunks(args.upload_batch.max(1)) {
            let requests: Vec<pb::ReportInspectionResultsRequest> = chunk
                .iter()
                .map(|r| pb::ReportInspectionResultsRequest {
                    result: Some(r.clone()),
                })
                .collect();
            let answer = client
                .report_inspection_results(tokio_stream::iter(requests))
                .await?
                .into_inner();
            new += u64::from(answer.recorded_count);
            duplicate += u64::from(answer.duplicate_count);
        }
        let non_compliant = results
            .iter()
            .filter(|r| r.outcome == pb::InspectionOutcome::NonCompliant as i32)
            .count();
        println!(
            "reported {} results ({non_compliant} non-compliant): {new} recorded, {duplicate} duplicates",
            results.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A poisoned lock only means another task panicked mid-update; the queue is
/// still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
