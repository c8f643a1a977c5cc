//! Drift: does today's traffic still look like what the model was trained
//! on? The artifact keeps each feature's and each score's distribution over
//! the training traffic (decile bins); live or batch traffic is binned the
//! same way and compared by the population stability index (PSI). A model
//! quietly stops finding fraud when its inputs move: PSI says so first.

use serde::{Deserialize, Serialize};

/// Bins per column at most (deciles; fewer where values repeat).
const BINS: usize = 10;

/// Share given to an empty bin, so that the index stays finite.
const EMPTY_SHARE: f64 = 1e-4;

/// PSI from which a shift is worth a look, and from which it is major
/// (the usual credit-scoring thresholds).
pub const PSI_MODERATE: f64 = 0.1;
pub const PSI_MAJOR: f64 = 0.25;

/// The score columns that follow the features.
pub const SCORE_COLUMNS: [&str; 3] = ["score:undervaluation", "score:misdescription", "score:any"];

/// Each column's bin edges and its training share per bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftBaseline {
    /// Feature names, then [`SCORE_COLUMNS`].
    pub columns: Vec<String>,
    /// Ascending, distinct; a value goes to the bin of the edges below it.
    pub edges: Vec<Vec<f64>>,
    pub shares: Vec<Vec<f64>>,
    /// Training rows the shares come from.
    pub rows: usize,
}

impl DriftBaseline {
    /// Fits the bins on rows of `columns.len()` values each.
    pub fn fit(columns: Vec<String>, rows: &[Vec<f64>]) -> Self {
        let width = columns.len();
        let mut edges = Vec::with_capacity(width);
        let mut shares = Vec::with_capacity(width);
        let mut values = Vec::with_capacity(rows.len());
        for c in 0..width {
            values.clear();
            values.extend(rows.iter().map(|r| r[c]).filter(|v| v.is_finite()));
            values.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = (1..BINS)
                .filter_map(|q| values.get(q * values.len() / BINS).copied())
                .collect();
            e.dedup();
            let mut counts = vec![0u64; e.len() + 1];
            for r in rows {
                counts[bin(&e, r[c])] += 1;
            }
            shares.push(to_shares(&counts));
            edges.push(e);
        }
        Self {
            columns,
            edges,
            shares,
            rows: rows.len(),
        }
    }

    /// A counter of live values binned like the baseline.
    pub fn counts(&self) -> DriftCounts {
        DriftCounts {
            counts: self.shares.iter().map(|s| vec![0; s.len()]).collect(),
            rows: 0,
        }
    }

    /// PSI of each column, in column order.
    pub fn psi(&self, counts: &DriftCounts) -> Vec<f64> {
        self.shares
            .iter()
            .zip(&counts.counts)
            .map(|(expected, actual)| psi(expected, &to_shares(actual)))
            .collect()
    }
}

/// Live values binned like a baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftCounts {
    counts: Vec<Vec<u64>>,
    pub rows: u64,
}

impl DriftCounts {
    /// Counts one row: the features, then the three scores.
    pub fn observe(&mut self, baseline: &DriftBaseline, features: &[f64], scores: [f64; 3]) {
        let values = features.iter().chain(&scores);
        for ((counts, edges), &v) in self.counts.iter_mut().zip(&baseline.edges).zip(values) {
            counts[bin(edges, v)] += 1;
        }
        self.rows += 1;
    }

    /// Adds another window's counts.
    pub fn add(&mut self, other: &DriftCounts) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.rows += other.rows;
    }
}

fn bin(edges: &[f64], value: f64) -> usize {
    // NaN compares false and lands in the first bin, in training and live.
    edges.partition_point(|&e| e < value)
}

fn to_shares(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

/// Population stability index: Σ (actual − expected) × ln(actual / expected).
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(EMPTY_SHARE), a.max(EMPTY_SHARE));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Whether a column measures the history itself more than the traffic:
/// an entity's recency (days since last seen) or volume (times seen).
/// Volumes count from the start of the training data; a served record that
/// keeps learning counts on past the training's end, so the volumes of
/// frequent values leave the training range however steady the traffic
/// (and a frozen record's recency measures its age). Summaries count
/// these columns apart.
pub fn is_history_measure(column: &str) -> bool {
    column.ends_with("log_days_since") || column.ends_with("log_seen")
}

/// A word for a PSI.
pub fn verdict(psi: f64) -> &'static str {
    if psi >= PSI_MAJOR {
        "major shift"
    } else if psi >= PSI_MODERATE {
        "moderate shift"
    } else {
        "stable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, shift: f64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                let x = (i * 7919 % n) as f64 / n as f64;
                // A continuous column, a binary one, then three scores.
                vec![x + shift, f64::from(u8::from(x < 0.3)), x, x, x]
            })
            .collect()
    }

    fn columns() -> Vec<String> {
        let mut c = vec!["value".to_owned(), "flag".to_owned()];
        c.extend(SCORE_COLUMNS.map(String::from));
        c
    }

    fn measured(baseline: &DriftBaseline, live: &[Vec<f64>]) -> Vec<f64> {
        let mut counts = baseline.counts();
        for r in live {
            counts.observe(baseline, &r[..2], [r[2], r[3], r[4]]);
        }
        baseline.psi(&counts)
    }

    #[test]
    fn the_same_traffic_is_stable_and_a_shift_is_major() {
        let baseline = DriftBaseline::fit(columns(), &rows(10_000, 0.0));
        assert_eq!(
            baseline.edges[1],
            vec![0.0, 1.0],
            "a binary column has two edges"
        );
        let same = measured(&baseline, &rows(5_000, 0.0));
        assert!(same.iter().all(|p| *p < 0.01), "{same:?}");
        let shifted = measured(&baseline, &rows(5_000, 0.5));
        assert!(shifted[0] > PSI_MAJOR, "{shifted:?}");
        assert!(shifted[1] < 0.01 && shifted[2] < 0.01, "{shifted:?}");
        assert_eq!(verdict(shifted[0]), "major shift");
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_finite_for_empty_bins() {
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        let p = psi(&[0.5, 0.5], &[1.0, 0.0]);
        assert!(p.is_finite() && p > PSI_MAJOR, "{p}");
    }
}
