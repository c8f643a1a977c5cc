//! Signals across declarations over sliding windows, kept online:
//! - split consignments: the parcels the same buyer (name and address)
//!   received in the last 24 hours, and how many came from the same seller;
//! - drop addresses: distinct recipient names at a delivery address, and
//!   shared IOSS numbers: distinct sellers using one number, both over 30 days.
//!
//! Memory is bounded: entries expire with their window, each buyer keeps at
//! most `MAX_PER_BUYER` parcels, each address or IOSS number at most
//! `MAX_DISTINCT` values, and sweeps drop idle keys.

use std::collections::VecDeque;
use std::sync::Mutex;

use rustc_hash::FxHashMap as HashMap;

use chrono::{DateTime, Duration, Utc};

use super::history::PartyKeys;
use crate::domain::{Declaration, RateTable};

/// Window length.
pub const WINDOW: Duration = Duration::hours(24);
const MAX_PER_BUYER: usize = 64;
/// Observations between sweeps of idle buyers.
const SWEEP_EVERY: u64 = 65_536;

#[derive(Debug, Clone, Copy)]
struct Recent {
    at: DateTime<Utc>,
    value_eur_cents: i64,
    exporter: u64,
}

/// What the windows say about one declaration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SplitSignal {
    /// Earlier parcels to the same buyer within the window.
    pub buyer_parcels: u32,
    /// Of those, from the same seller.
    pub same_seller_parcels: u32,
    /// Declared value of those parcels plus this one, EUR cents.
    pub combined_value_eur_cents: i64,
    /// Distinct recipient names at the delivery address over the last
    /// `PARTY_WINDOW` (this one included; counting stops at `MAX_DISTINCT`).
    pub address_names: u32,
    /// Distinct sellers using the IOSS number over the last `PARTY_WINDOW`
    /// (this one included; 0 without an IOSS number).
    pub ioss_sellers: u32,
}

/// Memory of the party signals (drop addresses, shared IOSS numbers).
pub const PARTY_WINDOW: Duration = Duration::days(30);
/// Distinct values remembered per key: enough to tell "many" from "few".
const MAX_DISTINCT: usize = 32;
/// Keys a [`DistinctWindow`] holds before it evicts the least recently active.
const MAX_KEYS: usize = 1 << 17;

/// Distinct values seen with each key over a sliding window, in bounded
/// memory: at most `MAX_DISTINCT` values per key and `MAX_KEYS` keys (the
/// keys idle longest go first): about 15 MB per window at most, whatever
/// the volume; keys that recur rarely may be forgotten under heavy traffic.
#[derive(Debug, Default)]
pub struct DistinctWindow {
    keys: HashMap<u64, Vec<(u64, DateTime<Utc>)>>,
}

impl DistinctWindow {
    /// Adds `value` under `key` at `at`; answers how many distinct values the
    /// key has within the window, this one included.
    pub fn observe(&mut self, key: u64, value: u64, at: DateTime<Utc>) -> u32 {
        if self.keys.len() >= MAX_KEYS && !self.keys.contains_key(&key) {
            self.evict(at);
        }
        let seen = self.keys.entry(key).or_default();
        seen.retain(|(_, t)| at - *t <= PARTY_WINDOW);
        if let Some(entry) = seen.iter_mut().find(|(v, _)| *v == value) {
            entry.1 = entry.1.max(at);
        } else if seen.len() < MAX_DISTINCT {
            seen.push((value, at));
        } else if let Some(oldest) = seen.iter_mut().min_by_key(|(_, t)| *t) {
            // Full: the value seen longest ago makes room.
            *oldest = (value, at);
        }
        seen.len() as u32
    }

    /// Drops expired keys, then the least recently active quarter if still full.
    fn evict(&mut self, now: DateTime<Utc>) {
        let newest = |seen: &Vec<(u64, DateTime<Utc>)>| seen.iter().map(|(_, t)| *t).max();
        self.keys
            .retain(|_, seen| newest(seen).is_some_and(|t| now - t <= PARTY_WINDOW));
        if self.keys.len() < MAX_KEYS * 3 / 4 {
            return;
        }
        let mut times: Vec<DateTime<Utc>> = self.keys.values().filter_map(newest).collect();
        let cut = times.len() / 4;
        let (_, threshold, _) = times.select_nth_unstable(cut);
        let threshold = *threshold;
        self.keys
            .retain(|_, seen| newest(seen).is_some_and(|t| t > threshold));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The sliding windows of one shard of a [`SplitWindow`].
#[derive(Debug, Default)]
pub struct WindowShard {
    buyers: HashMap<u64, VecDeque<Recent>>,
    observed: u64,
    latest: Option<DateTime<Utc>>,
    address_names: DistinctWindow,
    ioss_sellers: DistinctWindow,
}

impl WindowShard {
    /// The distinct sellers of a declaration's IOSS number (0 without one);
    /// the service calls it on the shard of the number.
    pub fn observe_ioss(&mut self, keys: &PartyKeys, at: DateTime<Utc>) -> u32 {
        keys.ioss
            .map_or(0, |ioss| self.ioss_sellers.observe(ioss, keys.exporter, at))
    }

    /// Reads the window for a declaration, then adds it.
    pub fn observe(
        &mut self,
        keys: &PartyKeys,
        at: DateTime<Utc>,
        value_eur_cents: i64,
    ) -> SplitSignal {
        let buyer = keys.address ^ keys.importer_name.rotate_left(17);
        let recent = self.buyers.entry(buyer).or_default();
        while recent.front().is_some_and(|r| at - r.at > WINDOW) {
            recent.pop_front();
        }
        let mut signal = SplitSignal {
            combined_value_eur_cents: value_eur_cents,
            address_names: self
                .address_names
                .observe(keys.address, keys.importer_name, at),
            ..SplitSignal::default()
        };
        for r in recent.iter().filter(|r| (at - r.at).abs() <= WINDOW) {
            signal.buyer_parcels += 1;
            signal.same_seller_parcels += u32::from(r.exporter == keys.exporter);
            signal.combined_value_eur_cents += r.value_eur_cents;
        }
        if recent.len() == MAX_PER_BUYER {
            recent.pop_front();
        }
        recent.push_back(Recent {
            at,
            value_eur_cents,
            exporter: keys.exporter,
        });
        self.latest = Some(self.latest.map_or(at, |l| l.max(at)));
        self.observed += 1;
        if self.observed % SWEEP_EVERY == 0 {
            self.sweep();
        }
        signal
    }

    /// Drops buyers whose newest parcel left the window.
    pub fn sweep(&mut self) {
        let Some(latest) = self.latest else { return };
        self.buyers
            .retain(|_, recent| recent.back().is_some_and(|r| latest - r.at <= WINDOW));
    }

    /// Buyers currently tracked.
    pub fn len(&self) -> usize {
        self.buyers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buyers.is_empty()
    }
}

/// Shards of a [`SplitWindow`]: parcels of one buyer or address always land
/// in one shard, those of one IOSS number in one shard.
pub const SHARDS: usize = 16;

/// Every window, in shards: buyers and addresses by address, IOSS numbers by
/// number. Each key only ever meets its own history, so the shards give the
/// same signals as one window would, and the service, batch rescoring and
/// training share this one type so that they agree exactly (capacities
/// included).
#[derive(Debug)]
pub struct SplitWindow {
    shards: Vec<Mutex<WindowShard>>,
}

impl Default for SplitWindow {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

fn shard_of(key: u64) -> usize {
    (key % SHARDS as u64) as usize
}

/// A shard, whether another request panicked while holding it or not: the
/// window stays usable.
fn lock(shard: &Mutex<WindowShard>) -> std::sync::MutexGuard<'_, WindowShard> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SplitWindow {
    /// Reads every window for a declaration, then adds it (sequential use).
    pub fn observe_declaration(
        &mut self,
        keys: &PartyKeys,
        d: &Declaration,
        rates: &RateTable,
    ) -> SplitSignal {
        self.observe_shared(keys, d, rates)
    }

    /// As [`SplitWindow::observe_declaration`], shared between threads.
    pub fn observe_shared(
        &self,
        keys: &PartyKeys,
        d: &Declaration,
        rates: &RateTable,
    ) -> SplitSignal {
        let split = lock(&self.shards[shard_of(keys.address)]).observe(
            keys,
            d.lodged_at,
            declared_cents(d, rates),
        );
        let ioss_sellers = match keys.ioss {
            Some(ioss) => lock(&self.shards[shard_of(ioss)]).observe_ioss(keys, d.lodged_at),
            None => 0,
        };
        SplitSignal {
            ioss_sellers,
            ..split
        }
    }

    /// Observes a batch in input order and gives its signals, working on the
    /// shards in parallel: each shard still sees its declarations in input
    /// order, so the answer is the one sequential observation would give.
    pub fn observe_batch(
        &mut self,
        batch: &[(&PartyKeys, &Declaration)],
        rates: &RateTable,
    ) -> Vec<SplitSignal> {
        let mut signals = vec![SplitSignal::default(); batch.len()];
        let buyers = self.per_shard(
            batch,
            |keys| Some(keys.address),
            |shard, keys, d| shard.observe(keys, d.lodged_at, declared_cents(d, rates)),
        );
        for (i, signal) in buyers {
            signals[i] = signal;
        }
        let ioss = self.per_shard(
            batch,
            |keys| keys.ioss,
            |shard, keys, d| shard.observe_ioss(keys, d.lodged_at),
        );
        for (i, sellers) in ioss {
            signals[i].ioss_sellers = sellers;
        }
        signals
    }
}

impl SplitWindow {
    /// Runs `observe` on each declaration in the shard of its `key` (none:
    /// skipped), the shards in parallel, each in input order; answers with
    /// the batch index of each result.
    fn per_shard<T: Send>(
        &mut self,
        batch: &[(&PartyKeys, &Declaration)],
        key: impl Fn(&PartyKeys) -> Option<u64> + Sync,
        observe: impl Fn(&mut WindowShard, &PartyKeys, &Declaration) -> T + Sync,
    ) -> Vec<(usize, T)> {
        use rayon::prelude::*;
        self.shards
            .par_iter_mut()
            .enumerate()
            .map(|(k, shard)| {
                let shard = shard
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                batch
                    .iter()
                    .enumerate()
                    .filter(|(_, (keys, _))| key(keys).is_some_and(|key| shard_of(key) == k))
                    .map(|(i, (keys, d))| (i, observe(shard, keys, d)))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect()
    }
}

/// A declaration's declared value in EUR cents.
pub fn declared_cents(d: &Declaration, rates: &RateTable) -> i64 {
    d.items
        .iter()
        .filter_map(|i| rates.to_eur_cents(i.intrinsic_value))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn keys(exporter: u64) -> PartyKeys {
        PartyKeys {
            exporter,
            address: 7,
            importer_name: 8,
            ioss: None,
            declarant: 9,
        }
    }

    #[test]
    fn counts_parcels_of_the_same_buyer_within_a_day() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
        let mut w = WindowShard::default();
        assert_eq!(w.observe(&keys(1), t0, 9_000).buyer_parcels, 0);
        let s = w.observe(&keys(1), t0 + Duration::hours(2), 8_000);
        assert_eq!(
            (
                s.buyer_parcels,
                s.same_seller_parcels,
                s.combined_value_eur_cents
            ),
            (1, 1, 17_000)
        );
        let s = w.observe(&keys(2), t0 + Duration::hours(3), 1_000);
        assert_eq!((s.buyer_parcels, s.same_seller_parcels), (2, 0));
        // A day and a half later the window is empty again, and a sweep frees it.
        let s = w.observe(&keys(1), t0 + Duration::hours(40), 1_000);
        assert_eq!(s.buyer_parcels, 0);
        w.observe(
            &PartyKeys {
                address: 99,
                ..keys(1)
            },
            t0 + Duration::hours(90),
            1,
        );
        w.sweep();
        assert_eq!(w.len(), 1);
    }
}

#[cfg(test)]
mod party_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn distinct_values_are_counted_within_the_window_and_capped() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
        let mut w = DistinctWindow::default();
        assert_eq!(w.observe(1, 10, t0), 1);
        assert_eq!(w.observe(1, 10, t0 + Duration::hours(1)), 1);
        assert_eq!(w.observe(1, 11, t0 + Duration::hours(2)), 2);
        assert_eq!(w.observe(2, 10, t0 + Duration::hours(2)), 1);
        // Forty days on, the first values have expired.
        assert_eq!(w.observe(1, 12, t0 + Duration::days(40)), 1);
        for v in 0..100 {
            w.observe(3, v, t0 + Duration::days(40) + Duration::seconds(v as i64));
        }
        assert_eq!(
            w.observe(3, 1000, t0 + Duration::days(41)),
            MAX_DISTINCT as u32
        );
    }

    #[test]
    fn one_ioss_number_used_by_many_sellers_and_one_address_by_many_names() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
        let mut w = WindowShard::default();
        let mut last = SplitSignal::default();
        for seller in 0..6u64 {
            let keys = PartyKeys {
                exporter: seller,
                address: 77,
                importer_name: 100 + seller,
                ioss: Some(5),
                declarant: 1,
            };
            last = w.observe(&keys, t0 + Duration::hours(seller as i64 * 30), 1_000);
            last.ioss_sellers = w.observe_ioss(&keys, t0 + Duration::hours(seller as i64 * 30));
        }
        assert_eq!((last.address_names, last.ioss_sellers), (6, 6));
    }
}

#[cfg(test)]
mod sharded_tests {
    use super::*;
    use crate::domain::ReferenceData;

    #[test]
    fn a_batch_observed_in_parallel_equals_one_by_one() {
        let generator = crate::generate::Generator::new(crate::generate::GeneratorConfig {
            parcels: 3_000,
            seed: 8,
            days: 1,
            ..crate::generate::GeneratorConfig::default()
        })
        .unwrap();
        let declarations: Vec<Declaration> = (0..generator.chunk_count())
            .flat_map(|c| generator.chunk(c).0)
            .map(|e| {
                crate::wire::declaration_from_pb(e.declaration.unwrap(), &ReferenceData::built_in())
                    .unwrap()
            })
            .collect();
        let keys: Vec<PartyKeys> = declarations.iter().map(PartyKeys::of).collect();
        let rates = RateTable::built_in();
        let mut one_by_one = SplitWindow::default();
        let expected: Vec<SplitSignal> = keys
            .iter()
            .zip(&declarations)
            .map(|(k, d)| one_by_one.observe_declaration(k, d, rates))
            .collect();
        let mut batched = SplitWindow::default();
        let pairs: Vec<(&PartyKeys, &Declaration)> = keys.iter().zip(&declarations).collect();
        let mut got = Vec::new();
        for chunk in pairs.chunks(700) {
            got.extend(batched.observe_batch(chunk, rates));
        }
        assert_eq!(got, expected);
        assert!(expected.iter().any(|s| s.buyer_parcels > 0));
        assert!(expected.iter().any(|s| s.ioss_sellers > 1));
    }
}
