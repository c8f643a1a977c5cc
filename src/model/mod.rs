//! Risk models fitted with linfa, their artifact, training and metrics.
//!
//! A model is one binary classifier per [`Target`] over the rows of
//! [`crate::features`]. Training compares logistic regression, a decision
//! tree, a random forest and Gaussian naive Bayes on a later time window and
//! keeps the best per target.

pub mod artifact;
pub mod boost;
pub mod drift;
pub mod metrics;
pub mod stake;
pub mod train;

use linfa::prelude::*;
use linfa_bayes::{GaussianNb, NaiveBayes};
use linfa_logistic::FittedLogisticRegression;
use linfa_trees::DecisionTree;
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::domain::{FraudKind, GroundTruth, InspectionOutcome, InspectionResult};

pub use artifact::{ModelArtifact, ModelCard};

/// What a classifier predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Declared value a fraction of the real one.
    Undervaluation,
    /// Misdescription or misclassification: the goods are not what the
    /// description or HS6 says.
    Misdescription,
    /// Any non-compliance.
    Any,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Undervaluation, Target::Misdescription, Target::Any];

    pub fn name(self) -> &'static str {
        match self {
            Target::Undervaluation => "undervaluation",
            Target::Misdescription => "misdescription",
            Target::Any => "any",
        }
    }

    /// The label an inspection gives, `None` when it is inconclusive.
    pub fn label(self, result: &InspectionResult) -> Option<bool> {
        if result.outcome == InspectionOutcome::Inconclusive {
            return None;
        }
        Some(match self {
            Target::Undervaluation => result.found(FraudKind::Undervaluation),
            Target::Misdescription => {
                result.found(FraudKind::Misdescription)
                    || result.found(FraudKind::Misclassification)
            }
            Target::Any => result.outcome == InspectionOutcome::NonCompliant,
        })
    }

    /// The label the ground truth gives.
    pub fn truth(self, truth: &GroundTruth) -> bool {
        match self {
            Target::Undervaluation => truth.is(FraudKind::Undervaluation),
            Target::Misdescription => {
                truth.is(FraudKind::Misdescription) || truth.is(FraudKind::Misclassification)
            }
            Target::Any => !truth.fraud_kinds.is_empty(),
        }
    }
}

/// Per-feature centring and scaling, fitted on training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardizer {
    pub fn fit(x: ArrayView2<'_, f64>) -> Self {
        let n = x.nrows().max(1) as f64;
        let mean: Vec<f64> = x
            .mean_axis(Axis(0))
            .map_or_else(|| vec![0.0; x.ncols()], |m| m.to_vec());
        let scale = x
            .axis_iter(Axis(1))
            .zip(&mean)
            .map(|(col, m)| {
                let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
                if var > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        Self { mean, scale }
    }

    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut out = x.to_owned();
        for (mut col, (m, s)) in out
            .axis_iter_mut(Axis(1))
            .zip(self.mean.iter().zip(&self.scale))
        {
            col.mapv_inplace(|v| (v - m) / s);
        }
        out
    }
}

/// The kinds of classifier training compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierKind {
    Logistic,
    DecisionTree,
    RandomForest,
    GaussianNb,
    GradientBoosting,
}

impl ClassifierKind {
    pub const ALL: [ClassifierKind; 5] = [
        ClassifierKind::Logistic,
        ClassifierKind::DecisionTree,
        ClassifierKind::RandomForest,
        ClassifierKind::GaussianNb,
        ClassifierKind::GradientBoosting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClassifierKind::Logistic => "logistic_regression",
            ClassifierKind::DecisionTree => "decision_tree",
            ClassifierKind::RandomForest => "random_forest",
            ClassifierKind::GaussianNb => "gaussian_nb",
            ClassifierKind::GradientBoosting => "gradient_boosting",
        }
    }
}

/// A fitted binary classifier. Scores are P(positive) (a vote share for the
/// forest, 0/1 for the single tree).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classifier {
    Logistic {
        scaler: Standardizer,
        model: FittedLogisticRegression<f64, bool>,
        /// Weights folded with the scaler and oriented to P(true): one dot
        /// product per row. Rebuilt by `prepare`.
        #[serde(skip)]
        compiled: Option<(Vec<f64>, f64)>,
    },
    DecisionTree {
        tree: DecisionTree<f64, bool>,
        /// The tree as a flat node array, for allocation-free scoring.
        #[serde(skip)]
        flat: Vec<FlatNode>,
    },
    RandomForest {
        /// linfa's `EnsembleLearner` has no serde; its public parts are kept
        /// and the forest is rebuilt from them.
        trees: Vec<DecisionTree<f64, bool>>,
        tree_features: Vec<Vec<usize>>,
        /// Each tree flattened, its feature indices mapped to row columns.
        #[serde(skip)]
        flat: Vec<Vec<FlatNode>>,
    },
    GaussianNb {
        /// Classes 0/1, kept as embedded JSON (see [`embedded_json`]).
        #[serde(with = "embedded_json")]
        model: GaussianNb<f64, usize>,
        /// Row width it was fitted on (linfa does not expose it).
        width: usize,
    },
    GradientBoosting {
        model: boost::BoostedTrees,
        /// Each tree's feature indices as the bytes of one word, for the
        /// walk ([`boost::BoostedTrees::packed_features`]). Rebuilt by
        /// `prepare`; empty where they do not fit (then read one by one).
        #[serde(skip)]
        packed: Vec<u64>,
    },
}

/// linfa's naive Bayes keeps its per-class tables in a map keyed by class.
/// Inside the internally tagged [`Classifier`], serde buffers the content and
/// then cannot read a non-string map key back (`invalid type: string "0",
/// expected usize`), so the model is written as a JSON string of its own and
/// read by serde_json directly, which parses such keys.
mod embedded_json {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// A model that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClassifierError {
    #[error("the classifier expects {expected} features, the schema has {actual}")]
    Width { expected: usize, actual: usize },
    #[error("the random forest is malformed: {0}")]
    Forest(String),
    #[error("the boosted trees are malformed: {0}")]
    Boosting(String),
}

/// One node of a flattened tree: a split or a leaf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlatNode {
    /// Row column the split reads; unused in leaves.
    feature: usize,
    threshold: f64,
    /// Index of the left child (`x < threshold`); the right one is `right`.
    left: usize,
    right: usize,
    leaf: Option<bool>,
}

/// Flattens a linfa tree (recursively, once, when a model is prepared).
fn flatten(tree: &DecisionTree<f64, bool>, columns: Option<&[usize]>) -> Vec<FlatNode> {
    fn visit(
        node: &linfa_trees::TreeNode<f64, bool>,
        columns: Option<&[usize]>,
        out: &mut Vec<FlatNode>,
    ) -> usize {
        let index = out.len();
        if node.is_leaf() {
            out.push(FlatNode {
                feature: 0,
                threshold: 0.0,
                left: 0,
                right: 0,
                leaf: node.prediction(),
            });
            return index;
        }
        let (feature, threshold, _) = node.split();
        let feature = columns.map_or(feature, |c| c[feature]);
        out.push(FlatNode {
            feature,
            threshold,
            left: 0,
            right: 0,
            leaf: None,
        });
        let children = node.children();
        let (left, right) = match (children[0], children[1]) {
            (Some(l), Some(r)) => (visit(l, columns, out), visit(r, columns, out)),
            // linfa gives every split two children; a missing one reads as a
            // negative leaf rather than a panic.
            _ => {
                out[index].leaf = Some(false);
                return index;
            }
        };
        out[index].left = left;
        out[index].right = right;
        index
    }
    let mut out = Vec::new();
    visit(tree.root_node(), columns, &mut out);
    out
}

/// The leaf a row reaches, with linfa's rule: left when `x < threshold`.
fn walk(nodes: &[FlatNode], row: &[f64]) -> bool {
    let mut i = 0;
    loop {
        let node = &nodes[i];
        if let Some(value) = node.leaf {
            return value;
        }
        i = if row[node.feature] < node.threshold {
            node.left
        } else {
            node.right
        };
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Classifier {
    pub fn kind(&self) -> ClassifierKind {
        match self {
            Classifier::Logistic { .. } => ClassifierKind::Logistic,
            Classifier::DecisionTree { .. } => ClassifierKind::DecisionTree,
            Classifier::RandomForest { .. } => ClassifierKind::RandomForest,
            Classifier::GaussianNb { .. } => ClassifierKind::GaussianNb,
            Classifier::GradientBoosting { .. } => ClassifierKind::GradientBoosting,
        }
    }

    /// Checks the classifier against the row width and precomputes what
    /// scoring needs. Must run after deserialising.
    pub fn prepare(&mut self, width: usize) -> Result<(), ClassifierError> {
        match self {
            Classifier::Logistic {
                scaler,
                model,
                compiled,
            } => {
                let params = model.params();
                if params.len() != width
                    || scaler.mean.len() != width
                    || scaler.scale.len() != width
                {
                    return Err(ClassifierError::Width {
                        expected: params.len(),
                        actual: width,
                    });
                }
                // linfa models P(its "pos" class), which is the majority
                // class of the training targets; orient to P(true).
                let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
                let mut weights = Vec::with_capacity(width);
                let mut bias = model.intercept();
                for ((w, m), s) in params.iter().zip(&scaler.mean).zip(&scaler.scale) {
                    weights.push(sign * w / s);
                    bias -= w * m / s;
                }
                *compiled = Some((weights, sign * bias));
                Ok(())
            }
            Classifier::DecisionTree { tree, flat } => {
                let max = tree.features().into_iter().max().unwrap_or(0);
                if max >= width {
                    return Err(ClassifierError::Width {
                        expected: max + 1,
                        actual: width,
                    });
                }
                *flat = flatten(tree, None);
                Ok(())
            }
            Classifier::RandomForest {
                trees,
                tree_features,
                flat,
            } => {
                if trees.len() != tree_features.len() || trees.is_empty() {
                    return Err(ClassifierError::Forest(format!(
                        "{} trees, {} feature lists",
                        trees.len(),
                        tree_features.len()
                    )));
                }
                for (tree, features) in trees.iter().zip(tree_features.iter()) {
                    if features.iter().any(|f| *f >= width) {
                        return Err(ClassifierError::Width {
                            expected: features.iter().max().map_or(0, |m| m + 1),
                            actual: width,
                        });
                    }
                    if tree.features().into_iter().any(|f| f >= features.len()) {
                        return Err(ClassifierError::Forest(
                            "a tree splits on a feature it was not given".into(),
                        ));
                    }
                }
                *flat = trees
                    .iter()
                    .zip(tree_features.iter())
                    .map(|(tree, features)| flatten(tree, Some(features)))
                    .collect();
                Ok(())
            }
            Classifier::GaussianNb {
                width: expected, ..
            } => {
                if *expected != width {
                    return Err(ClassifierError::Width {
                        expected: *expected,
                        actual: width,
                    });
                }
                Ok(())
            }
            Classifier::GradientBoosting { model, packed } => {
                model
                    .validate(width)
                    .map_err(|e| ClassifierError::Boosting(e.to_string()))?;
                *packed = model.packed_features().unwrap_or_default();
                Ok(())
            }
        }
    }

    /// P(positive) for one row. The row width was checked by `prepare`.
    pub fn score(&self, row: &[f64]) -> f64 {
        match self {
            Classifier::Logistic {
                compiled,
                scaler,
                model,
            } => match compiled {
                Some((w, b)) => sigmoid(w.iter().zip(row).map(|(w, x)| w * x).sum::<f64>() + b),
                None => {
                    let x = Array2::from_shape_vec((1, row.len()), row.to_vec()).expect("one row");
                    let p = model.predict_probabilities(&scaler.transform(x.view()))[0];
                    if model.labels().pos.class { p } else { 1.0 - p }
                }
            },
            Classifier::DecisionTree { flat, .. } if !flat.is_empty() => {
                f64::from(u8::from(walk(flat, row)))
            }
            Classifier::RandomForest { flat, .. } if !flat.is_empty() => {
                let votes = flat.iter().filter(|tree| walk(tree, row)).count();
                votes as f64 / flat.len() as f64
            }
            Classifier::GradientBoosting { model, packed } => {
                boost::sigmoid(model.raw_score_packed(row, packed))
            }
            Classifier::DecisionTree { .. }
            | Classifier::RandomForest { .. }
            | Classifier::GaussianNb { .. } => {
                let x = Array2::from_shape_vec((1, row.len()), row.to_vec()).expect("one row");
                self.score_batch(x.view())[0]
            }
        }
    }

    /// P(positive) for many rows.
    pub fn score_batch(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        match self {
            Classifier::Logistic { .. } => x
                .outer_iter()
                .map(|row| {
                    let row: Vec<f64> = row.to_vec();
                    self.score(&row)
                })
                .collect(),
            Classifier::DecisionTree { tree, .. } => tree
                .predict(&x)
                .iter()
                .map(|p| f64::from(u8::from(*p)))
                .collect(),
            Classifier::RandomForest {
                trees,
                tree_features,
                ..
            } => {
                let mut votes = vec![0.0; x.nrows()];
                for (tree, features) in trees.iter().zip(tree_features) {
                    let sub = x.select(Axis(1), features);
                    for (v, p) in votes.iter_mut().zip(tree.predict(&sub).iter()) {
                        *v += f64::from(u8::from(*p));
                    }
                }
                let n = trees.len().max(1) as f64;
                votes.into_iter().map(|v| v / n).collect()
            }
            Classifier::GradientBoosting { model, packed } => x
                .rows()
                .into_iter()
                .map(|row| {
                    boost::sigmoid(match row.as_slice() {
                        Some(slice) => model.raw_score_packed(slice, packed),
                        None => model.raw_score_packed(&row.to_vec(), packed),
                    })
                })
                .collect(),
            Classifier::GaussianNb { model, .. } => {
                let (proba, classes) = model.predict_proba(x);
                match classes.iter().position(|c| **c == 1) {
                    Some(col) => proba.column(col).to_vec(),
                    None => vec![0.0; x.nrows()],
                }
            }
        }
    }

    /// The score of a row and, written into `out` (replaced, so that
    /// scoring reuses one buffer), its per-feature contributions to the
    /// log-odds: weight × standardised value for a logistic model, the
    /// node-value changes along the row's path for boosted trees (one walk
    /// gives both). The flag is false, and `out` empty, for kinds that do
    /// not explain themselves. The score is [`Classifier::score`]'s, bit for bit.
    pub fn score_explained(&self, row: &[f64], out: &mut Vec<f64>) -> (f64, bool) {
        out.clear();
        match self {
            Classifier::Logistic {
                compiled: Some((w, _)),
                scaler,
                ..
            } => {
                out.extend(
                    w.iter()
                        .zip(row)
                        .zip(&scaler.mean)
                        .map(|((w, x), m)| w * (x - m)),
                );
                (self.score(row), true)
            }
            Classifier::GradientBoosting { model, .. } => {
                (boost::sigmoid(model.contributions(row, out)), true)
            }
            Classifier::Logistic { compiled: None, .. }
            | Classifier::DecisionTree { .. }
            | Classifier::RandomForest { .. }
            | Classifier::GaussianNb { .. } => (self.score(row), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;
    use rand::{Rng, SeedableRng};

    fn data() -> (Array2<f64>, Vec<bool>) {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let x = Array2::from_shape_fn((400, 5), |_| rng.gen_range(-2.0..2.0));
        let y = x
            .outer_iter()
            .map(|r| r[0] + 0.5 * r[3] * r[3] > 0.4)
            .collect();
        (x, y)
    }

    #[test]
    fn flattened_trees_score_like_linfa() {
        let (x, y) = data();
        let dataset = Dataset::new(x.clone(), Array1::from(y.clone()));
        let tree = DecisionTree::params()
            .max_depth(Some(6))
            .fit(&dataset)
            .unwrap();
        let forest = linfa_ensemble::EnsembleLearnerParams::new_fixed_rng(
            DecisionTree::params().max_depth(Some(5)),
            rand::rngs::SmallRng::seed_from_u64(1),
        )
        .ensemble_size(7)
        .bootstrap_proportion(0.7)
        .feature_proportion(0.6)
        .fit(&dataset)
        .unwrap();
        let mut single = Classifier::DecisionTree {
            tree,
            flat: Vec::new(),
        };
        let mut many = Classifier::RandomForest {
            trees: forest.models,
            tree_features: forest.model_features,
            flat: Vec::new(),
        };
        single.prepare(5).unwrap();
        many.prepare(5).unwrap();
        for classifier in [&single, &many] {
            let batch = classifier.score_batch(x.view());
            for (row, expected) in x.outer_iter().zip(&batch) {
                assert_eq!(classifier.score(row.as_slice().unwrap()), *expected);
            }
        }
        // The tree splits on column 3, so a row of width 2 is refused.
        assert!(matches!(
            single.prepare(2),
            Err(ClassifierError::Width { actual: 2, .. })
        ));
    }

    #[test]
    fn prepared_boosted_trees_walk_packed_indices_and_score_as_the_trees() {
        let (x, y) = data();
        let model = boost::BoostingParams::default()
            .trees(30)
            .depth(6)
            .check()
            .unwrap()
            .fit_with_validation(x.view(), &y, None)
            .unwrap();
        let mut c = Classifier::GradientBoosting {
            model: model.clone(),
            packed: Vec::new(),
        };
        c.prepare(5).unwrap();
        let Classifier::GradientBoosting { packed, .. } = &c else {
            unreachable!()
        };
        assert_eq!(packed.len(), model.trees());
        let batch = c.score_batch(x.view());
        for (row, from_batch) in x.outer_iter().zip(&batch) {
            let row = row.as_slice().unwrap();
            let bare = model.score(row).to_bits();
            assert_eq!(c.score(row).to_bits(), bare);
            assert_eq!(from_batch.to_bits(), bare);
        }
    }

    #[test]
    fn logistic_scores_are_oriented_to_the_positive_class() {
        let (x, y) = data();
        let scaler = Standardizer::fit(x.view());
        let model = linfa_logistic::LogisticRegression::default()
            .fit(&Dataset::new(
                scaler.transform(x.view()),
                Array1::from(y.clone()),
            ))
            .unwrap();
        let mut c = Classifier::Logistic {
            scaler,
            model,
            compiled: None,
        };
        let slow: Vec<f64> = x
            .outer_iter()
            .map(|r| c.score(r.as_slice().unwrap()))
            .collect();
        c.prepare(5).unwrap();
        let fast: Vec<f64> = x
            .outer_iter()
            .map(|r| c.score(r.as_slice().unwrap()))
            .collect();
        for (a, b) in slow.iter().zip(&fast) {
            assert!((a - b).abs() < 1e-9);
        }
        let order = metrics::ranking(&fast, &(0..fast.len() as u64).collect::<Vec<_>>());
        assert!(metrics::auc(&fast, &y) > 0.8, "{}", metrics::auc(&fast, &y));
        assert!(y[order[0]]);
    }
}
