//! `parcel-risk replay`: plays a generated file against a running service,
//! as a clearance system and its officers would: streams the declarations,
//! and for every parcel the service sends RED reports what a control finds
//! (from the file's ground truth). The synthetic half of the learning loop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (examples, rejected) =
        super::load_examples(&args.data, None, super::Truth::Keep).context("reading the data")?;
    if rejected > 0 {
        eprintln!("{rejected} records rejected and skipped");
    }
    let wire: Vec<pb::TrainingExample> = examples
        .iter()
        .filter(|e| args.from.is_none_or(|f| e.declaration.lodged_at >= f))
        .filter(|e| args.until.is_none_or(|u| e.declaration.lodged_at < u))
        .map(pb::TrainingExample::from)
        .collect();
    drop(examples);
    let by_id: HashMap<&str, &pb::TrainingExample> = wire
        .iter()
        .filter_map(|e| {
            e.declaration
                .as_ref()
                .map(|d| (d.declaration_id.as_str(), e))
        })
        .collect();
    let mut client = args
        .client
        .connect(&args.addr)
        .await?
        .max_decoding_message_size(64 << 20);
    let requests: Vec<pb::ScoreDeclarationsRequest> = wire
        .iter()
        .map(|e| pb::ScoreDeclarationsRequest {
            declaration: e.declaration.clone(),
        })
        .collect();
    let mut responses = client
        .score_declarations(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let (mut scored, mut errors, mut red, mut random) = (0u64, 0u64, 0u64, 0u64);
    let mut versions: Vec<(String, u64)> = Vec::new();
    let mut results = Vec::new();
    while let Some(response) = responses.next().await {
        match response?.outcome {
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
                if let Some(example) = by_id.get(a.declaration_id.as_str()) {
                    let lodged = example
                        .declaration
                        .as_ref()
                        .and_then(|d| d.lodged_at)
                        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                        .unwrap_or_default();
                    results.extend(crate::generate::officer_finds(
                        example,
                        format!("R-{}", a.declaration_id),
                        reason,
                        pb::Channel::Red,
                        lodged + chrono::Duration::hours(6),
                    ));
                }
            }
            Some(Outcome::Error(_)) | None => errors += 1,
        }
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
