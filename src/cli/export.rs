//! `parcel-risk export`: training data out of the store: each inspection
//! result joined to the declaration as it was scored, as TrainingExample
//! records (JSON Lines, CSV, Parquet or Arrow IPC). The result keeps its selection
//! reason, so training and evaluation can tell random picks from risk picks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::io::Format;
use crate::io::columnar::ColumnarWriter;
use crate::io::csv::CsvWriter;
use crate::io::jsonl::JsonlWriter;
use crate::store;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The server's data directory.
    #[arg(long, default_value = "parcel-risk-data", env = "PARCEL_RISK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Results received at or after this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = super::parse_instant)]
    pub since: chrono::DateTime<chrono::Utc>,
    /// Output file: .jsonl, .csv, .parquet or .arrow (`-`: JSON Lines on stdout).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only results reported by these callers (names from the access file
    /// or client certificates; repeat or comma-separate). Default: all.
    #[arg(long = "reporter", value_delimiter = ',')]
    pub reporters: Vec<String>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let format = args
        .format
        .or_else(|| Format::from_path(&args.out))
        .or_else(|| (args.out.as_os_str() == "-").then_some(Format::Jsonl))
        .with_context(|| format!("cannot tell the format of {}", args.out.display()))?;
    let out: Box<dyn Write + Send> = if args.out.as_os_str() == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&args.out)
                .with_context(|| format!("cannot create {}", args.out.display()))?,
        ))
    };
    let counts = match format.container() {
        Some(container) => {
            let mut w = ColumnarWriter::new(out, container)?;
            let counts = store::export(&args.data_dir, args.since, &args.reporters, |e| {
                w.write_pb(&e)
            })?;
            w.finish()?.flush()?;
            counts
        }
        None if format == Format::Csv => {
            let mut w = CsvWriter::new(out)?;
            let counts = store::export(&args.data_dir, args.since, &args.reporters, |e| {
                w.write_pb(&e)
            })?;
            w.flush()?;
            counts
        }
        None => {
            let mut w = JsonlWriter::new(out);
            let counts = store::export(&args.data_dir, args.since, &args.reporters, |e| {
                w.write_pb(&e)
            })?;
            w.flush()?;
            counts
        }
    };
    eprintln!(
        "exported {} examples; {} results had no routed declaration to join and were left out",
        counts.exported, counts.without_declaration
    );
    if !args.reporters.is_empty() {
        eprintln!(
            "{} results from other reporters than {} were left out",
            counts.other_reporters,
            args.reporters.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
