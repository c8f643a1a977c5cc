//! `parcel-risk evaluate`: the model against three baselines on labelled data.

use std::process::ExitCode;

use anyhow::Context;

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
    /// Also write every evaluated declaration as CSV: its scores, priority,
    /// labels, evaded revenue and reason codes, to rank and compare with
    /// other tools.
    #[arg(long)]
    pub scores: Option<std::path::PathBuf>,
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
    if let Some(path) = &args.scores {
        write_scores(path, &report).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The columns of `evaluate --scores`.
pub const SCORES_HEADER: [&str; 11] = [
    "declaration_id",
    "lodged_at",
    "undervaluation_score",
    "misdescription_score",
    "overall_score",
    "priority_value",
    "undervaluation",
    "misdescription",
    "any_fraud",
    "evaded_eur",
    "reason_codes",
];

fn write_scores(path: &std::path::Path, report: &EvalReport) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path)?;
    out.write_record(SCORES_HEADER)?;
    for row in &report.rows {
        let [uv, md, any] = row.scores;
        let [uv_label, md_label, any_label] = row.labels.map(|l| if l { "1" } else { "0" });
        out.write_record([
            row.declaration_id.as_str(),
            &row.lodged_at.to_rfc3339(),
            &uv.to_string(),
            &md.to_string(),
            &any.to_string(),
            &row.priority_value.to_string(),
            uv_label,
            md_label,
            any_label,
            &format!("{:.2}", row.evaded_eur),
            &row.reason_codes.join(" "),
        ])?;
    }
    out.flush()?;
    Ok(())
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
