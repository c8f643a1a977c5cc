//! Gradient-boosted oblivious trees for binary labels, built on ndarray with
//! linfa's `ParamGuard`/`Fit`/`PredictInplace` traits (linfa has no
//! boosting of its own).
//!
//! Why oblivious trees (one split per level, shared by every node of the
//! level, as CatBoost grows them): a tree of depth d is d comparisons that
//! form a leaf index, with no data-dependent branch, so scoring a few hundred
//! trees for three targets stays within microseconds; and the shared splits
//! regularise, which suits the small labelled sets customs have.
//!
//! Training is LightGBM-style: features are cut into at most 256 quantile
//! bins once, each level builds gradient/hessian histograms per feature (in
//! parallel with rayon) and picks the (feature, bin) with the best total
//! second-order gain over the level's nodes; leaf values are Newton steps
//! with L2 shrinkage, scaled by the learning rate. With a validation set, the
//! model keeps the number of trees that minimised the validation log-loss.

use linfa::dataset::AsSingleTargets;
use linfa::traits::{Fit, PredictInplace};
use linfa::{DatasetBase, ParamGuard};
use ndarray::{Array1, ArrayBase, ArrayView2, Data, Ix2};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Checked boosting hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BoostingValidParams {
    trees: usize,
    depth: usize,
    learning_rate: f64,
    l2: f64,
    bins: usize,
    row_subsample: f64,
    max_sampled_rows: usize,
    feature_subsample: f64,
    stop_tolerance: f64,
    seed: u64,
}

/// Unchecked boosting hyper-parameters (linfa style: `check()` validates).
///
/// | name | default | purpose |
/// |---|---|---|
/// | `trees` | 300 | most trees (a validation set may stop earlier) |
/// | `depth` | 6 | levels per tree: 2^depth leaves |
/// | `learning_rate` | 0.1 | shrinkage of every leaf (0.05 needed 400+ trees per target on our traffic: twice the scoring time for a few parts in a thousand of validation log-loss) |
/// | `l2` | 3.0 | L2 penalty on leaf values |
/// | `bins` | 255 | most split points per feature (≤ 255) |
/// | `row_subsample` | 0.8 | share of rows each tree's histograms read |
/// | `max_sampled_rows` | 60 000 | most rows a tree's histograms read (a smaller share on more rows) |
/// | `feature_subsample` | 0.8 | share of features each tree may split on |
/// | `stop_tolerance` | 0.002 | with a validation set, keep the fewest trees whose validation log-loss is within this share of the lowest (every tree costs scoring time) |
/// | `seed` | 7 | subsampling seed |
#[derive(Debug, Clone, PartialEq)]
pub struct BoostingParams(BoostingValidParams);

impl Default for BoostingParams {
    fn default() -> Self {
        Self(BoostingValidParams {
            trees: 300,
            depth: 6,
            learning_rate: 0.1,
            l2: 3.0,
            bins: 255,
            row_subsample: 0.8,
            max_sampled_rows: 60_000,
            feature_subsample: 0.8,
            stop_tolerance: 0.002,
            seed: 7,
        })
    }
}

impl BoostingParams {
    pub fn trees(mut self, n: usize) -> Self {
        self.0.trees = n;
        self
    }
    pub fn depth(mut self, d: usize) -> Self {
        self.0.depth = d;
        self
    }
    pub fn learning_rate(mut self, r: f64) -> Self {
        self.0.learning_rate = r;
        self
    }
    pub fn l2(mut self, l2: f64) -> Self {
        self.0.l2 = l2;
        self
    }
    pub fn bins(mut self, bins: usize) -> Self {
        self.0.bins = bins;
        self
    }
    pub fn row_subsample(mut self, share: f64) -> Self {
        self.0.row_subsample = share;
        self
    }
    pub fn max_sampled_rows(mut self, rows: usize) -> Self {
        self.0.max_sampled_rows = rows;
        self
    }
    pub fn feature_subsample(mut self, share: f64) -> Self {
        self.0.feature_subsample = share;
        self
    }
    pub fn stop_tolerance(mut self, share: f64) -> Self {
        self.0.stop_tolerance = share;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
}

/// Why boosting could not fit.
#[derive(Debug, thiserror::Error)]
pub enum BoostError {
    #[error("invalid boosting parameter: {0}")]
    Param(String),
    #[error("{0}")]
    Data(String),
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

impl ParamGuard for BoostingParams {
    type Checked = BoostingValidParams;
    type Error = BoostError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        let bad = |what: &str| Err(BoostError::Param(what.to_owned()));
        if p.trees == 0 {
            return bad("trees must be at least 1");
        }
        if !(1..=10).contains(&p.depth) {
            return bad("depth must be 1..=10");
        }
        if !(p.learning_rate > 0.0 && p.learning_rate <= 1.0) {
            return bad("learning_rate must be in (0, 1]");
        }
        if !(p.l2 >= 0.0 && p.l2.is_finite()) {
            return bad("l2 must be a finite number ≥ 0");
        }
        if !(p.stop_tolerance >= 0.0 && p.stop_tolerance < 1.0) {
            return bad("stop_tolerance must be in [0, 1)");
        }
        if p.max_sampled_rows == 0 {
            return bad("max_sampled_rows must be at least 1");
        }
        if !(2..=255).contains(&p.bins) {
            return bad("bins must be 2..=255");
        }
        for (name, share) in [
            ("row_subsample", p.row_subsample),
            ("feature_subsample", p.feature_subsample),
        ] {
            if !(share > 0.0 && share <= 1.0) {
                return Err(BoostError::Param(format!("{name} must be in (0, 1]")));
            }
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// Rows up to this wide are walked from a fixed-size copy (a power of two).
const PADDED_WIDTH: usize = 256;

/// A fitted ensemble of oblivious trees; scores are P(true).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostedTrees {
    /// Row width it was fitted on.
    pub width: usize,
    pub depth: usize,
    /// Initial log-odds (the training prior).
    pub base: f64,
    /// Per tree, per level: the feature split on.
    pub features: Vec<u32>,
    /// Per tree, per level: a row goes to the bit-1 side when `x > threshold`.
    pub thresholds: Vec<f64>,
    /// Per tree, 2^depth leaf values (log-odds, learning rate applied).
    pub leaves: Vec<f64>,
    /// Per tree, the 2^depth − 1 inner node values (hessian-weighted means of
    /// the leaves below), level by level: node (k, prefix) at `2^k − 1 +
    /// prefix`. They attribute a score to the features on its path.
    pub inner: Vec<f64>,
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl BoostedTrees {
    pub fn trees(&self) -> usize {
        self.features.len() / self.depth.max(1)
    }

    /// Checks the arrays against each other and the row width.
    pub fn validate(&self, width: usize) -> Result<(), String> {
        let t = self.trees();
        let leaves = 1usize << self.depth;
        if self.depth == 0 || self.depth > 10 {
            return Err(format!("depth {} is not 1..=10", self.depth));
        }
        if self.features.len() != t * self.depth
            || self.thresholds.len() != t * self.depth
            || self.leaves.len() != t * leaves
            || self.inner.len() != t * (leaves - 1)
        {
            return Err("tree arrays of inconsistent lengths".into());
        }
        if self.width != width {
            return Err(format!(
                "fitted on {} features, the schema has {width}",
                self.width
            ));
        }
        if self.features.iter().any(|f| *f as usize >= width) {
            return Err("a split reads a feature beyond the row".into());
        }
        Ok(())
    }

    #[inline]
    fn leaf_index(&self, tree: usize, row: &[f64]) -> usize {
        let at = tree * self.depth;
        let mut index = 0usize;
        for level in 0..self.depth {
            let x = row[self.features[at + level] as usize];
            index |= usize::from(x > self.thresholds[at + level]) << level;
        }
        index
    }

    /// Log-odds of one row. No allocation; `row` has the fitted width
    /// (`validate` checks every split reads a feature inside it, so a
    /// masked index into the padded copy is the same feature).
    pub fn raw_score(&self, row: &[f64]) -> f64 {
        self.raw_score_packed(row, &[])
    }

    /// As [`Self::raw_score`] (the same sum, bit for bit), with `packed`
    /// from [`Self::packed_features`]; ignored unless it has a word per tree.
    pub fn raw_score_packed(&self, row: &[f64], packed: &[u64]) -> f64 {
        // The default depth gets a loop the compiler unrolls.
        match self.depth {
            6 => self.sum_leaves::<6>(row, packed),
            _ => self.sum_leaves_any_depth(row),
        }
    }

    /// Each tree's feature indices as the bytes of one word, level 0 in
    /// the lowest: the walk then loads a tree's indices at once, not one
    /// load a level. `None` when a tree is deeper than 8 or a feature's
    /// index is above 255.
    pub fn packed_features(&self) -> Option<Vec<u64>> {
        if self.depth == 0 || self.depth > 8 || self.features.iter().any(|f| *f > 255) {
            return None;
        }
        let word = |levels: &[u32]| {
            levels
                .iter()
                .rev()
                .fold(0, |word, f| word << 8 | u64::from(*f))
        };
        Some(self.features.chunks_exact(self.depth).map(word).collect())
    }

    /// The base plus every tree's leaf, trees of depth `D`, in tree order
    /// (the same sum, bit for bit, as [`Self::sum_leaves_any_depth`]).
    fn sum_leaves<const D: usize>(&self, row: &[f64], packed: &[u64]) -> f64 {
        // A row copied into a fixed array of a power-of-two width: a masked
        // feature index needs no bounds check, which was one compare and
        // branch per level of every tree. The narrower array when it fits:
        // the copy and its zeroing are paid on every call.
        if row.len() <= PADDED_WIDTH / 2 {
            return self.sum_leaves_padded::<D, { PADDED_WIDTH / 2 }>(row, packed);
        }
        if row.len() <= PADDED_WIDTH {
            return self.sum_leaves_padded::<D, PADDED_WIDTH>(row, packed);
        }
        self.sum_leaves_with::<D, _>(|f| row[f as usize])
    }

    /// [`Self::sum_leaves`] on `row` copied into `[f64; W]` (`row.len() <= W`,
    /// `W` a power of two).
    fn sum_leaves_padded<const D: usize, const W: usize>(
        &self,
        row: &[f64],
        packed: &[u64],
    ) -> f64 {
        let mut padded = [0.0; W];
        padded[..row.len()].copy_from_slice(row);
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if D == 6 {
            // SAFETY: the function only needs SSE2, which this build
            // enables (the `cfg` above; every x86-64 CPU has it). Calling a
            // `#[target_feature]` function is `unsafe` even so.
            #[allow(unsafe_code)]
            let sum = unsafe { self.sum_leaves_6_sse2::<W>(&padded, packed) };
            return sum;
        }
        self.sum_leaves_with::<D, _>(|f| padded[f as usize & (W - 1)])
    }

    /// [`Self::sum_leaves_with`] for depth 6, two levels a comparison: the
    /// walk is bound by its loads (a feature index, a value and a threshold
    /// a level; dropping an ALU instruction a level measured no faster), and
    /// here two thresholds come in one load and two comparisons' bits in one
    /// `movmskpd`; with `packed` ([`Self::packed_features`], a word per
    /// tree) a tree's six indices come in one load too. The same leaves in
    /// the same order, so the same sum, bit for bit (`x > t` is false for
    /// NaN either way).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[target_feature(enable = "sse2")]
    fn sum_leaves_6_sse2<const W: usize>(&self, padded: &[f64; W], packed: &[u64]) -> f64 {
        use std::arch::x86_64::{_mm_cmpgt_pd, _mm_movemask_pd, _mm_set_pd};
        let x = |f: u32| padded[f as usize & (W - 1)];
        // The bits of levels `level` and `level + 1`, their features `f`.
        let pair = |f: &[u32; 6], t: &[f64], level: usize| {
            let above = _mm_cmpgt_pd(
                _mm_set_pd(x(f[level + 1]), x(f[level])),
                _mm_set_pd(t[level + 1], t[level]),
            );
            _mm_movemask_pd(above) as usize
        };
        let leaf = |f: [u32; 6], t: &[f64], values: &[f64]| {
            values[(pair(&f, t, 0) | pair(&f, t, 2) << 2 | pair(&f, t, 4) << 4) & 63]
        };
        let trees = self
            .thresholds
            .chunks_exact(6)
            .zip(self.leaves.chunks_exact(64));
        if packed.len() == self.trees() {
            trees
                .zip(packed)
                .fold(self.base, |sum, ((t, values), word)| {
                    let f = std::array::from_fn(|level| u32::from((word >> (8 * level)) as u8));
                    sum + leaf(f, t, values)
                })
        } else {
            trees
                .zip(self.features.chunks_exact(6))
                .fold(self.base, |sum, ((t, values), f)| {
                    sum + leaf([f[0], f[1], f[2], f[3], f[4], f[5]], t, values)
                })
        }
    }

    #[inline(always)]
    fn sum_leaves_with<const D: usize, F: Fn(u32) -> f64>(&self, feature: F) -> f64 {
        let leaves = 1usize << D;
        self.features
            .chunks_exact(D)
            .zip(self.thresholds.chunks_exact(D))
            .zip(self.leaves.chunks_exact(leaves))
            .fold(self.base, |sum, ((features, thresholds), values)| {
                let mut index = 0usize;
                for level in 0..D {
                    index |= usize::from(feature(features[level]) > thresholds[level]) << level;
                }
                sum + values[index & (leaves - 1)]
            })
    }

    fn sum_leaves_any_depth(&self, row: &[f64]) -> f64 {
        let leaves = 1usize << self.depth;
        let mut sum = self.base;
        for tree in 0..self.trees() {
            sum += self.leaves[tree * leaves + self.leaf_index(tree, row)];
        }
        sum
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        sigmoid(self.raw_score(row))
    }

    /// Per-feature contributions to the log-odds (the change in node value
    /// each split on the row's path made, summed by feature), into `out`.
    /// They add up to the log-odds minus the model's mean log-odds. Returns
    /// the log-odds, the same bits as [`Self::raw_score`] (same walk, same
    /// order of sums), so a score that needs explaining walks the trees once.
    pub fn contributions(&self, row: &[f64], out: &mut Vec<f64>) -> f64 {
        out.clear();
        out.resize(self.width, 0.0);
        let leaves = 1usize << self.depth;
        let mut sum = self.base;
        for tree in 0..self.trees() {
            let index = self.leaf_index(tree, row);
            sum += self.leaves[tree * leaves + index];
            let inner = &self.inner[tree * (leaves - 1)..(tree + 1) * (leaves - 1)];
            let mut parent = inner[0];
            for level in 0..self.depth {
                let prefix = index & ((2usize << level) - 1);
                let child = if level + 1 == self.depth {
                    self.leaves[tree * leaves + index]
                } else {
                    inner[(2usize << level) - 1 + prefix]
                };
                out[self.features[tree * self.depth + level] as usize] += child - parent;
                parent = child;
            }
        }
        sum
    }

    /// Keeps the first `n` trees.
    fn truncate(&mut self, n: usize) {
        let leaves = 1usize << self.depth;
        self.features.truncate(n * self.depth);
        self.thresholds.truncate(n * self.depth);
        self.leaves.truncate(n * leaves);
        self.inner.truncate(n * (leaves - 1));
    }
}

/// Split points of one feature: a row's bin is the number of thresholds
/// below its value, so "bin > b" is "x > thresholds[b]" at scoring time.
fn thresholds_of(column: impl Iterator<Item = f64>, bins: usize) -> Vec<f64> {
    let mut values: Vec<f64> = column.filter(|v| !v.is_nan()).collect();
    values.sort_unstable_by(f64::total_cmp);
    values.dedup();
    if values.len() <= 1 {
        return Vec::new();
    }
    if values.len() <= bins + 1 {
        return values.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    }
    let mut cuts: Vec<f64> = (1..=bins)
        .map(|i| {
            let at = i * (values.len() - 1) / (bins + 1);
            (values[at] + values[at + 1]) / 2.0
        })
        .collect();
    cuts.dedup();
    cuts
}

fn bin_of(thresholds: &[f64], x: f64) -> u8 {
    // NaN compares false: bin 0, the side every split sends it to.
    thresholds.partition_point(|t| x > *t) as u8
}

/// The raw training data in bins, column by column.
struct Binned {
    thresholds: Vec<Vec<f64>>,
    columns: Vec<Vec<u8>>,
}

fn bin_rows(x: ArrayView2<'_, f64>, bins: usize) -> Binned {
    let thresholds: Vec<Vec<f64>> = x
        .columns()
        .into_iter()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|col| {
            // Quantiles from at most 200 000 evenly spaced rows.
            let step = (col.len() / 200_000).max(1);
            thresholds_of(col.iter().step_by(step).copied(), bins)
        })
        .collect();
    let columns = x
        .columns()
        .into_iter()
        .zip(&thresholds)
        .collect::<Vec<_>>()
        .par_iter()
        .map(|(col, t)| col.iter().map(|v| bin_of(t, *v)).collect())
        .collect();
    Binned {
        thresholds,
        columns,
    }
}

/// Mean log-loss of raw scores, each row counted by its weight.
fn log_loss(raw: &[f64], y: &[bool], weights: Option<&[f64]>) -> f64 {
    let weight = |i: usize| weights.map_or(1.0, |w| w[i]);
    let total: f64 = (0..y.len()).map(weight).sum();
    raw.iter()
        .zip(y)
        .enumerate()
        .map(|(i, (z, t))| {
            // log(1 + e^z) − t·z, stable for large |z|.
            let softplus = if *z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            weight(i) * (softplus - if *t { *z } else { 0.0 })
        })
        .sum::<f64>()
        / total.max(f64::MIN_POSITIVE)
}

/// Rows to fit or validate on: features, labels and, optionally, how much
/// each row counts (a row of weight w counts as w rows).
/// (Two lifetimes: an `ArrayView2` is invariant in its own.)
#[derive(Clone, Copy)]
pub struct Rows<'x, 'a> {
    pub x: ArrayView2<'x, f64>,
    pub y: &'a [bool],
    pub weights: Option<&'a [f64]>,
}

impl<'x, 'a> Rows<'x, 'a> {
    /// Every row counted once.
    pub fn unweighted(x: ArrayView2<'x, f64>, y: &'a [bool]) -> Self {
        Self {
            x,
            y,
            weights: None,
        }
    }

    /// The rows before `at`, and those from `at` on (`at` at most the row
    /// count): features, labels and weights cut alike.
    pub fn split_at(self, at: usize) -> (Self, Self) {
        let (x_before, x_after) = (
            self.x.slice_move(ndarray::s![..at, ..]),
            self.x.slice_move(ndarray::s![at.., ..]),
        );
        let (y_before, y_after) = self.y.split_at(at);
        let (w_before, w_after) = match self.weights {
            Some(w) => {
                let (before, after) = w.split_at(at);
                (Some(before), Some(after))
            }
            None => (None, None),
        };
        (
            Self {
                x: x_before,
                y: y_before,
                weights: w_before,
            },
            Self {
                x: x_after,
                y: y_after,
                weights: w_after,
            },
        )
    }

    /// The last `n` rows, or all of them when there are fewer.
    pub fn last(self, n: usize) -> Self {
        self.split_at(self.y.len().saturating_sub(n)).1
    }

    fn check(&self, width: usize, what: &str) -> Result<(), BoostError> {
        let n = self.x.nrows();
        if self.x.ncols() != width || self.y.len() != n {
            return Err(BoostError::Data(format!(
                "{what}: {n} rows of {} features, {} labels",
                self.x.ncols(),
                self.y.len()
            )));
        }
        if let Some(w) = self.weights
            && (w.len() != n || w.iter().any(|w| !w.is_finite() || *w <= 0.0))
        {
            return Err(BoostError::Data(format!(
                "{what}: {} weights for {n} rows, each must be finite and positive",
                w.len()
            )));
        }
        Ok(())
    }
}

impl BoostingValidParams {
    /// Fits on `x`/`y`; with `valid`, keeps the number of trees with the
    /// lowest validation log-loss.
    pub fn fit_with_validation(
        &self,
        x: ArrayView2<'_, f64>,
        y: &[bool],
        valid: Option<(ArrayView2<'_, f64>, &[bool])>,
    ) -> Result<BoostedTrees, BoostError> {
        self.fit_weighted(
            Rows::unweighted(x, y),
            valid.map(|(x, y)| Rows::unweighted(x, y)),
        )
    }

    /// [`Self::fit_with_validation`] with a weight per row: a row of weight w
    /// counts as w rows in every gradient and hessian sum, and in the
    /// validation log-loss that decides how many trees are kept.
    pub fn fit_weighted(
        &self,
        train: Rows<'_, '_>,
        valid: Option<Rows<'_, '_>>,
    ) -> Result<BoostedTrees, BoostError> {
        let Rows { x, y, weights } = train;
        let (n, width) = x.dim();
        if n == 0 {
            return Err(BoostError::Data("no rows".into()));
        }
        train.check(width, "training rows")?;
        if let Some(v) = &valid {
            v.check(width, "validation rows")?;
        }
        let weight = |i: usize| weights.map_or(1.0, |w| w[i]);
        let positives: f64 = (0..n).filter(|&i| y[i]).map(weight).sum();
        let total: f64 = (0..n).map(weight).sum();
        let prior = (positives + 0.5) / (total + 1.0);
        let base = (prior / (1.0 - prior)).ln();
        let binned = bin_rows(x, self.bins);
        let leaves = 1usize << self.depth;
        let mut model = BoostedTrees {
            width,
            depth: self.depth,
            base,
            features: Vec::with_capacity(self.trees * self.depth),
            thresholds: Vec::with_capacity(self.trees * self.depth),
            leaves: Vec::with_capacity(self.trees * leaves),
            inner: Vec::with_capacity(self.trees * (leaves - 1)),
        };
        let mut raw = vec![base; n];
        let mut valid_raw = valid.map(|v| vec![base; v.x.nrows()]);
        // Validation log-loss after each tree.
        let mut losses: Vec<f64> = Vec::new();
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let mut grad = vec![0.0; n];
        let mut hess = vec![0.0; n];
        let mut leaf_of = vec![0u32; n];
        // Stochastic boosting: each tree's histograms read a share of the
        // rows, at most `max_sampled_rows` of them (on a million labels, a
        // few per cent per tree is plenty and bounds the time).
        let share = self
            .row_subsample
            .min(self.max_sampled_rows as f64 / n as f64);
        for tree in 0..self.trees {
            for i in 0..n {
                let p = sigmoid(raw[i]);
                let w = weight(i);
                grad[i] = w * (p - f64::from(u8::from(y[i])));
                hess[i] = w * (p * (1.0 - p)).max(1e-12);
            }
            let rows: Vec<u32> = (0..n as u32)
                .filter(|_| share >= 1.0 || rng.r#gen::<f64>() < share)
                .collect();
            let allowed: Vec<usize> = (0..width)
                .filter(|f| {
                    !binned.thresholds[*f].is_empty()
                        && (self.feature_subsample >= 1.0
                            || rng.r#gen::<f64>() < self.feature_subsample)
                })
                .collect();
            leaf_of.fill(0);
            // Per allowed feature, the previous level's histograms: a level
            // reads only the rows sent to the 1 side by the last split and
            // gets the 0 side by subtraction, half the rows of a full pass.
            let mut histograms: Vec<Vec<(f64, f64)>> = vec![Vec::new(); allowed.len()];
            let mut ones: Vec<u32> = Vec::with_capacity(rows.len());
            for level in 0..self.depth {
                let level_rows: &[u32] = if level == 0 {
                    &rows
                } else {
                    ones.clear();
                    ones.extend(
                        rows.iter()
                            .copied()
                            .filter(|&i| (leaf_of[i as usize] >> (level - 1)) & 1 == 1),
                    );
                    &ones
                };
                let split = self.best_split(
                    &binned,
                    &allowed,
                    &mut histograms,
                    level_rows,
                    &leaf_of,
                    &grad,
                    &hess,
                    level,
                );
                let (feature, threshold) = match split {
                    Some((f, b)) => {
                        let column = &binned.columns[f];
                        for &i in &rows {
                            leaf_of[i as usize] |= u32::from(column[i as usize] > b) << level;
                        }
                        (f, binned.thresholds[f][b as usize])
                    }
                    // Nothing gains: a split every finite row passes on the
                    // 0 side (f64::MAX, as JSON has no infinity).
                    None => (0, f64::MAX),
                };
                model.features.push(feature as u32);
                model.thresholds.push(threshold);
            }
            // Newton step per leaf, hessian-weighted means for inner nodes.
            let mut sums = vec![(0.0f64, 0.0f64); leaves];
            for &i in &rows {
                let s = &mut sums[leaf_of[i as usize] as usize];
                s.0 += grad[i as usize];
                s.1 += hess[i as usize];
            }
            let values: Vec<f64> = sums
                .iter()
                .map(|(g, h)| -g / (h + self.l2) * self.learning_rate)
                .collect();
            let mut inner = vec![0.0; leaves - 1];
            for level in 0..self.depth {
                let mask = (1usize << level) - 1;
                let mut acc = vec![(0.0f64, 0.0f64); 1 << level];
                for (leaf, (v, (_, h))) in values.iter().zip(&sums).enumerate() {
                    let a = &mut acc[leaf & mask];
                    a.0 += v * h;
                    a.1 += h;
                }
                for (prefix, (vh, h)) in acc.iter().enumerate() {
                    inner[mask + prefix] = if *h > 0.0 { vh / h } else { 0.0 };
                }
            }
            model.leaves.extend_from_slice(&values);
            model.inner.extend_from_slice(&inner);
            // Every row's score moves, sampled or not.
            let at = tree * self.depth;
            raw.par_iter_mut().enumerate().for_each(|(i, r)| {
                let mut index = 0usize;
                for level in 0..self.depth {
                    let f = model.features[at + level] as usize;
                    index |= usize::from(x[[i, f]] > model.thresholds[at + level]) << level;
                }
                *r += values[index];
            });
            if let (Some(v), Some(vr)) = (valid, valid_raw.as_mut()) {
                let vx = v.x;
                for (i, r) in vr.iter_mut().enumerate() {
                    let row = vx.row(i);
                    let mut index = 0usize;
                    for level in 0..self.depth {
                        let f = model.features[at + level] as usize;
                        index |= usize::from(row[f] > model.thresholds[at + level]) << level;
                    }
                    *r += values[index];
                }
                losses.push(log_loss(vr, v.y, v.weights));
            }
        }
        if valid.is_some() {
            model.truncate(self.kept_trees(&losses));
        }
        Ok(model)
    }

    /// How many trees to keep given the validation log-loss after each: the
    /// fewest within `stop_tolerance` of the lowest. The last trees of a
    /// slowly converging fit buy a few parts in a thousand of log-loss and
    /// cost as much scoring time as the first.
    fn kept_trees(&self, losses: &[f64]) -> usize {
        let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
        let bound = lowest + self.stop_tolerance * lowest.abs();
        losses.iter().position(|l| *l <= bound).map_or(1, |i| i + 1)
    }

    /// The (feature, bin) whose split of every node of the level gains most.
    /// At level 0 `rows` are all the tree's rows; at level k > 0 only those
    /// the split of level k − 1 sent to the 1 side: their histograms are
    /// built, and the 0 side's are the parent's minus them. `histograms`
    /// holds, per allowed feature, the previous level's and gets this one's.
    #[allow(clippy::too_many_arguments)]
    fn best_split(
        &self,
        binned: &Binned,
        allowed: &[usize],
        histograms: &mut [Vec<(f64, f64)>],
        rows: &[u32],
        leaf_of: &[u32],
        grad: &[f64],
        hess: &[f64],
        level: usize,
    ) -> Option<(usize, u8)> {
        let l2 = self.l2;
        let score = |g: f64, h: f64| g * g / (h + l2);
        let nodes = 1usize << level;
        allowed
            .par_iter()
            .zip(histograms.par_iter_mut())
            .filter_map(|(&f, previous)| {
                let bins = binned.thresholds[f].len() + 1;
                let column = &binned.columns[f];
                let mut hist = vec![(0.0f64, 0.0f64); nodes * bins];
                for &i in rows {
                    let i = i as usize;
                    let cell = &mut hist[leaf_of[i] as usize * bins + usize::from(column[i])];
                    cell.0 += grad[i];
                    cell.1 += hess[i];
                }
                if level > 0 {
                    // Node p (bit level−1 clear) = parent p − node p | half.
                    let half = nodes / 2;
                    for p in 0..half {
                        for b in 0..bins {
                            let parent = previous[p * bins + b];
                            let one = hist[(p + half) * bins + b];
                            hist[p * bins + b] = (parent.0 - one.0, parent.1 - one.1);
                        }
                    }
                }
                let mut gain = vec![0.0; bins - 1];
                for node in hist.chunks(bins) {
                    let (g, h) = node.iter().fold((0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1));
                    let parent = score(g, h);
                    let (mut gl, mut hl) = (0.0, 0.0);
                    for b in 0..bins - 1 {
                        gl += node[b].0;
                        hl += node[b].1;
                        gain[b] += score(gl, hl) + score(g - gl, h - hl) - parent;
                    }
                }
                *previous = hist;
                gain.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(b, g)| (*g, f, b as u8))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .filter(|(gain, _, _)| *gain > 1e-9)
            .map(|(_, f, b)| (f, b))
    }
}

impl<D, T> Fit<ArrayBase<D, Ix2>, T, BoostError> for BoostingValidParams
where
    D: Data<Elem = f64>,
    T: AsSingleTargets<Elem = bool>,
{
    type Object = BoostedTrees;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<BoostedTrees, BoostError> {
        let y: Vec<bool> = dataset.as_single_targets().to_vec();
        self.fit_with_validation(dataset.records().view(), &y, None)
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for BoostedTrees {
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        for (out, row) in y.iter_mut().zip(x.rows()) {
            *out = match row.as_slice() {
                Some(slice) => self.score(slice),
                None => self.score(&row.to_vec()),
            };
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::*;
    use ndarray::Array2;

    fn data(n: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 6), |_| rng.gen_range(-2.0..2.0));
        // An interaction a linear model cannot see, and noise.
        let y = x
            .rows()
            .into_iter()
            .map(|r| (r[0] * r[1] > 0.3) ^ (rng.r#gen::<f64>() < 0.05))
            .collect();
        (x, y)
    }

    #[test]
    fn learns_an_interaction_and_scores_like_it_predicts() {
        let (x, y) = data(3000, 1);
        let model = BoostingParams::default()
            .trees(120)
            .depth(4)
            .learning_rate(0.2)
            .fit(&Dataset::new(x.clone(), Array1::from(y.clone())))
            .unwrap();
        model.validate(6).unwrap();
        let (tx, ty) = data(1000, 2);
        let scores: Array1<f64> = model.predict(&tx);
        let auc = super::super::metrics::auc(scores.as_slice().unwrap(), &ty);
        assert!(auc > 0.9, "{auc}");
        // Contributions add up to the log-odds minus the mean.
        let mut c = Vec::new();
        let row = tx.row(0).to_vec();
        model.contributions(&row, &mut c);
        let mean: f64 = model.base
            + (0..model.trees())
                .map(|t| model.inner[t * ((1 << model.depth) - 1)])
                .sum::<f64>();
        let total: f64 = c.iter().sum::<f64>() + mean;
        assert!((total - model.raw_score(&row)).abs() < 1e-9);
        // The interaction's features carry it.
        let mut magnitude = [0.0; 6];
        for r in tx.rows() {
            model.contributions(&r.to_vec(), &mut c);
            for (m, v) in magnitude.iter_mut().zip(&c) {
                *m += v.abs();
            }
        }
        assert!(magnitude[0] > 3.0 * magnitude[2] && magnitude[1] > 3.0 * magnitude[5]);
    }

    #[test]
    fn validation_stops_early_and_bad_params_are_refused() {
        let (x, y) = data(2000, 3);
        let (vx, vy) = data(500, 4);
        let model = BoostingParams::default()
            .trees(400)
            .learning_rate(0.5)
            .check()
            .unwrap()
            .fit_with_validation(x.view(), &y, Some((vx.view(), &vy)))
            .unwrap();
        assert!(model.trees() < 400, "{}", model.trees());
        assert!(BoostingParams::default().depth(0).check().is_err());
        assert!(
            BoostingParams::default()
                .learning_rate(0.0)
                .check()
                .is_err()
        );
        assert!(
            BoostingParams::default()
                .row_subsample(1.5)
                .check()
                .is_err()
        );
        assert!(model.validate(5).is_err());
        assert!(
            BoostingParams::default()
                .stop_tolerance(-0.1)
                .check()
                .is_err()
        );
    }

    #[test]
    fn a_row_of_weight_two_counts_as_the_row_twice() {
        // Whole-number features: duplicating rows leaves the split points as
        // they were, so only the sums can differ.
        let (x, y) = data(800, 5);
        let x = x.mapv(f64::round);
        let doubled: Vec<usize> = (0..x.nrows()).filter(|i| i % 3 == 0).collect();
        let weights: Vec<f64> = (0..x.nrows())
            .map(|i| if i % 3 == 0 { 2.0 } else { 1.0 })
            .collect();
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        order.extend(&doubled);
        let x2 = x.select(ndarray::Axis(0), &order);
        let y2: Vec<bool> = order.iter().map(|&i| y[i]).collect();
        // Every row in every tree: sampling would draw different rows.
        let params = BoostingParams::default()
            .trees(30)
            .depth(4)
            .row_subsample(1.0)
            .feature_subsample(1.0)
            .check()
            .unwrap();
        let weighted = params
            .fit_weighted(
                Rows {
                    x: x.view(),
                    y: &y,
                    weights: Some(&weights),
                },
                None,
            )
            .unwrap();
        let repeated = params.fit_with_validation(x2.view(), &y2, None).unwrap();
        let unweighted = params.fit_with_validation(x.view(), &y, None).unwrap();
        let mut moved = 0.0f64;
        for row in x.rows() {
            let row = row.to_vec();
            let (w, r) = (weighted.raw_score(&row), repeated.raw_score(&row));
            assert!((w - r).abs() < 1e-9 * (1.0 + r.abs()), "{w} against {r}");
            moved = moved.max((w - unweighted.raw_score(&row)).abs());
        }
        // The weights did something.
        assert!(moved > 1e-3, "{moved}");
        // Weights that cannot count a row are refused.
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut w = weights.clone();
            w[7] = bad;
            let rows = Rows {
                x: x.view(),
                y: &y,
                weights: Some(&w),
            };
            assert!(params.fit_weighted(rows, None).is_err());
            // Nor in the validation rows.
            let fine = Rows::unweighted(x.view(), &y);
            assert!(params.fit_weighted(fine, Some(rows)).is_err());
        }
        let short = Rows {
            x: x.view(),
            y: &y,
            weights: Some(&weights[1..]),
        };
        assert!(params.fit_weighted(short, None).is_err());
    }

    #[test]
    fn rows_are_cut_with_their_labels_and_weights() {
        let x = Array2::from_shape_fn((10, 2), |(r, c)| (r * 10 + c) as f64);
        let y: Vec<bool> = (0..10).map(|i| i % 3 == 0).collect();
        let w: Vec<f64> = (0..10).map(|i| 1.0 + i as f64).collect();
        let rows = Rows {
            x: x.view(),
            y: &y,
            weights: Some(&w),
        };
        let (before, after) = rows.split_at(4);
        assert_eq!(before.x.column(0).to_vec(), [0.0, 10.0, 20.0, 30.0]);
        assert_eq!((before.y, before.weights), (&y[..4], Some(&w[..4])));
        assert_eq!(after.x[[0, 1]], 41.0);
        assert_eq!((after.y, after.weights), (&y[4..], Some(&w[4..])));
        let last = rows.last(3);
        assert_eq!(last.x.column(0).to_vec(), [70.0, 80.0, 90.0]);
        assert_eq!((last.y, last.weights), (&y[7..], Some(&w[7..])));
        assert_eq!(rows.last(50).y.len(), 10);
        let unweighted = Rows::unweighted(x.view(), &y).last(2);
        assert_eq!((unweighted.y, unweighted.weights), (&y[8..], None));
    }

    #[test]
    fn every_walk_sums_the_same_bits() {
        let (x, y) = data(1500, 11);
        let model = BoostingParams::default()
            .trees(60)
            .depth(6)
            .check()
            .unwrap()
            .fit_with_validation(x.view(), &y, None)
            .unwrap();
        let packed = model
            .packed_features()
            .expect("indices of 6 features fit in bytes");
        assert_eq!(packed.len(), model.trees());
        for row in x.rows().into_iter().take(300) {
            let row = row.to_vec();
            let bits = model.raw_score(&row).to_bits();
            assert_eq!(bits, model.sum_leaves_any_depth(&row).to_bits());
            assert_eq!(bits, model.raw_score_packed(&row, &packed).to_bits());
            // The explaining walk gives the same log-odds.
            assert_eq!(bits, model.contributions(&row, &mut Vec::new()).to_bits());
            // NaN and infinities go the same way in every walk (the SSE2
            // walk compares two levels at once).
            for odd in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let row: Vec<f64> = (row.iter().enumerate())
                    .map(|(i, v)| if i % 2 == 1 { odd } else { *v })
                    .collect();
                let bits = model.raw_score(&row).to_bits();
                assert_eq!(bits, model.sum_leaves_any_depth(&row).to_bits());
                assert_eq!(bits, model.raw_score_packed(&row, &packed).to_bits());
            }
        }
        // Rows of each padded width, and wider ones (the checked walk): the
        // same sum. The informative columns are moved past the 128th or
        // the 256th.
        for (width, past) in [(200, 128), (300, 256)] {
            let moved = width - 6;
            let wide = Array2::from_shape_fn((x.nrows(), width), |(r, c)| {
                if c >= moved { x[[r, c - moved]] } else { 0.0 }
            });
            let model = BoostingParams::default()
                .trees(20)
                .depth(6)
                .check()
                .unwrap()
                .fit_with_validation(wide.view(), &y, None)
                .unwrap();
            assert!(model.features.iter().any(|f| *f as usize >= past));
            // Indices past 255 do not fit in bytes: the walk reads them one by one.
            let packed = model.packed_features().unwrap_or_default();
            assert_eq!(packed.is_empty(), past == 256);
            for row in wide.rows().into_iter().take(100) {
                let row = row.to_vec();
                let bits = model.raw_score(&row).to_bits();
                assert_eq!(bits, model.sum_leaves_any_depth(&row).to_bits());
                assert_eq!(bits, model.raw_score_packed(&row, &packed).to_bits());
            }
        }
    }

    #[test]
    fn keeps_the_fewest_trees_near_the_lowest_validation_loss() {
        let losses = [1.0, 0.5, 0.30, 0.2995, 0.2990, 0.31];
        let kept = |tolerance| {
            BoostingParams::default()
                .stop_tolerance(tolerance)
                .check()
                .unwrap()
                .kept_trees(&losses)
        };
        assert_eq!(kept(0.0), 5);
        assert_eq!(kept(0.002), 4);
        assert_eq!(kept(0.5), 3);
    }

    #[test]
    fn thresholds_split_distinct_values_and_nan_goes_low() {
        let t = thresholds_of([3.0, 1.0, 2.0, 2.0, f64::NAN].into_iter(), 255);
        assert_eq!(t, vec![1.5, 2.5]);
        assert_eq!(bin_of(&t, 1.0), 0);
        assert_eq!(bin_of(&t, 2.0), 1);
        assert_eq!(bin_of(&t, 9.0), 2);
        assert_eq!(bin_of(&t, f64::NAN), 0);
        let many = thresholds_of((0..10_000).map(f64::from), 10);
        assert_eq!(many.len(), 10);
    }
}
