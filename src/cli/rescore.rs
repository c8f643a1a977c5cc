//! `parcel-risk rescore`: score a file of declarations with a model, in
//! input order, on every core.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::serve::ChannelArgs;
use crate::batch::{self, Encoder, Options, OutputWriter, Scoring, Summary, Work};
use crate::domain::ReferenceData;
use crate::io::{Format, Projection, RecordError, open_framer};
use crate::scoring::Router;

#[derive(Debug, clap::Args)]
pub struct RescoreArgs {
    /// Declarations or TrainingExamples: .jsonl, .csv, .parquet or .arrow,
    /// the text ones plain or gzip/zstd compressed (recognised by content);
    /// `-` for stdin. Only the declarations are read: a TrainingExample's
    /// inspection result and ground truth are not checked.
    #[arg(long)]
    pub input: PathBuf,
    /// Where the assessments go: .jsonl, .csv or .parquet; `-` for stdout.
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Model directory (default: the model built into the binary).
    #[arg(long, env = "PARCEL_RISK_MODEL")]
    pub model: Option<PathBuf>,
    /// Input format when the file name does not say (stdin: JSON Lines).
    #[arg(long, value_enum)]
    pub input_format: Option<Format>,
    /// Output format when the file name does not say (stdout: JSON Lines).
    #[arg(long, value_enum)]
    pub output_format: Option<Format>,
    /// Write every rejected record here as a JSON line {line, error}.
    /// Without it the first --max-errors are listed on stderr.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Bad records listed on stderr when there is no --rejects file.
    #[arg(long, default_value_t = 50)]
    pub max_errors: u64,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Threads that read a Parquet file's row groups at once, beside the
    /// workers (default: one per eight workers). One reader decodes about a
    /// million declarations a second, which a full rescore on fewer than a
    /// dozen cores does not outrun.
    #[arg(long)]
    pub parquet_readers: Option<usize>,
    /// Records per pipeline step (memory grows with it).
    #[arg(long, default_value_t = 8192)]
    pub batch_records: usize,
    /// Only decode and validate, score nothing: the baseline for benchmarks.
    #[arg(long)]
    pub decode_only: bool,
    /// A day (YYYY-MM-DD, midnight UTC) or an RFC 3339 instant, as `train
    /// --until` and `evaluate --from` take: declarations lodged before it only warm up the
    /// cross-declaration windows (observed in file order; not scored, routed
    /// or written). Rescoring a slice of a long history with the 30 days
    /// before it as warm-up (the longest window) gives the scores of one pass
    /// over everything; channels start as a fresh service's would. See
    /// docs/scale.md.
    #[arg(long, value_parser = super::parse_instant)]
    pub score_from: Option<chrono::DateTime<chrono::Utc>>,
    /// No progress bar and no summary.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub channels: ChannelArgs,
    #[command(flatten)]
    pub shared_state: super::SharedStateArgs,
    #[command(flatten)]
    pub record: super::RecordArgs,
}

/// Exit code 0 when every record was scored, 1 when some were rejected
/// (the rest is scored all the same); fatal errors exit 2.
pub fn run(args: RescoreArgs) -> anyhow::Result<ExitCode> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n.max(1));
    }
    let pool = pool.build().context("cannot start the worker threads")?;
    let read_bytes = Arc::new(AtomicU64::new(0));
    let input_format = args
        .input_format
        .or_else(|| (args.input.as_os_str() == "-").then_some(Format::Jsonl));
    // Rescoring reads the declarations: results and truth in the file are
    // neither read nor checked.
    let parquet_readers = args
        .parquet_readers
        .unwrap_or_else(|| pool.current_num_threads().div_ceil(8))
        .max(1);
    let framer = open_framer(
        &args.input,
        input_format,
        Projection::Declarations,
        Some(Arc::clone(&read_bytes)),
        parquet_readers,
    )
    .with_context(|| format!("cannot read {}", args.input.display()))?;
    let reference = ReferenceData::built_in();

    let bar = progress_bar(&args);
    let mut on_progress = |s: &Summary| {
        if let Some(bar) = &bar {
            // What is finished, not what is read: the reader runs ahead.
            bar.set_position(s.input_position);
            bar.set_message(format!(
                "{} records, {} rejected, {:.0}/s",
                s.records,
                s.rejected,
                s.per_second()
            ));
        }
    };
    let mut rejects = Rejects::open(&args)?;
    let mut on_reject = |e: &RecordError| rejects.report(e);

    let summary = if args.decode_only {
        pool.install(|| {
            batch::run(
                framer,
                &reference,
                Work::DecodeOnly,
                options(&args),
                Some(&read_bytes),
                &mut on_reject,
                &mut on_progress,
            )
        })?
    } else {
        let model = super::load_model(args.model.as_deref())?;
        let config = args.channels.config()?;
        let mut router = Router::new(Arc::new(model), config);
        if args.record.frozen_record {
            router = router.without_live_record();
        }
        if let Some(shared) = args.shared_state.connect()? {
            router = router.with_shared_windows_only(shared);
        }
        let output_format = args
            .output_format
            .or_else(|| Format::from_path(&args.output))
            .or_else(|| (args.output.as_os_str() == "-").then_some(Format::Jsonl))
            .with_context(|| {
                format!(
                    "cannot tell the output format of {}; name it .jsonl, .csv or .parquet, or pass --output-format",
                    args.output.display()
                )
            })?;
        let output = OutputWriter::new(output_format, create(&args.output)?)?;
        let work = Work::Score(Box::new(Scoring {
            router: &router,
            encoder: Encoder::new(output_format, chrono::Utc::now()),
            output,
        }));
        pool.install(|| {
            batch::run(
                framer,
                &reference,
                work,
                options(&args),
                Some(&read_bytes),
                &mut on_reject,
                &mut on_progress,
            )
        })?
    };
    rejects.finish()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !args.quiet {
        eprintln!("{}", describe(&summary, args.decode_only));
    }
    Ok(if summary.rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn options(args: &RescoreArgs) -> Options {
    Options {
        batch_records: args.batch_records,
        score_from: args.score_from,
        ..Options::default()
    }
}

/// A progress bar on a terminal only: nothing of it goes into a pipe or a log.
fn progress_bar(args: &RescoreArgs) -> Option<ProgressBar> {
    if args.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let total = std::fs::metadata(&args.input).map(|m| m.len()).ok();
    let bar = match total {
        Some(bytes) if bytes > 0 => ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template(
                "{bar:30} {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        _ => ProgressBar::new_spinner(),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

fn create(path: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        )));
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(std::io::BufWriter::with_capacity(1 << 20, file)))
}

/// Where rejected records are reported.
struct Rejects {
    file: Option<Box<dyn Write + Send>>,
    input: String,
    listed: u64,
    max_listed: u64,
}

impl Rejects {
    fn open(args: &RescoreArgs) -> anyhow::Result<Self> {
        Ok(Self {
            file: args.rejects.as_deref().map(create).transpose()?,
            input: args.input.display().to_string(),
            listed: 0,
            max_listed: args.max_errors,
        })
    }

    fn report(&mut self, e: &RecordError) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => {
                let line = serde_json::json!({
                    "line": e.line(),
                    "declaration_id": e.declaration_id(),
                    "error": error_text(e),
                });
                serde_json::to_writer(&mut *file, &line)?;
                file.write_all(b"\n")
            }
            None => {
                self.listed += 1;
                if self.listed <= self.max_listed {
                    eprintln!("{}: {e}", self.input);
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some(mut file) = self.file {
            file.flush().context("cannot write the rejects file")?;
        }
        Ok(())
    }
}

/// The error without its `line N:` prefix (the line is its own field).
fn error_text(e: &RecordError) -> String {
    match e {
        RecordError::Syntax { message, .. } => message.clone(),
        RecordError::Invalid { source, .. } => source.to_string(),
    }
}

fn describe(s: &Summary, decode_only: bool) -> String {
    let [green, yellow, red] = s.channels;
    let memory = crate::telemetry::peak_rss_bytes().map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:.0} MiB", b as f64 / 1048576.0),
    );
    let work = if decode_only { "decoded" } else { "scored" };
    let mut text = format!(
        "{} records, {} {work}, {} rejected in {:.2} s: {:.0} records/s, peak memory {memory}",
        s.records,
        if decode_only {
            s.records - s.rejected
        } else {
            s.scored
        },
        s.rejected,
        s.elapsed.as_secs_f64(),
        s.per_second(),
    );
    if s.warm_up > 0 {
        text.push_str(&format!(
            "\nwarm-up: {} declarations lodged before --score-from observed, not written",
            s.warm_up
        ));
    }
    if !decode_only {
        text.push_str(&format!(
            "\nchannels: red {red}, yellow {yellow}, green {green}"
        ));
    }
    let t = &s.stages;
    text.push_str(&format!(
        "\nstage seconds: waiting for input {:.2}, decode {:.2}, waiting for window {:.2}, score {:.2}, route {:.2}, encode {:.2}, waiting for output {:.2}",
        t.waiting_for_input.as_secs_f64(),
        t.decode.as_secs_f64(),
        t.waiting_for_window.as_secs_f64(),
        t.score.as_secs_f64(),
        t.route.as_secs_f64(),
        t.encode.as_secs_f64(),
        t.waiting_for_output.as_secs_f64(),
    ));
    if let Some(cpu) = s.reader_cpu {
        text.push_str(&format!(
            "\nreader thread: {:.2} CPU-s, {:.2} CPU-µs a record (reading and cutting the file; for Parquet and Arrow IPC, decoding its columns)",
            cpu.as_secs_f64(),
            1e6 * cpu.as_secs_f64() / s.records.max(1) as f64,
        ));
    }
    if let Some(one) = s.one_thread_stages() {
        text.push_str(&format!(
            "\none-thread stages: reader {:.2}, window {:.2}, route {:.2}, writer {:.2} CPU-µs a record: however many cores, one process stays under {:.0} records/s",
            one.reader,
            one.window,
            one.route,
            one.writer,
            one.ceiling_per_second(),
        ));
    }
    text
}
