//! Parquet and Arrow IPC files (Feather v2) with the columns of the CSV
//! format ([`super::csv::COLUMNS`]), one row per goods item. The writers
//! type the numbers as 64-bit integers and the instants as microseconds in
//! UTC, as a data lake does, and every other column as UTF-8 (an empty cell
//! is a null); the readers take UTF-8, integer, float, boolean, timestamp
//! and dictionary columns, as any tool writes them, and read integers and
//! timestamps as such. Both containers go through the same record batches,
//! so they read and validate alike.
//! Positions in error messages are row numbers counted from 1.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt::Write as _;

use arrow_array::builder::{
    BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use parquet::schema::types::ColumnPath;

use super::csv::{COLUMNS, Cells, Layout, Row, RowSource, Typed, example_rows};
use super::{Container, IoError, Projection, RawRecord, ThreadsCpu};
use crate::pb;

/// Rows per record batch, read and written.
const BATCH_ROWS: usize = 8192;

/// Rows per Parquet row group written (Polars' default, 512²).
///
/// The writer holds a whole row group in memory until it closes it: the
/// library's default of 1 Mi rows cost about 40 MB more peak memory
/// rescoring 2 M declarations Parquet to Parquet (707–715 against
/// 671–672 MB), when the peak at 10 M is about 1 GiB. Row groups this size
/// are still large for the readers (DuckDB's own are 122,880 rows).
pub const ROW_GROUP_ROWS: usize = 1 << 18;

/// How this program writes Parquet: zstd at its fastest level (a third of
/// the size of snappy's output on generated traffic, and what data lakes
/// read natively), row groups of [`ROW_GROUP_ROWS`].
///
/// `distinct_columns` hold a different value in nearly every row (ids,
/// scores, free text): they are written plain. With the library's default
/// a writer interns each of their values in a dictionary until the
/// dictionary page is full, then throws the dictionary away, in every row
/// group.
pub fn writer_properties(distinct_columns: &[&str]) -> WriterProperties {
    distinct_columns
        .iter()
        .fold(WriterProperties::builder(), |builder, name| {
            builder.set_column_dictionary_enabled(ColumnPath::from(*name), false)
        })
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

fn parquet_err(e: impl std::fmt::Display) -> IoError {
    IoError::Parquet(e.to_string())
}

fn arrow_ipc_err(e: impl std::fmt::Display) -> IoError {
    IoError::Arrow(e.to_string())
}

/// A columnar file being written: Parquet or Arrow IPC, batch by batch.
pub enum ColumnarFile<W: Write + Send> {
    Parquet(Box<ArrowWriter<W>>),
    ArrowIpc(Box<arrow_ipc::writer::FileWriter<W>>),
}

impl<W: Write + Send> ColumnarFile<W> {
    /// Parquet as [`writer_properties`] says, or the Arrow IPC file format
    /// uncompressed (its buffers are what the readers map).
    pub fn new(
        output: W,
        schema: Arc<Schema>,
        container: Container,
        distinct_columns: &[&str],
    ) -> Result<Self, IoError> {
        match container {
            Container::Parquet => {
                let properties = writer_properties(distinct_columns);
                ArrowWriter::try_new(output, schema, Some(properties))
                    .map(|w| ColumnarFile::Parquet(Box::new(w)))
                    .map_err(parquet_err)
            }
            Container::ArrowIpc => arrow_ipc::writer::FileWriter::try_new(output, &schema)
                .map(|w| ColumnarFile::ArrowIpc(Box::new(w)))
                .map_err(arrow_ipc_err),
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), IoError> {
        match self {
            ColumnarFile::Parquet(w) => w.write(batch).map_err(parquet_err),
            ColumnarFile::ArrowIpc(w) => w.write(batch).map_err(arrow_ipc_err),
        }
    }

    /// Writes the footer; gives the output back.
    pub fn finish(self) -> Result<W, IoError> {
        match self {
            ColumnarFile::Parquet(w) => w.into_inner().map_err(parquet_err),
            ColumnarFile::ArrowIpc(mut w) => {
                w.finish().map_err(arrow_ipc_err)?;
                w.into_inner().map_err(arrow_ipc_err)
            }
        }
    }
}

/// The batches of a Parquet or an Arrow IPC file, each as text.
type Batches = Box<dyn Iterator<Item = Result<TextBatch, IoError>> + Send>;

/// Bytes of the file consumed so far, estimated by rows (Parquet, whose
/// row count is in its footer) or by batches (Arrow IPC) read.
struct Progress {
    count: Arc<AtomicU64>,
    per_row: u64,
    per_batch: u64,
}

/// The rows of a Parquet or Arrow IPC file, read in place: a row is its
/// batch and an index, and a cell borrows the batch's text (no copy per cell).
pub struct ColumnarRows {
    reader: Batches,
    header: Vec<String>,
    batch: Option<Arc<TextBatch>>,
    next_in_batch: usize,
    row_number: u64,
    progress: Option<Progress>,
    /// The CPU time of the threads reading row groups, if any.
    reader_threads_cpu: ThreadsCpu,
}

impl ColumnarRows {
    /// Opens a columnar file; `progress` is advanced in proportion to the
    /// rows (Parquet, whose row count is in its footer) or the batches
    /// (Arrow IPC) read. A Parquet file's row groups are read by `readers`
    /// threads at once ([`RowGroupsInParallel`]); 1 reads them on the
    /// caller's thread, as an Arrow IPC file always is.
    pub fn open(
        file: File,
        container: Container,
        projection: Projection,
        progress: Option<Arc<AtomicU64>>,
        readers: usize,
    ) -> Result<Self, IoError> {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let progress = progress.map(|p| (p, size));
        match container {
            Container::Parquet => {
                Self::from_parquet(PositionedFile::new(file), projection, progress, readers)
            }
            Container::ArrowIpc => Self::from_arrow_ipc(file, projection, progress),
        }
    }

    /// Reads a columnar file held in memory.
    pub fn from_bytes(
        bytes: Vec<u8>,
        container: Container,
        projection: Projection,
    ) -> Result<Self, IoError> {
        Self::from_bytes_with_readers(bytes, container, projection, 1)
    }

    /// [`Self::from_bytes`], a Parquet file's row groups read by `readers`
    /// threads at once.
    pub fn from_bytes_with_readers(
        bytes: Vec<u8>,
        container: Container,
        projection: Projection,
        readers: usize,
    ) -> Result<Self, IoError> {
        match container {
            Container::Parquet => {
                Self::from_parquet(bytes::Bytes::from(bytes), projection, None, readers)
            }
            Container::ArrowIpc => {
                Self::from_arrow_ipc(std::io::Cursor::new(bytes), projection, None)
            }
        }
    }

    /// An Arrow IPC file's columns that `projection` leaves out are not
    /// read. Its footer is read twice: once for the column names, once by
    /// the reader of the columns kept.
    fn from_arrow_ipc<R: std::io::Read + std::io::Seek + Send + 'static>(
        mut input: R,
        projection: Projection,
        progress: Option<(Arc<AtomicU64>, u64)>,
    ) -> Result<Self, IoError> {
        let names = arrow_ipc::reader::FileReader::try_new(&mut input, None)
            .map_err(arrow_ipc_err)?
            .schema();
        let read = columns_read(&names, projection);
        let reader =
            arrow_ipc::reader::FileReader::try_new(input, Some(read)).map_err(arrow_ipc_err)?;
        // The columns read, as the record batches hold them.
        let schema = reader.schema();
        let batches = reader.num_batches().max(1) as u64;
        let progress = progress.map(|(count, size)| Progress {
            count,
            per_row: 0,
            per_batch: size / batches,
        });
        let (header, declaration_level) = header_of(&schema, projection);
        let reader =
            reader.map(move |batch| TextBatch::read(batch, &declaration_level, arrow_ipc_err));
        Ok(Self::over(
            Box::new(reader),
            header,
            progress,
            ThreadsCpu::default(),
        ))
    }

    /// A Parquet file, read by [`ParquetReading`].
    fn from_parquet<T: ChunkReader + Clone + 'static>(
        input: T,
        projection: Projection,
        progress: Option<(Arc<AtomicU64>, u64)>,
        readers: usize,
    ) -> Result<Self, IoError> {
        let reading = ParquetReading::new(input, projection)?;
        let total_rows = reading.rows().max(1);
        let progress = progress.map(|(count, size)| Progress {
            count,
            per_row: size / total_rows,
            per_batch: 0,
        });
        // The columns read, as the record batches hold them.
        let (header, declaration_level) = header_of(&reading.schema()?, projection);
        let groups = reading.metadata.metadata().num_row_groups();
        let cpu = ThreadsCpu::default();
        let batches: Batches = if readers > 1 && groups > 1 {
            Box::new(RowGroupsInParallel::start(
                reading,
                readers,
                declaration_level,
                cpu.clone(),
            ))
        } else {
            let reader = reading
                .batches()?
                .map(move |batch| TextBatch::read(batch, &declaration_level, parquet_err));
            Box::new(reader)
        };
        Ok(Self::over(batches, header, progress, cpu))
    }

    fn over(
        reader: Batches,
        header: Vec<String>,
        progress: Option<Progress>,
        reader_threads_cpu: ThreadsCpu,
    ) -> Self {
        Self {
            reader,
            header,
            batch: None,
            next_in_batch: 0,
            row_number: 0,
            progress,
            reader_threads_cpu,
        }
    }

    /// The CPU time of the threads reading the file's row groups (none:
    /// zero), complete once these rows are dropped.
    pub fn reader_threads_cpu(&self) -> ThreadsCpu {
        self.reader_threads_cpu.clone()
    }
}

/// The names of `schema`'s columns, and which of them are declaration-level
/// (compared across a declaration's rows, [`TextBatch::agrees_with_previous`]).
fn header_of(schema: &Schema, projection: Projection) -> (Vec<String>, Vec<usize>) {
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    // A header without the columns every record needs is refused when
    // the rows are grouped; until then there is nothing to compare.
    let declaration_level = Layout::from_header(header.iter().map(String::as_str), projection)
        .map(|layout| layout.declaration_level_columns())
        .unwrap_or_default();
    (header, declaration_level)
}

/// The record batches of a Parquet file, as [`ColumnarRows`] reads them
/// (public so that the rescore bench can time the Parquet library's share of
/// reading alone), and the file's row count.
pub struct ParquetBatches {
    pub batches: ParquetRecordBatchReader,
    pub rows: u64,
}

/// Opens a Parquet file for reading by batches of [`BATCH_ROWS`] as
/// [`ColumnarRows`] reads it, on one thread.
pub fn parquet_batches<T: ChunkReader + 'static>(
    input: T,
    projection: Projection,
) -> Result<ParquetBatches, IoError> {
    let reading = ParquetReading::new(input, projection)?;
    Ok(ParquetBatches {
        rows: reading.rows(),
        batches: reading.batches()?,
    })
}

/// How a Parquet file is read: its footer, and the columns read. The
/// columns that the projection leaves out are not read: their pages are
/// neither decompressed nor decoded. Text columns dictionary-encoded
/// throughout are read as dictionaries ([`dictionaries_kept`]).
struct ParquetReading<T> {
    input: T,
    metadata: ArrowReaderMetadata,
    /// The top-level columns read, and the mask that reads them.
    read: Vec<usize>,
    mask: ProjectionMask,
}

impl<T: ChunkReader + 'static> ParquetReading<T> {
    fn new(input: T, projection: Projection) -> Result<Self, IoError> {
        let metadata =
            ArrowReaderMetadata::load(&input, ArrowReaderOptions::new()).map_err(parquet_err)?;
        let kept = dictionaries_kept(metadata.schema(), metadata.metadata());
        // Should the reader not take the dictionaries after all, the file is
        // read as it is: the dictionaries save time, they are not needed.
        let metadata = ArrowReaderMetadata::try_new(
            Arc::clone(metadata.metadata()),
            ArrowReaderOptions::new().with_schema(kept),
        )
        .unwrap_or(metadata);
        let read = columns_read(metadata.schema(), projection);
        let mask = ProjectionMask::roots(metadata.parquet_schema(), read.iter().copied());
        Ok(Self {
            input,
            metadata,
            read,
            mask,
        })
    }

    fn rows(&self) -> u64 {
        self.metadata.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// The columns read, as the record batches hold them.
    fn schema(&self) -> Result<Schema, IoError> {
        self.metadata
            .schema()
            .project(&self.read)
            .map_err(parquet_err)
    }

    /// A reader of the row groups `groups` (all of them: `None`) in order.
    fn batches_of(
        input: T,
        metadata: &ArrowReaderMetadata,
        mask: &ProjectionMask,
        groups: Option<Vec<usize>>,
    ) -> Result<ParquetRecordBatchReader, IoError> {
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(input, metadata.clone())
                .with_projection(mask.clone())
                .with_batch_size(BATCH_ROWS);
        if let Some(groups) = groups {
            builder = builder.with_row_groups(groups);
        }
        builder.build().map_err(parquet_err)
    }

    /// A reader of every row group in order.
    fn batches(self) -> Result<ParquetRecordBatchReader, IoError> {
        Self::batches_of(self.input, &self.metadata, &self.mask, None)
    }
}

/// A Parquet file's batches, its row groups read by several threads at once
/// and handed on in the file's order. Reader `r` of `n` reads row groups
/// `r`, `r + n`, `r + 2n`… a group at a time, and waits while
/// [`Self::AHEAD`] of its batches are not taken: the rows come out in the
/// file's order, in memory bounded by the readers' count.
///
/// One reader thread decodes about a million declarations a second (under a
/// CPU-µs each, README): enough for the dozen cores that score them, not for
/// more, nor for a decode-only run on more than a few.
struct RowGroupsInParallel {
    /// Reader `r`'s batches, in its groups' order; a group ends with `None`.
    lanes: Vec<mpsc::Receiver<Option<Result<TextBatch, IoError>>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// The row group whose batches come next.
    next_group: usize,
    groups: usize,
}

impl RowGroupsInParallel {
    /// Batches a reader may have decoded and not yet handed on.
    const AHEAD: usize = 2;

    fn start<T: ChunkReader + Clone + 'static>(
        reading: ParquetReading<T>,
        readers: usize,
        declaration_level: Vec<usize>,
        cpu: ThreadsCpu,
    ) -> Self {
        let groups = reading.metadata.metadata().num_row_groups();
        let readers = readers.clamp(1, groups.max(1));
        let declaration_level = Arc::new(declaration_level);
        let mut lanes = Vec::with_capacity(readers);
        let mut workers = Vec::with_capacity(readers);
        for first in 0..readers {
            let (tx, rx) = mpsc::sync_channel(Self::AHEAD);
            let input = reading.input.clone();
            let metadata = reading.metadata.clone();
            let mask = reading.mask.clone();
            let declaration_level = Arc::clone(&declaration_level);
            let cpu = cpu.clone();
            let read = move || {
                for group in (first..groups).step_by(readers) {
                    let batches = ParquetReading::batches_of(
                        input.clone(),
                        &metadata,
                        &mask,
                        Some(vec![group]),
                    );
                    let batches = match batches {
                        Ok(batches) => batches,
                        Err(e) => {
                            let _ = tx.send(Some(Err(e)));
                            return;
                        }
                    };
                    for batch in batches {
                        let batch = TextBatch::read(batch, &declaration_level, parquet_err);
                        let failed = batch.is_err();
                        // A send fails when the rows are no longer read.
                        if tx.send(Some(batch)).is_err() || failed {
                            return;
                        }
                    }
                    if tx.send(None).is_err() {
                        return;
                    }
                }
            };
            let spawned = std::thread::Builder::new()
                .name(format!("parquet-reader-{first}"))
                .spawn(move || {
                    read();
                    cpu.add_this_thread();
                });
            // A reader that cannot be started leaves its lane without a
            // sender: reading the lane reports it, in the file's order.
            if let Ok(worker) = spawned {
                workers.push(worker);
            }
            lanes.push(rx);
        }
        Self {
            lanes,
            workers,
            next_group: 0,
            groups,
        }
    }
}

impl Iterator for RowGroupsInParallel {
    type Item = Result<TextBatch, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next_group < self.groups {
            let lane = &self.lanes[self.next_group % self.lanes.len()];
            match lane.recv() {
                Ok(Some(Ok(batch))) => return Some(Ok(batch)),
                Ok(None) => self.next_group += 1,
                Ok(Some(Err(e))) => {
                    self.next_group = self.groups;
                    return Some(Err(e));
                }
                Err(mpsc::RecvError) => {
                    let group = std::mem::replace(&mut self.next_group, self.groups);
                    return Some(Err(IoError::Parquet(format!(
                        "the thread reading row group {group} stopped"
                    ))));
                }
            }
        }
        None
    }
}

impl Drop for RowGroupsInParallel {
    /// Stops the readers: each one's next send fails once its lane is gone.
    fn drop(&mut self) {
        self.lanes.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A file read at given offsets (`pread`), so that threads reading parts of
/// it at once do not move each other's position: a `File`'s clones share
/// one, which the Parquet library's own reader of a `File` seeks.
#[derive(Clone)]
struct PositionedFile(Arc<File>);

impl PositionedFile {
    fn new(file: File) -> Self {
        Self(Arc::new(file))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&*self.0, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&*self.0, buf, offset)
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = (buf, offset);
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "reading a file at an offset needs Unix or Windows",
            ))
        }
    }
}

impl parquet::file::reader::Length for PositionedFile {
    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl ChunkReader for PositionedFile {
    type T = std::io::BufReader<FileFrom>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::BufReader::new(FileFrom {
            file: self.clone(),
            offset: start,
        }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        use std::io::Read;
        let mut buffer = Vec::with_capacity(length);
        let from = FileFrom {
            file: self.clone(),
            offset: start,
        };
        let read = from.take(length as u64).read_to_end(&mut buffer)?;
        if read != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "expected to read {length} bytes at offset {start}, read only {read}"
            )));
        }
        Ok(buffer.into())
    }
}

/// A [`PositionedFile`] read on from an offset.
struct FileFrom {
    file: PositionedFile,
    offset: u64,
}

impl std::io::Read for FileFrom {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The positions of the columns of `schema` that `projection` reads.
fn columns_read(schema: &Schema, projection: Projection) -> Vec<usize> {
    (schema.fields().iter().enumerate())
        .filter(|(_, field)| super::csv::is_read(field.name(), projection))
        .map(|(index, _)| index)
        .collect()
}

/// `schema` with each text column that is dictionary-encoded in every row
/// group read as a dictionary: the reader then hands out the chunk's
/// distinct values and a key per row, instead of copying each row's value
/// out of the dictionary (a sixth of decoding, measured). A column with a
/// plain page anywhere stays plain text, since the reader would have to hash
/// those pages back into a dictionary.
fn dictionaries_kept(schema: &Arc<Schema>, metadata: &ParquetMetaData) -> Arc<Schema> {
    let groups = metadata.row_groups();
    // Field `i` is leaf column `i` only in a flat file: every leaf a
    // top-level field of its own name.
    let flat = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|leaf| leaf.path().parts())
        .eq(schema
            .fields()
            .iter()
            .map(|f| std::slice::from_ref(f.name())));
    if groups.is_empty() || !flat {
        return Arc::clone(schema);
    }
    let all_dictionary_pages = |column: usize| {
        groups.iter().all(|group| {
            let chunk = group.column(column);
            // An all-null chunk has an empty dictionary, which the reader
            // cannot key into: it would hash every null into a dictionary.
            // Without statistics to say, the column stays plain.
            let may_be_all_null = chunk
                .statistics()
                .and_then(|s| s.null_count_opt())
                .is_none_or(|nulls| nulls >= chunk.num_values().max(0) as u64);
            !may_be_all_null
                && chunk.dictionary_page_offset().is_some()
                && chunk.page_encoding_stats_mask().is_some_and(|mask| {
                    mask.is_only(Encoding::RLE_DICTIONARY)
                        || mask.is_only(Encoding::PLAIN_DICTIONARY)
                })
        })
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(column, field)| {
            if *field.data_type() == DataType::Utf8 && all_dictionary_pages(column) {
                field.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                ))
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

impl RowSource for ColumnarRows {
    type Cells = ArrowRow;

    fn header(&mut self) -> Result<Vec<String>, IoError> {
        Ok(self.header.clone())
    }

    fn next_row(&mut self) -> Result<Option<Row<ArrowRow>>, IoError> {
        loop {
            if let Some(batch) = &self.batch
                && self.next_in_batch < batch.rows
            {
                let index = self.next_in_batch;
                self.next_in_batch += 1;
                self.row_number += 1;
                if let Some(p) = &self.progress {
                    p.count.fetch_add(p.per_row, Ordering::Relaxed);
                }
                let row = match &batch.unreadable {
                    Some(message) => Err(message.clone()),
                    None => Ok(ArrowRow {
                        batch: Arc::clone(batch),
                        index,
                    }),
                };
                return Ok(Some((self.row_number, row)));
            }
            match self.reader.next() {
                Some(batch) => {
                    self.batch = Some(Arc::new(batch?));
                    self.next_in_batch = 0;
                    if let Some(p) = &self.progress {
                        p.count.fetch_add(p.per_batch, Ordering::Relaxed);
                    }
                }
                None => return Ok(None),
            }
        }
    }
}

/// A record batch with every column as UTF-8 text, in the file's column
/// order. Text columns are kept as read (no copy); other types are formatted
/// once per batch, as their cells would read in a CSV file.
pub struct TextBatch {
    columns: Vec<TextColumn>,
    rows: usize,
    /// Why the batch's rows cannot be read: a column type the format cannot
    /// hold makes its rows bad, not the file.
    unreadable: Option<String>,
    /// Whether row `i`'s declaration-level cells read as row `i - 1`'s
    /// (`false` for row 0). Compared a column at a time for the whole batch,
    /// which costs a fraction of comparing each goods item's row cell by
    /// cell as it is decoded (a tenth of decoding a Parquet file, measured).
    agrees_with_previous: Vec<bool>,
}

impl TextBatch {
    /// A batch as a reader hands it on, as text, or its error as
    /// `error` reports it (Parquet's or Arrow's).
    fn read(
        batch: Result<RecordBatch, ArrowError>,
        declaration_level: &[usize],
        error: fn(ArrowError) -> IoError,
    ) -> Result<Self, IoError> {
        batch
            .map(|batch| Self::new(&batch, declaration_level))
            .map_err(error)
    }

    /// `declaration_level`: the columns compared for
    /// [`Self::agrees_with_previous`].
    fn new(batch: &RecordBatch, declaration_level: &[usize]) -> Self {
        let mut columns = Vec::with_capacity(batch.num_columns());
        let mut unreadable = None;
        for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
            match as_text(column) {
                Ok(text) => columns.push(text.constant_if_uniform()),
                Err(other) => {
                    unreadable.get_or_insert_with(|| {
                        format!(
                            "column {} has type {other}, which this format does not read",
                            field.name()
                        )
                    });
                    columns.push(TextColumn::Plain(StringArray::new_null(batch.num_rows())));
                }
            }
        }
        let rows = batch.num_rows();
        let agrees_with_previous = if unreadable.is_some() {
            vec![false; rows]
        } else {
            rows_agreeing_with_previous(&columns, declaration_level, rows)
        };
        Self {
            columns,
            rows,
            unreadable,
            agrees_with_previous,
        }
    }
}

/// For each row, whether every column of `compared` reads the same in it as
/// in the row before (`false` for row 0). The columns are taken in turn, each
/// over the rows still agreeing: a file's first declaration-level column is
/// its id, which drops the rows that begin a declaration at once.
fn rows_agreeing_with_previous(
    columns: &[TextColumn],
    compared: &[usize],
    rows: usize,
) -> Vec<bool> {
    let mut agreeing: Vec<usize> = (1..rows).collect();
    for column in compared.iter().filter_map(|&c| columns.get(c)) {
        if agreeing.is_empty() {
            break;
        }
        column.retain_rows_read_as_previous(&mut agreeing);
    }
    let mut agrees = vec![false; rows];
    for row in agreeing {
        agrees[row] = true;
    }
    agrees
}

/// One row of a [`TextBatch`].
pub struct ArrowRow {
    batch: Arc<TextBatch>,
    index: usize,
}

impl Cells for ArrowRow {
    fn cell(&self, index: usize) -> Option<&str> {
        Some(self.batch.columns.get(index)?.text(self.index))
    }

    fn same_cell(&self, other: &Self, index: usize) -> bool {
        if Arc::ptr_eq(&self.batch, &other.batch) {
            return self
                .batch
                .columns
                .get(index)
                .is_none_or(|column| column.same_rows(self.index, other.index));
        }
        // Rows of two batches (a declaration read across a batch's end):
        // typed cells compare as values, without making either batch's text.
        if let (Some(own), Some(theirs)) = (
            self.batch.columns.get(index),
            other.batch.columns.get(index),
        ) && let Some(same) = own.same_value(self.index, theirs, other.index)
        {
            return same;
        }
        super::csv::same_text(
            self.cell(index).unwrap_or(""),
            other.cell(index).unwrap_or(""),
        )
    }

    fn declaration_cells_known_same(&self, previous: &Self) -> bool {
        Arc::ptr_eq(&self.batch, &previous.batch)
            && previous.index + 1 == self.index
            && self
                .batch
                .agrees_with_previous
                .get(self.index)
                .copied()
                .unwrap_or(false)
    }

    fn integer(&self, index: usize) -> Typed<i64> {
        self.batch
            .columns
            .get(index)
            .map_or(Typed::Text, |column| column.integer(self.index))
    }

    fn instant(&self, index: usize) -> Typed<pbjson_types::Timestamp> {
        self.batch
            .columns
            .get(index)
            .map_or(Typed::Text, |column| column.instant(self.index))
    }

    fn into_raw(rows: Vec<(u64, Self)>, layout: Arc<Layout>) -> RawRecord {
        RawRecord::ArrowRows { rows, layout }
    }
}

/// A column's cells as text, and as numbers or instants where the column
/// holds them.
enum TextColumn {
    Plain(StringArray),
    /// A key per row into the distinct values, as a dictionary-encoded
    /// column is read (the values are not copied out per row).
    Dictionary {
        keys: Int32Array,
        values: StringArray,
    },
    /// The same text in every row of the batch: a column of nulls only, or
    /// a dictionary column with one key throughout (a file of one day, one
    /// dataset, one currency). Read without a per-row lookup.
    Constant(Box<str>),
    /// Integers (of any width that fits in 64 bits), as a data lake's
    /// amounts, masses and counts are typed. The fields that are numbers
    /// read them as numbers; the text of the column is made (once, for the
    /// whole batch) only if a cell of it is read as text.
    Integers {
        values: Int64Array,
        text: OnceLock<StringArray>,
    },
    /// Timestamps, as counts of `unit` since the epoch; likewise read as
    /// instants, their text made only if asked for.
    Instants {
        counts: Int64Array,
        unit: TimeUnit,
        text: OnceLock<StringArray>,
    },
}

impl TextColumn {
    /// A column of integers, its text not yet made.
    fn integers(values: Int64Array) -> Self {
        Self::Integers {
            values,
            text: OnceLock::new(),
        }
    }

    /// The column as [`TextColumn::Constant`] when every row reads the same
    /// text; as it was otherwise. The check costs one pass over the keys or
    /// the null count, once per batch, against a lookup per row and cell.
    fn constant_if_uniform(self) -> Self {
        match &self {
            Self::Plain(values) if values.null_count() == values.len() => Self::Constant("".into()),
            Self::Integers { values, .. } | Self::Instants { counts: values, .. }
                if values.null_count() == values.len() =>
            {
                Self::Constant("".into())
            }
            Self::Dictionary { keys, .. } if keys.null_count() == keys.len() => {
                Self::Constant("".into())
            }
            Self::Dictionary { keys, .. }
                if keys.null_count() == 0
                    && keys.values().windows(2).all(|pair| pair[0] == pair[1]) =>
            {
                Self::Constant(self.text(0).into())
            }
            Self::Plain(_)
            | Self::Dictionary { .. }
            | Self::Constant(_)
            | Self::Integers { .. }
            | Self::Instants { .. } => self,
        }
    }

    /// Row `row`'s cell as an integer, where the column holds integers.
    fn integer(&self, row: usize) -> Typed<i64> {
        match self {
            Self::Integers { values, .. } if values.is_null(row) => Typed::Null,
            Self::Integers { values, .. } => Typed::Value(values.value(row)),
            Self::Plain(_)
            | Self::Dictionary { .. }
            | Self::Constant(_)
            | Self::Instants { .. } => Typed::Text,
        }
    }

    /// Row `row`'s cell as an instant, where the column holds timestamps;
    /// one chrono cannot represent is read as its text, which says so.
    fn instant(&self, row: usize) -> Typed<pbjson_types::Timestamp> {
        match self {
            Self::Instants { counts, .. } if counts.is_null(row) => Typed::Null,
            Self::Instants { counts, unit, .. } => {
                timestamp(counts.value(row), *unit).map_or(Typed::Text, Typed::Value)
            }
            Self::Plain(_)
            | Self::Dictionary { .. }
            | Self::Constant(_)
            | Self::Integers { .. } => Typed::Text,
        }
    }

    /// Whether row `row` of this column and row `other_row` of `other`
    /// hold the same value, where both columns are typed alike (the same
    /// value is the same text: each value has one text form); `None` when
    /// their text must be compared.
    fn same_value(&self, row: usize, other: &TextColumn, other_row: usize) -> Option<bool> {
        let cell =
            |values: &Int64Array, row: usize| values.is_valid(row).then(|| values.value(row));
        match (self, other) {
            (Self::Integers { values: a, .. }, Self::Integers { values: b, .. }) => {
                Some(cell(a, row) == cell(b, other_row))
            }
            (
                Self::Instants {
                    counts: a,
                    unit: unit_a,
                    ..
                },
                Self::Instants {
                    counts: b,
                    unit: unit_b,
                    ..
                },
            ) if unit_a == unit_b => Some(cell(a, row) == cell(b, other_row)),
            _ => None,
        }
    }

    /// Whether rows `a` and `b` (within the batch) read the same. The text
    /// is not read when the column is the same in every row, or when both
    /// rows have the same key into a dictionary.
    fn same_rows(&self, a: usize, b: usize) -> bool {
        match self {
            Self::Constant(_) => true,
            Self::Dictionary { keys, .. }
                if keys.is_valid(a) == keys.is_valid(b)
                    && (keys.is_null(a) || keys.value(a) == keys.value(b)) =>
            {
                true
            }
            Self::Integers { values, .. } | Self::Instants { counts: values, .. } => {
                values.is_valid(a) == values.is_valid(b)
                    && (values.is_null(a) || values.value(a) == values.value(b))
            }
            Self::Dictionary { .. } | Self::Plain(_) => {
                super::csv::same_text(self.text(a), self.text(b))
            }
        }
    }

    /// Keeps the rows of `rows` that read as the row before them, as
    /// [`Self::same_rows`] of `row - 1` and `row` says, the column's kind
    /// and nulls looked at once for all of them: compared one by one, the
    /// rows of a batch were 5-6 % of decoding a Parquet file in `perf`.
    /// Every row of `rows` is at least 1 and within the batch.
    fn retain_rows_read_as_previous(&self, rows: &mut Vec<usize>) {
        match self {
            Self::Constant(_) => {}
            Self::Dictionary { keys, .. } if keys.null_count() == 0 => {
                let keys = keys.values();
                // Two keys may hold the same text: then the texts decide.
                rows.retain(|&row| {
                    keys[row - 1] == keys[row]
                        || super::csv::same_text(self.text(row - 1), self.text(row))
                });
            }
            Self::Plain(values) if values.null_count() == 0 => {
                rows.retain(|&row| super::csv::same_text(values.value(row - 1), values.value(row)));
            }
            Self::Integers { values, .. } | Self::Instants { counts: values, .. }
                if values.null_count() == 0 =>
            {
                let values = values.values();
                rows.retain(|&row| values[row - 1] == values[row]);
            }
            Self::Dictionary { .. }
            | Self::Plain(_)
            | Self::Integers { .. }
            | Self::Instants { .. } => rows.retain(|&row| self.same_rows(row - 1, row)),
        }
    }

    /// Row `row`'s cell; a null is an empty cell. `row` is within the batch.
    fn text(&self, row: usize) -> &str {
        fn cell(values: &StringArray, row: usize) -> &str {
            if values.is_null(row) {
                ""
            } else {
                values.value(row)
            }
        }
        match self {
            Self::Constant(text) => text,
            Self::Plain(values) => cell(values, row),
            Self::Integers { values, text } => cell(
                text.get_or_init(|| {
                    format_column(values.len(), |i| values.is_null(i), |i| values.value(i))
                }),
                row,
            ),
            Self::Instants { counts, unit, text } => cell(
                text.get_or_init(|| {
                    format_column(
                        counts.len(),
                        |i| counts.is_null(i),
                        |i| instant(counts.value(i), *unit),
                    )
                }),
                row,
            ),
            Self::Dictionary { keys, values } => {
                if keys.is_null(row) {
                    return "";
                }
                // The reader checked every key against the dictionary's
                // length; a bad key still reads as an empty cell, not a panic.
                match usize::try_from(keys.value(row)) {
                    Ok(key) if key < values.len() && !values.is_null(key) => values.value(key),
                    _ => "",
                }
            }
        }
    }
}

/// A column as text: UTF-8 as it is (a dictionary of UTF-8 values with
/// 32-bit keys kept as one), other scalar types formatted as `to_string`
/// formats them; the type's name when it has no text form.
fn as_text(column: &ArrayRef) -> Result<TextColumn, DataType> {
    let len = column.len();
    let is_null = |i| column.is_null(i);
    macro_rules! primitive {
        ($t:ty) => {{
            let values = column.as_primitive::<$t>();
            format_column(len, is_null, |i| values.value(i))
        }};
    }
    // Integers that fit in 64 bits are kept as numbers (widened).
    macro_rules! integers {
        ($t:ty) => {{
            return Ok(TextColumn::integers(
                column.as_primitive::<$t>().unary(i64::from),
            ));
        }};
    }
    if let DataType::Dictionary(key, value) = column.data_type()
        && **key == DataType::Int32
        && **value == DataType::Utf8
    {
        let dictionary = column.as_dictionary::<Int32Type>();
        return Ok(TextColumn::Dictionary {
            keys: dictionary.keys().clone(),
            values: dictionary.values().as_string::<i32>().clone(),
        });
    }
    // Other dictionaries (pandas' categoricals: 8-bit keys; large or view
    // strings, numbers): their values as text, their keys widened.
    if let Some(dictionary) = column.as_any_dictionary_opt() {
        let values = match as_text(dictionary.values())? {
            TextColumn::Plain(values) => values,
            typed @ (TextColumn::Integers { .. } | TextColumn::Instants { .. }) => {
                let len = dictionary.values().len();
                StringArray::from_iter((0..len).map(|i| {
                    dictionary
                        .values()
                        .is_valid(i)
                        .then(|| typed.text(i).to_owned())
                }))
            }
            TextColumn::Dictionary { .. } | TextColumn::Constant(_) => {
                return Err(column.data_type().clone());
            }
        };
        if values.is_empty() {
            return Ok(TextColumn::Plain(StringArray::new_null(len)));
        }
        let keys = dictionary
            .normalized_keys()
            .into_iter()
            .map(i32::try_from)
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|_| column.data_type().clone())?;
        return Ok(TextColumn::Dictionary {
            keys: Int32Array::new(keys.into(), dictionary.keys().logical_nulls()),
            values,
        });
    }
    // Other arrow types (dates, decimals, nested) have no cell form here.
    #[allow(clippy::wildcard_enum_match_arm)]
    Ok(TextColumn::Plain(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().clone(),
        DataType::LargeUtf8 => {
            let values = column.as_string::<i64>();
            format_column(len, is_null, |i| values.value(i))
        }
        DataType::Utf8View => {
            let values = column.as_string_view();
            format_column(len, is_null, |i| values.value(i))
        }
        DataType::Boolean => {
            let values = column.as_boolean();
            format_column(len, is_null, |i| values.value(i))
        }
        DataType::Int8 => integers!(Int8Type),
        DataType::Int16 => integers!(Int16Type),
        DataType::Int32 => integers!(Int32Type),
        // Kept as read: `unary` would copy the values for nothing.
        DataType::Int64 => {
            return Ok(TextColumn::integers(
                column.as_primitive::<Int64Type>().clone(),
            ));
        }
        DataType::UInt8 => integers!(UInt8Type),
        DataType::UInt16 => integers!(UInt16Type),
        DataType::UInt32 => integers!(UInt32Type),
        DataType::UInt64 => {
            let values = column.as_primitive::<UInt64Type>();
            // Kept as numbers when every one fits in 64 signed bits; as text
            // otherwise (a field that is a number then refuses the cell).
            if let Ok(values) = values
                .try_unary(|v| i64::try_from(v).map_err(|e| ArrowError::CastError(e.to_string())))
            {
                return Ok(TextColumn::integers(values));
            }
            format_column(len, is_null, |i| values.value(i))
        }
        DataType::Float32 => primitive!(Float32Type),
        DataType::Float64 => primitive!(Float64Type),
        // An instant since the epoch in UTC, whatever zone the column names;
        // a column without one (pandas' naive datetimes) is read as UTC.
        DataType::Timestamp(unit, _) => {
            macro_rules! counts {
                ($t:ty) => {{ column.as_primitive::<$t>().reinterpret_cast::<Int64Type>() }};
            }
            return Ok(TextColumn::Instants {
                counts: match unit {
                    TimeUnit::Second => counts!(TimestampSecondType),
                    TimeUnit::Millisecond => counts!(TimestampMillisecondType),
                    TimeUnit::Microsecond => counts!(TimestampMicrosecondType),
                    TimeUnit::Nanosecond => counts!(TimestampNanosecondType),
                },
                unit: *unit,
                text: OnceLock::new(),
            });
        }
        other => return Err(other.clone()),
    }))
}

/// A column's values as text, as `to_string` formats them; nulls stay null.
fn format_column<T: std::fmt::Display>(
    len: usize,
    is_null: impl Fn(usize) -> bool,
    value: impl Fn(usize) -> T,
) -> StringArray {
    let mut text = StringBuilder::with_capacity(len, len * 8);
    for i in 0..len {
        if is_null(i) {
            text.append_null();
        } else {
            // Writing into the builder then appending "" ends the value.
            let _ = write!(text, "{}", value(i));
            text.append_value("");
        }
    }
    text.finish()
}

/// The instant `raw` counts of `unit` after the epoch, in UTC.
fn instant(raw: i64, unit: TimeUnit) -> Instant {
    Instant {
        raw,
        at: match unit {
            TimeUnit::Second => DateTime::from_timestamp(raw, 0),
            TimeUnit::Millisecond => DateTime::from_timestamp_millis(raw),
            TimeUnit::Microsecond => DateTime::from_timestamp_micros(raw),
            TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(raw)),
        },
    }
}

/// The instant `raw` counts of `unit` after the epoch, as seconds and
/// nanoseconds, where chrono represents it (as [`instant`] reads it): worked
/// out without the calendar date, which the validation works out once
/// anyway. Through chrono and back it was 2-3 % of decoding a Parquet file.
fn timestamp(raw: i64, unit: TimeUnit) -> Option<pbjson_types::Timestamp> {
    /// chrono's first and last second.
    const REPRESENTED: std::ops::RangeInclusive<i64> =
        DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp();
    // Each unit divided by its constant: a multiplication, not a division.
    let (seconds, nanos) = match unit {
        TimeUnit::Second => (raw, 0),
        TimeUnit::Millisecond => (raw.div_euclid(1_000), raw.rem_euclid(1_000) * 1_000_000),
        TimeUnit::Microsecond => (raw.div_euclid(1_000_000), raw.rem_euclid(1_000_000) * 1_000),
        TimeUnit::Nanosecond => (raw.div_euclid(1_000_000_000), raw.rem_euclid(1_000_000_000)),
    };
    Some(pbjson_types::Timestamp {
        seconds: Some(seconds).filter(|s| REPRESENTED.contains(s))?,
        nanos: i32::try_from(nanos).ok()?,
    })
}

/// A timestamp cell: RFC 3339 in UTC, as the text columns hold it; the raw
/// count when chrono cannot represent it (the row is then refused for it).
struct Instant {
    raw: i64,
    at: Option<DateTime<Utc>>,
}

impl std::fmt::Display for Instant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some(at) => f.write_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "{} (out of range)", self.raw),
        }
    }
}

/// Writes examples as Parquet or Arrow IPC, one row per goods item: the
/// numbers (amounts in minor units, masses, quantities, item numbers) as
/// 64-bit integers and the instants as microseconds in UTC, as a data lake
/// types them; every other column as UTF-8. An empty cell is a null.
pub struct ColumnarWriter<W: Write + Send> {
    writer: ColumnarFile<W>,
    schema: Arc<Schema>,
    /// Cells of the rows not yet written, column by column.
    columns: Vec<CellBuilder>,
    /// Rows in `columns`.
    rows: usize,
    row: Vec<String>,
}

/// The columns written as integers.
const INTEGER_COLUMNS: [&str; 7] = [
    "transport_cost_minor",
    "goods_item_number",
    "value_minor",
    "gross_mass_g",
    "quantity",
    "finding_value_minor",
    "truth_value_minor",
];

/// The columns written as timestamps.
const INSTANT_COLUMNS: [&str; 3] = ["lodged_at", "arrival_at", "inspected_at"];

/// The columns written as booleans (a finding's flags; null where the
/// goods item has no finding).
const BOOLEAN_COLUMNS: [&str; 3] = ["finding", "finding_undervalued", "finding_misdescribed"];

/// The time zone of the timestamps written.
const UTC: &str = "UTC";

/// One column's cells as they are written. The rows come as the CSV
/// writer's text ([`example_rows`], one row producer for every format),
/// so numbers, instants and flags are parsed back from it: this costs the writer
/// (`generate`, `export`), not the readers, which read them as numbers.
enum CellBuilder {
    Text(StringBuilder),
    Integer(Int64Builder),
    Instant(TimestampMicrosecondBuilder),
    Boolean(BooleanBuilder),
}

impl CellBuilder {
    fn for_column(name: &str) -> Self {
        if INTEGER_COLUMNS.contains(&name) {
            Self::Integer(Int64Builder::with_capacity(BATCH_ROWS))
        } else if INSTANT_COLUMNS.contains(&name) {
            Self::Instant(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone(UTC))
        } else if BOOLEAN_COLUMNS.contains(&name) {
            Self::Boolean(BooleanBuilder::with_capacity(BATCH_ROWS))
        } else {
            Self::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 8))
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Self::Text(_) => DataType::Utf8,
            Self::Integer(_) => DataType::Int64,
            Self::Instant(_) => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Self::Boolean(_) => DataType::Boolean,
        }
    }

    fn append(&mut self, cell: &str) -> Result<(), IoError> {
        // Building the batch is Arrow's part, whichever container is written.
        let unwritable = |what: &str| IoError::Arrow(format!("{cell:?} is not {what}"));
        match self {
            Self::Text(cells) if cell.is_empty() => cells.append_null(),
            Self::Integer(cells) if cell.is_empty() => cells.append_null(),
            Self::Instant(cells) if cell.is_empty() => cells.append_null(),
            Self::Boolean(cells) if cell.is_empty() => cells.append_null(),
            Self::Text(cells) => cells.append_value(cell),
            Self::Integer(cells) => {
                cells.append_value(cell.parse().map_err(|_| unwritable("an integer"))?);
            }
            Self::Instant(cells) => cells.append_value(
                DateTime::parse_from_rfc3339(cell)
                    .map_err(|_| unwritable("an RFC 3339 instant"))?
                    .timestamp_micros(),
            ),
            Self::Boolean(cells) => cells.append_value(match cell {
                "true" => true,
                "false" => false,
                _ => return Err(unwritable("true or false")),
            }),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(cells) => Arc::new(cells.finish()),
            Self::Integer(cells) => Arc::new(cells.finish()),
            Self::Instant(cells) => Arc::new(cells.finish()),
            Self::Boolean(cells) => Arc::new(cells.finish()),
        }
    }
}

impl<W: Write + Send> ColumnarWriter<W> {
    pub fn new(output: W, container: Container) -> Result<Self, IoError> {
        let columns: Vec<CellBuilder> = COLUMNS
            .iter()
            .map(|name| CellBuilder::for_column(name))
            .collect();
        let schema = Arc::new(Schema::new(
            COLUMNS
                .iter()
                .zip(&columns)
                .map(|(name, cells)| Field::new(*name, cells.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        // Every column with a dictionary, as before: the readers of these
        // files (and the decode benchmarks) see what they always saw.
        let writer = ColumnarFile::new(output, Arc::clone(&schema), container, &[])?;
        Ok(Self {
            writer,
            schema,
            columns,
            rows: 0,
            row: vec![String::new(); COLUMNS.len()],
        })
    }

    pub fn write_pb(&mut self, example: &pb::TrainingExample) -> Result<(), IoError> {
        let (columns, rows) = (&mut self.columns, &mut self.rows);
        example_rows(example, &mut self.row, |row| {
            for (column, cell) in columns.iter_mut().zip(row) {
                column.append(cell)?;
            }
            *rows += 1;
            Ok(())
        })?;
        if self.rows >= BATCH_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<(), IoError> {
        if self.rows == 0 {
            return Ok(());
        }
        self.rows = 0;
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(CellBuilder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(parquet_err)?;
        self.writer.write(&batch)
    }

    /// Writes what is buffered and the file footer; gives the output back.
    pub fn finish(mut self) -> Result<W, IoError> {
        self.flush_rows()?;
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Date32Array, Float64Array, LargeStringArray, StringViewArray};

    #[test]
    fn distinct_columns_are_written_without_a_dictionary() {
        let ids: Vec<String> = (0..1000).map(|i| format!("id-{i}")).collect();
        let kinds: Vec<&str> = (0..1000).map(|i| ["a", "b"][i % 2]).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("kind", Arc::new(StringArray::from(kinds))),
        ])
        .unwrap();
        let mut file =
            ColumnarFile::new(Vec::new(), batch.schema(), Container::Parquet, &["id"]).unwrap();
        file.write(&batch).unwrap();
        let bytes = bytes::Bytes::from(file.finish().unwrap());
        let metadata = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .metadata()
            .clone();
        let dictionary = |column: usize| {
            metadata
                .row_group(0)
                .column(column)
                .encodings()
                .any(|e| e == Encoding::RLE_DICTIONARY)
        };
        assert!(!dictionary(0), "the distinct column has no dictionary");
        assert!(dictionary(1), "the others keep theirs");
    }

    #[test]
    fn rows_agree_with_the_previous_only_when_every_compared_column_does() {
        let ids = TextColumn::Plain(StringArray::from(vec!["A", "A", "A", "B", "B", "C", "C"]));
        // Keys 0 and 2 are different entries of the same text; null keys
        // read as the empty text of key 1.
        let names = TextColumn::Dictionary {
            keys: Int32Array::from(vec![
                Some(0),
                Some(2),
                Some(3),
                None,
                Some(1),
                Some(0),
                None,
            ]),
            values: StringArray::from(vec!["x", "", "x", "y"]),
        };
        let items = TextColumn::Plain(StringArray::from(vec!["1", "2", "3", "1", "2", "1", "2"]));
        let constant = TextColumn::Constant("EUR".into());
        let columns = [ids, items, names, constant];
        let agrees = |compared: &[usize]| rows_agreeing_with_previous(&columns, compared, 7);
        assert_eq!(
            agrees(&[0, 2, 3]),
            [false, true, false, false, true, false, false],
            "A's third row has another name; B's null and empty agree; C's x and null do not"
        );
        assert_eq!(
            agrees(&[0, 3, 9]),
            [false, true, true, false, true, false, true],
            "a column the batch lacks is not compared"
        );
        assert_eq!(agrees(&[0, 1]), [false; 7], "item columns differ");
        // Columns without nulls: two keys of one text agree, typed values
        // agree by value.
        let no_nulls = [
            TextColumn::Dictionary {
                keys: Int32Array::from(vec![0, 2, 1, 1, 0, 0, 2]),
                values: StringArray::from(vec!["x", "y", "x"]),
            },
            TextColumn::integers(Int64Array::from(vec![5, 5, 5, 6, 6, 7, 7])),
            TextColumn::Plain(StringArray::from(vec!["p", "p", "q", "q", "q", "r", "r"])),
        ];
        let agrees_no_nulls =
            |compared: &[usize]| rows_agreeing_with_previous(&no_nulls, compared, 7);
        assert_eq!(
            agrees_no_nulls(&[0]),
            [false, true, false, true, false, true, true],
            "keys 0 and 2 are both x"
        );
        assert_eq!(
            agrees_no_nulls(&[1]),
            [false, true, true, false, true, false, true]
        );
        assert_eq!(
            agrees_no_nulls(&[2]),
            [false, true, false, true, true, false, true]
        );
        assert_eq!(
            agrees_no_nulls(&[0, 1, 2]),
            [false, true, false, false, false, false, true]
        );
        for row in 1..7 {
            for (c, column) in no_nulls.iter().enumerate() {
                assert_eq!(
                    agrees_no_nulls(&[c])[row],
                    column.text(row - 1) == column.text(row),
                    "column {c} row {row}"
                );
            }
        }
        assert_eq!(agrees(&[]), [false, true, true, true, true, true, true]);
        assert_eq!(rows_agreeing_with_previous(&columns, &[0], 0), [false; 0]);
        // The answer matches comparing the texts, pair by pair.
        for row in 1..7 {
            let same = [0, 2, 3]
                .iter()
                .all(|&c| columns[c].text(row - 1) == columns[c].text(row));
            assert_eq!(agrees(&[0, 2, 3])[row], same, "row {row}");
        }
    }

    fn rows_of(batch: RecordBatch) -> Vec<Row<ArrowRow>> {
        let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        let mut rows = ColumnarRows::from_bytes(
            w.into_inner().unwrap(),
            Container::Parquet,
            Projection::Examples,
        )
        .unwrap();
        std::iter::from_fn(|| rows.next_row().unwrap()).collect()
    }

    /// Each row's first `columns` cells, joined by `|`.
    fn joined_cells(rows: &[Row<ArrowRow>], columns: usize) -> Vec<String> {
        rows.iter()
            .map(|(_, row)| {
                let row = row.as_ref().unwrap();
                let cells: Vec<&str> = (0..columns).map(|i| row.cell(i).unwrap()).collect();
                cells.join("|")
            })
            .collect()
    }

    fn column_kinds(row: &ArrowRow) -> Vec<&'static str> {
        row.batch
            .columns
            .iter()
            .map(|column| match column {
                TextColumn::Plain(_) => "plain",
                TextColumn::Dictionary { .. } => "dictionary",
                TextColumn::Constant(_) => "constant",
                TextColumn::Integers { .. } => "integers",
                TextColumn::Instants { .. } => "instants",
            })
            .collect()
    }

    #[test]
    fn columns_the_same_in_every_row_are_read_as_one_text() {
        use arrow_array::DictionaryArray;
        // One value everywhere; one value and a null; nulls only (plain and
        // dictionary); two values; a key that points at a null value.
        let dictionary = |keys: Vec<Option<i32>>, values: Vec<Option<&str>>| {
            Arc::new(DictionaryArray::<Int32Type>::new(
                Int32Array::from(keys),
                Arc::new(StringArray::from(values)),
            )) as ArrayRef
        };
        let batch = RecordBatch::try_from_iter_with_nullable([
            (
                "one",
                dictionary(vec![Some(1); 3], vec![Some("x"), Some("H7")]),
                true,
            ),
            (
                "one_and_null",
                dictionary(vec![Some(0), None, Some(0)], vec![Some("EUR")]),
                true,
            ),
            (
                "plain_nulls",
                Arc::new(StringArray::new_null(3)) as ArrayRef,
                true,
            ),
            (
                "dictionary_nulls",
                dictionary(vec![None; 3], vec![Some("y")]),
                true,
            ),
            (
                "two",
                dictionary(vec![Some(0), Some(1), Some(0)], vec![Some("a"), Some("b")]),
                true,
            ),
            ("null_value", dictionary(vec![Some(0); 3], vec![None]), true),
        ])
        .unwrap();
        let rows: Vec<ArrowRow> = rows_of(batch)
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect();
        assert_eq!(
            column_kinds(&rows[0]),
            [
                "constant",
                "dictionary",
                "constant",
                "constant",
                "dictionary",
                "constant"
            ]
        );
        let cells: Vec<Vec<&str>> = rows
            .iter()
            .map(|row| (0..6).map(|i| row.cell(i).unwrap()).collect())
            .collect();
        assert_eq!(
            cells,
            [
                ["H7", "EUR", "", "", "a", ""],
                ["H7", "", "", "", "b", ""],
                ["H7", "EUR", "", "", "a", ""],
            ]
        );
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            for (column, (cell_a, cell_b)) in cells[a].iter().zip(&cells[b]).enumerate() {
                assert_eq!(
                    rows[a].same_cell(&rows[b], column),
                    cell_a == cell_b,
                    "rows {a} and {b}, column {column}"
                );
            }
        }
    }

    #[test]
    fn typed_columns_read_as_their_text_and_nulls_as_empty_cells() {
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from(vec![Some(-7), None])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(Float64Array::from(vec![Some(1.0), Some(2.5)])),
            ),
            ("c", Arc::new(BooleanArray::from(vec![Some(true), None]))),
            ("d", Arc::new(LargeStringArray::from(vec![Some("x"), None]))),
            ("e", Arc::new(StringViewArray::from(vec![None, Some("y")]))),
            ("f", Arc::new(StringArray::from(vec![Some("z"), None]))),
        ])
        .unwrap();
        let rows = rows_of(batch);
        let cells = |(number, row): &Row<ArrowRow>| {
            let row = row.as_ref().unwrap();
            let cells: Vec<&str> = (0..6).map(|i| row.cell(i).unwrap()).collect();
            assert_eq!(row.cell(6), None);
            (*number, cells.join("|"))
        };
        assert_eq!(cells(&rows[0]), (1, "-7|1|true|x||z".to_owned()));
        assert_eq!(cells(&rows[1]), (2, "|2.5|||y|".to_owned()));
        // The integers are also read as numbers; the other columns are not.
        let row = |i: usize| rows[i].1.as_ref().unwrap();
        assert_eq!(row(0).integer(0), Typed::Value(-7));
        assert_eq!(row(1).integer(0), Typed::Null);
        assert_eq!(row(0).integer(1), Typed::Text);
        assert_eq!(row(0).integer(5), Typed::Text);
        assert_eq!(row(0).integer(6), Typed::Text);
        assert_eq!(row(0).instant(0), Typed::Text);
    }

    #[test]
    fn integer_columns_of_every_width_read_as_numbers_and_as_their_text() {
        use arrow_array::{
            Int8Array, Int16Array, Int32Array, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
        };
        let batch = RecordBatch::try_from_iter([
            (
                "i8",
                Arc::new(Int8Array::from(vec![Some(-8), None])) as ArrayRef,
            ),
            ("i16", Arc::new(Int16Array::from(vec![Some(-16), Some(0)]))),
            (
                "i32",
                Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(3)])),
            ),
            ("u8", Arc::new(UInt8Array::from(vec![Some(u8::MAX), None]))),
            ("u16", Arc::new(UInt16Array::from(vec![Some(16), Some(1)]))),
            (
                "u32",
                Arc::new(UInt32Array::from(vec![Some(u32::MAX), Some(2)])),
            ),
            ("u64", Arc::new(UInt64Array::from(vec![Some(64), Some(5)]))),
            // One value past i64: the column is read as text alone.
            (
                "u64 big",
                Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(6)])),
            ),
        ])
        .unwrap();
        let rows = rows_of(batch);
        let row = |i: usize| rows[i].1.as_ref().unwrap();
        let numbers = |i: usize| (0..8).map(|c| row(i).integer(c)).collect::<Vec<_>>();
        use Typed::{Null, Text, Value};
        assert_eq!(
            numbers(0),
            [
                Value(-8),
                Value(-16),
                Value(i64::from(i32::MIN)),
                Value(255),
                Value(16),
                Value(i64::from(u32::MAX)),
                Value(64),
                Text
            ]
        );
        assert_eq!(
            numbers(1),
            [
                Null,
                Value(0),
                Value(3),
                Null,
                Value(1),
                Value(2),
                Value(5),
                Text
            ]
        );
        assert_eq!(
            joined_cells(&rows, 8),
            [
                format!("-8|-16|{}|255|16|{}|64|{}", i32::MIN, u32::MAX, u64::MAX),
                "|0|3||1|2|5|6".to_owned(),
            ]
        );
        let kinds = column_kinds(row(0));
        assert_eq!(kinds[..7], ["integers"; 7]);
        assert_eq!(kinds[7], "plain");
    }

    /// A file of 23 row groups of 7 rows, three rows per declaration (so
    /// that declarations straddle row groups): an id, an item number, a
    /// kind from a dictionary and nulls.
    fn in_small_row_groups() -> Vec<u8> {
        let rows = 161;
        let ids: Vec<String> = (0..rows).map(|i| format!("D{}", i / 3)).collect();
        let items: Vec<String> = (0..rows).map(|i| (i % 3 + 1).to_string()).collect();
        let kinds: Vec<Option<String>> = (0..rows)
            .map(|i| (i % 5 != 0).then(|| format!("kind {}", i % 4)))
            .collect();
        let batch = RecordBatch::try_from_iter([
            (
                "declaration_id",
                Arc::new(StringArray::from(ids)) as ArrayRef,
            ),
            ("goods_item_number", Arc::new(StringArray::from(items))),
            ("dataset", Arc::new(StringArray::from(kinds))),
            ("mrn", Arc::new(StringArray::new_null(rows))),
        ])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(7))
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties)).unwrap();
        w.write(&batch).unwrap();
        w.into_inner().unwrap()
    }

    /// A Parquet file's rows, its row groups read by `readers` threads.
    fn parquet_rows(file: Vec<u8>, readers: usize) -> ColumnarRows {
        ColumnarRows::from_bytes_with_readers(
            file,
            Container::Parquet,
            Projection::Examples,
            readers,
        )
        .unwrap()
    }

    /// Each row read from `rows` as its number and its cells joined by `|`,
    /// until the end or the first error (returned last).
    fn numbered_rows(mut rows: ColumnarRows) -> (Vec<(u64, String)>, Option<IoError>) {
        let mut read = Vec::new();
        loop {
            match rows.next_row() {
                Ok(Some((number, row))) => {
                    let row = row.unwrap();
                    let cells: Vec<&str> = (0..4).map(|i| row.cell(i).unwrap()).collect();
                    read.push((number, cells.join("|")));
                }
                Ok(None) => return (read, None),
                Err(e) => return (read, Some(e)),
            }
        }
    }

    #[test]
    fn row_groups_read_by_several_threads_come_out_as_one_thread_reads_them() {
        let file = in_small_row_groups();
        let read = |readers| {
            let rows = parquet_rows(file.clone(), readers);
            let cpu = rows.reader_threads_cpu();
            let (rows, error) = numbered_rows(rows);
            // The reader threads' CPU time, complete now that they are joined.
            let threads_used_cpu = cpu.total() > std::time::Duration::ZERO;
            assert_eq!(threads_used_cpu, readers > 1, "{readers} readers");
            (rows, error)
        };
        let (one, error) = read(1);
        assert!(error.is_none());
        assert_eq!(one.len(), 161);
        assert_eq!(one[0], (1, "D0|1||".to_string()));
        assert_eq!(one[159], (160, "D53|1|kind 3|".to_string()));
        // Two and three readers, as many as row groups, and more.
        for readers in [2, 3, 23, 64] {
            let (rows, error) = read(readers);
            assert!(error.is_none(), "{readers} readers: {error:?}");
            assert_eq!(rows, one, "{readers} readers");
        }
    }

    #[test]
    fn a_row_group_that_cannot_be_read_ends_the_rows_with_its_error() {
        let mut file = in_small_row_groups();
        let metadata =
            ArrowReaderMetadata::load(&bytes::Bytes::from(file.clone()), ArrowReaderOptions::new())
                .unwrap();
        // Row group 5's first page header overwritten with junk.
        let chunk = metadata.metadata().row_group(5).column(0);
        let start = chunk
            .dictionary_page_offset()
            .unwrap_or(chunk.data_page_offset()) as usize;
        file[start..start + 16].fill(0xff);
        for readers in [1, 3] {
            let rows = parquet_rows(file.clone(), readers);
            let (read, error) = numbered_rows(rows);
            assert!(
                matches!(error, Some(IoError::Parquet(_))),
                "{readers} readers: {error:?}"
            );
            if readers > 1 {
                // The five row groups before it, in order.
                assert_eq!(read.len(), 35);
                assert_eq!(read[34].0, 35);
            }
        }
    }

    #[test]
    fn rows_left_unread_stop_the_reader_threads() {
        let mut rows = parquet_rows(in_small_row_groups(), 4);
        assert!(rows.next_row().unwrap().is_some());
        // Dropping the rows joins the readers, which are blocked on a full
        // lane: this returns only if they see that no one reads any more.
        drop(rows);
    }

    #[test]
    fn text_dictionary_encoded_in_every_row_group_is_read_as_keys() {
        // "few": dictionary pages only. "many": a dictionary page too small
        // for its values, so the writer falls back to plain pages. "none":
        // nulls only. Row groups of 300 rows, batches of 8,192: a batch
        // reads several row groups, each with a dictionary of its own.
        let rows = 1_000;
        let few: Vec<String> = (0..rows).map(|i| format!("kind {}", i % 3)).collect();
        let many: Vec<String> = (0..rows).map(|i| format!("declaration {i}")).collect();
        let batch = RecordBatch::try_from_iter([
            ("few", Arc::new(StringArray::from(few.clone())) as ArrayRef),
            ("many", Arc::new(StringArray::from(many.clone()))),
            ("none", Arc::new(StringArray::new_null(rows))),
        ])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(300))
            .set_dictionary_page_size_limit(256)
            .set_data_page_row_count_limit(50)
            .set_write_batch_size(50)
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties)).unwrap();
        w.write(&batch).unwrap();
        let mut read = ColumnarRows::from_bytes(
            w.into_inner().unwrap(),
            Container::Parquet,
            Projection::Examples,
        )
        .unwrap();
        let rows: Vec<ArrowRow> = std::iter::from_fn(|| read.next_row().unwrap())
            .map(|(_, row)| row.unwrap())
            .collect();
        assert_eq!(column_kinds(&rows[0]), ["dictionary", "plain", "constant"]);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.cell(0), Some(few[i].as_str()));
            assert_eq!(row.cell(1), Some(many[i].as_str()));
            assert_eq!(row.cell(2), Some(""));
        }
        // Rows of one row group, and rows of different row groups (whose
        // dictionaries the reader merges into one for the batch): the same
        // text exactly when the values are equal.
        for (a, b) in [(0, 3), (0, 1), (299, 302), (2, 302), (1, 301)] {
            assert_eq!(
                rows[a].same_cell(&rows[b], 0),
                few[a] == few[b],
                "rows {a} and {b}"
            );
            assert_eq!(rows[a].same_cell(&rows[b], 1), a == b);
        }
    }

    #[test]
    fn dictionary_columns_of_other_tools_read_as_their_text() {
        use arrow_array::types::Int8Type;
        use arrow_array::{DictionaryArray, LargeStringArray};
        // pandas' categoricals: 8-bit keys; a dictionary of large strings,
        // one of numbers, and one with no values at all.
        let small: DictionaryArray<Int8Type> = vec![Some("H7"), None, Some("H1"), Some("H7")]
            .into_iter()
            .collect();
        let large = DictionaryArray::<Int8Type>::new(
            arrow_array::Int8Array::from(vec![Some(1), Some(0), Some(1), None]),
            Arc::new(LargeStringArray::from(vec!["EUR", "CNY"])),
        );
        let numbers = DictionaryArray::<Int32Type>::new(
            Int32Array::from(vec![0, 0, 1, 1]),
            Arc::new(Int64Array::from(vec![180, -7])),
        );
        let empty = DictionaryArray::<Int8Type>::new(
            arrow_array::Int8Array::new_null(4),
            Arc::new(StringArray::from(Vec::<&str>::new())),
        );
        let batch = RecordBatch::try_from_iter([
            ("dataset", Arc::new(small) as ArrayRef),
            ("currency", Arc::new(large)),
            ("mass", Arc::new(numbers)),
            ("empty", Arc::new(empty)),
        ])
        .unwrap();
        let expected = ["H7|CNY|180|", "|EUR|180|", "H1|CNY|-7|", "H7||-7|"];
        // Parquet keeps the Arrow schema, so these come back as dictionaries.
        let parquet = rows_of(batch.clone());
        let mut ipc = Vec::new();
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut ipc, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        let mut read =
            ColumnarRows::from_bytes(ipc, Container::ArrowIpc, Projection::Examples).unwrap();
        let arrow: Vec<Row<ArrowRow>> = std::iter::from_fn(|| read.next_row().unwrap()).collect();
        for rows in [parquet, arrow] {
            assert_eq!(joined_cells(&rows, 4), expected);
        }
    }

    #[test]
    fn timestamp_columns_read_as_rfc_3339_in_utc() {
        use arrow_array::{
            TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
            TimestampSecondArray,
        };
        // 2026-09-01T10:00:00Z, then a null, then a fraction of a second.
        let seconds = 1_788_256_800;
        let batch = RecordBatch::try_from_iter([
            (
                "s",
                Arc::new(TimestampSecondArray::from(vec![
                    Some(seconds),
                    None,
                    Some(i64::MAX),
                ])) as ArrayRef,
            ),
            (
                "ms",
                Arc::new(
                    TimestampMillisecondArray::from(vec![
                        Some(seconds * 1_000),
                        None,
                        Some(seconds * 1_000 + 250),
                    ])
                    .with_timezone("Europe/Brussels"),
                ),
            ),
            (
                "us",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(seconds * 1_000_000), None, None])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                "ns",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(seconds * 1_000_000_000),
                    None,
                    Some(seconds * 1_000_000_000 + 1),
                ])),
            ),
        ])
        .unwrap();
        let rows = rows_of(batch);
        let at = "2026-09-01T10:00:00Z";
        assert_eq!(
            joined_cells(&rows, 4),
            [
                format!("{at}|{at}|{at}|{at}"),
                "|||".to_owned(),
                format!(
                    "{} (out of range)|2026-09-01T10:00:00.250Z||2026-09-01T10:00:00.000000001Z",
                    i64::MAX
                ),
            ]
        );
        // Read as instants, the same: an instant out of chrono's range is
        // read as its text, which the timestamp parser refuses.
        let at = DateTime::from_timestamp(seconds, 0).unwrap();
        let row = |i: usize| rows[i].1.as_ref().unwrap();
        let instants = |i: usize| (0..4).map(|c| row(i).instant(c)).collect::<Vec<_>>();
        let wire = |at| Typed::Value(crate::wire::declaration::timestamp_to_pb(at));
        assert_eq!(instants(0), [wire(at), wire(at), wire(at), wire(at)]);
        assert_eq!(instants(1), [Typed::Null; 4]);
        assert_eq!(
            instants(2),
            [
                Typed::Text,
                wire(at + chrono::Duration::milliseconds(250)),
                Typed::Null,
                wire(at + chrono::Duration::nanoseconds(1)),
            ]
        );
        assert_eq!(row(0).integer(0), Typed::Text);
    }

    #[test]
    fn timestamps_are_the_instants_chrono_reads() {
        let (first, last) = (
            DateTime::<Utc>::MIN_UTC.timestamp(),
            DateTime::<Utc>::MAX_UTC.timestamp(),
        );
        let mut raws = vec![0, 1, -1, 999, -999, 1_000, -1_001, i64::MIN, i64::MAX];
        for per_second in [1, 1_000, 1_000_000] {
            for edge in [first, last] {
                for step in [-1, 0, 1] {
                    let raw = edge.saturating_mul(per_second).saturating_add(step);
                    raws.extend([raw, raw.saturating_add(per_second - 1)]);
                }
            }
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every magnitude, both signs.
            raws.push((x as i64) >> (x % 64));
        }
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            for &raw in &raws {
                assert_eq!(
                    timestamp(raw, unit),
                    instant(raw, unit)
                        .at
                        .map(crate::wire::declaration::timestamp_to_pb),
                    "{raw} {unit:?}"
                );
            }
        }
    }

    #[test]
    fn files_compressed_as_other_tools_do_read() {
        use parquet::basic::{GzipLevel, ZstdLevel};
        let batch = RecordBatch::try_from_iter([(
            "declaration_id",
            Arc::new(StringArray::from(vec!["P1", "P2"])) as ArrayRef,
        )])
        .unwrap();
        for compression in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::try_new(9).unwrap()),
            Compression::LZ4_RAW,
            Compression::GZIP(GzipLevel::default()),
        ] {
            let properties = WriterProperties::builder()
                .set_compression(compression)
                .build();
            let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties)).unwrap();
            w.write(&batch).unwrap();
            let mut rows = ColumnarRows::from_bytes(
                w.into_inner().unwrap(),
                Container::Parquet,
                Projection::Examples,
            )
            .unwrap();
            let ids: Vec<String> = std::iter::from_fn(|| rows.next_row().unwrap())
                .map(|(_, row)| row.unwrap().cell(0).unwrap().to_owned())
                .collect();
            assert_eq!(ids, ["P1", "P2"], "{compression}");
        }
    }

    #[test]
    fn reading_declarations_leaves_the_result_and_truth_columns_unread() {
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("declaration_id", text("P1")),
            ("Inspection_ID ", text("I1")),
            ("finding_hs6", text("610910")),
            ("hs6", text("610910")),
            ("truth_seller_profile", text("honest")),
            ("colour", text("red")),
        ])
        .unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        let parquet = w.into_inner().unwrap();
        let mut ipc = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &batch.schema()).unwrap();
        ipc.write(&batch).unwrap();
        let ipc = ipc.into_inner().unwrap();
        let all =
            ColumnarRows::from_bytes(parquet.clone(), Container::Parquet, Projection::Examples);
        assert_eq!(all.unwrap().header().unwrap().len(), 6);
        for (bytes, container) in [(parquet, Container::Parquet), (ipc, Container::ArrowIpc)] {
            let mut read =
                ColumnarRows::from_bytes(bytes, container, Projection::Declarations).unwrap();
            let header = read.header().unwrap();
            assert_eq!(header, ["declaration_id", "hs6", "colour"], "{container:?}");
            let (_, row) = read.next_row().unwrap().unwrap();
            assert_eq!(row.unwrap().cell(2), Some("red"), "{container:?}");
        }
    }

    #[test]
    fn a_column_without_a_text_form_makes_its_rows_bad_not_the_file() {
        let batch = RecordBatch::try_from_iter([
            (
                "declaration_id",
                Arc::new(StringArray::from(vec!["P1", "P2"])) as ArrayRef,
            ),
            ("when", Arc::new(Date32Array::from(vec![1, 2]))),
        ])
        .unwrap();
        let rows = rows_of(batch);
        assert_eq!(rows.len(), 2);
        for (_, row) in &rows {
            let message = row.as_ref().err().unwrap();
            assert!(message.contains("column when has type Date32"), "{message}");
        }
    }

    /// Generated examples, inspected, with findings and truth.
    fn generated_examples() -> Vec<pb::TrainingExample> {
        let generator = crate::generate::Generator::new(crate::generate::GeneratorConfig {
            parcels: 400,
            seed: 11,
            rule_inspection_rate: 0.5,
            ..crate::generate::GeneratorConfig::default()
        })
        .unwrap();
        (0..generator.chunk_count())
            .flat_map(|c| generator.chunk(c).0)
            .collect()
    }

    /// The examples as a Parquet file of text columns, with the cells of
    /// the CSV format (every Parquet file this program wrote before it
    /// typed its numbers and instants).
    fn text_parquet(examples: &[pb::TrainingExample], mangle: bool) -> Vec<u8> {
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); COLUMNS.len()];
        let mut row = vec![String::new(); COLUMNS.len()];
        for example in examples {
            example_rows(example, &mut row, |cells| {
                for (column, cell) in columns.iter_mut().zip(cells) {
                    column.push((!cell.is_empty()).then(|| cell.clone()));
                }
                Ok(())
            })
            .unwrap();
        }
        if mangle {
            mangled(&mut columns);
        }
        let arrays = columns
            .into_iter()
            .map(|cells| Arc::new(StringArray::from(cells)) as ArrayRef);
        parquet_of(RecordBatch::try_from_iter(COLUMNS.iter().zip(arrays)).unwrap())
    }

    /// Some cells made bad: a quantity past 32 bits, a negative mass, an
    /// amount missing beside its currency, an instant chrono cannot hold,
    /// a transport cost that differs between two rows of a declaration.
    fn mangled(columns: &mut [Vec<Option<String>>]) {
        let mut set = |name: &str, row: usize, cell: Option<&str>| {
            let column = COLUMNS.iter().position(|c| *c == name).unwrap();
            columns[column][row] = cell.map(str::to_owned);
        };
        set("quantity", 3, Some("5000000000"));
        set("gross_mass_g", 7, Some("-5"));
        set("value_minor", 11, None);
        set("lodged_at", 13, Some("9223372036854775807 (out of range)"));
        set("transport_cost_minor", 17, None);
    }

    fn batches_of(file: Vec<u8>) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn parquet_of(batch: RecordBatch) -> Vec<u8> {
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.into_inner().unwrap()
    }

    /// The same file as a data lake types it: the columns this program
    /// writes typed, numbers as 64-bit integers, instants as microseconds
    /// in UTC (an instant out of chrono's range is the count its text
    /// names) and flags as booleans, made here from the text.
    fn typed_like_a_data_lake(file: Vec<u8>) -> Vec<u8> {
        use arrow_array::TimestampMicrosecondArray;
        let batch = arrow_select_concat(&batches_of(file));
        let schema = batch.schema();
        let typed = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| {
                let name = field.name().as_str();
                let cells = column.as_string::<i32>().iter();
                let typed: ArrayRef = if INTEGER_COLUMNS.contains(&name) {
                    Arc::new(Int64Array::from_iter(
                        cells.map(|cell| cell.map(|text| text.parse::<i64>().unwrap())),
                    ))
                } else if INSTANT_COLUMNS.contains(&name) {
                    Arc::new(
                        TimestampMicrosecondArray::from_iter(cells.map(|cell| {
                            cell.map(|text| match text.strip_suffix(" (out of range)") {
                                Some(count) => count.parse().unwrap(),
                                None => DateTime::parse_from_rfc3339(text)
                                    .unwrap()
                                    .timestamp_micros(),
                            })
                        }))
                        .with_timezone("UTC"),
                    )
                } else if BOOLEAN_COLUMNS.contains(&name) {
                    Arc::new(arrow_array::BooleanArray::from_iter(cells.map(|cell| {
                        cell.map(|text| match text {
                            "true" => true,
                            "false" => false,
                            other => panic!("{name}: {other:?} is not a flag"),
                        })
                    })))
                } else {
                    Arc::clone(column)
                };
                (name.to_owned(), typed)
            });
        parquet_of(RecordBatch::try_from_iter(typed).unwrap())
    }

    /// One batch of a file's batches (they share a schema).
    fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
        let columns = (0..batches[0].num_columns())
            .map(|c| {
                let cells = batches
                    .iter()
                    .flat_map(|b| b.column(c).as_string::<i32>().iter());
                Arc::new(StringArray::from_iter(cells)) as ArrayRef
            })
            .collect();
        RecordBatch::try_new(batches[0].schema(), columns).unwrap()
    }

    type ReadExample = Result<(u64, crate::domain::TrainingExample), String>;

    fn read_examples(
        file: &[u8],
        format: crate::io::Format,
        projection: Projection,
    ) -> Vec<ReadExample> {
        use crate::domain::validation::ReferenceData;
        crate::io::ExampleReader::new(file, format, projection, ReferenceData::built_in())
            .map(|item| item.unwrap().map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn files_written_with_typed_columns_read_as_their_text_did() {
        use crate::io::Format;
        let examples = generated_examples();
        let text = read_examples(
            &text_parquet(&examples, false),
            Format::Parquet,
            Projection::Examples,
        );
        assert!(text.iter().all(Result::is_ok));
        for (container, format) in [
            (Container::Parquet, Format::Parquet),
            (Container::ArrowIpc, Format::Arrow),
        ] {
            let mut writer = ColumnarWriter::new(Vec::new(), container).unwrap();
            for example in &examples {
                writer.write_pb(example).unwrap();
            }
            let file = writer.finish().unwrap();
            assert_eq!(read_examples(&file, format, Projection::Examples), text);
            if container == Container::Parquet {
                let schema = batches_of(file.clone())[0].schema();
                for name in BOOLEAN_COLUMNS {
                    assert_eq!(
                        schema.field_with_name(name).unwrap().data_type(),
                        &DataType::Boolean,
                        "{name}"
                    );
                }
            }
            let kinds = {
                let mut rows =
                    ColumnarRows::from_bytes(file, container, Projection::Examples).unwrap();
                let (_, row) = rows.next_row().unwrap().unwrap();
                column_kinds(&row.unwrap())
            };
            let kind = |name: &str| kinds[COLUMNS.iter().position(|c| *c == name).unwrap()];
            for name in INTEGER_COLUMNS {
                assert!(
                    matches!(kind(name), "integers" | "constant"),
                    "{name}: {}",
                    kind(name)
                );
            }
            for name in INSTANT_COLUMNS {
                assert!(
                    matches!(kind(name), "instants" | "constant"),
                    "{name}: {}",
                    kind(name)
                );
            }
            assert_eq!(
                (kind("value_minor"), kind("lodged_at")),
                ("integers", "instants")
            );
        }
    }

    #[test]
    fn typed_number_and_instant_columns_read_as_their_text_reads() {
        use crate::io::Format;
        let text = text_parquet(&generated_examples(), true);
        let typed = typed_like_a_data_lake(text.clone());
        for projection in [Projection::Examples, Projection::Declarations] {
            let from_text = read_examples(&text, Format::Parquet, projection);
            let from_typed = read_examples(&typed, Format::Parquet, projection);
            assert_eq!(from_text, from_typed);
            // The bad cells were refused, each on its row, and the rest read
            // (row 18 is an item of the declaration begun on row 17, so its
            // transport cost must read as that row's).
            let refused: Vec<&String> =
                from_typed.iter().filter_map(|r| r.as_ref().err()).collect();
            let at_fault = [
                "line 4: column quantity: \"5000000000\" is not a valid number",
                "line 8 (declaration PR11-0000000006): declaration.items[0].gross_mass_g",
                "line 12: column value_minor: \"\" is not an integer amount",
                "line 14: column lodged_at: \"9223372036854775807 (out of range)\" is not",
                "line 19: column transport_cost_minor differs from line 18",
            ];
            assert_eq!(refused.len(), at_fault.len(), "{refused:#?}");
            for (message, expected) in refused.iter().zip(at_fault) {
                assert!(message.starts_with(expected), "{message}");
            }
            assert!(from_typed.len() > 300);
            let with_results = from_typed
                .iter()
                .flatten()
                .filter(|(_, e)| e.result.as_ref().is_some_and(|r| !r.findings.is_empty()))
                .count();
            if projection == Projection::Examples {
                assert!(with_results > 10, "{with_results} examples with findings");
            }
        }
        // The typed file was read as numbers and instants, not as text.
        let mut rows =
            ColumnarRows::from_bytes(typed, Container::Parquet, Projection::Examples).unwrap();
        let (_, row) = rows.next_row().unwrap().unwrap();
        let kinds = column_kinds(&row.unwrap());
        let kind = |name: &str| kinds[COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(
            (kind("quantity"), kind("lodged_at")),
            ("integers", "instants")
        );
    }
}
