//! Data files: declarations and training examples as JSON Lines (the canonical
//! proto3 JSON mapping) or CSV (one row per goods item).
//!
//! Readers stream: they hold one record at a time, so memory stays constant
//! whatever the file size. A bad record is reported with its line number and
//! reading goes on; only an I/O error ends a file.

pub mod csv;
pub mod jsonl;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::domain::TrainingExample;
use crate::domain::validation::{ReferenceData, ValidationError};

/// File formats, chosen by extension or flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines, proto3 JSON mapping (`.jsonl`, `.ndjson`, `.json`).
    Jsonl,
    /// CSV, one row per goods item (`.csv`).
    Csv,
}

impl Format {
    /// Guesses the format from a file name; `None` when the extension says nothing.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
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
    #[error("line {line}: {source}")]
    Invalid {
        line: u64,
        #[source]
        source: ValidationError,
    },
}

impl RecordError {
    /// The (first) line of the record.
    pub fn line(&self) -> u64 {
        match self {
            RecordError::Syntax { line, .. } | RecordError::Invalid { line, .. } => *line,
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
    #[error("cannot tell the format of {0}; name it .jsonl or .csv, or pass --format")]
    UnknownFormat(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("csv: {0}")]
    Csv(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// One item of a reader: a record, a bad record (reading goes on), or a fatal error.
pub type ReadItem = Result<Result<(u64, TrainingExample), RecordError>, IoError>;

/// A streaming reader of training examples (a bare declaration reads as an
/// example without result or truth).
pub enum ExampleReader<R: BufRead> {
    Jsonl(jsonl::JsonlReader<R>),
    Csv(csv::CsvReader<R>),
}

impl<R: BufRead> ExampleReader<R> {
    pub fn new(input: R, format: Format, reference: ReferenceData<'static>) -> Self {
        match format {
            Format::Jsonl => ExampleReader::Jsonl(jsonl::JsonlReader::new(input, reference)),
            Format::Csv => ExampleReader::Csv(csv::CsvReader::new(input, reference)),
        }
    }
}

impl<R: BufRead> Iterator for ExampleReader<R> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ExampleReader::Jsonl(r) => r.next(),
            ExampleReader::Csv(r) => r.next(),
        }
    }
}

/// Opens a file (or `-` for stdin) for streaming reads.
pub fn open_examples(
    path: &Path,
    format: Option<Format>,
    reference: ReferenceData<'static>,
) -> Result<ExampleReader<Box<dyn BufRead + Send>>, IoError> {
    let format = format
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| IoError::UnknownFormat(path.display().to_string()))?;
    let input: Box<dyn BufRead + Send> = if path.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        let file = File::open(path).map_err(|source| IoError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    Ok(ExampleReader::new(input, format, reference))
}
