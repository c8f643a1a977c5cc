//! Data files: declarations and training examples as JSON Lines (the canonical
//! proto3 JSON mapping), CSV, Parquet or Arrow IPC (one row per goods item);
//! the text formats plain or gzip/zstd compressed.
//!
//! Readers stream: they hold one record at a time, so memory stays constant
//! whatever the file size. A bad record is reported with its line number and
//! reading goes on; only an I/O error ends a file.

pub mod columnar;
pub mod compress;
pub mod csv;
pub mod jsonl;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::TrainingExample;
use crate::domain::validation::{ReferenceData, ValidationError};

/// File formats, chosen by extension or flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines, proto3 JSON mapping (`.jsonl`, `.ndjson`, `.json`).
    Jsonl,
    /// CSV, one row per goods item (`.csv`).
    Csv,
    /// Parquet with the CSV columns, one row per goods item (`.parquet`).
    Parquet,
    /// Arrow IPC file (Feather v2) with the CSV columns, one row per goods
    /// item (`.arrow`, `.feather`, `.ipc`).
    Arrow,
}

/// What of each record a reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// The declaration, its inspection result and its ground truth, each
    /// validated (training, evaluation, `check`).
    Examples,
    /// The declaration alone, as rescoring needs it: a record is rejected
    /// only for its declaration. A Parquet or Arrow IPC file's result and
    /// truth columns are not read (for Parquet, fewer pages to decompress
    /// and decode), a CSV file's are not parsed, and a JSON line's are
    /// parsed (it must still be a `TrainingExample`) but not checked.
    Declarations,
}

/// The containers of the columnar formats, which hold the same columns and
/// are read and written through the same record batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Parquet,
    ArrowIpc,
}

impl Format {
    /// The container of a columnar format, read by record batches (it needs
    /// a file it can seek in); `None` for the text formats.
    pub fn container(self) -> Option<Container> {
        match self {
            Format::Parquet => Some(Container::Parquet),
            Format::Arrow => Some(Container::ArrowIpc),
            Format::Jsonl | Format::Csv => None,
        }
    }

    /// Whether the format is a columnar file.
    pub fn is_columnar(self) -> bool {
        self.container().is_some()
    }
}

impl Format {
    /// Guesses the format from a file name (`.gz` and `.zst` looked
    /// through); `None` when the extension says nothing.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(&name);
        match name.rsplit_once('.')?.1 {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            "arrow" | "feather" | "ipc" => Some(Format::Arrow),
            _ => None,
        }
    }
}

/// Why one record could not be read. The reader goes on after it.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The text is not a valid record of the format.
    #[error("line {line}: {message}")]
    Syntax { line: u64, message: String },
    /// The record parsed but failed validation.
    #[error("line {line}{}: {source}", declaration_label(declaration_id))]
    Invalid {
        line: u64,
        /// As the record gives it (empty when it has none).
        declaration_id: String,
        #[source]
        source: ValidationError,
    },
}

fn declaration_label(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!(" (declaration {id})")
    }
}

impl RecordError {
    /// The line of the record, or of the row at fault (CSV).
    pub fn line(&self) -> u64 {
        match self {
            RecordError::Syntax { line, .. } | RecordError::Invalid { line, .. } => *line,
        }
    }

    /// The declaration id, when the record parsed far enough to give one.
    pub fn declaration_id(&self) -> Option<&str> {
        match self {
            RecordError::Invalid { declaration_id, .. } if !declaration_id.is_empty() => {
                Some(declaration_id)
            }
            RecordError::Invalid { .. } | RecordError::Syntax { .. } => None,
        }
    }
}

/// A failure that ends reading or writing a file.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot tell the format of {0}; name it .jsonl, .csv, .parquet or .arrow, or give the format (--format; for rescore --input-format)"
    )]
    UnknownFormat(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("csv: {0}")]
    Csv(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("arrow: {0}")]
    Arrow(String),
}

/// One item of a reader: a record, a bad record (reading goes on), or a fatal error.
pub type ReadItem = Result<Result<(u64, TrainingExample), RecordError>, IoError>;

/// A record cut from a file but not yet parsed. Cutting is sequential and
/// cheap; decoding is the expensive part and can run on any thread.
pub enum RawRecord {
    /// One JSON line.
    Json {
        line: u64,
        text: jsonl::LineText,
        kind: jsonl::LineKind,
        projection: Projection,
    },
    /// The rows of one declaration in a CSV file.
    Rows {
        rows: Vec<(u64, ::csv::StringRecord)>,
        layout: Arc<csv::Layout>,
    },
    /// The rows of one declaration in a Parquet or Arrow IPC file, read in place.
    ArrowRows {
        rows: Vec<(u64, columnar::ArrowRow)>,
        layout: Arc<csv::Layout>,
    },
    /// A record that could not even be cut out (bad UTF-8, broken row).
    Bad(RecordError),
}

impl RawRecord {
    /// The (first) line of the record.
    pub fn line(&self) -> u64 {
        match self {
            RawRecord::Json { line, .. } => *line,
            RawRecord::Rows { rows, .. } => rows.first().map_or(0, |(line, _)| *line),
            RawRecord::ArrowRows { rows, .. } => rows.first().map_or(0, |(line, _)| *line),
            RawRecord::Bad(e) => e.line(),
        }
    }

    /// Parses and validates the record.
    pub fn decode(
        self,
        reference: &ReferenceData<'static>,
    ) -> Result<(u64, TrainingExample), RecordError> {
        let line = self.line();
        let example = match self {
            RawRecord::Json {
                line,
                text,
                kind,
                projection,
            } => jsonl::decode_line(text.as_str(), line, kind, projection, reference),
            RawRecord::Rows { rows, layout } => csv::decode_rows(&rows, &layout, reference),
            RawRecord::ArrowRows { rows, layout } => csv::decode_rows(&rows, &layout, reference),
            RawRecord::Bad(e) => Err(e),
        }?;
        Ok((line, example))
    }
}

/// Cuts a file of any format into [`RawRecord`]s.
pub enum Framer<R: BufRead> {
    Jsonl(jsonl::JsonlFramer<R>),
    Csv(csv::RowGrouper<csv::CsvRows<R>>),
    Columnar(csv::RowGrouper<columnar::ColumnarRows>),
    /// A file that could not be opened as its format: yields the error once.
    Failed(Option<IoError>),
}

impl<R: BufRead> Framer<R> {
    /// The CPU time of the threads this framer starts to read a Parquet
    /// file's row groups (none: zero), complete once it is dropped.
    pub fn reader_threads_cpu(&self) -> ThreadsCpu {
        match self {
            Framer::Columnar(grouper) => grouper.source().reader_threads_cpu(),
            Framer::Jsonl(_) | Framer::Csv(_) | Framer::Failed(_) => ThreadsCpu::default(),
        }
    }
}

impl<R: BufRead> Iterator for Framer<R> {
    type Item = Result<RawRecord, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Framer::Jsonl(f) => f.next(),
            Framer::Csv(f) => f.next(),
            Framer::Columnar(f) => f.next(),
            Framer::Failed(e) => e.take().map(Err),
        }
    }
}

/// A streaming reader of training examples (a bare declaration reads as an
/// example without result or truth).
pub struct ExampleReader<R: BufRead> {
    framer: Framer<R>,
    reference: ReferenceData<'static>,
}

impl<R: BufRead> ExampleReader<R> {
    /// A reader over any input. A columnar file is read into memory first
    /// (its footer is at the end); [`open_examples`] streams one instead.
    pub fn new(
        mut input: R,
        format: Format,
        projection: Projection,
        reference: ReferenceData<'static>,
    ) -> Self {
        let framer = match format.container() {
            None if format == Format::Jsonl => {
                Framer::Jsonl(jsonl::JsonlFramer::new(input, projection))
            }
            None => Framer::Csv(csv::RowGrouper::new(csv::CsvRows::new(input), projection)),
            Some(container) => {
                let mut bytes = Vec::new();
                match input
                    .read_to_end(&mut bytes)
                    .map_err(IoError::Io)
                    .and_then(|_| columnar::ColumnarRows::from_bytes(bytes, container, projection))
                {
                    Ok(rows) => Framer::Columnar(csv::RowGrouper::new(rows, projection)),
                    Err(e) => Framer::Failed(Some(e)),
                }
            }
        };
        Self { framer, reference }
    }

    pub fn from_framer(framer: Framer<R>, reference: ReferenceData<'static>) -> Self {
        Self { framer, reference }
    }
}

impl<R: BufRead> Iterator for ExampleReader<R> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.framer.next()?;
        Some(raw.map(|raw| raw.decode(&self.reference)))
    }
}

/// The first bytes of a Parquet file.
const PARQUET_MAGIC: &[u8] = b"PAR1";
/// The first bytes of an Arrow IPC file.
const ARROW_MAGIC: &[u8] = b"ARROW1";

/// An input stream whose bytes read so far can be watched (for progress).
pub type Input = Box<dyn BufRead + Send>;

/// Opens a file (or `-` for stdin) and cuts it into records. Gzip and zstd
/// input is recognised by its magic bytes and decompressed on the fly.
/// `progress` counts the (compressed) bytes read; `projection` says what
/// of each record is read; `parquet_readers` threads read a Parquet file's
/// row groups at once.
pub fn open_framer(
    path: &Path,
    format: Option<Format>,
    projection: Projection,
    progress: Option<Arc<AtomicU64>>,
    parquet_readers: usize,
) -> Result<Framer<Input>, IoError> {
    let format = format
        .or_else(|| Format::from_path(path))
        // Standard input without a format is JSON Lines, as the help says.
        .or_else(|| (path.as_os_str() == "-").then_some(Format::Jsonl))
        .ok_or_else(|| IoError::UnknownFormat(path.display().to_string()))?;
    let open_err = |source| IoError::Open {
        path: path.display().to_string(),
        source,
    };
    if let Some(container) = format.container() {
        if path.as_os_str() == "-" {
            return Err(IoError::Parquet(
                "Parquet and Arrow IPC need a file they can seek in; stdin is not supported".into(),
            ));
        }
        let file = File::open(path).map_err(open_err)?;
        let rows =
            columnar::ColumnarRows::open(file, container, projection, progress, parquet_readers)?;
        return Ok(Framer::Columnar(csv::RowGrouper::new(rows, projection)));
    }
    let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(open_err)?)
    };
    let raw = CountingReader {
        inner: raw,
        count: progress,
    };
    let mut input = compress::decompressing(Box::new(BufReader::with_capacity(1 << 20, raw)))?;
    // A Parquet or Arrow file read as text would be hundreds of rejects; say what it is.
    if input.fill_buf()?.starts_with(ARROW_MAGIC) {
        return Err(IoError::Arrow(format!(
            "{} is an Arrow IPC file (it begins ARROW1), not text: name it .arrow or give the format (--format arrow; for rescore --input-format arrow)",
            path.display()
        )));
    }
    if input.fill_buf()?.starts_with(PARQUET_MAGIC) {
        return Err(IoError::Parquet(if path.as_os_str() == "-" {
            "standard input holds a Parquet file (it begins PAR1); Parquet needs a file it can seek in: pass its path".into()
        } else {
            format!(
                "{} is a Parquet file (it begins PAR1), not text: name it .parquet or give the format (--format parquet; for rescore --input-format parquet)",
                path.display()
            )
        }));
    }
    Ok(if format == Format::Jsonl {
        Framer::Jsonl(jsonl::JsonlFramer::new(input, projection))
    } else {
        Framer::Csv(csv::RowGrouper::new(csv::CsvRows::new(input), projection))
    })
}

/// Opens a file (or `-` for stdin) for streaming reads.
pub fn open_examples(
    path: &Path,
    format: Option<Format>,
    reference: ReferenceData<'static>,
) -> Result<ExampleReader<Input>, IoError> {
    Ok(ExampleReader::from_framer(
        open_framer(path, format, Projection::Examples, None, 1)?,
        reference,
    ))
}

/// The CPU time (user and system) the calling thread has used so far
/// (`CLOCK_THREAD_CPUTIME_ID`, exact to the nanosecond: Linux's
/// /proc/thread-self/schedstat lags by up to a scheduler tick, and read 0
/// for a short run's reader); `None` where the OS has no such clock.
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let at = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let seconds = u64::try_from(at.tv_sec).ok()?;
        let nanos = u32::try_from(at.tv_nsec).ok()?;
        Some(Duration::new(seconds, nanos))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// CPU time of threads a reader started, added by each as it ends.
#[derive(Clone, Default)]
pub struct ThreadsCpu(Arc<ThreadsCpuCount>);

#[derive(Default)]
struct ThreadsCpuCount {
    nanos: AtomicU64,
    threads: AtomicU64,
}

impl ThreadsCpu {
    /// Adds the calling thread's CPU time so far; call it as the thread ends.
    pub fn add_this_thread(&self) {
        if let Some(cpu) = thread_cpu_time() {
            let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
            self.0.nanos.fetch_add(nanos, Ordering::Relaxed);
            self.0.threads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The time added so far.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.nanos.load(Ordering::Relaxed))
    }

    /// The time added so far, shared out evenly among the threads that
    /// added it (zero when none did).
    pub fn per_thread(&self) -> Duration {
        let threads = self.0.threads.load(Ordering::Relaxed).max(1);
        self.total() / u32::try_from(threads).unwrap_or(u32::MAX)
    }
}

/// Counts the bytes that pass through.
struct CountingReader<R> {
    inner: R,
    count: Option<Arc<AtomicU64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(count) = &self.count {
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn threads_cpu_adds_each_threads_time_and_shares_it_out() {
        let cpu = ThreadsCpu::default();
        assert_eq!(cpu.per_thread(), Duration::ZERO, "no thread yet");
        let spins = |n: u64| (0..n).fold(0u64, |a, i| a.wrapping_mul(31).wrapping_add(i));
        let threads: Vec<_> = [1_000_000, 3_000_000]
            .into_iter()
            .map(|n| {
                let cpu = cpu.clone();
                std::thread::spawn(move || {
                    std::hint::black_box(spins(std::hint::black_box(n)));
                    cpu.add_this_thread();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(cpu.total() > Duration::ZERO);
        assert_eq!(cpu.per_thread(), cpu.total() / 2);
    }
}
