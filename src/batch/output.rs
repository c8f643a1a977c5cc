//! What rescoring writes: the assessments in JSON Lines (the full
//! `RiskAssessment` message in the proto3 JSON mapping), or flat in CSV or
//! Parquet with the columns of [`ASSESSMENT_COLUMNS`] (item-level scores are
//! in the JSON Lines form only).

use std::io::Write;
use std::sync::Arc;

use crate::io::columnar::ColumnarFile;
use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::io::{Format, IoError};
use crate::pb;
use crate::scoring::Assessment;
use crate::wire::assessment::{ReasonsJson, priority_to_pb};
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

/// The columns that hold a different value in nearly every row, written
/// without a dictionary ([`crate::io::columnar::writer_properties`]):
/// the id, the scores and the reasons' text. The money columns repeat
/// (generated and real prices cluster) and keep theirs.
const DISTINCT_COLUMNS: &[&str] = &[
    "declaration_id",
    "overall_score",
    "undervaluation_score",
    "misdescription_score",
    "priority_value",
    "reasons",
];

/// One flat cell, borrowed from the assessment or from a row's scratch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Text(&'a str),
    Float(f64),
    Integer(i64),
}

/// Buffers a flat row's computed text lives in, reused from row to row.
#[derive(Debug, Default)]
struct Scratch {
    reason_codes: String,
    reasons_json: Vec<u8>,
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
                let mut out = Vec::with_capacity(assessments.len() * 512);
                let mut scratch = Scratch::default();
                let (mut float, mut integer) = (ryu::Buffer::new(), itoa::Buffer::new());
                for a in &assessments {
                    let row = flat(a, &mut scratch, &self.assessed_at_text)?;
                    for (i, cell) in row.into_iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        match cell {
                            Cell::Text(s) => push_csv_field(&mut out, s.as_bytes()),
                            Cell::Float(v) => out.extend_from_slice(float.format(v).as_bytes()),
                            Cell::Integer(v) => {
                                out.extend_from_slice(integer.format(v).as_bytes());
                            }
                        }
                    }
                    out.push(b'\n');
                }
                Ok(Part::Bytes(out))
            }
            Format::Parquet | Format::Arrow => {
                let mut columns: Vec<Column> = ASSESSMENT_COLUMNS
                    .iter()
                    .map(|(_, kind)| Column::new(*kind, assessments.len()))
                    .collect();
                let mut scratch = Scratch::default();
                for a in &assessments {
                    let row = flat(a, &mut scratch, &self.assessed_at_text)?;
                    for (column, cell) in columns.iter_mut().zip(row) {
                        column.push(cell);
                    }
                }
                let columns = columns.into_iter().map(Column::finish).collect();
                RecordBatch::try_new(Arc::clone(&self.schema), columns)
                    .map(Part::Batch)
                    .map_err(|e| IoError::Parquet(e.to_string()))
            }
        }
    }
}

/// Appends one CSV field as the csv crate writes it (the header is written
/// by it): quoted only when it holds a comma, a quote or a line break, quotes
/// doubled. Numbers never need quoting and are appended directly.
fn push_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    let needs_quotes = memchr::memchr3(b',', b'"', b'\n', field).is_some()
        || memchr::memchr(b'\r', field).is_some();
    if !needs_quotes {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    let mut rest = field;
    while let Some(at) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=at]);
        out.push(b'"');
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
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

/// A Parquet column being filled, row by row.
enum Column {
    Text(StringBuilder),
    Float(Float64Builder),
    Integer(Int64Builder),
}

impl Column {
    fn new(kind: ColumnType, rows: usize) -> Self {
        match kind {
            ColumnType::Text => Column::Text(StringBuilder::with_capacity(rows, rows * 16)),
            ColumnType::Float => Column::Float(Float64Builder::with_capacity(rows)),
            ColumnType::Integer => Column::Integer(Int64Builder::with_capacity(rows)),
        }
    }

    /// Appends a cell; a cell of another type than the column's (which
    /// `flat` never makes) is written as the column's null-like value.
    fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Column::Text(b), Cell::Text(s)) => b.append_value(s),
            (Column::Text(b), Cell::Float(_) | Cell::Integer(_)) => b.append_value(""),
            (Column::Float(b), Cell::Float(v)) => b.append_value(v),
            (Column::Float(b), Cell::Text(_) | Cell::Integer(_)) => b.append_value(f64::NAN),
            (Column::Integer(b), Cell::Integer(v)) => b.append_value(v),
            (Column::Integer(b), Cell::Text(_) | Cell::Float(_)) => b.append_value(0),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Text(mut b) => Arc::new(b.finish()),
            Column::Float(mut b) => Arc::new(b.finish()),
            Column::Integer(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The flat row of an assessment, in [`ASSESSMENT_COLUMNS`] order: the
/// service's wire form without the item scores (JSON Lines carries those).
/// Its computed text lives in `scratch`; everything else is borrowed.
fn flat<'a>(
    a: &'a Assessment,
    scratch: &'a mut Scratch,
    assessed_at: &'a str,
) -> Result<[Cell<'a>; 16], IoError> {
    scratch.reason_codes.clear();
    for (i, r) in a.reasons.iter().enumerate() {
        if i > 0 {
            scratch.reason_codes.push(';');
        }
        scratch.reason_codes.push_str(r.code);
    }
    scratch.reasons_json.clear();
    // The wire form of the reasons, as the JSON Lines output has them.
    serde_json::to_writer(&mut scratch.reasons_json, &ReasonsJson(&a.reasons))?;
    let priority = priority_to_pb(a.priority_value, a.route);
    let name = |full: Option<&'static str>, prefix: &str| -> Cell<'a> {
        Cell::Text(full.map_or("", |f| f.strip_prefix(prefix).unwrap_or(f)))
    };
    let scratch = &*scratch;
    Ok([
        Cell::Text(&a.declaration_id),
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
        Cell::Float(a.overall_score),
        Cell::Float(a.undervaluation_score),
        Cell::Float(a.misdescription_score),
        Cell::Float(priority.priority_value),
        Cell::Integer(a.declared_value_eur_cents),
        Cell::Integer(a.expected_value_eur_cents),
        Cell::Integer(a.revenue_at_risk_eur_cents),
        Cell::Text(&scratch.reason_codes),
        // serde_json writes UTF-8.
        Cell::Text(std::str::from_utf8(&scratch.reasons_json).unwrap_or("[]")),
        Cell::Text(a.model_version),
        Cell::Text(a.regime_version),
        // Formatted once per run, not per row.
        Cell::Text(assessed_at),
    ])
}

/// Writes parts in order to the output.
pub enum OutputWriter {
    Bytes(Box<dyn Write + Send>),
    Columnar(Box<ColumnarFile<Box<dyn Write + Send>>>),
}

impl OutputWriter {
    /// A writer of `format` on `output`; CSV starts with its header.
    pub fn new(format: Format, mut output: Box<dyn Write + Send>) -> Result<Self, IoError> {
        Ok(match format.container() {
            Some(container) => OutputWriter::Columnar(Box::new(ColumnarFile::new(
                output,
                schema(),
                container,
                DISTINCT_COLUMNS,
            )?)),
            None if format == Format::Jsonl => OutputWriter::Bytes(output),
            None => {
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
        })
    }

    pub fn write(&mut self, part: Part) -> Result<(), IoError> {
        match (self, part) {
            (OutputWriter::Bytes(out), Part::Bytes(bytes)) => Ok(out.write_all(&bytes)?),
            (OutputWriter::Columnar(writer), Part::Batch(batch)) => writer.write(&batch),
            (OutputWriter::Bytes(_), Part::Batch(_))
            | (OutputWriter::Columnar(_), Part::Bytes(_)) => Err(IoError::Parquet(
                "a part was encoded for another format than the output's".into(),
            )),
        }
    }

    /// Flushes everything (and writes the Parquet or Arrow footer).
    pub fn finish(self) -> Result<(), IoError> {
        match self {
            OutputWriter::Bytes(mut out) => Ok(out.flush()?),
            OutputWriter::Columnar(writer) => Ok(writer.finish()?.flush()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_columns_are_assessment_columns() {
        // A misspelt name would silently keep its dictionary.
        for name in DISTINCT_COLUMNS {
            assert!(
                ASSESSMENT_COLUMNS.iter().any(|(column, _)| column == name),
                "{name}"
            );
        }
    }

    #[test]
    fn csv_fields_are_written_as_the_csv_crate_writes_them() {
        let fields = [
            "",
            "plain",
            "a,b",
            "say \"hi\"",
            "\"",
            "line\nbreak",
            "carriage\rreturn",
            "[{\"code\":\"X\",\"message\":\"Description \\\"Parts\\\"\"}]",
            "ünïcödé, 中文",
        ];
        let mut ours = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                ours.push(b',');
            }
            push_csv_field(&mut ours, f.as_bytes());
        }
        ours.push(b'\n');
        let mut theirs = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        theirs.write_record(fields).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs.into_inner().unwrap()).unwrap()
        );
    }
}
