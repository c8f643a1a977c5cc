//! `parcel-risk drift`: does a file of traffic still look like the model's
//! training traffic? The PSI of every feature and score, largest first.

use std::process::ExitCode;

use super::ModelAndData;
use crate::model::drift::{PSI_MAJOR, PSI_MODERATE, is_history_measure, verdict};
use crate::scoring::{PriorityConfig, Router};

#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// The traffic to compare (labels are not needed). With `--from`, the
    /// declarations before it are left out (the cross-declaration windows
    /// then start empty).
    #[command(flatten)]
    pub input: ModelAndData,
    /// Columns to list, largest PSI first.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Also write every column's PSI as JSON (for scripts and dashboards).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub record: super::RecordArgs,
}

pub fn run(args: DriftArgs) -> anyhow::Result<ExitCode> {
    let (model, mut examples) = args.input.load()?;
    let Some(baseline) = &model.drift_baseline else {
        anyhow::bail!(
            "model {} has no drift baseline (saved before drift was measured): retrain it",
            model.model_version
        );
    };
    let baseline_rows = baseline.rows;
    crate::model::train::sort_by_time(&mut examples);
    if let Some(from) = args.input.from {
        examples.retain(|e| e.declaration.lodged_at >= from);
    }
    anyhow::ensure!(!examples.is_empty(), "no declarations to compare");
    let mut router = Router::new(model.clone(), PriorityConfig::default());
    if args.record.frozen_record {
        router = router.without_live_record();
    }
    let router = router.monitor_drift(1, u64::MAX);
    let scorer = router.scorer();
    for e in &examples {
        router.assess(&scorer, &e.declaration);
    }
    let monitor = scorer
        .drift()
        .ok_or_else(|| anyhow::anyhow!("the model's drift baseline could not be read"))?;
    let report = monitor.report();
    println!(
        "model {} on {} declarations against {baseline_rows} rows of its training traffic",
        model.model_version,
        monitor.sampled()
    );
    if let Some(path) = &args.json {
        let columns: Vec<serde_json::Value> = report
            .iter()
            .map(|c| {
                serde_json::json!({
                    "column": c.column,
                    "psi": c.psi,
                    "verdict": verdict(c.psi),
                    "recency": is_history_measure(&c.column),
                })
            })
            .collect();
        let json = serde_json::json!({
            "model_version": model.model_version,
            "declarations": monitor.sampled(),
            "baseline_rows": baseline_rows,
            "columns": columns,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    let (history, columns): (Vec<_>, Vec<_>) = report
        .into_iter()
        .partition(|c| is_history_measure(&c.column));
    println!("| column | PSI | verdict |\n|---|---|---|");
    for c in columns.iter().take(args.top) {
        println!("| {} | {:.3} | {} |", c.column, c.psi, verdict(c.psi));
    }
    let major = columns.iter().filter(|c| c.psi >= PSI_MAJOR).count();
    let moderate = columns
        .iter()
        .filter(|c| (PSI_MODERATE..PSI_MAJOR).contains(&c.psi))
        .count();
    println!(
        "\n{major} of {} columns shifted (PSI ≥ {PSI_MAJOR}), {moderate} moderately (≥ {PSI_MODERATE})",
        columns.len()
    );
    if !history.is_empty() {
        let mut psi: Vec<f64> = history.iter().map(|c| c.psi).collect();
        psi.sort_by(f64::total_cmp);
        println!(
            "{} history columns (an entity's recency and volume: days since last seen, times seen), median PSI {:.3}, largest {:.3}: they measure the history more than the traffic (volumes of frequent values grow past the training's as the record keeps learning; with --frozen-record, a large recency value says the history is stale: retrain)",
            history.len(),
            psi[psi.len() / 2],
            psi[psi.len() - 1]
        );
    }
    Ok(ExitCode::SUCCESS)
}
