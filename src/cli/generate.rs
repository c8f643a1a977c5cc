//! `parcel-risk generate`: synthetic traffic, written in parallel chunks in order.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;

use crate::generate::{Generator, GeneratorConfig, Stats};
use crate::io::{Format, IoError, columnar::ColumnarWriter, csv::CsvWriter, jsonl::JsonlWriter};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of parcels (declarations).
    #[arg(long, default_value_t = 10_000)]
    pub parcels: u64,
    /// Seed: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file (`-` for stdout); format from the extension unless --format.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Days of arrivals.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// First day of arrivals (YYYY-MM-DD, UTC).
    #[arg(long, default_value = "2026-09-01")]
    pub start: chrono::NaiveDate,
    #[arg(long, default_value_t = 0.10)]
    pub undervaluation_rate: f64,
    #[arg(long, default_value_t = 0.04)]
    pub misdescription_rate: f64,
    #[arg(long, default_value_t = 0.03)]
    pub misclassification_rate: f64,
    #[arg(long, default_value_t = 0.015)]
    pub split_rate: f64,
    #[arg(long, default_value_t = 0.01)]
    pub ioss_misuse_rate: f64,
    #[arg(long, default_value_t = 0.01)]
    pub address_reuse_rate: f64,
    /// Share of parcels the legacy rules send to control (approximate).
    #[arg(long, default_value_t = 0.02)]
    pub rule_inspection_rate: f64,
    /// Share of parcels controlled at random.
    #[arg(long, default_value_t = 0.005)]
    pub random_inspection_rate: f64,
    /// Chance that a control finds a fraud that is there.
    #[arg(long, default_value_t = 0.9)]
    pub detection_rate: f64,
    /// `minimal` mimics another national system's extract: no goods
    /// descriptions, no ENS block, no country of origin; HS6, parties, mass,
    /// value and attributes only.
    #[arg(long, value_enum, default_value_t = Schema::Full)]
    pub schema: Schema,
    /// Write bare declarations, as a clearance system sends them: no
    /// inspection results, no ground truth (input for `rescore` and benchmarks).
    #[arg(long)]
    pub declarations_only: bool,
    /// Do not print calibration statistics.
    #[arg(long)]
    pub quiet: bool,
}

/// Which fields the generated declarations carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Schema {
    Full,
    Minimal,
}

/// Drops what a minimal national extract does not carry.
fn to_minimal(example: &mut crate::pb::TrainingExample) {
    if let Some(d) = example.declaration.as_mut() {
        d.ens = None;
        for item in &mut d.items {
            item.description.clear();
            item.country_of_origin.clear();
        }
    }
    if let Some(r) = example.result.as_mut() {
        for f in &mut r.findings {
            f.corrected_description.clear();
        }
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let format = args
        .format
        .or_else(|| Format::from_path(&args.out))
        .with_context(|| {
            format!(
                "cannot tell the format of {}; use --format",
                args.out.display()
            )
        })?;
    let config = GeneratorConfig {
        parcels: args.parcels,
        seed: args.seed,
        days: args.days,
        start: args
            .start
            .and_hms_opt(0, 0, 0)
            .context("start date")?
            .and_utc(),
        undervaluation_rate: args.undervaluation_rate,
        misdescription_rate: args.misdescription_rate,
        misclassification_rate: args.misclassification_rate,
        split_rate: args.split_rate,
        ioss_misuse_rate: args.ioss_misuse_rate,
        address_reuse_rate: args.address_reuse_rate,
        rule_inspection_rate: args.rule_inspection_rate,
        random_inspection_rate: args.random_inspection_rate,
        detection_rate: args.detection_rate,
    };
    let generator = Generator::new(config)?;
    let out: Box<dyn Write + Send> = if args.out.as_os_str() == "-" {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        ))
    } else {
        let file = std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
    };
    let mut sink = match format.container() {
        Some(container) => Sink::Columnar(Box::new(ColumnarWriter::new(out, container)?)),
        None if format == Format::Csv => {
            let mut out = out;
            out.write_all(&CsvWriter::new(Vec::new())?.into_inner()?)?;
            Sink::Bytes(out)
        }
        None => Sink::Bytes(out),
    };
    let stats = write_chunks(
        &generator,
        format,
        (args.schema, args.declarations_only),
        &mut sink,
    )?;
    match sink {
        Sink::Bytes(mut out) => out.flush()?,
        Sink::Columnar(writer) => writer.finish()?.flush()?,
    }
    let elapsed = started.elapsed();
    if !args.quiet {
        eprint!("{stats}");
        eprintln!(
            "  generated in {:.2} s ({:.0} parcels/s)",
            elapsed.as_secs_f64(),
            stats.parcels as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where generated examples go: bytes serialised in parallel, or a Parquet
/// writer that takes the examples in order.
enum Sink {
    Bytes(Box<dyn Write + Send>),
    Columnar(Box<ColumnarWriter<Box<dyn Write + Send>>>),
}

/// One chunk, serialised when the format allows it.
enum Part {
    Bytes(Vec<u8>),
    Examples(Vec<crate::pb::TrainingExample>),
}

/// Generates and serialises chunks in parallel, writing them in order.
fn write_chunks(
    generator: &Generator,
    format: Format,
    (schema, declarations_only): (Schema, bool),
    out: &mut Sink,
) -> anyhow::Result<Stats> {
    let chunks = generator.chunk_count();
    let batch = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut total = Stats::default();
    let mut start = 0;
    while start < chunks {
        let end = (start + batch).min(chunks);
        let parts: Vec<Result<(Part, Stats), IoError>> = (start..end)
            .into_par_iter()
            .map(|index| {
                let (mut examples, stats) = generator.chunk(index);
                if schema == Schema::Minimal {
                    examples.iter_mut().for_each(to_minimal);
                }
                if declarations_only {
                    for e in &mut examples {
                        e.result = None;
                        e.truth = None;
                    }
                }
                let part = match format {
                    Format::Jsonl => {
                        let mut w = JsonlWriter::new(Vec::with_capacity(examples.len() * 1500));
                        for e in &examples {
                            match (&e.declaration, declarations_only) {
                                (Some(d), true) => w.write_declaration(d)?,
                                (_, _) => w.write_pb(e)?,
                            }
                        }
                        Part::Bytes(w.into_inner())
                    }
                    Format::Csv => {
                        let mut w =
                            CsvWriter::without_header(Vec::with_capacity(examples.len() * 1500));
                        for e in &examples {
                            w.write_pb(e)?;
                        }
                        Part::Bytes(w.into_inner()?)
                    }
                    Format::Parquet | Format::Arrow => Part::Examples(examples),
                };
                Ok((part, stats))
            })
            .collect();
        for part in parts {
            let (part, stats) = part?;
            match (part, &mut *out) {
                (Part::Bytes(bytes), Sink::Bytes(out)) => out.write_all(&bytes)?,
                (Part::Examples(examples), Sink::Columnar(writer)) => {
                    for e in &examples {
                        writer.write_pb(e)?;
                    }
                }
                (Part::Bytes(_), Sink::Columnar(_)) | (Part::Examples(_), Sink::Bytes(_)) => {
                    anyhow::bail!("a chunk was serialised for another format than the output's")
                }
            }
            total.merge(&stats);
        }
        start = end;
    }
    Ok(total)
}
