//! `parcel-risk evaluate`: the model against three baselines on labelled data.

use std::process::ExitCode;

use super::ModelAndData;
use crate::evaluate::evaluate;

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub input: ModelAndData,
    /// Only declarations lodged before this instant.
    #[arg(long, value_parser = super::parse_instant)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let (model, examples) = args.input.load()?;
    let report = evaluate(model, examples, args.input.from, args.until)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
