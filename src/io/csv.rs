//! CSV with one row per goods item. Declaration-level columns repeat on every
//! row of a declaration; consecutive rows with the same `declaration_id` form
//! one declaration. The columns are listed in [`COLUMNS`] and documented in
//! `docs/data-formats.md`.
//!
//! Conventions:
//! - enums by short name (`H7`, `HOUSE_AWB`, `RANDOM`, `NON_COMPLIANT`); the full
//!   proto name (`DATASET_TYPE_H7`) is accepted too;
//! - lists joined with `;` (`C07;F48`), transport documents as `KIND:reference`;
//! - timestamps in RFC 3339; money as a currency column and a minor-units column;
//! - `ens` and `attributes` hold proto3 JSON objects;
//! - any column not in [`COLUMNS`] is read into `attributes` under its
//!   (lower-cased) header name, so other national systems' extra fields train too.
//!
//! Rows go through the same validation as JSON and gRPC input: a row is turned
//! into the wire message and then into the domain type.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::TrainingExample;
use crate::domain::validation::ReferenceData;
use crate::pb;
use crate::wire::inspection::training_example_from_parts;
use crate::wire::raw::{
    JsonText, RawAddress, RawDeclaration, RawEns, RawGoodsItem, RawMoney, RawParty,
    RawTransportDocument, attributes_cell, direct,
};

use super::{IoError, Projection, RawRecord, RecordError};

/// Every column the reader understands and the writer writes, in order.
pub const COLUMNS: &[&str] = &[
    // Declaration level.
    "declaration_id",
    "lrn",
    "mrn",
    "dataset",
    "additional_declaration_type",
    "lodged_at",
    "ucr",
    "exporter_name",
    "exporter_id",
    "exporter_street",
    "exporter_postcode",
    "exporter_city",
    "exporter_country",
    "exporter_phone",
    "exporter_email",
    "importer_name",
    "importer_id",
    "importer_street",
    "importer_postcode",
    "importer_city",
    "importer_country",
    "importer_phone",
    "importer_email",
    "declarant_name",
    "declarant_id",
    "declarant_street",
    "declarant_postcode",
    "declarant_city",
    "declarant_country",
    "declarant_phone",
    "declarant_email",
    "ioss_number",
    "transport_documents",
    "location_of_goods",
    "carrier_channel",
    "flight_number",
    "arrival_at",
    "transport_cost_currency",
    "transport_cost_minor",
    "ens",
    "attributes",
    // Goods item level.
    "goods_item_number",
    "description",
    "hs6",
    "value_currency",
    "value_minor",
    "gross_mass_g",
    "quantity",
    "procedure_codes",
    "country_of_origin",
    // Inspection result, declaration level (present when inspection_id is set).
    "inspection_id",
    "selection_reason",
    "control_type",
    "outcome",
    "fraud_kinds",
    "inspected_at",
    "officer_notes",
    // Inspection finding, item level (present when finding is true).
    "finding",
    "finding_undervalued",
    "finding_value_currency",
    "finding_value_minor",
    "finding_misdescribed",
    "finding_description",
    "finding_hs6",
    // Synthetic ground truth (present when truth_seller_profile is set).
    "truth_seller_profile",
    "truth_fraud_kinds",
    "truth_hs6",
    "truth_description",
    "truth_value_currency",
    "truth_value_minor",
];

/// Index of the first item-level column: everything before it is declaration level.
const FIRST_ITEM_COLUMN: usize = 41;
/// Result columns (declaration level) and truth declaration-level columns.
const RESULT_COLUMNS: std::ops::Range<usize> = 50..57;
const TRUTH_HEADER_COLUMNS: std::ops::Range<usize> = 64..66;

/// Whether known column `index` (into [`COLUMNS`]) is part of the
/// declaration: the inspection result, its findings and the ground truth
/// come after it.
fn is_declaration_column(index: usize) -> bool {
    index < RESULT_COLUMNS.start
}

/// The index in [`COLUMNS`] of a file's column named `name` (names are
/// matched trimmed and in any case); `None` for an extra column.
fn known_column(name: &str) -> Option<usize> {
    let name = name.trim();
    COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name))
}

/// Whether a file's column named `name` is read with `projection`: reading
/// declarations alone skips the result and truth columns (an extra column
/// is an attribute of the declaration, and is read).
pub(super) fn is_read(name: &str, projection: Projection) -> bool {
    projection == Projection::Examples || known_column(name).is_none_or(is_declaration_column)
}

/// Whether known column `index` (into [`COLUMNS`]) is declaration level:
/// it must read the same in every row of a declaration.
fn is_declaration_level(index: usize) -> bool {
    index < FIRST_ITEM_COLUMN
        || RESULT_COLUMNS.contains(&index)
        || TRUTH_HEADER_COLUMNS.contains(&index)
}

/// The file's column positions for the known columns.
#[derive(Clone, Copy)]
struct Columns<'m>(&'m [Option<usize>]);

impl Columns<'_> {
    /// The cell of known column `column` (an index into [`COLUMNS`]; see
    /// [`cell!`]); empty when the file does not have the column.
    fn get<'a, R: Cells>(&self, row: &'a R, column: usize) -> &'a str {
        self.0[column].and_then(|i| row.cell(i)).unwrap_or("")
    }

    /// Whether known column `column` reads the same in rows `a` and `b`.
    fn same<R: Cells>(&self, a: &R, b: &R, column: usize) -> bool {
        self.0[column].is_none_or(|i| a.same_cell(b, i))
    }

    /// A number cell of known column `column`: the column's integer where
    /// it holds integers, else parsed from the cell's text. Either way the
    /// same value and the same error (an integer out of `T`'s range is
    /// refused with the text it would have read as).
    fn number<R: Cells, T: TryFrom<i64> + std::str::FromStr + Default>(
        &self,
        row: &R,
        column: usize,
    ) -> Result<T, String> {
        match self.0[column].map_or(Typed::Text, |i| row.integer(i)) {
            Typed::Value(value) => T::try_from(value).or_else(|_| parse_num(&value.to_string())),
            Typed::Null => parse_num(""),
            Typed::Text => parse_num(self.get(row, column)),
        }
    }

    /// An amount in minor units (column `column`) with its currency's cell,
    /// read as [`amount_minor`] reads the amount's text.
    fn amount<R: Cells>(
        &self,
        row: &R,
        currency: &str,
        column: usize,
    ) -> Result<Option<i64>, String> {
        match self.0[column].map_or(Typed::Text, |i| row.integer(i)) {
            Typed::Value(value) => Ok(Some(value)),
            Typed::Null => amount_minor(currency, ""),
            Typed::Text => amount_minor(currency, self.get(row, column)),
        }
    }

    /// A timestamp cell: the column's instant where it holds timestamps,
    /// else parsed from the cell's text (RFC 3339).
    fn time<R: Cells>(
        &self,
        row: &R,
        column: usize,
    ) -> Result<Option<pbjson_types::Timestamp>, String> {
        match self.0[column].map_or(Typed::Text, |i| row.instant(i)) {
            Typed::Value(at) => Ok(Some(at)),
            Typed::Null => Ok(None),
            Typed::Text => parse_time(self.get(row, column)),
        }
    }
}

/// The index of a column in [`COLUMNS`], found at compile time where the
/// name is a constant (a misspelt name fails the build).
const fn col(name: &str) -> usize {
    match position(COLUMNS, name) {
        Some(i) => i,
        None => panic!("not a column of COLUMNS"),
    }
}

/// Where `name` is in `list`, in a constant expression.
const fn position(list: &[&str], name: &str) -> Option<usize> {
    let mut i = 0;
    while i < list.len() {
        if const_eq(list[i], name) {
            return Some(i);
        }
        i += 1;
    }
    None
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The cell of a named known column: `cell!(columns, row, "hs6")`, the
/// column's index resolved at compile time (decoding reads ~60 cells a row).
macro_rules! cell {
    ($columns:expr, $row:expr, $name:literal) => {
        $columns.get($row, const { col($name) })
    };
}

/// [`Columns::number`] of the known column named `$name`.
macro_rules! number {
    ($columns:expr, $row:expr, $name:literal) => {
        $columns.number($row, const { col($name) })
    };
}

/// [`Columns::amount`] of the known column named `$name`.
macro_rules! amount {
    ($columns:expr, $row:expr, $currency:expr, $name:literal) => {
        $columns.amount($row, $currency, const { col($name) })
    };
}

/// [`Columns::time`] of the known column named `$name`.
macro_rules! time {
    ($columns:expr, $row:expr, $name:literal) => {
        $columns.time($row, const { col($name) })
    };
}

/// The columns of a party, in the order [`COLUMNS`] lists them after
/// `<prefix>_name`.
const PARTY_FIELDS: [&str; 8] = [
    "name", "id", "street", "postcode", "city", "country", "phone", "email",
];
const _: () = {
    let parties = [
        col("exporter_name"),
        col("importer_name"),
        col("declarant_name"),
    ];
    let prefixes = ["exporter_", "importer_", "declarant_"];
    let mut p = 0;
    while p < parties.len() {
        let mut f = 0;
        while f < PARTY_FIELDS.len() {
            // `<prefix><field>` sits at `<prefix>name` + f.
            let name = COLUMNS[parties[p] + f].as_bytes();
            let (prefix, field) = (prefixes[p].as_bytes(), PARTY_FIELDS[f].as_bytes());
            assert!(name.len() == prefix.len() + field.len());
            let mut i = 0;
            while i < name.len() {
                let want = if i < prefix.len() {
                    prefix[i]
                } else {
                    field[i - prefix.len()]
                };
                assert!(name[i] == want);
                i += 1;
            }
            f += 1;
        }
        p += 1;
    }
};

/// A row's cells by their position in the file: a CSV record, or a row of
/// a Parquet record batch read in place.
pub trait Cells: Sized {
    /// The cell at `index` (a null is empty); `None` past the row's end.
    fn cell(&self, index: usize) -> Option<&str>;
    /// Whether the cell at `index` holds the same text in `self` and `other`.
    fn same_cell(&self, other: &Self, index: usize) -> bool {
        same_text(
            self.cell(index).unwrap_or(""),
            other.cell(index).unwrap_or(""),
        )
    }
    /// Whether this row's declaration-level cells are already known to
    /// read as those of `previous`, the row just before it in the file
    /// (a columnar reader compares them a column at a time for a whole
    /// batch). `false` says nothing: the cells are then compared one by one.
    fn declaration_cells_known_same(&self, _previous: &Self) -> bool {
        false
    }
    /// The cell at `index` as an integer, where its column holds integers
    /// (a typed Parquet or Arrow column): read as the number it is, not
    /// formatted as text to be parsed again. [`Typed::Text`] otherwise.
    fn integer(&self, _index: usize) -> Typed<i64> {
        Typed::Text
    }
    /// The cell at `index` as an instant (seconds and nanoseconds since the
    /// epoch, as the wire carries it), where its column holds timestamps
    /// that chrono represents; [`Typed::Text`] otherwise.
    fn instant(&self, _index: usize) -> Typed<pbjson_types::Timestamp> {
        Typed::Text
    }
    /// The rows of one declaration, ready to decode.
    fn into_raw(rows: Vec<(u64, Self)>, layout: Arc<Layout>) -> RawRecord;
}

/// A cell read as its column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed<T> {
    /// The column does not hold this type (or not this value): read the
    /// cell's text.
    Text,
    /// A null: what an empty cell is.
    Null,
    Value(T),
}

impl Cells for csv::StringRecord {
    fn cell(&self, index: usize) -> Option<&str> {
        self.get(index)
    }

    fn into_raw(rows: Vec<(u64, Self)>, layout: Arc<Layout>) -> RawRecord {
        RawRecord::Rows { rows, layout }
    }
}

// ---------------------------------------------------------------- reading

/// Where a file's columns are: shared by every record of the file.
#[derive(Debug)]
pub struct Layout {
    /// Column index in the file for each entry of `COLUMNS`.
    mapping: Vec<Option<usize>>,
    /// Extra columns: (index in the file, attribute key).
    extras: Vec<(usize, String)>,
}

impl Layout {
    /// Maps a header; a file without the columns every record needs is
    /// refused. The columns `projection` does not read are left out, as if
    /// the file did not have them.
    pub fn from_header<'a>(
        names: impl IntoIterator<Item = &'a str>,
        projection: Projection,
    ) -> Result<Layout, IoError> {
        let mut mapping = vec![None; COLUMNS.len()];
        let mut extras = Vec::new();
        for (index, name) in names.into_iter().enumerate() {
            if !is_read(name, projection) {
                continue;
            }
            match known_column(name) {
                Some(known) => mapping[known] = Some(index),
                None => extras.push((index, name.trim().to_ascii_lowercase())),
            }
        }
        for required in ["declaration_id", "hs6"] {
            if mapping[col(required)].is_none() {
                return Err(IoError::Csv(format!("header has no {required} column")));
            }
        }
        Ok(Layout { mapping, extras })
    }

    /// The file's positions of the declaration-level columns it has, in
    /// [`COLUMNS`] order (`declaration_id`'s first).
    pub(super) fn declaration_level_columns(&self) -> Vec<usize> {
        self.mapping
            .iter()
            .enumerate()
            .filter(|(known, _)| is_declaration_level(*known))
            .filter_map(|(_, file)| *file)
            .collect()
    }

    fn id<'a, R: Cells>(&self, row: &'a R) -> Option<&'a str> {
        self.mapping[const { col("declaration_id") }].and_then(|i| row.cell(i))
    }
}

/// One physical row, or a row that could not be read (reported, skipped).
pub type Row<C> = (u64, Result<C, String>);

/// Rows of a tabular file (CSV or Parquet), with its header.
pub trait RowSource {
    type Cells: Cells;
    fn header(&mut self) -> Result<Vec<String>, IoError>;
    /// The next row; `None` at the end of the file.
    fn next_row(&mut self) -> Result<Option<Row<Self::Cells>>, IoError>;
}

/// CSV rows.
pub struct CsvRows<R> {
    reader: csv::Reader<LineIndex<R>>,
    record: csv::StringRecord,
}

impl<R: BufRead> CsvRows<R> {
    pub fn new(input: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(LineIndex::new(input));
        Self {
            reader,
            record: csv::StringRecord::new(),
        }
    }

    /// The file line (from 1) of the byte at `position`.
    fn line(&mut self, position: Option<&csv::Position>) -> u64 {
        position.map_or(0, |p| self.reader.get_mut().line_of(p.byte()))
    }
}

/// Where a stream's newlines are, so that a record's byte offset gives its
/// file line whatever ends the lines: the csv crate's own line count is one
/// short for every record after a CRLF-ended line (it counts the `\n` only
/// once the next record has begun), and files from Windows and Excel end
/// lines so.
struct LineIndex<R> {
    inner: R,
    /// Bytes read so far.
    read: u64,
    /// Offsets of the newlines read but not yet passed by a record.
    ahead: std::collections::VecDeque<u64>,
    /// Newlines before the last offset asked about.
    passed: u64,
}

impl<R> LineIndex<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            ahead: std::collections::VecDeque::new(),
            passed: 0,
        }
    }

    /// The line of the record that the csv crate places at `offset`;
    /// offsets asked about only grow. After a CRLF the crate places the
    /// next record on the `\n` itself: a newline at the offset is passed too
    /// (no record begins with one).
    fn line_of(&mut self, offset: u64) -> u64 {
        while self.ahead.front().is_some_and(|&newline| newline <= offset) {
            self.ahead.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

impl<R: std::io::Read> std::io::Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = self.read;
        self.ahead
            .extend(memchr::memchr_iter(b'\n', &buf[..n]).map(|i| start + i as u64));
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> RowSource for CsvRows<R> {
    type Cells = csv::StringRecord;

    fn header(&mut self) -> Result<Vec<String>, IoError> {
        Ok(self
            .reader
            .headers()
            .map_err(|e| IoError::Csv(e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect())
    }

    fn next_row(&mut self) -> Result<Option<Row<csv::StringRecord>>, IoError> {
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {
                let position = self.record.position().cloned();
                let line = self.line(position.as_ref());
                Ok(Some((line, Ok(std::mem::take(&mut self.record)))))
            }
            Ok(false) => Ok(None),
            Err(e) if e.is_io_error() => Err(IoError::Csv(e.to_string())),
            // Bad UTF-8 or the like in a row: report the row, keep going.
            Err(e) => {
                let line = self.line(e.position());
                Ok(Some((line, Err(e.to_string()))))
            }
        }
    }
}

/// Groups consecutive rows with the same `declaration_id` into one record,
/// without parsing the cells (see [`RawRecord`]).
pub struct RowGrouper<S: RowSource> {
    source: S,
    projection: Projection,
    layout: Option<Arc<Layout>>,
    pending: Option<Row<S::Cells>>,
    done: bool,
}

impl<S: RowSource> RowGrouper<S> {
    pub fn new(source: S, projection: Projection) -> Self {
        Self {
            source,
            projection,
            layout: None,
            pending: None,
            done: false,
        }
    }

    /// The rows being grouped.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn next_row(&mut self) -> Result<Option<Row<S::Cells>>, IoError> {
        match self.pending.take() {
            Some(row) => Ok(Some(row)),
            None => self.source.next_row(),
        }
    }

    fn group(&mut self) -> Result<Option<RawRecord>, IoError> {
        let layout = match &self.layout {
            Some(layout) => Arc::clone(layout),
            None => {
                let header = self.source.header()?;
                let layout = Arc::new(Layout::from_header(
                    header.iter().map(String::as_str),
                    self.projection,
                )?);
                self.layout = Some(Arc::clone(&layout));
                layout
            }
        };
        let Some((first_line, first)) = self.next_row()? else {
            return Ok(None);
        };
        let first = match first {
            Ok(row) => row,
            Err(message) => {
                return Ok(Some(RawRecord::Bad(RecordError::Syntax {
                    line: first_line,
                    message,
                })));
            }
        };
        // Rows join the first by its id, read again from it rather than
        // copied out (a copy was an allocation per declaration).
        let has_id = layout.id(&first).is_some_and(|id| !id.is_empty());
        let mut rows = vec![(first_line, first)];
        while let Some((line, row)) = self.next_row()? {
            match row {
                Ok(row) if has_id && layout.id(&row) == layout.id(&rows[0].1) => {
                    rows.push((line, row));
                }
                other => {
                    self.pending = Some((line, other));
                    break;
                }
            }
        }
        Ok(Some(S::Cells::into_raw(rows, layout)))
    }
}

impl<S: RowSource> Iterator for RowGrouper<S> {
    type Item = Result<RawRecord, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.group();
        if matches!(next, Err(_) | Ok(None)) {
            self.done = true;
        }
        next.transpose()
    }
}

/// Parses and validates the rows of one declaration.
pub fn decode_rows<R: Cells>(
    rows: &[(u64, R)],
    layout: &Layout,
    reference: &ReferenceData<'static>,
) -> Result<TrainingExample, RecordError> {
    let first_line = rows.first().map_or(0, |(line, _)| *line);
    let columns = Columns(&layout.mapping);
    let (declaration, result, truth) = rows_to_raw(rows, columns, &layout.extras)?;
    training_example_from_parts(Some(declaration), result, truth, reference).map_err(|source| {
        // A violation of an item is on that item's row.
        let line = item_index(&source)
            .and_then(|i| rows.get(i))
            .map_or(first_line, |(line, _)| *line);
        RecordError::Invalid {
            line,
            declaration_id: rows
                .first()
                .map(|(_, row)| cell!(columns, row, "declaration_id").to_owned())
                .unwrap_or_default(),
            source,
        }
    })
}

/// The item of the first violation, from its path (`declaration.items[2].hs6`).
fn item_index(error: &crate::domain::ValidationError) -> Option<usize> {
    let field = &error.violations.first()?.field;
    let rest = field.strip_prefix("declaration.items[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// `a == b`, compared eight bytes at a time inline. On the short cells of
/// the check below, the libc `memcmp` that `==` calls was a quarter of the
/// CPU of decoding a Parquet file (about 40 ns a call, most of it on one
/// masked vector load); this one is about a fifth of that.
pub(super) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut words_a, mut words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
    (&mut words_a)
        .zip(&mut words_b)
        .all(|(x, y)| word(x) == word(y))
        && words_a
            .remainder()
            .iter()
            .zip(words_b.remainder())
            .all(|(x, y)| x == y)
}

/// One declaration's rows as read: the declaration, its text borrowed from
/// the cells (a column of JSON, `attributes` or `ens`, is parsed into text
/// of its own), and its inspection result and ground truth.
type ReadRows<'a> = (
    RawDeclaration<JsonText<'a>>,
    Option<pb::InspectionResult>,
    Option<pb::GroundTruth>,
);

/// Reads one declaration from its rows, for validation.
fn rows_to_raw<'a, R: Cells>(
    rows: &'a [(u64, R)],
    columns: Columns<'a>,
    extras: &'a [(usize, String)],
) -> Result<ReadRows<'a>, RecordError> {
    let (first_line, first) = &rows[0];
    // Declaration-level cells must agree across the rows of a declaration, or
    // one of them would be silently dropped. A row known to agree with the
    // one before it agrees with the first: every row before it was checked.
    for pair in rows.windows(2) {
        let [(_, previous), (line, row)] = pair else {
            continue;
        };
        if row.declaration_cells_known_same(previous) {
            continue;
        }
        for (index, name) in COLUMNS.iter().enumerate() {
            if is_declaration_level(index) && !columns.same(row, first, index) {
                return Err(RecordError::Syntax {
                    line: *line,
                    message: format!(
                        "column {name} differs from line {first_line} of the same declaration"
                    ),
                });
            }
        }
    }
    let line = *first_line;
    let err = |message: String| RecordError::Syntax { line, message };
    let r = first;
    // `first` is `<prefix>_name`; the other fields follow in PARTY_FIELDS order.
    let text = |cell: &'a str| JsonText(Cow::Borrowed(cell));
    let party = |first: usize| -> RawParty<JsonText<'a>> {
        let field = |name: &str| columns.get(r, first + party_field(name));
        let country = field("country");
        let street = field("street");
        let postcode = field("postcode");
        let city = field("city");
        let has_address = [country, street, postcode, city]
            .iter()
            .any(|s| !s.is_empty());
        RawParty {
            name: text(field("name")),
            identification_number: text(field("id")),
            address: has_address.then(|| RawAddress {
                street_and_number: text(street),
                postcode: text(postcode),
                city: text(city),
                country: text(country),
            }),
            phone: text(field("phone")),
            email: text(field("email")),
        }
    };
    let mut attributes: Vec<(JsonText<'a>, JsonText<'a>)> = match cell!(columns, r, "attributes") {
        "" => Vec::new(),
        json => attributes_cell(json).map_err(|e| err(format!("column attributes: {e}")))?,
    };
    for (index, key) in extras {
        let value = r.cell(*index).unwrap_or("");
        if value.is_empty() {
            continue;
        }
        // Listed after the JSON column's: a column of its own overrides the
        // key there (and a later column of the same name an earlier one),
        // as the last value of a key is the one kept.
        attributes.push((text(key), text(value)));
    }
    // The common form read directly, as a JSON line's is (the wire
    // message's generated visitors cost more); the wire message reads and
    // words what the direct reader hands on.
    let ens = match cell!(columns, r, "ens") {
        "" => None,
        json => Some(Box::new(match direct::ens(json) {
            Some(ens) => ens,
            None => RawEns::from(
                serde_json::from_str::<pb::EnsHouseConsignment>(json)
                    .map_err(|e| err(format!("column ens: {e}")))?,
            ),
        })),
    };
    let mut transport_documents = Vec::new();
    for doc in split_list(cell!(columns, r, "transport_documents")) {
        let (kind, reference) = split_once_ascii(doc, b':')
            .ok_or_else(|| err(format!("transport document {doc:?} is not KIND:reference")))?;
        transport_documents.push(RawTransportDocument {
            kind: parse_enum(
                kind,
                "TRANSPORT_DOCUMENT_KIND_",
                pb::TransportDocumentKind::from_str_name,
            )
            .map_err(|m| err(format!("column transport_documents: {m}")))?,
            reference: text(reference),
        });
    }

    let mut items = Vec::with_capacity(rows.len());
    let mut findings = Vec::new();
    let mut truth_items = Vec::new();
    for (row_line, row) in rows {
        let cell_err = |name: &str, m: String| RecordError::Syntax {
            line: *row_line,
            message: format!("column {name}: {m}"),
        };
        let goods_item_number: u32 = number!(columns, row, "goods_item_number")
            .map_err(|m| cell_err("goods_item_number", m))?;
        let value_currency = cell!(columns, row, "value_currency");
        items.push(RawGoodsItem {
            goods_item_number,
            description: text(cell!(columns, row, "description")),
            hs6: text(cell!(columns, row, "hs6")),
            intrinsic_value: amount!(columns, row, value_currency, "value_minor")
                .map_err(|m| cell_err("value_minor", m))?
                .map(|amount_minor| RawMoney {
                    currency: text(value_currency),
                    amount_minor,
                }),
            gross_mass_g: number!(columns, row, "gross_mass_g")
                .map_err(|m| cell_err("gross_mass_g", m))?,
            quantity: number!(columns, row, "quantity").map_err(|m| cell_err("quantity", m))?,
            additional_procedure_codes: split_list(cell!(columns, row, "procedure_codes"))
                .map(text)
                .collect(),
            country_of_origin: text(cell!(columns, row, "country_of_origin")),
        });
        if parse_bool(cell!(columns, row, "finding")).map_err(|m| cell_err("finding", m))? {
            findings.push(pb::ItemFinding {
                goods_item_number,
                undervalued: parse_bool(cell!(columns, row, "finding_undervalued"))
                    .map_err(|m| cell_err("finding_undervalued", m))?,
                corrected_intrinsic_value: money(
                    cell!(columns, row, "finding_value_currency"),
                    amount!(
                        columns,
                        row,
                        cell!(columns, row, "finding_value_currency"),
                        "finding_value_minor"
                    ),
                )
                .map_err(|m| cell_err("finding_value_minor", m))?,
                misdescribed: parse_bool(cell!(columns, row, "finding_misdescribed"))
                    .map_err(|m| cell_err("finding_misdescribed", m))?,
                corrected_description: cell!(columns, row, "finding_description").to_owned(),
                corrected_hs6: cell!(columns, row, "finding_hs6").to_owned(),
            });
        }
        if !cell!(columns, row, "truth_hs6").is_empty() {
            truth_items.push(pb::ItemTruth {
                goods_item_number,
                hs6: cell!(columns, row, "truth_hs6").to_owned(),
                description: cell!(columns, row, "truth_description").to_owned(),
                intrinsic_value: money(
                    cell!(columns, row, "truth_value_currency"),
                    amount!(
                        columns,
                        row,
                        cell!(columns, row, "truth_value_currency"),
                        "truth_value_minor"
                    ),
                )
                .map_err(|m| cell_err("truth_value_minor", m))?,
            });
        }
    }

    let transport_currency = cell!(columns, r, "transport_cost_currency");
    let declaration = RawDeclaration {
        declaration_id: text(cell!(columns, r, "declaration_id")),
        lrn: text(cell!(columns, r, "lrn")),
        mrn: text(cell!(columns, r, "mrn")),
        dataset: parse_enum(
            cell!(columns, r, "dataset"),
            "DATASET_TYPE_",
            pb::DatasetType::from_str_name,
        )
        .map_err(|m| err(format!("column dataset: {m}")))?,
        additional_declaration_type: text(cell!(columns, r, "additional_declaration_type")),
        lodged_at: time!(columns, r, "lodged_at")
            .map_err(|m| err(format!("column lodged_at: {m}")))?,
        ucr: text(cell!(columns, r, "ucr")),
        exporter: Some(party(const { col("exporter_name") })),
        importer: Some(party(const { col("importer_name") })),
        declarant: Some(party(const { col("declarant_name") })),
        ioss_number: text(cell!(columns, r, "ioss_number")),
        transport_documents,
        location_of_goods: text(cell!(columns, r, "location_of_goods")),
        carrier_channel: parse_enum(
            cell!(columns, r, "carrier_channel"),
            "CARRIER_CHANNEL_",
            pb::CarrierChannel::from_str_name,
        )
        .map_err(|m| err(format!("column carrier_channel: {m}")))?,
        flight_number: text(cell!(columns, r, "flight_number")),
        arrival_at: time!(columns, r, "arrival_at")
            .map_err(|m| err(format!("column arrival_at: {m}")))?,
        transport_and_insurance_costs: amount!(
            columns,
            r,
            transport_currency,
            "transport_cost_minor"
        )
        .map_err(|m| err(format!("column transport_cost_minor: {m}")))?
        .map(|amount_minor| RawMoney {
            currency: text(transport_currency),
            amount_minor,
        }),
        items,
        ens,
        attributes,
    };

    let result = if cell!(columns, r, "inspection_id").is_empty() {
        None
    } else {
        Some(pb::InspectionResult {
            declaration_id: cell!(columns, r, "declaration_id").to_owned(),
            inspection_id: cell!(columns, r, "inspection_id").to_owned(),
            selection_reason: parse_enum(
                cell!(columns, r, "selection_reason"),
                "SELECTION_REASON_",
                pb::SelectionReason::from_str_name,
            )
            .map_err(|m| err(format!("column selection_reason: {m}")))?,
            control_type: parse_enum(
                cell!(columns, r, "control_type"),
                "CHANNEL_",
                pb::Channel::from_str_name,
            )
            .map_err(|m| err(format!("column control_type: {m}")))?,
            outcome: parse_enum(
                cell!(columns, r, "outcome"),
                "INSPECTION_OUTCOME_",
                pb::InspectionOutcome::from_str_name,
            )
            .map_err(|m| err(format!("column outcome: {m}")))?,
            fraud_kinds: parse_fraud_kinds(cell!(columns, r, "fraud_kinds"))
                .map_err(|m| err(format!("column fraud_kinds: {m}")))?,
            findings,
            inspected_at: time!(columns, r, "inspected_at")
                .map_err(|m| err(format!("column inspected_at: {m}")))?,
            officer_notes: cell!(columns, r, "officer_notes").to_owned(),
        })
    };
    if result.is_none() && !findings_is_empty(rows, columns) {
        return Err(err("findings given without an inspection_id".into()));
    }
    let truth = if cell!(columns, r, "truth_seller_profile").is_empty() {
        None
    } else {
        Some(pb::GroundTruth {
            fraud_kinds: parse_fraud_kinds(cell!(columns, r, "truth_fraud_kinds"))
                .map_err(|m| err(format!("column truth_fraud_kinds: {m}")))?,
            items: truth_items,
            seller_profile: cell!(columns, r, "truth_seller_profile").to_owned(),
        })
    };
    Ok((declaration, result, truth))
}

fn findings_is_empty<R: Cells>(rows: &[(u64, R)], columns: Columns<'_>) -> bool {
    rows.iter()
        .all(|(_, row)| matches!(cell!(columns, row, "finding"), "" | "false" | "0"))
}

fn split_list(cell: &str) -> impl Iterator<Item = &str> {
    split_ascii(cell, b';')
        .map(trimmed)
        .filter(|s| !s.is_empty())
}

/// `cell.split(delimiter)`, the delimiter an ASCII byte found by a plain
/// byte loop: the lists split here (transport documents, procedure codes)
/// are a few bytes long, where `str::split`'s searcher, made for any
/// pattern, cost 2.3-2.6 % of decoding a Parquet file in `perf`.
fn split_ascii(cell: &str, delimiter: u8) -> impl Iterator<Item = &str> {
    debug_assert!(delimiter.is_ascii());
    let mut rest = Some(cell);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == delimiter) {
            // An ASCII byte is a whole character: both ends are boundaries.
            Some(at) => {
                rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// `cell.split_once(delimiter)`, as [`split_ascii`] finds it.
fn split_once_ascii(cell: &str, delimiter: u8) -> Option<(&str, &str)> {
    let at = cell.bytes().position(|b| b == delimiter)?;
    Some((&cell[..at], &cell[at + 1..]))
}

/// `cell.trim()`, without decoding a character from either end when the
/// cell begins and ends with a printable ASCII byte, which no whitespace
/// is: nearly every cell. `trim` was 4-6 % of decoding a Parquet file.
fn trimmed(cell: &str) -> &str {
    let printable = |byte: Option<&u8>| byte.is_some_and(|b| (0x21..0x80).contains(b));
    if printable(cell.as_bytes().first()) && printable(cell.as_bytes().last()) {
        cell
    } else {
        cell.trim()
    }
}

fn parse_num<T: std::str::FromStr + Default>(cell: &str) -> Result<T, String> {
    if cell.is_empty() {
        return Ok(T::default());
    }
    trimmed(cell)
        .parse()
        .map_err(|_| format!("{cell:?} is not a valid number"))
}

fn parse_bool(cell: &str) -> Result<bool, String> {
    match trimmed(cell) {
        "" | "false" | "0" | "FALSE" | "False" => Ok(false),
        "true" | "1" | "TRUE" | "True" => Ok(true),
        other => Err(format!("{other:?} is not true/false")),
    }
}

fn parse_time(cell: &str) -> Result<Option<pbjson_types::Timestamp>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    let text = trimmed(cell);
    if let Some(at) = direct::utc_timestamp(text) {
        return Ok(Some(at));
    }
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{cell:?} is not an RFC 3339 timestamp ({e})"))?
        .with_timezone(&Utc);
    Ok(Some(crate::wire::declaration::timestamp_to_pb(at)))
}

fn parse_enum<E: Into<i32>>(
    cell: &str,
    prefix: &str,
    from_name: fn(&str) -> Option<E>,
) -> Result<i32, String> {
    let cell = trimmed(cell);
    if cell.is_empty() {
        return Ok(0);
    }
    from_name(cell)
        .or_else(|| {
            // Short names (`H7` for `DATASET_TYPE_H7`) are the usual cell:
            // the full name is put together on the stack, not allocated.
            let mut name = [0u8; 64];
            let full = name.get_mut(..prefix.len() + cell.len())?;
            let (head, tail) = full.split_at_mut(prefix.len());
            head.copy_from_slice(prefix.as_bytes());
            tail.copy_from_slice(cell.as_bytes());
            from_name(std::str::from_utf8(full).ok()?)
        })
        .map(Into::into)
        .ok_or_else(|| format!("unknown value {cell:?}"))
}

fn parse_fraud_kinds(cell: &str) -> Result<Vec<i32>, String> {
    split_list(cell)
        .map(|k| parse_enum(k, "FRAUD_KIND_", pb::FraudKind::from_str_name))
        .collect()
}

/// The amount of money in minor units from its cell; `None` when neither
/// it nor its currency's cell is given.
fn amount_minor(currency: &str, amount: &str) -> Result<Option<i64>, String> {
    if currency.is_empty() && amount.is_empty() {
        return Ok(None);
    }
    trimmed(amount)
        .parse()
        .map(Some)
        .map_err(|_| format!("{amount:?} is not an integer amount in minor units"))
}

/// Money from its currency's cell and its amount as [`Columns::amount`]
/// read it.
fn money(currency: &str, amount: Result<Option<i64>, String>) -> Result<Option<pb::Money>, String> {
    Ok(amount?.map(|amount_minor| pb::Money {
        currency: currency.to_owned(),
        amount_minor,
    }))
}

// ---------------------------------------------------------------- writing

/// Writes examples, one row per goods item, with the header of [`COLUMNS`].
pub struct CsvWriter<W: Write> {
    writer: csv::Writer<W>,
    row: Vec<String>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(output: W) -> Result<Self, IoError> {
        let mut writer = Self::without_header(output);
        writer
            .writer
            .write_record(COLUMNS)
            .map_err(|e| IoError::Csv(e.to_string()))?;
        Ok(writer)
    }

    /// A writer that writes no header, for appending parts of one file.
    pub fn without_header(output: W) -> Self {
        Self {
            writer: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(output),
            row: vec![String::new(); COLUMNS.len()],
        }
    }

    /// Gives back the output (flushing first).
    pub fn into_inner(self) -> Result<W, IoError> {
        self.writer
            .into_inner()
            .map_err(|e| IoError::Csv(e.to_string()))
    }

    pub fn write(&mut self, example: &TrainingExample) -> Result<(), IoError> {
        self.write_pb(&pb::TrainingExample::from(example))
    }

    pub fn write_pb(&mut self, example: &pb::TrainingExample) -> Result<(), IoError> {
        let writer = &mut self.writer;
        example_rows(example, &mut self.row, |row| {
            writer
                .write_record(row.iter())
                .map_err(|e| IoError::Csv(e.to_string()))
        })
    }

    pub fn flush(&mut self) -> Result<(), IoError> {
        self.writer.flush()?;
        Ok(())
    }
}

/// The rows of one example, one per goods item, as cells in [`COLUMNS`]
/// order; `row` is reused between calls.
pub(crate) fn example_rows(
    example: &pb::TrainingExample,
    row: &mut [String],
    mut emit: impl FnMut(&[String]) -> Result<(), IoError>,
) -> Result<(), IoError> {
    let empty = pb::Declaration::default();
    let d = example.declaration.as_ref().unwrap_or(&empty);
    for cell in row.iter_mut() {
        cell.clear();
    }
    // The column's index is found at compile time (see `cell!`).
    macro_rules! set {
        ($name:literal, $value:expr $(,)?) => {
            row[const { col($name) }] = $value
        };
    }
    set!("declaration_id", d.declaration_id.clone());
    set!("lrn", d.lrn.clone());
    set!("mrn", d.mrn.clone());
    set!(
        "dataset",
        enum_name(
            pb::DatasetType::try_from(d.dataset).map(|e| e.as_str_name()),
            "DATASET_TYPE_",
        ),
    );
    set!(
        "additional_declaration_type",
        d.additional_declaration_type.clone(),
    );
    set!("lodged_at", time(d.lodged_at.as_ref()));
    set!("ucr", d.ucr.clone());
    for (first, party) in [
        (const { col("exporter_name") }, &d.exporter),
        (const { col("importer_name") }, &d.importer),
        (const { col("declarant_name") }, &d.declarant),
    ] {
        if let Some(p) = party {
            let field = |name: &str| first + party_field(name);
            row[field("name")] = p.name.clone();
            row[field("id")] = p.identification_number.clone();
            row[field("phone")] = p.phone.clone();
            row[field("email")] = p.email.clone();
            if let Some(a) = &p.address {
                row[field("street")] = a.street_and_number.clone();
                row[field("postcode")] = a.postcode.clone();
                row[field("city")] = a.city.clone();
                row[field("country")] = a.country.clone();
            }
        }
    }
    set!("ioss_number", d.ioss_number.clone());
    set!(
        "transport_documents",
        d.transport_documents
            .iter()
            .map(|doc| {
                let kind = enum_name(
                    pb::TransportDocumentKind::try_from(doc.kind).map(|e| e.as_str_name()),
                    "TRANSPORT_DOCUMENT_KIND_",
                );
                format!("{kind}:{}", doc.reference)
            })
            .collect::<Vec<_>>()
            .join(";"),
    );
    set!("location_of_goods", d.location_of_goods.clone());
    if d.carrier_channel != 0 {
        set!(
            "carrier_channel",
            enum_name(
                pb::CarrierChannel::try_from(d.carrier_channel).map(|e| e.as_str_name()),
                "CARRIER_CHANNEL_",
            ),
        );
    }
    set!("flight_number", d.flight_number.clone());
    set!("arrival_at", time(d.arrival_at.as_ref()));
    if let Some(m) = &d.transport_and_insurance_costs {
        set!("transport_cost_currency", m.currency.clone());
        set!("transport_cost_minor", m.amount_minor.to_string());
    }
    if let Some(ens) = &d.ens {
        set!("ens", serde_json::to_string(ens)?);
    }
    if !d.attributes.is_empty() {
        // Sorted keys so that the same declaration always writes the same bytes.
        let sorted: std::collections::BTreeMap<_, _> = d.attributes.iter().collect();
        set!("attributes", serde_json::to_string(&sorted)?);
    }
    if let Some(r) = &example.result {
        set!("inspection_id", r.inspection_id.clone());
        set!(
            "selection_reason",
            enum_name(
                pb::SelectionReason::try_from(r.selection_reason).map(|e| e.as_str_name()),
                "SELECTION_REASON_",
            ),
        );
        if r.control_type != 0 {
            set!(
                "control_type",
                enum_name(
                    pb::Channel::try_from(r.control_type).map(|e| e.as_str_name()),
                    "CHANNEL_",
                ),
            );
        }
        set!(
            "outcome",
            enum_name(
                pb::InspectionOutcome::try_from(r.outcome).map(|e| e.as_str_name()),
                "INSPECTION_OUTCOME_",
            ),
        );
        set!("fraud_kinds", fraud_kinds(&r.fraud_kinds));
        set!("inspected_at", time(r.inspected_at.as_ref()));
        set!("officer_notes", r.officer_notes.clone());
    }
    if let Some(t) = &example.truth {
        set!("truth_seller_profile", t.seller_profile.clone());
        set!("truth_fraud_kinds", fraud_kinds(&t.fraud_kinds));
    }
    for item in &d.items {
        set!("goods_item_number", item.goods_item_number.to_string());
        set!("description", item.description.clone());
        set!("hs6", item.hs6.clone());
        set_money(
            row,
            const { col("value_currency") },
            const { col("value_minor") },
            item.intrinsic_value.as_ref(),
        );
        set!("gross_mass_g", item.gross_mass_g.to_string());
        set!("quantity", item.quantity.to_string());
        set!("procedure_codes", item.additional_procedure_codes.join(";"));
        set!("country_of_origin", item.country_of_origin.clone());
        let finding = example.result.as_ref().and_then(|r| {
            r.findings
                .iter()
                .find(|f| f.goods_item_number == item.goods_item_number)
        });
        match finding {
            Some(f) => {
                set!("finding", "true".into());
                set!("finding_undervalued", f.undervalued.to_string());
                set_money(
                    row,
                    const { col("finding_value_currency") },
                    const { col("finding_value_minor") },
                    f.corrected_intrinsic_value.as_ref(),
                );
                set!("finding_misdescribed", f.misdescribed.to_string());
                set!("finding_description", f.corrected_description.clone());
                set!("finding_hs6", f.corrected_hs6.clone());
            }
            None => {
                for column in const { col("finding")..col("finding_hs6") + 1 } {
                    row[column].clear();
                }
            }
        }
        let truth = example.truth.as_ref().and_then(|t| {
            t.items
                .iter()
                .find(|i| i.goods_item_number == item.goods_item_number)
        });
        match truth {
            Some(t) => {
                set!("truth_hs6", t.hs6.clone());
                set!("truth_description", t.description.clone());
                set_money(
                    row,
                    const { col("truth_value_currency") },
                    const { col("truth_value_minor") },
                    t.intrinsic_value.as_ref(),
                );
            }
            None => {
                for column in const { col("truth_hs6")..col("truth_value_minor") + 1 } {
                    row[column].clear();
                }
            }
        }
        emit(row)?;
    }
    Ok(())
}

/// Money as its currency cell and minor-units cell (both empty when absent).
fn set_money(row: &mut [String], currency: usize, minor: usize, money: Option<&pb::Money>) {
    match money {
        Some(m) => {
            row[currency] = m.currency.clone();
            row[minor] = m.amount_minor.to_string();
        }
        None => {
            row[currency].clear();
            row[minor].clear();
        }
    }
}

/// The offset of a party's field from its `<prefix>_name` column.
const fn party_field(name: &str) -> usize {
    match position(&PARTY_FIELDS, name) {
        Some(i) => i,
        None => panic!("not a party field"),
    }
}

fn enum_name<E>(name: Result<&'static str, E>, prefix: &str) -> String {
    match name {
        Ok(full) => full.strip_prefix(prefix).unwrap_or(full).to_owned(),
        // Unknown numeric values survive as numbers (and fail validation on read).
        Err(_) => String::from("UNKNOWN"),
    }
}

fn fraud_kinds(kinds: &[i32]) -> String {
    kinds
        .iter()
        .map(|k| {
            enum_name(
                pb::FraudKind::try_from(*k).map(|e| e.as_str_name()),
                "FRAUD_KIND_",
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn time(ts: Option<&pbjson_types::Timestamp>) -> String {
    ts.and_then(|t| {
        let nanos = u32::try_from(t.nanos).ok()?;
        DateTime::from_timestamp(t.seconds, nanos)
    })
    .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    .unwrap_or_default()
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn rows_are_numbered_as_the_file_lines_whatever_ends_them() {
        for ending in ["\n", "\r\n"] {
            let text = ["h1,h2", "a,1", "b,\"two\nlines\"", "c,3"].join(ending) + ending;
            let mut rows = CsvRows::new(text.as_bytes());
            rows.header().unwrap();
            let mut lines = Vec::new();
            while let Some((line, _)) = rows.next_row().unwrap() {
                lines.push(line);
            }
            assert_eq!(lines, [2, 3, 5], "{ending:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_the_same_id_form_one_record_and_rows_without_one_stand_alone() {
        let id = COLUMNS.iter().position(|c| *c == "declaration_id").unwrap();
        let row = |cell: &str| {
            let mut cells = vec![""; COLUMNS.len()];
            cells[id] = cell;
            cells.join(",")
        };
        let text = [
            COLUMNS.join(","),
            row(""),
            row(""),
            row("A"),
            row("A"),
            row("B"),
        ]
        .join("\n");
        let records = RowGrouper::new(CsvRows::new(text.as_bytes()), Projection::Declarations);
        let lines: Vec<Vec<u64>> = records
            .map(|record| match record.unwrap() {
                RawRecord::Rows { rows, .. } => rows.iter().map(|(line, _)| *line).collect(),
                other @ (RawRecord::Json { .. }
                | RawRecord::ArrowRows { .. }
                | RawRecord::Bad(_)) => {
                    panic!("a CSV record is its rows, not line {}", other.line())
                }
            })
            .collect();
        // Two rows without an id are two declarations, each reported on its
        // own line, not one made of both.
        assert_eq!(lines, [vec![2], vec![3], vec![4, 5], vec![6]]);
    }

    #[test]
    fn lists_split_as_str_split_splits_them() {
        for cell in [
            "",
            ";",
            ";;",
            "C07",
            "C07;F48",
            ";C07;",
            " C07 ; ;F48",
            "HOUSE_AWB:H1;MASTER_AWB:176-1",
            "a:b:c",
            ":",
            "é;中文:ü;",
            "no delimiter at all",
        ] {
            assert_eq!(
                split_ascii(cell, b';').collect::<Vec<_>>(),
                cell.split(';').collect::<Vec<_>>(),
                "{cell:?}"
            );
            assert_eq!(
                split_once_ascii(cell, b':'),
                cell.split_once(':'),
                "{cell:?}"
            );
        }
    }

    #[test]
    fn enum_cells_read_by_short_or_full_name() {
        let dataset = |cell| parse_enum(cell, "DATASET_TYPE_", pb::DatasetType::from_str_name);
        let h7 = i32::from(pb::DatasetType::H7);
        assert_eq!(dataset("H7"), Ok(h7));
        assert_eq!(dataset(" H7 "), Ok(h7));
        assert_eq!(dataset("DATASET_TYPE_H7"), Ok(h7));
        assert_eq!(dataset(""), Ok(0));
        assert_eq!(dataset("h7"), Err("unknown value \"h7\"".to_owned()));
        // Longer than any name, and past the stack buffer: unknown, no panic.
        let long = "H".repeat(200);
        assert_eq!(dataset(&long), Err(format!("unknown value {long:?}")));
    }

    #[test]
    fn cells_are_trimmed_as_trim_trims_them() {
        // Every string of up to three characters drawn from the edges: the
        // printable ASCII bounds, ASCII and Unicode whitespace, controls
        // that are not whitespace, and multi-byte characters.
        let alphabet = [
            "", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "!", "~", "\x7f", "a", "7",
            "\u{85}", "\u{a0}", "\u{3000}", "\u{2028}", "\u{200b}", "é", "漢",
        ];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let cell = format!("{a}{b}{c}");
                    assert_eq!(trimmed(&cell), cell.trim(), "{cell:?}");
                }
            }
        }
    }

    #[test]
    fn same_text_is_equality() {
        let texts = [
            "",
            "a",
            "b",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefgi",
            "abcdefghi",
            "abcdefghj",
            "bbcdefghi",
            "é",
            "e\u{301}",
            "Shenzhen Trading Co., Ltd 12",
            "Shenzhen Trading Co., Ltd 13",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn reading_declarations_maps_no_result_or_truth_column() {
        let names = [
            " Declaration_ID",
            "hs6",
            "OUTCOME",
            "finding",
            "truth_hs6",
            "colour",
        ];
        let all = Layout::from_header(names, Projection::Examples).unwrap();
        let declarations = Layout::from_header(names, Projection::Declarations).unwrap();
        let mapped = |layout: &Layout| -> Vec<&str> {
            (layout.mapping.iter().enumerate())
                .filter(|(_, file)| file.is_some())
                .map(|(known, _)| COLUMNS[known])
                .collect()
        };
        assert_eq!(
            mapped(&all),
            ["declaration_id", "hs6", "outcome", "finding", "truth_hs6"]
        );
        assert_eq!(mapped(&declarations), ["declaration_id", "hs6"]);
        for layout in [&all, &declarations] {
            assert_eq!(layout.extras, [(5, "colour".to_owned())]);
        }
    }

    #[test]
    fn column_ranges_match_the_column_list() {
        assert_eq!(COLUMNS[FIRST_ITEM_COLUMN], "goods_item_number");
        assert_eq!(COLUMNS[RESULT_COLUMNS.start], "inspection_id");
        assert_eq!(COLUMNS[RESULT_COLUMNS.end - 1], "officer_notes");
        assert_eq!(COLUMNS[TRUTH_HEADER_COLUMNS.start], "truth_seller_profile");
        assert_eq!(COLUMNS[TRUTH_HEADER_COLUMNS.end - 1], "truth_fraud_kinds");
        let unique: std::collections::HashSet<_> = COLUMNS.iter().collect();
        assert_eq!(unique.len(), COLUMNS.len());
    }
}
