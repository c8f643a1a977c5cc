//! `parcel-risk simulate`: inspections at a given capacity, against random
//! selection and the highest-value rule, on data with ground truth.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::load_examples;
use super::serve::ChannelArgs;
use crate::evaluate::simulate;
use crate::io::Format;
use crate::model::ModelArtifact;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[arg(long, default_value = super::DEFAULT_MODEL, env = "PARCEL_RISK_MODEL")]
    pub model: PathBuf,
    /// Data with ground truth (generated traffic).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Measure only declarations lodged from this instant (earlier ones still warm the cut-offs).
    #[arg(long, value_parser = super::parse_instant)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub channels: ChannelArgs,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let model = Arc::new(ModelArtifact::load(&args.model)?);
    let (examples, _) = load_examples(&args.data, args.format, super::Truth::Keep)?;
    let report = simulate(model, examples, args.channels.config()?, args.from)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
