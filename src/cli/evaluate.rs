//! `parcel-risk evaluate`: the model against three baselines on labelled data.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::load_examples;
use crate::evaluate::evaluate;
use crate::io::Format;
use crate::model::ModelArtifact;

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Model directory.
    #[arg(long, default_value = super::DEFAULT_MODEL, env = "PARCEL_RISK_MODEL")]
    pub model: PathBuf,
    /// Evaluation data: TrainingExample lines (JSONL) or CSV.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only declarations lodged at or after this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = super::parse_instant)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only declarations lodged before this instant.
    #[arg(long, value_parser = super::parse_instant)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let model = Arc::new(ModelArtifact::load(&args.model)?);
    let (examples, rejected) = load_examples(&args.data, args.format, super::Truth::Keep)?;
    if rejected > 0 {
        eprintln!("{rejected} records rejected (listed above); evaluating the rest");
    }
    let report = evaluate(model, examples, args.from, args.until)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
