//! `parcel-risk simulate`: inspections at a given capacity, against random
//! selection and the highest-value rule, on data with ground truth.

use std::process::ExitCode;

use super::ModelAndData;
use super::serve::ChannelArgs;
use crate::evaluate::simulate;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// `--data` must carry ground truth (generated traffic); declarations
    /// before `--from` still warm the cut-offs.
    #[command(flatten)]
    pub input: ModelAndData,
    #[command(flatten)]
    pub channels: ChannelArgs,
    #[command(flatten)]
    pub record: super::RecordArgs,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let (model, examples) = args.input.load()?;
    let report = simulate(
        model,
        examples,
        args.channels.config()?,
        args.input.from,
        !args.record.frozen_record,
    )?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
