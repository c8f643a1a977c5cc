//! The past record of every entity and code a declaration names: importer,
//! exporter/seller, declarant, IOSS number, HS6/HS4/HS2, origin, every
//! categorical `attributes` key, and the pairs that carry signal (importer ×
//! HS6, seller × HS6, importer × seller, declarant × importer, HS6 ×
//! origin). For each: a smoothed fraud rate, how many inspections it rests
//! on, how often the value was seen, and how long ago.
//!
//! Like the party history, features read the record *before* the
//! declaration is added, and training replays data in lodging order with an
//! inspection's outcome counted only once known, so no row sees its future.
//!
//! Memory is bounded: keys are 64-bit hashes with 16 bytes of counts; while
//! replaying, a field's table that reaches [`MAX_LIVE_KEYS`] drops the keys
//! seen once and never inspected (the long tail), then the least recently
//! seen; the artifact keeps per field at most [`MAX_SAVED_KEYS`] keys that
//! were inspected or seen twice, the most recent first. So a field costs at
//! most ~16 MiB while training and ~5 MiB of JSON in the artifact, whatever
//! the number of distinct values, and there are at most [`MAX_FIELDS`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::history::{Found, PartyHistory, PartyKeys, PartyRead, key_hash, sorted};
use super::recent::RecentKeys;
use crate::domain::Declaration;
use crate::domain::validation::is_blank;

/// Most fields (each adds four features).
pub const MAX_FIELDS: usize = 40;
/// Most keys a field holds while replaying.
pub const MAX_LIVE_KEYS: usize = 1 << 19;
/// Most keys a field keeps in the artifact.
pub const MAX_SAVED_KEYS: usize = 150_000;
/// An attribute key needs a value in this share of declarations to be a field.
const MIN_PRESENCE: f64 = 0.01;
/// Pseudo-count of the prior in smoothed rates.
const PRIOR_STRENGTH: f64 = 3.0;
/// What "never seen" reads as, in days.
pub const NEVER_DAYS: u32 = 3650;

/// One part of a field's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Identification number, else name (with country).
    Importer,
    Exporter,
    Declarant,
    Ioss,
    Hs6,
    Hs4,
    Hs2,
    /// Item origin, else the exporter's country.
    Origin,
    Attribute(String),
}

impl Part {
    fn name(&self) -> String {
        match self {
            Part::Importer => "importer".into(),
            Part::Exporter => "exporter".into(),
            Part::Declarant => "declarant".into(),
            Part::Ioss => "ioss".into(),
            Part::Hs6 => "hs6".into(),
            Part::Hs4 => "hs4".into(),
            Part::Hs2 => "hs2".into(),
            Part::Origin => "origin".into(),
            Part::Attribute(key) => format!("attr:{key}"),
        }
    }

    fn per_item(&self) -> bool {
        matches!(self, Part::Hs6 | Part::Hs4 | Part::Hs2 | Part::Origin)
    }
}

/// The value of a declaration-level part, empty when absent.
fn party_value(p: &crate::domain::Party) -> (&str, &str) {
    if is_blank(&p.identification_number) {
        (
            p.name.as_str(),
            p.address.as_ref().map_or("", |a| a.country.as_str()),
        )
    } else {
        (p.identification_number.as_str(), "#id")
    }
}

/// Up to two text pieces naming a part's value for one item, for people
/// and for the presence checks of [`RecordFields::fit`]; `None` if absent.
fn value<'a>(part: &'a Part, d: &'a Declaration, item: usize) -> Option<[&'a str; 2]> {
    let non_empty = |pair: (&'a str, &'a str)| (!is_blank(pair.0)).then_some([pair.0, pair.1]);
    match part {
        Part::Importer => non_empty(party_value(&d.importer)),
        Part::Exporter => non_empty(party_value(&d.exporter)),
        Part::Declarant => non_empty(party_value(&d.declarant)),
        Part::Ioss => non_empty((d.ioss_number.as_str(), "")),
        Part::Hs6 => Some([d.items.get(item)?.hs6.as_str(), ""]),
        Part::Hs4 => Some([d.items.get(item)?.hs6.heading(), ""]),
        Part::Hs2 => Some([d.items.get(item)?.hs6.chapter(), ""]),
        Part::Origin => {
            let origin = match &d.items.get(item)?.country_of_origin {
                Some(c) => c,
                None => &d.exporter.address.as_ref()?.country,
            };
            Some([origin.as_str(), ""])
        }
        Part::Attribute(key) => d
            .attributes
            .get(key.as_str())
            .filter(|v| !is_blank(v))
            .map(|v| [v.as_str(), ""]),
    }
}

/// Item origin, else the exporter's country.
fn origin(d: &Declaration, item: usize) -> Option<crate::domain::CountryCode> {
    d.items
        .get(item)?
        .country_of_origin
        .or_else(|| d.exporter.country())
}

/// How keys are made from values ([`RecordFields::keys`]). An artifact whose
/// record was keyed another way is refused at load: its keys would never
/// match and every record would read as empty.
pub const KEY_SCHEME: u32 = 2;

/// MurmurHash3's 64-bit finalizer: spreads codes and combined keys over
/// every bit, as the tables' multiplicative hashing needs.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A code as a key: numbers, not text (HS codes and countries are fixed
/// width), tagged by kind so an HS2 and an HS6 never share a key.
fn code_key(kind: u64, n: u64) -> u64 {
    fmix((kind << 56) ^ n)
}

/// The key of a pair of parts; order matters.
fn pair_key(a: u64, b: u64) -> u64 {
    fmix(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(29))
}

/// A party's key: its identification number, else its name and country
/// (the party history's key, already computed).
fn party_part(p: &crate::domain::Party, by_name: impl FnOnce() -> u64) -> Option<u64> {
    if !is_blank(&p.identification_number) {
        Some(key_hash(&[&p.identification_number, "#id"]))
    } else if !is_blank(&p.name) {
        Some(by_name())
    } else {
        None
    }
}

/// The keys of a declaration's declaration-level parts, each hashed at most
/// once however many fields name it.
struct DeclarationParts<'a> {
    d: &'a Declaration,
    party: &'a PartyKeys,
    importer: Option<Option<u64>>,
    exporter: Option<Option<u64>>,
    declarant: Option<Option<u64>>,
}

impl DeclarationParts<'_> {
    fn key(&mut self, part: &Part, item: usize) -> Option<u64> {
        let d = self.d;
        match part {
            Part::Importer => *self.importer.get_or_insert_with(|| {
                party_part(&d.importer, || {
                    let country = d
                        .importer
                        .country()
                        .map_or(0, |c| u16::from_le_bytes(*c.as_bytes()));
                    pair_key(self.party.importer_name, u64::from(country))
                })
            }),
            Part::Exporter => *self
                .exporter
                .get_or_insert_with(|| party_part(&d.exporter, || self.party.exporter)),
            Part::Declarant => *self
                .declarant
                .get_or_insert_with(|| party_part(&d.declarant, || self.party.declarant)),
            Part::Ioss => self.party.ioss,
            Part::Hs6 => Some(code_key(1, u64::from(d.items.get(item)?.hs6.as_u32()))),
            Part::Hs4 => Some(code_key(
                2,
                u64::from(d.items.get(item)?.hs6.heading_number()),
            )),
            Part::Hs2 => Some(code_key(
                3,
                u64::from(d.items.get(item)?.hs6.chapter_number()),
            )),
            Part::Origin => {
                let [a, b] = *origin(d, item)?.as_bytes();
                Some(code_key(4, u64::from(u16::from_le_bytes([a, b]))))
            }
            Part::Attribute(key) => d
                .attributes
                .get(key.as_str())
                .filter(|v| !is_blank(v))
                .map(|v| key_hash(&[v])),
        }
    }
}

/// A field: one part, or a pair of parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub parts: Vec<Part>,
}

impl Field {
    pub fn name(&self) -> String {
        self.parts
            .iter()
            .map(Part::name)
            .collect::<Vec<_>>()
            .join("*")
    }
}

/// Counts of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "[i64; 4]", into = "[i64; 4]")]
pub struct KeyStats {
    pub seen: u32,
    pub inspected: u32,
    pub fraud: u32,
    /// Day (since 1970) it was last seen.
    pub last_day: i32,
}

impl KeyStats {
    /// Counts of two disjoint stretches of traffic together.
    fn plus(self, other: &KeyStats) -> KeyStats {
        KeyStats {
            seen: self.seen.saturating_add(other.seen),
            inspected: self.inspected.saturating_add(other.inspected),
            fraud: self.fraud.saturating_add(other.fraud),
            last_day: if other.seen > 0 {
                self.last_day.max(other.last_day)
            } else {
                self.last_day
            },
        }
    }
}

impl From<[i64; 4]> for KeyStats {
    fn from(a: [i64; 4]) -> Self {
        let u = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        Self {
            seen: u(a[0]),
            inspected: u(a[1]),
            fraud: u(a[2]),
            last_day: i32::try_from(a[3]).unwrap_or(0),
        }
    }
}

impl From<KeyStats> for [i64; 4] {
    fn from(s: KeyStats) -> Self {
        [
            i64::from(s.seen),
            i64::from(s.inspected),
            i64::from(s.fraud),
            i64::from(s.last_day),
        ]
    }
}

/// The keys of one declaration, per field (a per-item field has one per item).
pub type RecordKeys = SmallVec<[(u16, u64); 32]>;

/// What the record says of one field for a declaration: the counts of its
/// key (for a per-item field, the item whose key has the highest smoothed
/// fraud rate, and the least seen and longest unseen of the items).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FieldSignal {
    pub inspected: u32,
    pub fraud: u32,
    pub seen: u32,
    /// Days since last seen ([`NEVER_DAYS`] when never).
    pub days_since: u32,
}

/// Per field, what the record says of a declaration. Kept small (16 bytes
/// a field): it travels by value inside the signals of every declaration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordSignals {
    /// The rate over all inspections, toward which rates are smoothed.
    pub prior: f64,
    pub fields: SmallVec<[FieldSignal; MAX_FIELDS]>,
    /// Bit `i`: the declaration had a value for field `i`.
    pub present: u64,
}

impl RecordSignals {
    /// A field's smoothed share of inspections that found fraud.
    pub fn fraud_rate(&self, f: &FieldSignal) -> f64 {
        smoothed_rate(f, self.prior)
    }

    pub fn is_present(&self, field: usize) -> bool {
        field < 64 && self.present & (1 << field) != 0
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn smoothed_rate(f: &FieldSignal, prior: f64) -> f64 {
    (f64::from(f.fraud) + PRIOR_STRENGTH * prior) / (f64::from(f.inspected) + PRIOR_STRENGTH)
}

/// The fitted fields; the counts live in [`Record`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordFields {
    pub fields: Vec<Field>,
    /// The [`KEY_SCHEME`] the record's keys were made with (1: before it
    /// was written down).
    #[serde(default = "first_key_scheme")]
    pub key_scheme: u32,
}

fn first_key_scheme() -> u32 {
    1
}

fn day_of(d: &Declaration) -> i32 {
    i32::try_from(d.lodged_at.timestamp().div_euclid(86_400)).unwrap_or(0)
}

impl RecordFields {
    /// Chooses fields from the declarations: the fixed parts and pairs that
    /// the data fills, and every attribute key with a value in at least 1 %
    /// of declarations and two distinct values.
    pub fn fit(declarations: &[&Declaration]) -> Self {
        let n = declarations.len().max(1) as f64;
        let mut candidates: Vec<Field> = [
            Part::Importer,
            Part::Exporter,
            Part::Declarant,
            Part::Ioss,
            Part::Hs6,
            Part::Hs4,
            Part::Hs2,
            Part::Origin,
        ]
        .into_iter()
        .map(|p| Field { parts: vec![p] })
        .collect();
        let mut attribute_values: BTreeMap<&str, (usize, Option<&str>, bool)> = BTreeMap::new();
        for d in declarations {
            for (k, v) in &d.attributes {
                if is_blank(v) {
                    continue;
                }
                let entry = attribute_values.entry(k).or_insert((0, None, false));
                entry.0 += 1;
                match entry.1 {
                    None => entry.1 = Some(v),
                    Some(first) if first != v => entry.2 = true,
                    Some(_) => {}
                }
            }
        }
        for (key, (count, _, varied)) in &attribute_values {
            if *varied && *count as f64 >= MIN_PRESENCE * n {
                candidates.push(Field {
                    parts: vec![Part::Attribute((*key).to_owned())],
                });
            }
        }
        for (a, b) in [
            (Part::Importer, Part::Hs6),
            (Part::Exporter, Part::Hs6),
            (Part::Importer, Part::Exporter),
            (Part::Declarant, Part::Importer),
            (Part::Hs6, Part::Origin),
        ] {
            candidates.push(Field { parts: vec![a, b] });
        }
        // Keep what the data fills; the attributes were filtered already.
        let fields: Vec<Field> = candidates
            .into_iter()
            .filter(|f| {
                let filled = declarations
                    .iter()
                    .step_by((declarations.len() / 20_000).max(1))
                    .filter(|d| f.parts.iter().all(|p| value(p, d, 0).is_some()))
                    .count();
                let sampled = declarations
                    .len()
                    .div_ceil((declarations.len() / 20_000).max(1));
                filled as f64 >= MIN_PRESENCE * sampled.max(1) as f64
            })
            .take(MAX_FIELDS)
            .collect();
        Self {
            fields,
            key_scheme: KEY_SCHEME,
        }
    }

    /// Whether this build can read the record: fields keyed by another
    /// scheme would find nothing.
    pub fn check(&self) -> Result<(), String> {
        if self.fields.is_empty() || self.key_scheme == KEY_SCHEME {
            Ok(())
        } else {
            Err(format!(
                "its past record is keyed by scheme {}, this build reads scheme {KEY_SCHEME}; retrain",
                self.key_scheme
            ))
        }
    }

    /// Feature names: four per field.
    pub fn names(&self) -> Vec<String> {
        self.fields
            .iter()
            .flat_map(|f| {
                let n = f.name();
                [
                    format!("rec.{n}.fraud_rate"),
                    format!("rec.{n}.log_inspected"),
                    format!("rec.{n}.log_seen"),
                    format!("rec.{n}.log_days_since"),
                ]
            })
            .collect()
    }

    /// The field's value in a declaration, for people ("QLRUBN9 × 690722");
    /// for a per-item field, the item's with the worst record is not known
    /// here, so every item's value is listed.
    pub fn describe(&self, field: usize, d: &Declaration) -> String {
        let Some(f) = self.fields.get(field) else {
            return String::new();
        };
        let items = if f.parts.iter().any(Part::per_item) {
            d.items.len()
        } else {
            1
        };
        let mut values: Vec<String> = Vec::new();
        for item in 0..items {
            let parts: Option<Vec<&str>> = f
                .parts
                .iter()
                .map(|p| value(p, d, item).map(|[a, _]| a))
                .collect();
            if let Some(parts) = parts {
                let text = parts.join(" × ");
                if !values.contains(&text) {
                    values.push(text);
                }
            }
        }
        values.join(", ")
    }

    /// The keys of a declaration: each part's value is hashed once (codes
    /// are numbers), pairs combine their parts' keys. `party` are the
    /// declaration's party-history keys, which name the parties without an
    /// identification number.
    pub fn keys(&self, d: &Declaration, party: &PartyKeys) -> RecordKeys {
        let mut keys = RecordKeys::new();
        let mut parts = DeclarationParts {
            d,
            party,
            importer: None,
            exporter: None,
            declarant: None,
        };
        for (index, field) in self.fields.iter().enumerate() {
            let index = index as u16;
            let items = if field.parts.iter().any(Part::per_item) {
                d.items.len()
            } else {
                1
            };
            let first = keys.len();
            for item in 0..items {
                let key = match field.parts.as_slice() {
                    [one] => parts.key(one, item),
                    [a, b] => parts
                        .key(a, item)
                        .and_then(|a| Some(pair_key(a, parts.key(b, item)?))),
                    _ => None,
                };
                // An item repeating another's code adds nothing.
                if let Some(key) = key
                    && !keys[first..].iter().any(|(_, k)| *k == key)
                {
                    keys.push((index, key));
                }
            }
        }
        keys
    }
}

/// The counts per field and key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    #[serde(with = "sorted_tables")]
    tables: Vec<HashMap<u64, KeyStats>>,
    inspected: u64,
    fraud: u64,
    /// The latest day (since 1970) any key was seen: recency is measured up
    /// to it (see [`Record::signals`]). Older artifacts lack it; `freeze`
    /// recomputes it from the tables.
    #[serde(default)]
    latest_day: i32,
    /// Most keys a table holds before it sheds ([`MAX_LIVE_KEYS`] when 0).
    #[serde(skip)]
    limit: usize,
    /// Read-only copies of `tables` for serving, built by [`Record::freeze`].
    #[serde(skip)]
    frozen: Vec<FrozenTable>,
}

/// A read-only open-addressing table: key and counts in one 24-byte slot,
/// so a lookup costs one cache miss where a general hash map costs two
/// (control bytes, then the bucket). Serving looks up ~25 keys per
/// declaration in tables too large for the cache; this is most of its cost.
#[derive(Debug, Clone, Default)]
struct FrozenTable {
    /// Key 0 marks an empty slot; a real key 0 is kept in `zero`.
    slots: Vec<(u64, KeyStats)>,
    zero: Option<KeyStats>,
    shift: u32,
}

impl FrozenTable {
    fn build(table: &HashMap<u64, KeyStats>) -> Self {
        let capacity = (table.len() * 2).next_power_of_two().max(8);
        let shift = 64 - capacity.trailing_zeros();
        let mut frozen = Self {
            slots: vec![(0, KeyStats::default()); capacity],
            zero: None,
            shift,
        };
        let mask = capacity - 1;
        for (key, stats) in table {
            if *key == 0 {
                frozen.zero = Some(*stats);
                continue;
            }
            let mut i = frozen.home(*key);
            while frozen.slots[i].0 != 0 {
                i = (i + 1) & mask;
            }
            frozen.slots[i] = (*key, *stats);
        }
        frozen
    }

    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// Reads the key's home slot, so that the lookups of a declaration's
    /// ~25 keys wait for memory together (these loads do not depend on each
    /// other), not one after the other. Safe code's prefetch.
    fn touch(&self, key: u64) -> u64 {
        self.slots.get(self.home(key)).map_or(0, |slot| slot.0)
    }

    fn get(&self, key: u64) -> Option<KeyStats> {
        if key == 0 {
            return self.zero;
        }
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = self.home(key);
        loop {
            let (k, stats) = self.slots[i];
            if k == key {
                return Some(stats);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

mod sorted_tables {
    use super::{HashMap, KeyStats};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Table(#[serde(with = "super::sorted")] HashMap<u64, KeyStats>);

    pub fn serialize<S: Serializer>(
        tables: &[HashMap<u64, KeyStats>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<Table> = tables.iter().map(|t| Table(t.clone())).collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<HashMap<u64, KeyStats>>, D::Error> {
        let list: Vec<Table> = Vec::deserialize(d)?;
        Ok(list.into_iter().map(|t| t.0).collect())
    }
}

impl Record {
    pub fn new(fields: &RecordFields) -> Self {
        Self {
            tables: vec![HashMap::default(); fields.fields.len()],
            inspected: 0,
            fraud: 0,
            latest_day: 0,
            limit: 0,
            frozen: Vec::new(),
        }
    }

    fn limit(&self) -> usize {
        if self.limit == 0 {
            MAX_LIVE_KEYS
        } else {
            self.limit
        }
    }

    /// Builds the read-only tables serving looks keys up in. The record must
    /// not change afterwards (`observe`, `learn` and `prune` drop them, and
    /// lookups fall back to the maps).
    pub fn freeze(&mut self) {
        let latest_seen = self
            .tables
            .iter()
            .flat_map(|t| t.values())
            .map(|s| s.last_day)
            .max();
        self.latest_day = self.latest_day.max(latest_seen.unwrap_or(0));
        self.frozen = self.tables.iter().map(FrozenTable::build).collect();
    }

    fn is_frozen(&self) -> bool {
        self.frozen.len() == self.tables.len() && !self.frozen.is_empty()
    }

    fn lookup(&self, field: usize, key: u64) -> Option<KeyStats> {
        if self.is_frozen() {
            self.frozen.get(field)?.get(key)
        } else {
            self.tables.get(field)?.get(&key).copied()
        }
    }

    /// What the record says of a declaration, field by field. A record of
    /// another field count (an artifact from before) reads as empty.
    ///
    /// Recency is the days from a key's last sighting to the record's
    /// latest day (or the declaration's day, if earlier), not to the
    /// declaration's day: while training replays traffic, the record's
    /// latest day is the declaration's own (or the day before), but a
    /// served record stops at the end of training, and "days since" counted
    /// to today would grow with the model's age, whatever the traffic does:
    /// a train/serve skew the model never learnt.
    pub fn signals(
        &self,
        fields: &RecordFields,
        keys: &RecordKeys,
        d: &Declaration,
    ) -> RecordSignals {
        self.signals_with(fields, keys, None, d)
    }

    /// As [`Record::signals`], with what live traffic added since the
    /// record was frozen ([`LiveRead`], whose keys are `keys`): counts add
    /// up, a key's last sighting and the latest day are the later of the
    /// two, so recency is counted to the live traffic's day as it was to
    /// the replayed declaration's day in training.
    pub fn signals_with(
        &self,
        fields: &RecordFields,
        keys: &RecordKeys,
        live: Option<&LiveRead>,
        d: &Declaration,
    ) -> RecordSignals {
        let (live_inspected, live_fraud, live_day) =
            live.map_or((0, 0, 0), |l| (l.inspected, l.fraud, l.latest_day));
        let prior = (self.fraud as f64 + live_fraud as f64 + 1.0)
            / (self.inspected as f64 + live_inspected as f64 + 4.0);
        let today = day_of(d).min(self.latest_day.max(live_day));
        if self.is_frozen() {
            let touched = keys.iter().fold(0, |acc, (field, key)| {
                acc ^ self
                    .frozen
                    .get(usize::from(*field))
                    .map_or(0, |t| t.touch(*key))
            });
            std::hint::black_box(touched);
        }
        let mut out = RecordSignals {
            prior,
            fields: SmallVec::from_elem(
                FieldSignal {
                    days_since: NEVER_DAYS,
                    ..FieldSignal::default()
                },
                fields.fields.len(),
            ),
            present: 0,
        };
        for (i, (field, key)) in keys.iter().enumerate() {
            let field = usize::from(*field);
            let Some(slot) = out.fields.get_mut(field) else {
                continue;
            };
            let mut stats = self.lookup(field, *key).unwrap_or_default();
            if let Some(added) = live.and_then(|l| l.before.get(i)) {
                stats = stats.plus(added);
            }
            let found = FieldSignal {
                inspected: stats.inspected,
                fraud: stats.fraud,
                seen: stats.seen,
                days_since: if stats.seen > 0 {
                    u32::try_from(today.saturating_sub(stats.last_day))
                        .unwrap_or(0)
                        .min(NEVER_DAYS)
                } else {
                    NEVER_DAYS
                },
            };
            let bit = 1u64 << (field % 64);
            if out.present & bit == 0 {
                *slot = found;
            } else {
                if smoothed_rate(&found, prior) > smoothed_rate(slot, prior) {
                    slot.inspected = found.inspected;
                    slot.fraud = found.fraud;
                }
                slot.seen = slot.seen.min(found.seen);
                slot.days_since = slot.days_since.max(found.days_since);
            }
            out.present |= bit;
        }
        out
    }

    /// Records that a declaration was lodged.
    pub fn observe(&mut self, keys: &RecordKeys, d: &Declaration) {
        self.observe_each(keys, d, |_| ());
    }

    /// As [`Record::observe`]; `before` hears each key's counts as they
    /// were before this declaration (in key order), so reading and adding
    /// cost one lookup per key.
    fn observe_each(
        &mut self,
        keys: &RecordKeys,
        d: &Declaration,
        mut before: impl FnMut(KeyStats),
    ) {
        self.frozen.clear();
        let day = day_of(d);
        let limit = self.limit();
        for (field, key) in keys {
            let Some(table) = self.tables.get_mut(usize::from(*field)) else {
                before(KeyStats::default());
                continue;
            };
            if table.len() >= limit && !table.contains_key(key) {
                shrink(table, limit);
            }
            let stats = table.entry(*key).or_default();
            before(*stats);
            stats.seen = stats.seen.saturating_add(1);
            stats.last_day = stats.last_day.max(day);
        }
        self.latest_day = self.latest_day.max(day);
    }

    /// Records an inspection's outcome (`fraud`), for every key of its declaration.
    pub fn learn(&mut self, keys: &RecordKeys, fraud: bool) {
        self.frozen.clear();
        self.inspected += 1;
        self.fraud += u64::from(fraud);
        for (field, key) in keys {
            let Some(table) = self.tables.get_mut(usize::from(*field)) else {
                continue;
            };
            let stats = table.entry(*key).or_default();
            stats.inspected = stats.inspected.saturating_add(1);
            stats.fraud = stats.fraud.saturating_add(u32::from(fraud));
        }
    }

    /// Keeps, per field, at most [`MAX_SAVED_KEYS`] keys inspected or seen
    /// twice, the most recently seen first.
    pub fn prune(&mut self) {
        self.frozen.clear();
        for table in &mut self.tables {
            table.retain(|_, s| s.inspected > 0 || s.seen >= 2);
            if table.len() > MAX_SAVED_KEYS {
                keep_recent(table, MAX_SAVED_KEYS);
            }
        }
    }

    /// Keys per field, for the model card.
    pub fn sizes(&self, fields: &RecordFields) -> Vec<(String, usize)> {
        fields
            .fields
            .iter()
            .zip(&self.tables)
            .map(|(f, t)| (f.name(), t.len()))
            .collect()
    }
}

/// What live traffic added to the record for one declaration's keys, read
/// before the declaration itself was added (as training reads the record).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRead {
    /// The declaration's keys ([`RecordFields::keys`]).
    pub keys: RecordKeys,
    /// Per key, in the same order: what live traffic added to it.
    pub before: SmallVec<[KeyStats; 32]>,
    /// Live inspections and frauds found, over all keys.
    pub inspected: u64,
    pub fraud: u64,
    /// The latest day live traffic was lodged on.
    pub latest_day: i32,
    /// What live traffic added to the party history of its parties.
    pub party: PartyRead,
}

/// Most keys per field the live record holds: a table of 2^14 keys takes
/// 2^15 slots of 25 bytes (0.8 MiB), so 12 MiB for the default model's 15
/// fields and 32 MiB at most ([`MAX_FIELDS`]). A hub meets millions of
/// new parties a day: the table is a cache of the repeat ones (the keys
/// seen once and never inspected go first, then the least recently seen).
/// Sized so that the hostile soak (`cargo bench --bench hostile`) stays
/// well under its 512 MiB bound with the record full of junk parties.
pub const MAX_LIVE_RECORD_KEYS: usize = 1 << 14;
/// Most parties per party table the live record holds: 2^16 slots of 29
/// bytes, 1.8 MiB per table, 7.3 MiB for the four.
pub const MAX_LIVE_PARTIES: usize = 1 << 15;
/// Declaration ids remembered so that a resend is not counted twice.
const REMEMBERED_IDS: usize = 1 << 18;
/// Inspection results remembered so that one brought twice (by the report
/// that recorded it and by the store's replay at a model swap) is counted
/// once. Results are a few hundred a day where declarations are millions.
const REMEMBERED_RESULTS: usize = 1 << 16;

/// The record as live traffic extends it after training: the same counts
/// ([`Record::observe`], [`Record::learn`]) over the declarations scored
/// and the inspection results reported since, read on top of the frozen
/// record of the artifact ([`Record::signals_with`]). So the served record
/// keeps learning, as the replay did in training: new importers and codes
/// are seen, recency is counted to today, and what inspections find
/// raises the rates of the keys they name.
#[derive(Debug)]
pub struct LiveRecord {
    record: Record,
    /// The party history's counts (exporter, delivery address, IOSS
    /// number, declarant) over the same traffic and results.
    parties: PartyHistory,
    /// The last lodging time the frozen record counted: traffic lodged up
    /// to it is in there already (an evaluation's warm-up, a rerun of
    /// training days), so it is read, not counted twice.
    counted_until: Option<DateTime<Utc>>,
    ids: RecentKeys<()>,
    /// Keys of the results learnt lately ([`LiveRecord::learn_once`]).
    results: RecentKeys<()>,
}

impl LiveRecord {
    pub fn new(fields: &RecordFields, counted_until: Option<DateTime<Utc>>) -> Self {
        let mut record = Record::new(fields);
        record.limit = MAX_LIVE_RECORD_KEYS;
        Self {
            record,
            parties: PartyHistory::default(),
            counted_until,
            ids: RecentKeys::new(REMEMBERED_IDS),
            results: RecentKeys::new(REMEMBERED_RESULTS),
        }
    }

    /// What live traffic says of `keys` so far, without adding anything.
    pub fn read(&self, keys: RecordKeys, party: &PartyKeys) -> LiveRead {
        let before = keys
            .iter()
            .map(|(field, key)| {
                self.record
                    .tables
                    .get(usize::from(*field))
                    .and_then(|t| t.get(key))
                    .copied()
                    .unwrap_or_default()
            })
            .collect();
        LiveRead {
            keys,
            before,
            inspected: self.record.inspected,
            fraud: self.record.fraud,
            latest_day: self.record.latest_day,
            party: self.parties.read(party),
        }
    }

    /// Whether a declaration is one the frozen record has not counted.
    pub fn is_new(&self, d: &Declaration) -> bool {
        self.counted_until.is_none_or(|until| d.lodged_at > until)
    }

    /// Reads what live traffic says of a declaration, then adds it. A
    /// declaration id seen lately (a resend), or lodged before the frozen
    /// record ends, is read, not added.
    pub fn observe(&mut self, keys: RecordKeys, party: &PartyKeys, d: &Declaration) -> LiveRead {
        if !self.is_new(d) || !self.remember(party.declaration) {
            return self.read(keys, party);
        }
        let (inspected, fraud, latest_day) = (
            self.record.inspected,
            self.record.fraud,
            self.record.latest_day,
        );
        let mut before = SmallVec::new();
        self.record
            .observe_each(&keys, d, |stats| before.push(stats));
        LiveRead {
            keys,
            before,
            inspected,
            fraud,
            latest_day,
            party: self.parties.observe_bounded(party, MAX_LIVE_PARTIES),
        }
    }

    /// Whether a declaration id ([`PartyKeys::declaration`], 0 for none:
    /// always new) is new to the last [`REMEMBERED_IDS`] (then it is
    /// remembered).
    fn remember(&mut self, id: u64) -> bool {
        if id == 0 {
            return true;
        }
        self.ids.insert(id, ())
    }

    /// Adds an inspection's outcome for the keys and parties of its
    /// declaration.
    pub fn learn(&mut self, keys: &RecordKeys, party: &PartyKeys, found: Found) {
        self.record.learn(keys, found.fraud);
        self.parties.learn_found(party, found);
    }

    /// As [`LiveRecord::learn`], unless the result `result`
    /// ([`super::history::result_key`]) was learnt lately. Whether it was
    /// learnt now.
    pub fn learn_once(
        &mut self,
        result: u64,
        keys: &RecordKeys,
        party: &PartyKeys,
        found: Found,
    ) -> bool {
        if !self.results.insert(result, ()) {
            return false;
        }
        self.learn(keys, party, found);
        true
    }

    /// Keys held, over all fields and party tables.
    pub fn len(&self) -> usize {
        self.record.tables.iter().map(HashMap::len).sum::<usize>() + self.parties.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room in a full table: the keys seen once and never inspected go;
/// if that frees less than a quarter, the least recently seen half goes too.
fn shrink(table: &mut HashMap<u64, KeyStats>, limit: usize) {
    table.retain(|_, s| s.inspected > 0 || s.seen >= 2);
    if table.len() > limit * 3 / 4 {
        keep_recent(table, limit / 2);
    }
    super::compact(table, limit);
}

fn keep_recent(table: &mut HashMap<u64, KeyStats>, n: usize) {
    let mut days: Vec<(i32, u32)> = table.values().map(|s| (s.last_day, s.seen)).collect();
    let at = days.len() - n;
    let (_, cut, _) = days.select_nth_unstable(at);
    let cut = *cut;
    table.retain(|_, s| (s.last_day, s.seen) >= cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TrainingExample;
    use crate::generate::{Generator, GeneratorConfig};

    fn declaration() -> Declaration {
        let generator = Generator::new(GeneratorConfig {
            parcels: 20,
            seed: 3,
            ..GeneratorConfig::default()
        })
        .unwrap();
        let example = generator.chunk(0).0.remove(0);
        TrainingExample::try_from(example).unwrap().declaration
    }

    fn fields(parts: &[&[Part]]) -> RecordFields {
        RecordFields {
            fields: parts.iter().map(|p| Field { parts: p.to_vec() }).collect(),
            key_scheme: KEY_SCHEME,
        }
    }

    #[test]
    fn keys_name_values_not_their_spelling_and_pairs_keep_their_order() {
        let f = fields(&[
            &[Part::Importer],
            &[Part::Hs6],
            &[Part::Importer, Part::Hs6],
            &[Part::Hs6, Part::Importer],
        ]);
        let mut d = declaration();
        d.importer.identification_number.clear();
        let keys = |d: &Declaration| f.keys(d, &PartyKeys::of(d));
        let before = keys(&d);
        let key = |keys: &RecordKeys, field: u16| {
            keys.iter()
                .filter(|(f, _)| *f == field)
                .map(|(_, k)| *k)
                .collect::<Vec<_>>()
        };
        // Case and spaces do not make another importer.
        let mut respelled = d.clone();
        respelled.importer.name = format!("  {}  ", d.importer.name.to_uppercase()).into();
        assert_eq!(keys(&respelled), before);
        // An identification number names the importer instead of the name.
        let mut identified = d.clone();
        identified.importer.identification_number = "BE0123456789".into();
        assert_ne!(key(&keys(&identified), 0), key(&before, 0));
        assert_eq!(key(&keys(&identified), 1), key(&before, 1));
        // importer × HS6 is not HS6 × importer, nor either part alone.
        assert_ne!(key(&before, 2), key(&before, 3));
        assert_ne!(key(&before, 2), key(&before, 0));
        // An item repeating a code adds no key.
        let mut repeated = d.clone();
        repeated.items.truncate(1);
        let again = repeated.items[0].clone();
        repeated.items.push(again);
        assert_eq!(key(&keys(&repeated), 1).len(), 1);
        // A party named by nothing has no key, and its pairs neither.
        let mut anonymous = d.clone();
        anonymous.importer.name = " ".into();
        assert!(key(&keys(&anonymous), 0).is_empty());
        assert!(key(&keys(&anonymous), 2).is_empty());
        assert!(!key(&keys(&anonymous), 1).is_empty());
    }

    #[test]
    fn a_record_keyed_by_another_scheme_is_refused() {
        let mut f = fields(&[&[Part::Hs6]]);
        assert!(f.check().is_ok());
        f.key_scheme = 1;
        assert!(f.check().unwrap_err().contains("retrain"));
        f.fields.clear();
        assert!(f.check().is_ok(), "no record, nothing to misread");
    }

    #[test]
    fn frozen_tables_answer_like_the_maps() {
        let mut t: HashMap<u64, KeyStats> = HashMap::default();
        let mut x: u64 = 0x1234_5678;
        let mut keys = vec![0u64];
        for i in 0..5_000u32 {
            // xorshift: spread keys, a few sharing home slots.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(x);
            t.insert(
                x,
                KeyStats {
                    seen: i,
                    inspected: i / 2,
                    fraud: i / 3,
                    last_day: i as i32,
                },
            );
        }
        t.insert(
            0,
            KeyStats {
                seen: 7,
                ..KeyStats::default()
            },
        );
        let frozen = FrozenTable::build(&t);
        for k in keys.iter().chain([1u64, 2, 3, u64::MAX].iter()) {
            assert_eq!(frozen.get(*k), t.get(k).copied(), "{k}");
        }
        assert_eq!(FrozenTable::build(&HashMap::default()).get(5), None);
        assert_eq!(FrozenTable::default().get(5), None);
    }

    #[test]
    fn recency_is_counted_to_the_records_latest_day_so_a_served_record_does_not_age() {
        let f = fields(&[&[Part::Importer]]);
        let mut record = Record::new(&f);
        let mut d = declaration();
        d.importer.identification_number = "BE0000000001".into();
        let mut other = d.clone();
        other.importer.identification_number = "BE0000000002".into();
        let day = chrono::Duration::days(1);
        let start = d.lodged_at;
        let days_since = |record: &Record, d: &Declaration| {
            record.signals(&f, &f.keys(d, &PartyKeys::of(d)), d).fields[0].days_since
        };
        record.observe(&f.keys(&d, &PartyKeys::of(&d)), &d);
        other.lodged_at = start + day * 5;
        record.observe(&f.keys(&other, &PartyKeys::of(&other)), &other);
        // While replaying: five days from its sighting to the latest one.
        d.lodged_at = start + day * 5;
        assert_eq!(days_since(&record, &d), 5);
        // Served a month later, the record still reads five days, as in training.
        record.freeze();
        d.lodged_at = start + day * 35;
        assert_eq!(days_since(&record, &d), 5);
        // An older declaration is read up to its own day.
        d.lodged_at = start + day * 2;
        assert_eq!(days_since(&record, &d), 2);
        // A record read back from an artifact without the field finds it again.
        let json = serde_json::to_value(&record).unwrap();
        let mut map = json.as_object().unwrap().clone();
        map.remove("latest_day");
        let mut loaded: Record = serde_json::from_value(serde_json::Value::Object(map)).unwrap();
        loaded.freeze();
        d.lodged_at = start + day * 35;
        assert_eq!(days_since(&loaded, &d), 5);
    }

    #[test]
    fn the_live_record_extends_the_frozen_one_as_the_replay_did() {
        let f = fields(&[&[Part::Importer]]);
        let day = chrono::Duration::days(1);
        let mut known = declaration();
        known.importer.identification_number = "BE0000000001".into();
        let mut newcomer = known.clone();
        newcomer.importer.identification_number = "BE0000000002".into();
        let start = known.lodged_at;
        let keys = |d: &Declaration| f.keys(d, &PartyKeys::of(d));
        // Training saw the known importer three times, one inspection clean.
        let mut base = Record::new(&f);
        for _ in 0..3 {
            base.observe(&keys(&known), &known);
        }
        base.learn(&keys(&known), false);
        base.freeze();
        let read = |live: &mut LiveRecord, d: &mut Declaration, id: &str, at| {
            d.declaration_id = id.into();
            d.lodged_at = at;
            let read = live.observe(keys(d), &PartyKeys::of(d), d);
            base.signals_with(&f, &read.keys, Some(&read), d).fields[0]
        };
        let mut live = LiveRecord::new(&f, None);
        // Ten days on, the first live declaration reads the frozen record.
        let first = read(&mut live, &mut known, "a", start + day * 10);
        assert_eq!((first.seen, first.inspected, first.days_since), (3, 1, 0));
        // The newcomer is unknown to training; recency now runs to live days.
        let fresh = read(&mut live, &mut newcomer, "b", start + day * 10);
        assert_eq!((fresh.seen, fresh.days_since), (0, NEVER_DAYS));
        // Read before it is added, as in training: the latest day is still
        // day 10 for the first declaration of day 12.
        let again = read(&mut live, &mut newcomer, "c", start + day * 12);
        assert_eq!((again.seen, again.days_since), (1, 0));
        let known_later = read(&mut live, &mut known, "d", start + day * 12);
        assert_eq!((known_later.seen, known_later.days_since), (4, 2));
        // A resend is read, not counted again.
        let resent = read(&mut live, &mut newcomer, "c", start + day * 12);
        assert_eq!(resent.seen, 2);
        let after = read(&mut live, &mut newcomer, "e", start + day * 12);
        assert_eq!(after.seen, 2, "c counted once");
        // What an inspection finds raises the newcomer's rate.
        let before = read(&mut live, &mut newcomer, "f", start + day * 13);
        let rate = |s: &FieldSignal, l: &LiveRecord, d: &Declaration| {
            let r = l.read(keys(d), &PartyKeys::of(d));
            base.signals_with(&f, &r.keys, Some(&r), d).fraud_rate(s)
        };
        let rate_before = rate(&before, &live, &newcomer);
        let fraud = Found {
            fraud: true,
            uv: true,
            md: false,
        };
        let party = PartyKeys::of(&newcomer);
        let result = super::super::history::result_key;
        assert!(live.learn_once(result("c", "I1"), &keys(&newcomer), &party, fraud));
        assert!(live.learn_once(result("e", "I1"), &keys(&newcomer), &party, fraud));
        // One result brought twice (a report and the store's replay).
        assert!(!live.learn_once(result("e", "I1"), &keys(&newcomer), &party, fraud));
        let found = read(&mut live, &mut newcomer, "g", start + day * 13);
        assert_eq!((found.inspected, found.fraud), (2, 2));
        assert!(rate(&found, &live, &newcomer) > rate_before + 0.2);
        // Traffic the frozen record counted already is read, not counted.
        let mut trained = LiveRecord::new(&f, Some(start + day * 20));
        let mut old = newcomer.clone();
        old.lodged_at = start + day * 19;
        trained.observe(keys(&old), &PartyKeys::of(&old), &old);
        assert!(trained.is_empty());
        old.lodged_at = start + day * 21;
        trained.observe(keys(&old), &PartyKeys::of(&old), &old);
        // One record key, and the four parties' (IOSS when present).
        let parties = 3 + usize::from(!old.ioss_number.is_empty());
        assert_eq!(trained.len(), 1 + parties);
    }

    #[test]
    fn the_live_record_holds_a_bounded_number_of_keys() {
        let f = fields(&[&[Part::Importer]]);
        let mut live = LiveRecord::new(&f, None);
        let mut d = declaration();
        for i in 0..(MAX_LIVE_RECORD_KEYS * 2) {
            d.importer.identification_number = format!("BE{i:010}").into();
            d.declaration_id = format!("D{i}").into();
            let keys = f.keys(&d, &PartyKeys::of(&d));
            live.observe(keys, &PartyKeys::of(&d), &d);
        }
        let record_keys = live.record.tables[0].len();
        assert!(record_keys <= MAX_LIVE_RECORD_KEYS, "{record_keys}");
        assert!(record_keys >= MAX_LIVE_RECORD_KEYS / 4, "{record_keys}");
    }

    #[test]
    fn keep_recent_keeps_the_latest() {
        let mut t: HashMap<u64, KeyStats> = HashMap::default();
        for k in 0..100u64 {
            t.insert(
                k,
                KeyStats {
                    seen: 1,
                    inspected: 0,
                    fraud: 0,
                    last_day: k as i32,
                },
            );
        }
        keep_recent(&mut t, 10);
        assert_eq!(t.len(), 10);
        assert!(t.keys().all(|k| *k >= 90));
    }
}
