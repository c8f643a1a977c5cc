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

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::history::{key_hash, sorted};
use crate::domain::Declaration;

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
const NEVER_DAYS: f64 = 3650.0;

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
    if p.identification_number.trim().is_empty() {
        (
            p.name.as_str(),
            p.address.as_ref().map_or("", |a| a.country.as_str()),
        )
    } else {
        (p.identification_number.as_str(), "#id")
    }
}

/// Up to two text pieces naming a part's value for one item; `None` if absent.
fn value<'a>(part: &'a Part, d: &'a Declaration, item: usize) -> Option<[&'a str; 2]> {
    let non_empty =
        |pair: (&'a str, &'a str)| (!pair.0.trim().is_empty()).then_some([pair.0, pair.1]);
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
            .get(key)
            .filter(|v| !v.trim().is_empty())
            .map(|v| [v.as_str(), ""]),
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

/// What the record says of one field for a declaration, as features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSignal {
    /// Smoothed share of its inspections that found fraud (the highest
    /// over the items, for per-item fields).
    pub fraud_rate: f64,
    pub inspected: u32,
    pub fraud: u32,
    pub seen: u32,
    /// Days since last seen (`NEVER_DAYS` when never).
    pub days_since: f64,
    /// Whether the declaration had a value for the field.
    pub present: bool,
    /// The rate over all inspections, toward which rates are smoothed.
    pub prior: f64,
}

/// Per field, what the record says of a declaration.
pub type RecordSignals = SmallVec<[FieldSignal; MAX_FIELDS]>;

/// The fitted fields; the counts live in [`Record`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordFields {
    pub fields: Vec<Field>,
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
                if v.trim().is_empty() {
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
        Self { fields }
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

    /// The keys of a declaration.
    pub fn keys(&self, d: &Declaration) -> RecordKeys {
        let mut keys = RecordKeys::new();
        for (index, field) in self.fields.iter().enumerate() {
            let items = if field.parts.iter().any(Part::per_item) {
                d.items.len()
            } else {
                1
            };
            for item in 0..items {
                let mut pieces: SmallVec<[&str; 4]> = SmallVec::new();
                let mut complete = true;
                for part in &field.parts {
                    match value(part, d, item) {
                        Some([a, b]) => {
                            pieces.push(a);
                            pieces.push(b);
                        }
                        None => complete = false,
                    }
                }
                if complete {
                    let key = key_hash(&pieces);
                    // An item repeating another's code adds nothing.
                    if !keys.contains(&(index as u16, key)) {
                        keys.push((index as u16, key));
                    }
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
            frozen: Vec::new(),
        }
    }

    fn prior(&self) -> f64 {
        (self.fraud as f64 + 1.0) / (self.inspected as f64 + 4.0)
    }

    /// Builds the read-only tables serving looks keys up in. The record must
    /// not change afterwards (`observe`, `learn` and `prune` drop them, and
    /// lookups fall back to the maps).
    pub fn freeze(&mut self) {
        self.frozen = self.tables.iter().map(FrozenTable::build).collect();
    }

    fn lookup(&self, field: usize, key: u64) -> Option<KeyStats> {
        if self.frozen.len() == self.tables.len() && !self.frozen.is_empty() {
            self.frozen.get(field)?.get(key)
        } else {
            self.tables.get(field)?.get(&key).copied()
        }
    }

    /// What the record says of a declaration, field by field. A record of
    /// another field count (an artifact from before) reads as empty.
    pub fn signals(
        &self,
        fields: &RecordFields,
        keys: &RecordKeys,
        d: &Declaration,
    ) -> RecordSignals {
        let prior = self.prior();
        let today = day_of(d);
        let mut out: RecordSignals = (0..fields.fields.len())
            .map(|_| FieldSignal {
                fraud_rate: prior,
                inspected: 0,
                fraud: 0,
                seen: 0,
                days_since: NEVER_DAYS,
                present: false,
                prior,
            })
            .collect();
        let mut set = vec_of_false(fields.fields.len());
        for (field, key) in keys {
            let field = usize::from(*field);
            let Some(slot) = out.get_mut(field) else {
                continue;
            };
            let stats = self.lookup(field, *key).unwrap_or_default();
            let rate = (f64::from(stats.fraud) + PRIOR_STRENGTH * prior)
                / (f64::from(stats.inspected) + PRIOR_STRENGTH);
            let days = if stats.seen > 0 {
                f64::from((today - stats.last_day).max(0))
            } else {
                NEVER_DAYS
            };
            if !set[field] || rate > slot.fraud_rate {
                slot.fraud_rate = rate;
                slot.inspected = stats.inspected;
                slot.fraud = stats.fraud;
            }
            if !set[field] {
                slot.seen = stats.seen;
                slot.days_since = days;
            } else {
                slot.seen = slot.seen.min(stats.seen);
                slot.days_since = slot.days_since.max(days);
            }
            slot.present = true;
            set[field] = true;
        }
        out
    }

    /// Records that a declaration was lodged.
    pub fn observe(&mut self, keys: &RecordKeys, d: &Declaration) {
        self.frozen.clear();
        let day = day_of(d);
        for (field, key) in keys {
            let Some(table) = self.tables.get_mut(usize::from(*field)) else {
                continue;
            };
            if table.len() >= MAX_LIVE_KEYS && !table.contains_key(key) {
                shrink(table);
            }
            let stats = table.entry(*key).or_default();
            stats.seen = stats.seen.saturating_add(1);
            stats.last_day = stats.last_day.max(day);
        }
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

fn vec_of_false(n: usize) -> SmallVec<[bool; MAX_FIELDS]> {
    SmallVec::from_elem(false, n)
}

/// Makes room in a full table: the keys seen once and never inspected go;
/// if that frees less than a quarter, the least recently seen half goes too.
fn shrink(table: &mut HashMap<u64, KeyStats>) {
    table.retain(|_, s| s.inspected > 0 || s.seen >= 2);
    if table.len() > MAX_LIVE_KEYS * 3 / 4 {
        keep_recent(table, MAX_LIVE_KEYS / 2);
    }
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
