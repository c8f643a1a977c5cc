//! Split-consignment signals over a sliding window: the parcels the same buyer
//! (name and address) received in the last 24 hours, and how many came from
//! the same seller. Memory is bounded: entries expire with the window, each
//! buyer keeps at most `MAX_PER_BUYER` parcels, and a sweep drops idle buyers.

use std::collections::VecDeque;

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

/// What the window says about one declaration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SplitSignal {
    /// Earlier parcels to the same buyer within the window.
    pub buyer_parcels: u32,
    /// Of those, from the same seller.
    pub same_seller_parcels: u32,
    /// Declared value of those parcels plus this one, EUR cents.
    pub combined_value_eur_cents: i64,
}

/// The sliding window. Not shared: the service wraps it in shards.
#[derive(Debug, Default)]
pub struct SplitWindow {
    buyers: HashMap<u64, VecDeque<Recent>>,
    observed: u64,
    latest: Option<DateTime<Utc>>,
}

impl SplitWindow {
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

    /// [`SplitWindow::observe`] for a declaration: its lodging time and its
    /// declared value in EUR cents.
    pub fn observe_declaration(
        &mut self,
        keys: &PartyKeys,
        d: &Declaration,
        rates: &RateTable,
    ) -> SplitSignal {
        let declared_cents = d
            .items
            .iter()
            .filter_map(|i| rates.to_eur_cents(i.intrinsic_value))
            .sum();
        self.observe(keys, d.lodged_at, declared_cents)
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
        let mut w = SplitWindow::default();
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
