//! What rescoring writes: the assessments in JSON Lines (the full
//! `RiskAssessment` message in the proto3 JSON mapping), or flat in CSV or
//! Parquet with the columns of [`ASSESSMENT_COLUMNS`] (item-level scores are
//! in the JSON Lines form only).

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, SecondsFormat, Utc};
use parquet::arrow::ArrowWriter;

use crate::io::{Format, IoError};
use crate::pb;
use crate::scoring::Assessment;
use crate::wire::assessment_to_pb;

/// The type of a flat column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Float,
    Integer,
}

/// The columns of the CSV and Parquet outputs, in order.
pub const ASSESSMENT_COLUMNS: &[(&str, ColumnType)] = &[
    ("declaration_id", ColumnType::Text),
    ("channel", ColumnType::Text),
    ("selection_reason", ColumnType::Text),
    ("recommended_action", ColumnType::Text),
    ("overall_score", ColumnType::Float),
    ("undervaluation_score", ColumnType::Float),
    ("misdescription_score", ColumnType::Float),
    ("priority_value", ColumnType::Float),
    ("declared_value_eur_cents", ColumnType::Integer),
    ("expected_value_eur_cents", ColumnType::Integer),
    ("revenue_at_risk_eur_cents", ColumnType::Integer),
    ("reason_codes", ColumnType::Text),
    ("reasons", ColumnType::Text),
    ("model_version", ColumnType::Text),
    ("regime_version", ColumnType::Text),
    ("assessed_at", ColumnType::Text),
];

/// One flat cell.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    Float(f64),
    Integer(i64),
}

/// A serialised part of the output, made on any thread.
pub enum Part {
    Bytes(Vec<u8>),
    Batch(RecordBatch),
}

/// Turns assessments into output parts; shared by the encoding threads.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: Format,
    assessed_at: DateTime<Utc>,
    /// `assessed_at` in RFC 3339, formatted once for the flat formats.
    assessed_at_text: String,
    schema: Arc<Schema>,
}

impl Encoder {
    /// Every assessment of a run is stamped with `assessed_at`.
    pub fn new(format: Format, assessed_at: DateTime<Utc>) -> Self {
        Self {
            format,
            assessed_at,
            assessed_at_text: assessed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            schema: schema(),
        }
    }

    pub fn encode(&self, assessments: Vec<Assessment>) -> Result<Part, IoError> {
        match self.format {
            Format::Jsonl => {
                let mut out = Vec::with_capacity(assessments.len() * 1024);
                for a in assessments {
                    serde_json::to_writer(&mut out, &assessment_to_pb(a, self.assessed_at))?;
                    out.push(b'\n');
                }
                Ok(Part::Bytes(out))
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::with_capacity(assessments.len() * 512));
                for a in assessments {
                    let cells = flat(a, &self.assessed_at_text)?;
                    let csv_err = |e: csv::Error| IoError::Csv(e.to_string());
                    for cell in &cells {
                        match cell {
                            Cell::Text(s) => w.write_field(s),
                            Cell::Float(v) => w.write_field(v.to_string()),
                            Cell::Integer(v) => w.write_field(v.to_string()),
                        }
                        .map_err(csv_err)?;
                    }
                    // An empty record ends the row.
                    w.write_record(None::<&[u8]>).map_err(csv_err)?;
                }
                Ok(Part::Bytes(
                    w.into_inner().map_err(|e| IoError::Csv(e.to_string()))?,
                ))
            }
            Format::Parquet => {
                let rows = assessments
                    .into_iter()
                    .map(|a| flat(a, &self.assessed_at_text))
                    .collect::<Result<Vec<_>, _>>()?;
                let columns = ASSESSMENT_COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| column(&rows, i, *kind))
                    .collect();
                RecordBatch::try_new(Arc::clone(&self.schema), columns)
                    .map(Part::Batch)
                    .map_err(|e| IoError::Parquet(e.to_string()))
            }
        }
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        ASSESSMENT_COLUMNS
            .iter()
            .map(|(name, kind)| {
                let data_type = match kind {
                    ColumnType::Text => DataType::Utf8,
                    ColumnType::Float => DataType::Float64,
                    ColumnType::Integer => DataType::Int64,
                };
                Field::new(*name, data_type, false)
            })
            .collect::<Vec<_>>(),
    ))
}

fn column(rows: &[Vec<Cell>], index: usize, kind: ColumnType) -> ArrayRef {
    let cells = rows.iter().map(|r| &r[index]);
    match kind {
        ColumnType::Text => Arc::new(StringArray::from_iter_values(cells.map(|c| match c {
            Cell::Text(s) => s.as_str(),
            Cell::Float(_) | Cell::Integer(_) => "",
        }))),
        ColumnType::Float => Arc::new(Float64Array::from_iter_values(cells.map(|c| match c {
            Cell::Float(v) => *v,
            Cell::Text(_) | Cell::Integer(_) => f64::NAN,
        }))),
        ColumnType::Integer => Arc::new(Int64Array::from_iter_values(cells.map(|c| match c {
            Cell::Integer(v) => *v,
            Cell::Text(_) | Cell::Float(_) => 0,
        }))),
    }
}

/// The flat row of an assessment, in [`ASSESSMENT_COLUMNS`] order: the
/// service's wire form without the item scores (JSON Lines carries those).
fn flat(mut a: Assessment, assessed_at: &str) -> Result<Vec<Cell>, IoError> {
    // Items are not in the flat row: do not convert them.
    a.items.clear();
    let m = assessment_to_pb(a, DateTime::<Utc>::UNIX_EPOCH);
    let priority = m.priority.unwrap_or_default();
    let name = |full: Option<&'static str>, prefix: &str| {
        Cell::Text(
            full.map(|f| f.strip_prefix(prefix).unwrap_or(f))
                .unwrap_or("")
                .to_owned(),
        )
    };
    let reasons_json = if m.reasons.is_empty() {
        "[]".to_owned()
    } else {
        serde_json::to_string(&m.reasons)?
    };
    let reason_codes = m
        .reasons
        .iter()
        .map(|r| r.code.as_str())
        .collect::<Vec<_>>()
        .join(";");
    Ok(vec![
        Cell::Text(m.declaration_id),
        name(
            pb::Channel::try_from(priority.channel)
                .ok()
                .map(|c| c.as_str_name()),
            "CHANNEL_",
        ),
        name(
            pb::SelectionReason::try_from(priority.selection_reason)
                .ok()
                .map(|c| c.as_str_name()),
            "SELECTION_REASON_",
        ),
        name(
            pb::RecommendedAction::try_from(priority.recommended_action)
                .ok()
                .map(|c| c.as_str_name()),
            "RECOMMENDED_ACTION_",
        ),
        Cell::Float(m.overall_score),
        Cell::Float(m.undervaluation_score),
        Cell::Float(m.misdescription_score),
        Cell::Float(priority.priority_value),
        Cell::Integer(m.declared_value_eur_cents),
        Cell::Integer(m.expected_value_eur_cents),
        Cell::Integer(m.revenue_at_risk_eur_cents),
        Cell::Text(reason_codes),
        Cell::Text(reasons_json),
        Cell::Text(m.model_version),
        Cell::Text(m.regime_version),
        // Formatted once per run, not per row.
        Cell::Text(assessed_at.to_owned()),
    ])
}

/// Writes parts in order to the output.
pub enum OutputWriter {
    Bytes(Box<dyn Write + Send>),
    Parquet(Box<ArrowWriter<Box<dyn Write + Send>>>),
}

impl OutputWriter {
    /// A writer of `format` on `output`; CSV starts with its header.
    pub fn new(format: Format, mut output: Box<dyn Write + Send>) -> Result<Self, IoError> {
        Ok(match format {
            Format::Jsonl => OutputWriter::Bytes(output),
            Format::Csv => {
                let mut header = csv::Writer::from_writer(Vec::new());
                header
                    .write_record(ASSESSMENT_COLUMNS.iter().map(|(name, _)| *name))
                    .map_err(|e| IoError::Csv(e.to_string()))?;
                output.write_all(
                    &header
                        .into_inner()
                        .map_err(|e| IoError::Csv(e.to_string()))?,
                )?;
                OutputWriter::Bytes(output)
            }
            Format::Parquet => OutputWriter::Parquet(Box::new(
                ArrowWriter::try_new(output, schema(), None)
                    .map_err(|e| IoError::Parquet(e.to_string()))?,
            )),
        })
    }

    pub fn write(&mut self, part: Part) -> Result<(), IoError> {
        match (self, part) {
            (OutputWriter::Bytes(out), Part::Bytes(bytes)) => Ok(out.write_all(&bytes)?),
            (OutputWriter::Parquet(writer), Part::Batch(batch)) => writer
                .write(&batch)
                .map_err(|e| IoError::Parquet(e.to_string())),
            (OutputWriter::Bytes(_), Part::Batch(_))
            | (OutputWriter::Parquet(_), Part::Bytes(_)) => Err(IoError::Parquet(
                "a part was encoded for another format than the output's".into(),
            )),
        }
    }

    /// Flushes everything (and writes the Parquet footer).
    pub fn finish(self) -> Result<(), IoError> {
        match self {
            OutputWriter::Bytes(mut out) => Ok(out.flush()?),
            OutputWriter::Parquet(writer) => {
                let mut out = writer
                    .into_inner()
                    .map_err(|e| IoError::Parquet(e.to_string()))?;
                Ok(out.flush()?)
            }
        }
    }
}
