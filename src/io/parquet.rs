//! Parquet with the columns of the CSV format ([`super::csv::COLUMNS`]), one
//! row per goods item. The writer stores every column as nullable UTF-8 (an
//! empty cell is a null), so a file round-trips exactly; the reader also
//! takes integer, float and boolean columns, as other tools write them.
//! Positions in error messages are row numbers counted from 1.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;

use super::IoError;
use super::csv::{COLUMNS, Row, RowSource, example_rows};
use crate::pb;

/// Rows per record batch, read and written.
const BATCH_ROWS: usize = 8192;

fn parquet_err(e: impl std::fmt::Display) -> IoError {
    IoError::Parquet(e.to_string())
}

/// The rows of a Parquet file as text cells.
pub struct ParquetRows {
    reader: ParquetRecordBatchReader,
    header: Vec<String>,
    batch: Option<RecordBatch>,
    next_in_batch: usize,
    row_number: u64,
    /// Bytes of the file consumed so far, estimated by row groups read.
    progress: Option<(Arc<AtomicU64>, u64)>,
}

impl ParquetRows {
    /// Opens a Parquet file; `progress` is advanced in proportion to the rows read.
    pub fn open(file: File, progress: Option<Arc<AtomicU64>>) -> Result<Self, IoError> {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self::from_chunks(file, progress.map(|p| (p, size)))
    }

    /// Reads a Parquet file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, IoError> {
        Self::from_chunks(bytes::Bytes::from(bytes), None)
    }

    fn from_chunks<T: ChunkReader + 'static>(
        input: T,
        progress: Option<(Arc<AtomicU64>, u64)>,
    ) -> Result<Self, IoError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(parquet_err)?;
        let header = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(parquet_err)?;
        Ok(Self {
            reader,
            header,
            batch: None,
            next_in_batch: 0,
            row_number: 0,
            progress: progress.map(|(count, size)| (count, size / total_rows)),
        })
    }
}

impl RowSource for ParquetRows {
    fn header(&mut self) -> Result<Vec<String>, IoError> {
        Ok(self.header.clone())
    }

    fn next_row(&mut self) -> Result<Option<Row>, IoError> {
        loop {
            if let Some(batch) = &self.batch
                && self.next_in_batch < batch.num_rows()
            {
                let index = self.next_in_batch;
                self.next_in_batch += 1;
                self.row_number += 1;
                if let Some((count, bytes_per_row)) = &self.progress {
                    count.fetch_add(*bytes_per_row, Ordering::Relaxed);
                }
                return Ok(Some((self.row_number, row_cells(batch, index))));
            }
            match self.reader.next() {
                Some(batch) => {
                    self.batch = Some(batch.map_err(parquet_err)?);
                    self.next_in_batch = 0;
                }
                None => return Ok(None),
            }
        }
    }
}

/// Row `index` of a batch as text cells; a column type the format cannot
/// hold makes the row bad, not the file.
fn row_cells(batch: &RecordBatch, index: usize) -> Result<csv::StringRecord, String> {
    let mut record = csv::StringRecord::with_capacity(256, batch.num_columns());
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        if column.is_null(index) {
            record.push_field("");
            continue;
        }
        // Other arrow types (dates, decimals, nested) have no cell form here.
        #[allow(clippy::wildcard_enum_match_arm)]
        let cell = match column.data_type() {
            DataType::Utf8 => column.as_string::<i32>().value(index).to_owned(),
            DataType::LargeUtf8 => column.as_string::<i64>().value(index).to_owned(),
            DataType::Utf8View => column.as_string_view().value(index).to_owned(),
            DataType::Boolean => column.as_boolean().value(index).to_string(),
            DataType::Int8 => column.as_primitive::<Int8Type>().value(index).to_string(),
            DataType::Int16 => column.as_primitive::<Int16Type>().value(index).to_string(),
            DataType::Int32 => column.as_primitive::<Int32Type>().value(index).to_string(),
            DataType::Int64 => column.as_primitive::<Int64Type>().value(index).to_string(),
            DataType::UInt8 => column.as_primitive::<UInt8Type>().value(index).to_string(),
            DataType::UInt16 => column.as_primitive::<UInt16Type>().value(index).to_string(),
            DataType::UInt32 => column.as_primitive::<UInt32Type>().value(index).to_string(),
            DataType::UInt64 => column.as_primitive::<UInt64Type>().value(index).to_string(),
            DataType::Float32 => column
                .as_primitive::<Float32Type>()
                .value(index)
                .to_string(),
            DataType::Float64 => column
                .as_primitive::<Float64Type>()
                .value(index)
                .to_string(),
            other => {
                return Err(format!(
                    "column {} has type {other}, which this format does not read",
                    field.name()
                ));
            }
        };
        record.push_field(&cell);
    }
    Ok(record)
}

/// Writes examples as Parquet, one row per goods item.
pub struct ParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: Arc<Schema>,
    /// Cells of the rows not yet written, column by column.
    columns: Vec<Vec<Option<String>>>,
    row: Vec<String>,
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(output: W) -> Result<Self, IoError> {
        let schema = Arc::new(Schema::new(
            COLUMNS
                .iter()
                .map(|name| Field::new(*name, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let writer =
            ArrowWriter::try_new(output, Arc::clone(&schema), None).map_err(parquet_err)?;
        Ok(Self {
            writer,
            schema,
            columns: vec![Vec::with_capacity(BATCH_ROWS); COLUMNS.len()],
            row: vec![String::new(); COLUMNS.len()],
        })
    }

    pub fn write_pb(&mut self, example: &pb::TrainingExample) -> Result<(), IoError> {
        let columns = &mut self.columns;
        example_rows(example, &mut self.row, |row| {
            for (column, cell) in columns.iter_mut().zip(row) {
                column.push((!cell.is_empty()).then(|| cell.clone()));
            }
            Ok(())
        })?;
        if self.columns[0].len() >= BATCH_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<(), IoError> {
        if self.columns[0].is_empty() {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|cells| Arc::new(StringArray::from(std::mem::take(cells))) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(parquet_err)?;
        self.writer.write(&batch).map_err(parquet_err)
    }

    /// Writes what is buffered and the file footer; gives the output back.
    pub fn finish(mut self) -> Result<W, IoError> {
        self.flush_rows()?;
        self.writer.into_inner().map_err(parquet_err)
    }
}
