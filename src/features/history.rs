//! Party history: how often each exporter, delivery address, IOSS number and
//! declarant was seen, inspected and found in fraud, and how many distinct
//! names an address receives for and how many distinct sellers use an IOSS
//! number.
//!
//! Features read the history *before* the declaration is added, and training
//! replays the data in lodging order, applying an inspection's outcome only
//! once its `inspected_at` has passed. So no feature ever sees the future.

use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Declaration, FraudKind, InspectionOutcome, InspectionResult, Party};

/// FNV-1a, 64 bit: stable across builds and platforms, so keys survive in artifacts.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes() {
            let byte = byte.to_ascii_lowercase();
            if byte.is_ascii_whitespace() {
                continue;
            }
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A stable 64-bit key of text parts, ignoring ASCII case and whitespace:
/// the parts are normalised and mixed eight bytes at a time (the FxHash
/// step), several times faster than byte-wise FNV on names and addresses.
/// Stable across builds, so keys survive in artifacts.
///
/// Each part's bytes are lowercased and packed, whitespace dropped, into a
/// small buffer without a branch per byte, then mixed a word at a time: one
/// path where there were a word path and a byte path, and measured no
/// slower (scoring mostly waits for each declaration's strings to load,
/// not for the hashing). Same bits as the byte-wise definition
/// ([`key_hash_bytewise`], kept for the test that says so).
pub fn key_hash(parts: &[&str]) -> u64 {
    parts
        .iter()
        .fold(0, |hash, part| key_mix_part(hash, part.as_bytes()))
}

/// [`key_hash`] of byte strings.
pub fn key_hash_bytes(parts: &[&[u8]]) -> u64 {
    parts.iter().fold(0, |hash, part| key_mix_part(hash, part))
}

/// Mixes one part into the hash: its bytes lower-cased, ASCII whitespace
/// dropped, packed eight to a little-endian word. Words are read eight input
/// bytes at a time; one with no byte at or below a space (no whitespace
/// to drop: nearly every word of a code or an id, most of a name) is
/// lower-cased in one go and shifted into place, the others byte by byte.
/// The packed word is kept in a register: assembling it in memory from
/// single-byte stores stalled every load of it.
#[inline]
fn key_mix_part(mut hash: u64, part: &[u8]) -> u64 {
    let mut packed = Packed::default();
    let mut words = part.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if has_byte_at_or_below_space(word) {
            for byte in word.to_le_bytes() {
                hash = packed.push(hash, byte);
            }
        } else {
            hash = packed.push_word(hash, ascii_lowercase_word(word));
        }
    }
    for &byte in words.remainder() {
        hash = packed.push(hash, byte);
    }
    // Flush and mark the end of the part, so ("ab", "c") differs from ("a", "bc").
    key_mix(hash, packed.bits ^ (u64::from(packed.len) << 56) ^ 0xff)
}

/// Bytes packed but not yet mixed: `len` (0..8) of them, in the low bytes.
#[derive(Default)]
struct Packed {
    bits: u64,
    len: u32,
}

impl Packed {
    /// Packs one input byte, unless it is whitespace; mixes a full word.
    #[inline]
    fn push(&mut self, hash: u64, byte: u8) -> u64 {
        if is_ascii_whitespace_branchless(byte) {
            return hash;
        }
        self.bits |= u64::from(byte.to_ascii_lowercase()) << (8 * self.len);
        self.len += 1;
        if self.len < 8 {
            return hash;
        }
        let word = std::mem::take(&mut self.bits);
        self.len = 0;
        key_mix(hash, word)
    }

    /// Packs eight bytes with nothing to drop, mixing the word they complete.
    #[inline]
    fn push_word(&mut self, hash: u64, word: u64) -> u64 {
        if self.len == 0 {
            return key_mix(hash, word);
        }
        let shift = 8 * self.len;
        let full = self.bits | (word << shift);
        self.bits = word >> (64 - shift);
        key_mix(hash, full)
    }
}

const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Per byte, the high bit set where `word`'s byte has its high bit clear
/// and its low seven bits are at least `at_least` (at most 0x80).
#[inline]
fn bytes_at_least(word: u64, at_least: u8) -> u64 {
    let add = u64::from_le_bytes([0x80 - at_least; 8]);
    ((word & LOW_BITS) + add) & !word & HIGH_BITS
}

/// Whether any byte of `word` is 0x00..=0x20: every ASCII whitespace and
/// the control characters (bytes of 0x80 and above are UTF-8, never
/// whitespace).
#[inline]
fn has_byte_at_or_below_space(word: u64) -> bool {
    let ascii = !word & HIGH_BITS;
    bytes_at_least(word, 0x21) != ascii
}

/// `u8::to_ascii_lowercase` on each byte of `word`.
#[inline]
fn ascii_lowercase_word(word: u64) -> u64 {
    let upper = bytes_at_least(word, b'A') & !bytes_at_least(word, b'Z' + 1);
    word | (upper >> 2)
}

/// `u8::is_ascii_whitespace` (tab, line feed, form feed, carriage return,
/// space) as a bit test, which the compiler otherwise turns into branches.
#[inline]
fn is_ascii_whitespace_branchless(byte: u8) -> bool {
    const WHITESPACE: u64 = 1 << b'\t' | 1 << b'\n' | 1 << 0x0c | 1 << b'\r' | 1 << b' ';
    (WHITESPACE >> byte.min(63)) & 1 != 0
}

fn key_mix(hash: u64, word: u64) -> u64 {
    const SEED: u64 = 0x517c_c1b7_2722_0a95;
    (hash.rotate_left(5) ^ word).wrapping_mul(SEED)
}

/// The byte-wise definition of [`key_hash`].
#[cfg(test)]
fn key_hash_bytewise(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0;
    let mut buf = [0u8; 8];
    let mut len = 0;
    for part in parts {
        for &byte in part.as_bytes() {
            if byte.is_ascii_whitespace() {
                continue;
            }
            buf[len] = byte.to_ascii_lowercase();
            len += 1;
            if len == 8 {
                hash = key_mix(hash, u64::from_le_bytes(buf));
                len = 0;
            }
        }
        buf[len..].fill(0);
        hash = key_mix(hash, u64::from_le_bytes(buf) ^ ((len as u64) << 56) ^ 0xff);
        len = 0;
    }
    hash
}

/// The history keys of one declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartyKeys {
    pub exporter: u64,
    pub address: u64,
    pub importer_name: u64,
    pub ioss: Option<u64>,
    pub declarant: u64,
    /// The declaration's own id (exact bytes; 0 when it has none): a resent
    /// declaration updates its entries in the windows instead of counting
    /// as another parcel.
    pub declaration: u64,
}

/// An id's key: its exact bytes (ids are case-sensitive), never 0 for a
/// non-empty id.
pub fn declaration_key(id: &str) -> u64 {
    if id.is_empty() {
        return 0;
    }
    fnv1a_exact(id.bytes()).max(1)
}

/// [`fnv1a`] of exact bytes (case and whitespace kept), as one part.
fn fnv1a_exact(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// An inspection result's key: its declaration id and inspection id, exact
/// bytes, never 0.
pub fn result_key(declaration_id: &str, inspection_id: &str) -> u64 {
    // 0xff never occurs in UTF-8: the two ids cannot run into each other.
    fnv1a_exact(
        declaration_id
            .bytes()
            .chain(std::iter::once(0xff))
            .chain(inspection_id.bytes()),
    )
    .max(1)
}

fn party_key(p: &Party) -> u64 {
    let country: &[u8] = p.address.as_ref().map_or(&[], |a| a.country.as_bytes());
    key_hash_bytes(&[p.name.as_bytes(), country])
}

impl PartyKeys {
    /// The keys of `d`. Every path that scores a declaration starts here,
    /// so this is where its texts are fetched into cache, together
    /// ([`Declaration::touch_texts`]).
    pub fn of(d: &Declaration) -> Self {
        d.touch_texts();
        let address = d.importer.address.as_ref().map_or(0, |a| {
            key_hash_bytes(&[
                a.street_and_number.as_bytes(),
                a.postcode.as_bytes(),
                a.country.as_bytes(),
            ])
        });
        Self {
            exporter: party_key(&d.exporter),
            address,
            importer_name: key_hash(&[&d.importer.name]),
            ioss: (!d.ioss_number.is_empty()).then(|| key_hash(&[&d.ioss_number])),
            declarant: party_key(&d.declarant),
            declaration: declaration_key(&d.declaration_id),
        }
    }
}

/// Counts for one party. Stored as a five-number array to keep artifacts small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "[u32; 5]", into = "[u32; 5]")]
pub struct EntityStats {
    pub seen: u32,
    pub inspected: u32,
    pub fraud: u32,
    pub undervaluation: u32,
    pub misdescription: u32,
}

impl EntityStats {
    /// Counts of two disjoint stretches of traffic together.
    pub fn plus(self, o: &EntityStats) -> EntityStats {
        EntityStats {
            seen: self.seen.saturating_add(o.seen),
            inspected: self.inspected.saturating_add(o.inspected),
            fraud: self.fraud.saturating_add(o.fraud),
            undervaluation: self.undervaluation.saturating_add(o.undervaluation),
            misdescription: self.misdescription.saturating_add(o.misdescription),
        }
    }
}

/// What live traffic added to a declaration's parties since the history
/// was frozen ([`PartyHistory::live_signals`]), read before the
/// declaration itself was added.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartyRead {
    pub exporter: EntityStats,
    pub address: EntityStats,
    pub ioss: EntityStats,
    pub declarant: EntityStats,
    /// Live inspections and frauds found, over all parties.
    pub inspected: u64,
    pub fraud: u64,
}

/// The four party signals of a declaration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartySignals {
    pub exporter: PartySignal,
    pub address: PartySignal,
    pub ioss: PartySignal,
    pub declarant: PartySignal,
}

impl From<[u32; 5]> for EntityStats {
    fn from(a: [u32; 5]) -> Self {
        Self {
            seen: a[0],
            inspected: a[1],
            fraud: a[2],
            undervaluation: a[3],
            misdescription: a[4],
        }
    }
}

impl From<EntityStats> for [u32; 5] {
    fn from(s: EntityStats) -> Self {
        [
            s.seen,
            s.inspected,
            s.fraud,
            s.undervaluation,
            s.misdescription,
        ]
    }
}

/// Maps keyed by party hash, stored as lists sorted by key, so that the same
/// history always writes the same bytes.
pub(crate) mod sorted {
    use rustc_hash::FxHashMap as HashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<V: Serialize, S: Serializer>(
        map: &HashMap<u64, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut list: Vec<(&u64, &V)> = map.iter().collect();
        list.sort_unstable_by_key(|(k, _)| **k);
        list.serialize(s)
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<u64, V>, D::Error> {
        let list: Vec<(u64, V)> = Vec::deserialize(d)?;
        Ok(list.into_iter().collect())
    }
}

/// Up to `CAP` distinct 64-bit ids: enough to tell "one" from "many".
const DISTINCT_CAP: usize = 32;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Distinct(Vec<u64>);

impl Distinct {
    fn insert(&mut self, id: u64) {
        if self.0.len() < DISTINCT_CAP && !self.0.contains(&id) {
            self.0.push(id);
        }
    }
    fn count(&self) -> usize {
        self.0.len()
    }
}

/// The history tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartyHistory {
    #[serde(with = "sorted")]
    exporters: HashMap<u64, EntityStats>,
    #[serde(with = "sorted")]
    addresses: HashMap<u64, EntityStats>,
    #[serde(with = "sorted")]
    ioss: HashMap<u64, EntityStats>,
    #[serde(with = "sorted")]
    declarants: HashMap<u64, EntityStats>,
    #[serde(with = "sorted")]
    address_names: HashMap<u64, Distinct>,
    #[serde(with = "sorted")]
    ioss_exporters: HashMap<u64, Distinct>,
    /// Totals over all inspections, for the smoothing prior.
    inspected: u64,
    fraud: u64,
    /// The past record of every entity and code (see [`super::record`]);
    /// empty in artifacts made before it existed.
    #[serde(default)]
    pub record: super::record::Record,
}

/// Smoothed rates and volumes of one party, as features.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartySignal {
    pub fraud_rate: f64,
    pub undervaluation_rate: f64,
    pub misdescription_rate: f64,
    pub log_seen: f64,
    pub log_inspected: f64,
    /// Whether any inspection of this party found fraud.
    pub caught_before: bool,
}

/// What an inspection found, as the history counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub fraud: bool,
    pub uv: bool,
    pub md: bool,
}

impl Found {
    /// `None` for an inconclusive inspection (it teaches nothing).
    pub fn of(result: &InspectionResult) -> Option<Found> {
        if result.outcome == InspectionOutcome::Inconclusive {
            return None;
        }
        Some(Found {
            fraud: result.outcome == InspectionOutcome::NonCompliant,
            uv: result.found(FraudKind::Undervaluation),
            md: result.found(FraudKind::Misdescription)
                || result.found(FraudKind::Misclassification),
        })
    }
}

/// Pseudo-count of the prior in smoothed rates.
const PRIOR_STRENGTH: f64 = 5.0;

impl PartyHistory {
    fn prior(&self) -> f64 {
        (self.fraud as f64 + 1.0) / (self.inspected as f64 + 4.0)
    }

    fn signal(&self, stats: Option<&EntityStats>) -> PartySignal {
        signal(self.prior(), stats.copied().unwrap_or_default())
    }

    /// The four party signals, with what live traffic added (`live`).
    pub fn live_signals(&self, keys: &PartyKeys, live: Option<&PartyRead>) -> PartySignals {
        let Some(live) = live else {
            return PartySignals {
                exporter: self.exporter(keys),
                address: self.address(keys),
                ioss: self.ioss(keys),
                declarant: self.declarant(keys),
            };
        };
        let prior = (self.fraud as f64 + live.fraud as f64 + 1.0)
            / (self.inspected as f64 + live.inspected as f64 + 4.0);
        let with = |base: Option<&EntityStats>, added: &EntityStats| {
            signal(prior, base.copied().unwrap_or_default().plus(added))
        };
        PartySignals {
            exporter: with(self.exporters.get(&keys.exporter), &live.exporter),
            address: with(self.addresses.get(&keys.address), &live.address),
            ioss: match keys.ioss {
                Some(k) => with(self.ioss.get(&k), &live.ioss),
                None => self.signal(None),
            },
            declarant: with(self.declarants.get(&keys.declarant), &live.declarant),
        }
    }

    /// What this history holds of a declaration's parties (a live
    /// history's read, [`PartyRead`]).
    pub fn read(&self, keys: &PartyKeys) -> PartyRead {
        let get = |m: &HashMap<u64, EntityStats>, k: u64| m.get(&k).copied().unwrap_or_default();
        PartyRead {
            exporter: get(&self.exporters, keys.exporter),
            address: get(&self.addresses, keys.address),
            ioss: keys.ioss.map(|k| get(&self.ioss, k)).unwrap_or_default(),
            declarant: get(&self.declarants, keys.declarant),
            inspected: self.inspected,
            fraud: self.fraud,
        }
    }

    /// Counts a declaration's parties as seen, without the distinct-name
    /// and seller lists (live traffic has the online windows for those),
    /// and keeps each table under `limit` entries: parties seen once and
    /// never inspected go first, then those never inspected.
    /// Returns what the history held of them before ([`PartyHistory::read`]).
    pub fn observe_bounded(&mut self, keys: &PartyKeys, limit: usize) -> PartyRead {
        let mut read = PartyRead {
            inspected: self.inspected,
            fraud: self.fraud,
            ..PartyRead::default()
        };
        for (map, key, before) in [
            (&mut self.exporters, Some(keys.exporter), &mut read.exporter),
            (&mut self.addresses, Some(keys.address), &mut read.address),
            (
                &mut self.declarants,
                Some(keys.declarant),
                &mut read.declarant,
            ),
            (&mut self.ioss, keys.ioss, &mut read.ioss),
        ] {
            let Some(key) = key else { continue };
            if map.len() >= limit && !map.contains_key(&key) {
                map.retain(|_, s| s.seen >= 2 || s.inspected > 0);
                if map.len() > limit * 3 / 4 {
                    map.retain(|_, s| s.inspected > 0);
                }
                if map.len() > limit * 3 / 4 {
                    map.clear();
                }
                super::compact(map, limit);
            }
            let stats = map.entry(key).or_default();
            *before = *stats;
            stats.seen = stats.seen.saturating_add(1);
        }
        read
    }

    /// Entries over the four party tables.
    pub fn len(&self) -> usize {
        self.exporters.len() + self.addresses.len() + self.declarants.len() + self.ioss.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A party's smoothed rates and volumes, rates shrunk toward `prior`.
fn signal(prior: f64, s: EntityStats) -> PartySignal {
    let smooth = |k: u32| {
        (f64::from(k) + PRIOR_STRENGTH * prior) / (f64::from(s.inspected) + PRIOR_STRENGTH)
    };
    PartySignal {
        fraud_rate: smooth(s.fraud),
        undervaluation_rate: smooth(s.undervaluation),
        misdescription_rate: smooth(s.misdescription),
        log_seen: f64::from(s.seen).ln_1p(),
        log_inspected: f64::from(s.inspected).ln_1p(),
        caught_before: s.fraud > 0,
    }
}

impl PartyHistory {
    pub fn exporter(&self, keys: &PartyKeys) -> PartySignal {
        self.signal(self.exporters.get(&keys.exporter))
    }

    pub fn address(&self, keys: &PartyKeys) -> PartySignal {
        self.signal(self.addresses.get(&keys.address))
    }

    pub fn ioss(&self, keys: &PartyKeys) -> PartySignal {
        self.signal(keys.ioss.and_then(|k| self.ioss.get(&k)))
    }

    pub fn declarant(&self, keys: &PartyKeys) -> PartySignal {
        self.signal(self.declarants.get(&keys.declarant))
    }

    /// Distinct names seen at the delivery address (this one included).
    pub fn address_names(&self, keys: &PartyKeys) -> usize {
        let known = self.address_names.get(&keys.address);
        let count = known.map_or(0, Distinct::count);
        count + usize::from(!known.is_some_and(|d| d.0.contains(&keys.importer_name)))
    }

    /// Distinct exporters seen using the IOSS number (this one included).
    pub fn ioss_exporters(&self, keys: &PartyKeys) -> usize {
        let Some(ioss) = keys.ioss else { return 0 };
        let known = self.ioss_exporters.get(&ioss);
        known.map_or(0, Distinct::count)
            + usize::from(!known.is_some_and(|d| d.0.contains(&keys.exporter)))
    }

    /// Records that a declaration was lodged.
    pub fn observe(&mut self, keys: &PartyKeys) {
        self.exporters.entry(keys.exporter).or_default().seen += 1;
        self.addresses.entry(keys.address).or_default().seen += 1;
        self.declarants.entry(keys.declarant).or_default().seen += 1;
        self.address_names
            .entry(keys.address)
            .or_default()
            .insert(keys.importer_name);
        if let Some(ioss) = keys.ioss {
            self.ioss.entry(ioss).or_default().seen += 1;
            self.ioss_exporters
                .entry(ioss)
                .or_default()
                .insert(keys.exporter);
        }
    }

    /// Records what an inspection found.
    pub fn learn(&mut self, keys: &PartyKeys, result: &InspectionResult) {
        if let Some(found) = Found::of(result) {
            self.learn_found(keys, found);
        }
    }

    /// Records what an inspection found, in short.
    pub fn learn_found(&mut self, keys: &PartyKeys, found: Found) {
        let Found { fraud, uv, md } = found;
        self.inspected += 1;
        self.fraud += u64::from(fraud);
        let update = |stats: &mut EntityStats| {
            stats.inspected += 1;
            stats.fraud += u32::from(fraud);
            stats.undervaluation += u32::from(uv);
            stats.misdescription += u32::from(md);
        };
        update(self.exporters.entry(keys.exporter).or_default());
        update(self.addresses.entry(keys.address).or_default());
        update(self.declarants.entry(keys.declarant).or_default());
        if let Some(ioss) = keys.ioss {
            update(self.ioss.entry(ioss).or_default());
        }
    }

    /// Drops what carries next to nothing beyond a default entry, to keep
    /// artifacts small: parties seen once and never inspected, delivery
    /// addresses seen fewer than three times and never inspected, and name
    /// or seller lists with a single entry.
    pub fn prune(&mut self) {
        let keep = |s: &EntityStats| s.seen >= 2 || s.inspected > 0;
        self.exporters.retain(|_, s| keep(s));
        self.addresses.retain(|_, s| s.seen >= 3 || s.inspected > 0);
        self.ioss.retain(|_, s| keep(s));
        self.declarants.retain(|_, s| keep(s));
        self.address_names.retain(|_, d| d.count() >= 2);
        self.ioss_exporters.retain(|_, d| d.count() >= 2);
    }

    /// Entries in the largest tables, for the model card.
    pub fn sizes(&self) -> [usize; 4] {
        [
            self.exporters.len(),
            self.addresses.len(),
            self.ioss.len(),
            self.declarants.len(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_spaces_but_not_field_boundaries() {
        for hash in [fnv1a, key_hash] {
            assert_eq!(
                hash(&["Rue Haute 1", "4000"]),
                hash(&["rue haute  1", "4000"])
            );
            assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
            assert_ne!(
                hash(&["Shenzhen Trading Co 1"]),
                hash(&["Shenzhen Trading Co 2"])
            );
            assert_ne!(hash(&["abcdefgh"]), hash(&["abcdefgh", ""]));
        }
    }

    #[test]
    fn packed_key_hash_gives_the_bytewise_bits() {
        // Every byte value once in words, then random strings of letters,
        // digits, whitespace of each kind, punctuation and UTF-8.
        let all: Vec<u8> = (0u8..=127).collect();
        let ascii = String::from_utf8(all).unwrap();
        let alphabet: Vec<char> = "aZbY09 \t\n\x0b\x0c\r.-/#@[`{~éÉ中ß\u{80}\u{7f}"
            .chars()
            .collect();
        let mut x: u64 = 0x9e37_79b9;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut cases: Vec<Vec<String>> = vec![
            vec![ascii.clone()],
            vec![ascii, String::new()],
            vec![
                "SHENZHEN@[`{ABCDEFGHIJKLMNOPQRSTUVWXYZ Trading".into(),
                "AZaz09ÉÀ".into(),
            ],
        ];
        for _ in 0..5_000 {
            let parts = 1 + next(3);
            cases.push(
                (0..parts)
                    .map(|_| {
                        (0..next(160))
                            .map(|_| alphabet[next(alphabet.len())])
                            .collect()
                    })
                    .collect(),
            );
        }
        for parts in &cases {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            assert_eq!(key_hash(&parts), key_hash_bytewise(&parts), "{parts:?}");
        }
    }

    #[test]
    fn rates_are_smoothed_toward_the_prior() {
        let mut h = PartyHistory::default();
        let keys = PartyKeys {
            exporter: 1,
            address: 2,
            importer_name: 3,
            ioss: None,
            declarant: 4,
            declaration: 5,
        };
        let fresh = h.exporter(&keys);
        h.observe(&keys);
        let result = InspectionResult {
            declaration_id: "d".into(),
            inspection_id: "i".into(),
            selection_reason: crate::domain::SelectionReason::Random,
            control_type: None,
            outcome: InspectionOutcome::NonCompliant,
            fraud_kinds: vec![FraudKind::Undervaluation],
            findings: vec![],
            inspected_at: None,
            officer_notes: String::new(),
        };
        h.learn(&keys, &result);
        let after = h.exporter(&keys);
        assert!(after.fraud_rate > fresh.fraud_rate);
        assert!(after.fraud_rate < 1.0);
        assert!(after.caught_before);
        assert!(after.misdescription_rate < after.undervaluation_rate);
    }
}
