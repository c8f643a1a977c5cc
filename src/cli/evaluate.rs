//! `parcel-risk evaluate`: the model against three baselines on labelled data.

use std::process::ExitCode;

use super::ModelAndData;
use crate::evaluate::{EvalReport, LabelSource, MODEL_RANKER, evaluate};

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub input: ModelAndData,
    /// Only declarations lodged before this instant.
    #[arg(long, value_parser = super::parse_instant)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Also write the model's figures as JSON (for scripts: see
    /// scripts/retrain.sh).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub record: super::RecordArgs,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let (model, examples) = args.input.load()?;
    let report = evaluate(
        model,
        examples,
        args.input.from,
        args.until,
        !args.record.frozen_record,
    )?;
    println!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary(&report))?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The model ranker's figures per target: what a promotion decision reads.
fn summary(report: &EvalReport) -> serde_json::Value {
    let targets: serde_json::Map<String, serde_json::Value> = report
        .targets
        .iter()
        .filter_map(|t| {
            let model = t.rankers.iter().find(|r| r.ranker == MODEL_RANKER)?;
            let at = |values: [f64; 4]| -> serde_json::Map<String, serde_json::Value> {
                ["1%", "2%", "5%", "10%"]
                    .iter()
                    .zip(values)
                    .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
                    .collect()
            };
            Some((
                t.target.name().to_owned(),
                serde_json::json!({
                    "positives": t.positives,
                    "auc": model.auc,
                    "precision_at": at(model.precision),
                    "revenue_at": at(model.revenue),
                }),
            ))
        })
        .collect();
    serde_json::json!({
        "model_version": report.model_version,
        "labels": match report.labels {
            LabelSource::GroundTruth => "ground_truth",
            LabelSource::RandomInspections => "random_inspections",
            LabelSource::AllInspections => "all_inspections",
        },
        "evaluated": report.evaluated,
        "targets": targets,
    })
}
