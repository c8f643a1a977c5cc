//! What an undervalued declaration really owes: evaded duties and taxes per
//! EUR declared, by declared-value band, learnt from the values controls
//! found.
//!
//! Reference values (medians of declared values per cell) miss the gap where
//! a whole cell is undervalued, and they know nothing of the H7 limit: goods
//! worth EUR 400 declared at EUR 149 owe full duty, not the flat H7 amount.
//! What controls found says how much such declarations hide, so the band
//! just under EUR 150 learns a far larger stake than the reference gap.

use serde::{Deserialize, Serialize};

use crate::domain::regime::{DutiableLine, Regime};
use crate::domain::{Declaration, InspectionResult, RateTable, TrainingExample};

/// Evaded duties and taxes per EUR declared, before anything was found: an
/// undervalued parcel hides about as much again as it declares, and import
/// VAT (about 21 %) is most of what that owes.
pub const PRIOR_EVADED_PER_DECLARED: f64 = 0.21;

/// Upper edges of the declared-value bands, EUR; the last band is open.
/// The band under EUR 150 is where bunching below the H7 limit lies.
const BAND_EDGES: [f64; 5] = [20.0, 50.0, 100.0, 135.0, 150.0];

/// Found undervaluations that weigh as much as the prior (or the pooled
/// ratio, for a band).
const SHRINKAGE: f64 = 30.0;

/// The stake per declared-value band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueStake {
    /// One per band, in order; `up_to_eur` is `None` for the open band.
    pub bands: Vec<StakeBand>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StakeBand {
    pub up_to_eur: Option<f64>,
    pub evaded_per_declared: f64,
    /// Found undervaluations in the band.
    pub found: u32,
}

impl Default for ValueStake {
    /// The prior alone: what a model trained without found values (or
    /// saved before stakes were learnt) uses.
    fn default() -> Self {
        Self {
            bands: vec![StakeBand {
                up_to_eur: None,
                evaded_per_declared: PRIOR_EVADED_PER_DECLARED,
                found: 0,
            }],
        }
    }
}

impl ValueStake {
    /// Learns the bands from found undervaluations: (declared EUR, evaded
    /// EUR) pairs. Each band's ratio is shrunk toward the pooled one, and the
    /// pooled one toward the prior.
    pub fn fit(found: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut sums = [(0.0f64, 0.0f64, 0u32); BAND_EDGES.len() + 1];
        for (declared, evaded) in found {
            if !(declared.is_finite() && evaded.is_finite()) || declared <= 0.0 {
                continue;
            }
            let band = band_of(declared);
            sums[band].0 += declared;
            sums[band].1 += evaded.max(0.0);
            sums[band].2 += 1;
        }
        let (declared, evaded, n) = sums
            .iter()
            .fold((0.0, 0.0, 0u32), |a, s| (a.0 + s.0, a.1 + s.1, a.2 + s.2));
        let shrink = |evaded: f64, declared: f64, n: u32, toward: f64| {
            if n == 0 {
                return toward;
            }
            let mean = declared / f64::from(n);
            (evaded + SHRINKAGE * toward * mean) / (declared + SHRINKAGE * mean)
        };
        let pooled = shrink(evaded, declared, n, PRIOR_EVADED_PER_DECLARED);
        let bands = sums
            .iter()
            .enumerate()
            .map(|(i, &(declared, evaded, n))| StakeBand {
                up_to_eur: BAND_EDGES.get(i).copied(),
                evaded_per_declared: shrink(evaded, declared, n, pooled),
                found: n,
            })
            .collect();
        Self { bands }
    }

    /// Duties and taxes an undervalued declaration of `declared_eur` is
    /// expected to have evaded, EUR.
    pub fn stake_eur(&self, declared_eur: f64) -> f64 {
        let band = self
            .bands
            .iter()
            .find(|b| b.up_to_eur.is_none_or(|up| declared_eur <= up))
            .or(self.bands.last());
        band.map_or(0.0, |b| b.evaded_per_declared * declared_eur.max(0.0))
    }
}

fn band_of(declared_eur: f64) -> usize {
    BAND_EDGES
        .iter()
        .position(|&up| declared_eur <= up)
        .unwrap_or(BAND_EDGES.len())
}

/// A declaration's lines as declared, EUR.
fn declared_lines(d: &Declaration, rates: &RateTable) -> Vec<DutiableLine> {
    d.items
        .iter()
        .map(|i| DutiableLine {
            hs6: i.hs6,
            value_eur: rates.to_eur(i.intrinsic_value).unwrap_or(0.0),
        })
        .collect()
}

/// What `lines` owe minus what the declaration owes as declared, EUR (never
/// negative).
fn owed_beyond_declared(
    d: &Declaration,
    lines: &[DutiableLine],
    rates: &RateTable,
    regime: &Regime,
) -> f64 {
    let destination = d.importer.country();
    let transport = d
        .transport_and_insurance_costs
        .and_then(|m| rates.to_eur(m))
        .unwrap_or(0.0);
    let declared = declared_lines(d, rates);
    (regime.taxes_eur(d.lodged_at, destination, lines, transport)
        - regime.taxes_eur(d.lodged_at, destination, &declared, transport))
    .max(0.0)
}

/// Evaded duties and taxes by what a control found: corrected values and
/// sub-headings in place of the declared ones, EUR.
pub fn found_evaded_eur(
    d: &Declaration,
    result: &InspectionResult,
    rates: &RateTable,
    regime: &Regime,
) -> f64 {
    let lines: Vec<DutiableLine> = d
        .items
        .iter()
        .zip(declared_lines(d, rates))
        .map(|(item, line)| {
            let finding = result
                .findings
                .iter()
                .find(|f| f.goods_item_number == item.goods_item_number);
            DutiableLine {
                hs6: finding.and_then(|f| f.corrected_hs6).unwrap_or(line.hs6),
                value_eur: finding
                    .and_then(|f| f.corrected_intrinsic_value)
                    .and_then(|m| rates.to_eur(m))
                    .unwrap_or(line.value_eur),
            }
        })
        .collect();
    owed_beyond_declared(d, &lines, rates, regime)
}

/// Evaded duties and taxes: what the ground truth owes (or, without it,
/// what a control found) minus what the declaration owes, EUR.
pub fn evaded_eur(example: &TrainingExample, rates: &RateTable, regime: &Regime) -> f64 {
    let d = &example.declaration;
    match (&example.truth, &example.result) {
        (Some(t), _) => {
            let lines: Vec<DutiableLine> = t
                .items
                .iter()
                .map(|i| DutiableLine {
                    hs6: i.hs6,
                    value_eur: rates.to_eur(i.intrinsic_value).unwrap_or(0.0),
                })
                .collect();
            owed_beyond_declared(d, &lines, rates, regime)
        }
        (None, Some(r)) => found_evaded_eur(d, r, rates, regime),
        (None, None) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_found_values_the_prior_holds_everywhere() {
        let stake = ValueStake::fit(std::iter::empty());
        for declared in [5.0, 60.0, 149.0, 900.0] {
            let ratio = stake.stake_eur(declared) / declared;
            assert!(
                (ratio - PRIOR_EVADED_PER_DECLARED).abs() < 1e-12,
                "{declared}: {ratio}"
            );
        }
        assert_eq!(ValueStake::default().stake_eur(100.0), 21.0);
    }

    #[test]
    fn a_band_learns_what_its_controls_found_and_sparse_bands_stay_near_the_pool() {
        // Bunching under EUR 150: each found parcel evaded EUR 90 on EUR 145.
        let mut found: Vec<(f64, f64)> = (0..600).map(|_| (145.0, 90.0)).collect();
        // A few cheap ones that evaded little.
        found.extend((0..3).map(|_| (10.0, 0.5)));
        let stake = ValueStake::fit(found);
        let bunched = stake.stake_eur(145.0) / 145.0;
        assert!(bunched > 0.55, "{bunched}");
        // Three parcels do not outweigh the pool for their band.
        let cheap = stake.stake_eur(10.0) / 10.0;
        assert!(cheap > 0.3, "{cheap}");
        // Bad pairs are ignored.
        let same = ValueStake::fit([(f64::NAN, 1.0), (0.0, 5.0), (-3.0, 1.0)]);
        assert_eq!(same, ValueStake::fit(std::iter::empty()));
    }
}
