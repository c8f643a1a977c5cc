//! Signals across declarations over sliding windows, kept online:
//! - split consignments: the parcels the same buyer (name and address)
//!   received in the last 24 hours, and how many came from the same seller;
//! - drop addresses: distinct recipient names at a delivery address, and
//!   shared IOSS numbers: distinct sellers using one number, both over 30 days.
//!
//! Memory is bounded: entries expire with their window, each buyer keeps at
//! most `MAX_PER_BUYER` parcels, each address or IOSS number at most
//! `MAX_DISTINCT` values, and sweeps drop idle keys.

use smallvec::SmallVec;
use std::sync::Mutex;

use rustc_hash::FxHashMap as HashMap;

use chrono::{DateTime, Duration, Utc};

use super::history::PartyKeys;
use crate::domain::{Declaration, RateTable};

/// Window length.
pub const WINDOW: Duration = Duration::hours(24);
/// Parcels remembered per buyer.
pub const MAX_PER_BUYER: usize = 64;
/// Fewest observations between sweeps of idle buyers. A shard sweeps
/// after this many, or after half as many as it kept at its last sweep,
/// whichever is more: a shard then holds at most about 1.5 times the
/// buyers of the window and its slack plus this, and sweeping costs a few
/// steps per observation. (Sweeping every 65,536 let tables of 5,000 live
/// buyers reach 2^17 slots, and the sweeps' tombstones then doubled them:
/// about 200 MiB over 16 shards.)
const SWEEP_EVERY: usize = 8_192;
/// How late a declaration may come, after the latest seen, without a sweep
/// having taken what it should count: a sweep drops a buyer only when its
/// newest parcel is older than the window plus this. So for a stream out of
/// order by less than a day (generated traffic lags by up to 20 hours),
/// when and how often shards sweep changes no signal.
const SWEEP_SLACK: Duration = Duration::hours(24);

/// Instants inside the windows: microseconds since the Unix epoch, so that
/// the scans over a key's entries compare integers (chrono's date arithmetic
/// cost more than everything else here).
type Micros = i64;

fn micros(at: DateTime<Utc>) -> Micros {
    at.timestamp_micros()
}

fn span(d: Duration) -> Micros {
    d.num_microseconds().unwrap_or(i64::MAX)
}

/// The time by which a window drops idle keys: the latest declaration seen,
/// except that one declaration moves it at most `SWEEP_SLACK` ahead. A row
/// dated years ahead (a typo in a history file, a wrong clock) would
/// otherwise expire every key of its window for the rest of the run. After a
/// real gap in traffic the clock catches up a day per declaration, well
/// before the next sweep; while it lags, windows drop less, never more.
///
/// The clock is *confirmed* once a declaration within `SWEEP_SLACK` of it
/// agrees. An unconfirmed clock (set by the first declaration, or by a
/// capped jump) is set back by a declaration more than `PARTY_WINDOW` behind
/// it: no stream is that far out of order, so the clock is what is wrong (a
/// first row dated years ahead, which nothing before it could hold back). A
/// confirmed clock ignores such a declaration, so rows dated years back
/// cannot hold it back either. (The service refuses declarations lodged
/// ahead of its own clock outright: `Limits::max_lodged_ahead`.)
#[derive(Debug, Default, Clone, Copy)]
struct WindowClock {
    now: Option<Micros>,
    confirmed: bool,
}

impl WindowClock {
    /// Moves the clock for a declaration at `at`; answers the time now.
    fn advance(&mut self, at: Micros) -> Micros {
        let slack = span(SWEEP_SLACK);
        let (now, confirmed) = match self.now {
            None => (at, false),
            Some(latest) if latest.saturating_sub(at) > span(PARTY_WINDOW) && !self.confirmed => {
                (at, false)
            }
            Some(latest) if at.saturating_sub(latest) > slack => {
                (latest.saturating_add(slack), false)
            }
            Some(latest) => (
                latest.max(at),
                self.confirmed || latest.saturating_sub(at) <= slack,
            ),
        };
        *self = Self {
            now: Some(now),
            confirmed,
        };
        now
    }
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    at: Micros,
    value_eur_cents: i64,
    exporter: u64,
    /// [`PartyKeys::declaration`]: 0 when the declaration had no id.
    declaration: u64,
    /// When the shard first saw it (its observation count then).
    seen_as: u64,
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
pub const MAX_DISTINCT: usize = 32;
/// Keys a [`DistinctWindow`] holds before it evicts the least recently active.
const MAX_KEYS: usize = 1 << 17;

/// The values of one key with when each was last seen. Most keys (an
/// address, a buyer) have one or two: they are stored in the map's own slot,
/// without an allocation of their own.
type Values = SmallVec<[(u64, Micros); 2]>;

/// Distinct values seen with each key over a sliding window, in bounded
/// memory: at most `MAX_DISTINCT` values per key and `MAX_KEYS` keys (the
/// keys idle longest go first): about 13 MB of table per window, rebuilt
/// whenever it runs out of room so that it stays that size, plus
/// 512 bytes for each key holding more than two values, whatever the
/// volume; keys that recur rarely may be forgotten under heavy traffic.
#[derive(Debug)]
pub struct DistinctWindow {
    keys: HashMap<u64, Values>,
    /// Most keys held: `MAX_KEYS` (smaller in tests).
    limit: usize,
    /// When idle keys are dropped from.
    clock: WindowClock,
}

impl Default for DistinctWindow {
    fn default() -> Self {
        Self {
            keys: HashMap::default(),
            limit: MAX_KEYS,
            clock: WindowClock::default(),
        }
    }
}

impl DistinctWindow {
    /// Adds `value` under `key` at `at`; answers how many distinct values the
    /// key has within the window, this one included.
    pub fn observe(&mut self, key: u64, value: u64, at: DateTime<Utc>) -> u32 {
        self.observe_micros(key, value, micros(at))
    }

    fn observe_micros(&mut self, key: u64, value: u64, at: Micros) -> u32 {
        let now = self.clock.advance(at);
        if self.keys.len() >= self.keys.capacity().min(self.limit) && !self.keys.contains_key(&key)
        {
            if self.keys.len() >= self.limit {
                self.evict(now);
            } else {
                self.expire_idle(now);
            }
        }
        let seen = self.keys.entry(key).or_default();
        let window = span(PARTY_WINDOW);
        // One pass: drop what left the window, find the value and the oldest.
        let mut found = None;
        let mut oldest: Option<(usize, Micros)> = None;
        let mut kept = 0;
        for i in 0..seen.len() {
            let (v, t) = seen[i];
            if at.saturating_sub(t) > window {
                continue;
            }
            seen[kept] = (v, t);
            if v == value {
                found = Some(kept);
            }
            if oldest.is_none_or(|(_, o)| t < o) {
                oldest = Some((kept, t));
            }
            kept += 1;
        }
        seen.truncate(kept);
        if let Some(i) = found {
            seen[i].1 = seen[i].1.max(at);
        } else if seen.len() < MAX_DISTINCT {
            seen.push((value, at));
        } else if let Some((i, _)) = oldest {
            // Full: the value seen longest ago makes room.
            seen[i] = (value, at);
        }
        seen.len() as u32
    }

    /// A table out of room (about to grow, or full of the tombstones that
    /// `retain` leaves: see `compact`) first drops the keys idle for longer
    /// than the window and a day's slack (`SWEEP_SLACK`: no declaration less
    /// than a day late could count them) and is rebuilt, so it grows only
    /// for keys still live.
    /// Expired keys used to leave only at `limit`: the address tables of
    /// generated traffic grew to 2^18 slots for about 82,000 live keys a
    /// shard, some 100 MiB over 16 shards.
    fn expire_idle(&mut self, now: Micros) {
        let room = self.keys.capacity();
        let kept_for = span(PARTY_WINDOW) + span(SWEEP_SLACK);
        self.keys.retain(|_, seen| {
            newest_value(seen).is_some_and(|t| now.saturating_sub(t) <= kept_for)
        });
        let kept = self.keys.len();
        // When little went, make the room to grow that the insert would have.
        let size = if kept > room * 3 / 4 { kept * 2 } else { kept };
        super::compact(&mut self.keys, size.min(self.limit));
    }

    /// Drops expired keys, then the least recently active quarter if still
    /// full. The tombstones this leaves are cleared when the table next
    /// runs out of room, by [`DistinctWindow::expire_idle`].
    fn evict(&mut self, now: Micros) {
        let window = span(PARTY_WINDOW);
        self.keys
            .retain(|_, seen| newest_value(seen).is_some_and(|t| now.saturating_sub(t) <= window));
        if self.keys.len() < self.limit * 3 / 4 {
            return;
        }
        let mut times: Vec<Micros> = self.keys.values().filter_map(newest_value).collect();
        let cut = times.len() / 4;
        let (_, threshold, _) = times.select_nth_unstable(cut);
        let threshold = *threshold;
        self.keys
            .retain(|_, seen| newest_value(seen).is_some_and(|t| t > threshold));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// When a key's values were last seen.
fn newest_value(seen: &Values) -> Option<Micros> {
    seen.iter().map(|(_, t)| *t).max()
}

/// A buyer: the name at the delivery address.
pub fn buyer_key(keys: &PartyKeys) -> u64 {
    keys.address ^ keys.importer_name.rotate_left(17)
}

/// The sliding windows of one shard of a [`SplitWindow`].
#[derive(Debug, Default)]
pub struct WindowShard {
    buyers: HashMap<u64, SmallVec<[Recent; 2]>>,
    observed: u64,
    /// Observations since the last sweep, and how many the next waits for.
    since_sweep: usize,
    sweep_after: usize,
    clock: WindowClock,
    address_names: DistinctWindow,
    ioss_sellers: DistinctWindow,
}

impl WindowShard {
    /// The distinct sellers of a declaration's IOSS number (0 without one);
    /// the service calls it on the shard of the number.
    pub fn observe_ioss(&mut self, keys: &PartyKeys, at: DateTime<Utc>) -> u32 {
        keys.ioss.map_or(0, |ioss| {
            self.ioss_sellers
                .observe_micros(ioss, keys.exporter, micros(at))
        })
    }

    /// Reads the window for a declaration, then adds it.
    pub fn observe(
        &mut self,
        keys: &PartyKeys,
        at: DateTime<Utc>,
        value_eur_cents: i64,
    ) -> SplitSignal {
        let at = micros(at);
        let window = span(WINDOW);
        let recent = self.buyers.entry(buyer_key(keys)).or_default();
        // Oldest first: drop the parcels that left the window.
        let expired = recent
            .iter()
            .take_while(|r| at.saturating_sub(r.at) > window)
            .count();
        recent.drain(..expired);
        // A resent declaration (same id, still in the window) is read as
        // it was read the first time, against the parcels seen before it,
        // and its entry is updated, not added again: clients resend after
        // any transport error.
        let resent = (keys.declaration != 0)
            .then(|| {
                recent
                    .iter()
                    .position(|r| r.declaration == keys.declaration)
            })
            .flatten();
        let seen_before = resent.map_or(u64::MAX, |i| recent[i].seen_as);
        let mut signal = SplitSignal {
            combined_value_eur_cents: value_eur_cents,
            address_names: self
                .address_names
                .observe_micros(keys.address, keys.importer_name, at),
            ..SplitSignal::default()
        };
        for r in recent.iter().filter(|r| {
            at.saturating_sub(r.at).saturating_abs() <= window
                && r.seen_as < seen_before
                && (keys.declaration == 0 || r.declaration != keys.declaration)
        }) {
            signal.buyer_parcels += 1;
            signal.same_seller_parcels += u32::from(r.exporter == keys.exporter);
            // Saturating: validation allows values near i64::MAX per declaration.
            signal.combined_value_eur_cents = signal
                .combined_value_eur_cents
                .saturating_add(r.value_eur_cents);
        }
        let entry = Recent {
            at,
            value_eur_cents,
            exporter: keys.exporter,
            declaration: keys.declaration,
            seen_as: self.observed,
        };
        match resent {
            Some(i) => {
                recent[i] = Recent {
                    seen_as: recent[i].seen_as,
                    ..entry
                };
            }
            None => {
                if recent.len() == MAX_PER_BUYER {
                    recent.remove(0);
                }
                recent.push(entry);
            }
        }
        self.clock.advance(at);
        self.observed += 1;
        self.since_sweep += 1;
        if self.since_sweep >= self.sweep_after.max(SWEEP_EVERY) {
            self.sweep();
        }
        signal
    }

    /// Drops buyers whose newest parcel left the window a day ago or more
    /// (`SWEEP_SLACK`), into a table sized for the buyers kept.
    pub fn sweep(&mut self) {
        self.since_sweep = 0;
        let Some(latest) = self.clock.now else {
            return;
        };
        let kept_for = span(WINDOW) + span(SWEEP_SLACK);
        self.buyers.retain(|_, recent| {
            recent
                .last()
                .is_some_and(|r| latest.saturating_sub(r.at) <= kept_for)
        });
        let kept = self.buyers.len();
        self.sweep_after = SWEEP_EVERY.max(kept / 2);
        // Sized for what is kept; it grows as new buyers come, as it would
        // unswept.
        super::compact(&mut self.buyers, kept);
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
        self.observe_parcel(keys, d.lodged_at, declared_cents(d, rates))
    }

    /// Reads every window for a parcel lodged `at` with this declared value
    /// (EUR cents, [`declared_cents`]), then adds it: what
    /// [`SplitWindow::observe_shared`] does once the value is known.
    pub fn observe_parcel(
        &self,
        keys: &PartyKeys,
        at: DateTime<Utc>,
        value_eur_cents: i64,
    ) -> SplitSignal {
        let split = lock(&self.shards[shard_of(keys.address)]).observe(keys, at, value_eur_cents);
        let ioss_sellers = match keys.ioss {
            Some(ioss) => lock(&self.shards[shard_of(ioss)]).observe_ioss(keys, at),
            None => 0,
        };
        SplitSignal {
            ioss_sellers,
            ..split
        }
    }
}

/// A declaration's declared value in EUR cents.
/// Saturating: validation accepts up to 999 items of n..16,2 each, more
/// than an i64 holds.
pub fn declared_cents(d: &Declaration, rates: &RateTable) -> i64 {
    d.items
        .iter()
        .filter_map(|i| rates.to_eur_cents(i.intrinsic_value))
        .fold(0i64, i64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_values_validation_accepts_saturate() {
        let generator = crate::generate::Generator::new(crate::generate::GeneratorConfig {
            parcels: 5,
            seed: 1,
            ..crate::generate::GeneratorConfig::default()
        })
        .unwrap();
        let example = generator.chunk(0).0.remove(0);
        let mut d = crate::domain::TrainingExample::try_from(example)
            .unwrap()
            .declaration;
        let item = d.items[0].clone();
        d.items = (1..=999)
            .map(|n| crate::domain::GoodsItem {
                goods_item_number: n,
                intrinsic_value: crate::domain::Money {
                    amount_minor: 9_999_999_999_999_999,
                    ..item.intrinsic_value
                },
                ..item.clone()
            })
            .collect();
        let rates = RateTable::built_in();
        assert_eq!(declared_cents(&d, rates), i64::MAX);
        let mut window = SplitWindow::default();
        window.observe_declaration(&PartyKeys::of(&d), &d, rates);
        let mut other = d.clone();
        other.declaration_id.push_str("-2");
        let again = window.observe_declaration(&PartyKeys::of(&other), &other, rates);
        assert_eq!(again.buyer_parcels, 1);
        assert_eq!(again.combined_value_eur_cents, i64::MAX);
    }
    use chrono::TimeZone;

    fn keys(exporter: u64) -> PartyKeys {
        PartyKeys {
            exporter,
            address: 7,
            importer_name: 8,
            ioss: None,
            declarant: 9,
            declaration: 0,
        }
    }

    #[test]
    fn a_resent_declaration_is_not_another_parcel() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
        let mut w = WindowShard::default();
        let parcel = |id: u64| PartyKeys {
            declaration: id,
            ..keys(1)
        };
        w.observe(&parcel(10), t0, 9_000);
        let first = w.observe(&parcel(11), t0 + Duration::hours(1), 8_000);
        assert_eq!(first.buyer_parcels, 1);
        // Twelve resends of the second parcel, a new parcel in between.
        w.observe(&parcel(12), t0 + Duration::hours(2), 1_000);
        for _ in 0..12 {
            let again = w.observe(&parcel(11), t0 + Duration::hours(1), 8_000);
            assert_eq!(again, first, "a resend reads as the first send did");
        }
        // The next parcel sees three parcels, not fifteen.
        let next = w.observe(&parcel(13), t0 + Duration::hours(3), 500);
        assert_eq!(next.buyer_parcels, 3);
        assert_eq!(next.combined_value_eur_cents, 9_000 + 8_000 + 1_000 + 500);
    }

    #[test]
    fn window_edges_are_inclusive_to_the_second() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
        let mut w = WindowShard::default();
        w.observe(&keys(1), t0, 100);
        // Exactly 24 h later the first parcel still counts; one second more
        // and it has left the window.
        assert_eq!(w.observe(&keys(1), t0 + WINDOW, 100).buyer_parcels, 1);
        let mut w = WindowShard::default();
        w.observe(&keys(1), t0, 100);
        let late = t0 + WINDOW + Duration::seconds(1);
        assert_eq!(w.observe(&keys(1), late, 100).buyer_parcels, 0);
        // The same for distinct values over the party window.
        let mut d = DistinctWindow::default();
        d.observe(7, 1, t0);
        assert_eq!(d.observe(7, 2, t0 + PARTY_WINDOW), 2);
        assert_eq!(d.observe(7, 3, t0 + PARTY_WINDOW + Duration::seconds(1)), 2);
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
        // A day and a half later the window is empty again, and a sweep frees
        // it once the clock has caught up with traffic after a gap (a day
        // per declaration).
        let s = w.observe(&keys(1), t0 + Duration::hours(40), 1_000);
        assert_eq!(s.buyer_parcels, 0);
        let after_the_gap = |w: &mut WindowShard| {
            w.observe(
                &PartyKeys {
                    address: 99,
                    ..keys(1)
                },
                t0 + Duration::hours(90),
                1,
            );
        };
        after_the_gap(&mut w);
        w.sweep();
        assert_eq!(w.len(), 2, "the clock is a day past the last traffic");
        after_the_gap(&mut w);
        after_the_gap(&mut w);
        w.sweep();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn sweeps_change_no_signal_of_a_stream_less_than_a_day_out_of_order() {
        // Six days of parcels, a hundred buyers active in each ten hours, each
        // parcel lodged up to 20 hours before the latest one seen (as
        // generated traffic comes).
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
        let mut stream = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..3_000_i64 {
            x = xorshift(x);
            let lag = Duration::minutes((x % (20 * 60)) as i64);
            let at = t0 + Duration::minutes(i * 3) - lag;
            let buyer = (i as u64 / 200) * 100 + (x >> 32) % 100;
            stream.push((
                PartyKeys {
                    address: buyer,
                    ..keys(buyer % 3)
                },
                at,
            ));
        }
        let mut swept = WindowShard::default();
        let mut kept = WindowShard::default();
        for (i, (k, at)) in stream.iter().enumerate() {
            let a = swept.observe(k, *at, 100);
            swept.sweep();
            let b = kept.observe(k, *at, 100);
            assert_eq!(a, b, "declaration {i}");
        }
        assert!(swept.len() < kept.len(), "the sweeps dropped nothing");
    }
}

/// A fixed-seed pseudo-random step for the tests' streams.
#[cfg(test)]
fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod party_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dropping_idle_keys_changes_no_count_of_a_stream_less_than_a_day_out_of_order() {
        // 90 days of parcels, 400 a day, each lodged up to 20 hours before
        // the latest seen. Most go to a new address, so the table keeps
        // filling and dropping idle keys; one in five goes again to an
        // address first seen almost 30 days before, at the edge of the
        // window, where a late parcel tells.
        // The reference keeps every address in a window of its own, which
        // never fills, so it never drops a key.
        let mut window = DistinctWindow::default();
        let mut alone: HashMap<u64, DistinctWindow> = HashMap::default();
        let mut keys = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..36_000_i64 {
            x = xorshift(x);
            let lag = (x % (20 * 3_600)) as i64 * 1_000_000;
            let at = 1_790_000_000_000_000 + i * 216_000_000 - lag;
            let key = if x % 5 == 0 && i >= 12_000 {
                keys[(i - 12_000) as usize + (x >> 8) as usize % 400]
            } else {
                i as u64
            };
            keys.push(key);
            // Every parcel another name, so a dropped one shows in the count.
            let name = x >> 40;
            let counted = window.observe_micros(key, name, at);
            let expected = alone.entry(key).or_default().observe_micros(key, name, at);
            assert_eq!(counted, expected, "parcel {i}");
        }
        assert!(window.len() < alone.len(), "no idle key was dropped");
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap()
    }

    /// A typo for `t0`'s year.
    fn typo() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2062, 9, 1, 8, 0, 0).unwrap()
    }

    /// 100 buyers' parcels and one row dated 36 years ahead (first or last),
    /// then a sweep: each buyer's next parcel still counts its earlier one.
    fn assert_buyers_outlive_a_row_dated_ahead(row_first: bool) {
        let buyer = |address: u64| PartyKeys {
            exporter: 1,
            address,
            importer_name: address,
            ioss: None,
            declarant: 2,
            declaration: 0,
        };
        let mut shard = WindowShard::default();
        if row_first {
            shard.observe(&buyer(1_000), typo(), 1_000);
        }
        for b in 0..100 {
            shard.observe(&buyer(b), t0(), 1_000);
        }
        if !row_first {
            shard.observe(&buyer(1_000), typo(), 1_000);
        }
        shard.sweep();
        for b in 0..100 {
            let next = shard.observe(&buyer(b), t0() + Duration::hours(1), 1_000);
            assert_eq!(next.buyer_parcels, 1, "buyer {b}");
        }
    }

    #[test]
    fn a_declaration_dated_years_ahead_expires_no_buyer_and_no_address() {
        assert_buyers_outlive_a_row_dated_ahead(false);

        // An address table that runs out of room on the row dated ahead
        // keeps its addresses.
        let mut window = DistinctWindow::default();
        let mut address = 0;
        while address < 4 || window.keys.len() < window.keys.capacity() {
            window.observe(address, 1, t0());
            address += 1;
        }
        window.observe(u64::MAX, 1, typo());
        for a in 0..address {
            assert_eq!(
                window.observe(a, 2, t0() + Duration::hours(1)),
                2,
                "address {a}"
            );
        }
    }

    #[test]
    fn a_first_declaration_dated_years_ahead_does_not_hold_the_clock() {
        assert_buyers_outlive_a_row_dated_ahead(true);

        // A first row dated years ahead is forgotten; once a second row
        // agrees with the clock, rows dated years back no longer move it.
        let day = span(Duration::days(1));
        let mut clock = WindowClock::default();
        clock.advance(9_000 * day);
        assert_eq!(clock.advance(100 * day), 100 * day);
        assert_eq!(clock.advance(100 * day + 1), 100 * day + 1);
        assert_eq!(clock.advance(day), 100 * day + 1);
        // A jump is capped at a day and leaves the clock unconfirmed until
        // traffic catches up with it.
        assert_eq!(clock.advance(200 * day), 101 * day + 1);
        assert_eq!(clock.advance(day), day, "unconfirmed: set back");
        assert_eq!(clock.advance(day + 1), day + 1);
        assert_eq!(clock.advance(-5_000 * day), day + 1, "confirmed: kept");
    }

    #[test]
    fn a_window_grows_for_live_keys_only() {
        // 1,000 new addresses a day for 200 days: about 31,000 are live (the
        // window and its slack), and the table stays the size they need.
        let mut window = DistinctWindow::default();
        for i in 0..200_000_i64 {
            let at = i * 86_400_000; // 86.4 s apart: 1,000 a day
            window.observe_micros((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), 1, at);
        }
        let needed =
            HashMap::<u64, Values>::with_capacity_and_hasher(2 * 31_000, Default::default())
                .capacity();
        assert!(
            window.keys.capacity() <= needed,
            "{} slots for {} keys",
            window.keys.capacity(),
            window.len()
        );
    }

    #[test]
    fn a_full_window_keeps_the_table_its_bound_needs() {
        // Evicting by `retain` alone left tombstones that doubled this
        // table (to 2^14 buckets for 4,096 keys) within 200,000 new keys.
        let limit = 1 << 12;
        let mut w = DistinctWindow {
            limit,
            ..DistinctWindow::default()
        };
        let bound =
            HashMap::<u64, Values>::with_capacity_and_hasher(limit, Default::default()).capacity();
        let mut key = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..200_000_i64 {
            key = key.rotate_left(23).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ 0x94d0_49bb;
            // A millisecond apart: nothing leaves the 30-day window, so
            // every eviction is of the least recently active quarter.
            w.observe_micros(key, 1, i * 1_000);
            assert!(w.len() <= limit);
        }
        assert!(
            w.keys.capacity() <= bound,
            "{} slots for {limit} keys at most",
            w.keys.capacity()
        );
    }

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
                declaration: 0,
            };
            last = w.observe(&keys, t0 + Duration::hours(seller as i64 * 30), 1_000);
            last.ioss_sellers = w.observe_ioss(&keys, t0 + Duration::hours(seller as i64 * 30));
        }
        assert_eq!((last.address_names, last.ioss_sellers), (6, 6));
    }
}
