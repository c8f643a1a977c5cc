//! `parcel-risk check`: validate a data file and report bad records by line.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::domain::ReferenceData;
use crate::io::{Format, open_examples};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Data file (`-` for stdin): TrainingExample or Declaration lines, or CSV.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Stop listing bad records after this many (all are still counted).
    #[arg(long, default_value_t = 50)]
    pub max_errors: usize,
}

/// Exit code 0 when every record is valid, 1 when some are not.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let reader = open_examples(&args.data, args.format, ReferenceData::built_in())?;
    let (mut good, mut bad, mut labelled, mut flagged) = (0u64, 0u64, 0u64, 0u64);
    for item in reader {
        match item? {
            Ok((_, example)) => {
                good += 1;
                labelled += u64::from(example.result.is_some());
                flagged += u64::from(!example.declaration.flags.is_empty());
            }
            Err(e) => {
                bad += 1;
                if bad as usize <= args.max_errors {
                    eprintln!("{}: {e}", args.data.display());
                }
            }
        }
    }
    println!(
        "valid {good}, rejected {bad}, with inspection result {labelled}, with risk flags {flagged}"
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
