//! The model artifact: one directory per model, holding `model.json` (format
//! version, feature schema, fitted features, party history, the linfa
//! classifiers and the model card) and `MODEL_CARD.md` for people.
//!
//! Loading checks the format version first, then the schema against what this
//! build's features produce, then every classifier's width. A corrupt or
//! mismatched file is refused with a message that says which check failed.

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Classifier, ClassifierError, ClassifierKind, Target};
use crate::features::history::PartyHistory;
use crate::features::{FeatureError, FeatureSchema, FeatureSet};

/// Bumped whenever the layout of `model.json` changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the artifact inside its directory.
pub const MODEL_FILE: &str = "model.json";
pub const CARD_FILE: &str = "MODEL_CARD.md";

/// One classifier per target that had labels to learn from. A target
/// without one (an authority whose labels name no fraud kind trains only
/// `any`) scores with the `any` classifier, or else with any trained one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Classifiers {
    #[serde(default)]
    pub undervaluation: Option<Classifier>,
    #[serde(default)]
    pub misdescription: Option<Classifier>,
    #[serde(default)]
    pub any: Option<Classifier>,
}

impl Classifiers {
    /// The classifier trained for `target`, if one was.
    pub fn trained(&self, target: Target) -> Option<&Classifier> {
        match target {
            Target::Undervaluation => self.undervaluation.as_ref(),
            Target::Misdescription => self.misdescription.as_ref(),
            Target::Any => self.any.as_ref(),
        }
    }

    /// The classifier that scores `target`: its own, else the `any`
    /// classifier, else the first trained one. `prepare` refuses an
    /// artifact with none, so a prepared model always has one.
    pub fn get(&self, target: Target) -> &Classifier {
        self.trained(target)
            .or(self.any.as_ref())
            .or(self.undervaluation.as_ref())
            .or(self.misdescription.as_ref())
            .expect("a prepared artifact has at least one classifier")
    }

    /// The target whose classifier scores `target`.
    pub fn source(&self, target: Target) -> Target {
        [
            target,
            Target::Any,
            Target::Undervaluation,
            Target::Misdescription,
        ]
        .into_iter()
        .find(|t| self.trained(*t).is_some())
        .unwrap_or(target)
    }

    fn all_mut(&mut self) -> [(Target, Option<&mut Classifier>); 3] {
        [
            (Target::Undervaluation, self.undervaluation.as_mut()),
            (Target::Misdescription, self.misdescription.as_mut()),
            (Target::Any, self.any.as_mut()),
        ]
    }
}

/// A held-out measurement of one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateMetrics {
    pub target: Target,
    pub kind: ClassifierKind,
    pub auc: f64,
    pub average_precision: f64,
    pub precision_at_10pct: f64,
    pub fit_seconds: f64,
    pub train_rows: usize,
    pub validation_rows: usize,
}

/// What a person needs to know about a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// FNV-1a of the training records in canonical form.
    pub data_fingerprint: String,
    pub source: String,
    pub examples: usize,
    pub labelled: usize,
    pub labelled_random: usize,
    pub positives: Vec<(Target, usize)>,
    pub first_lodged_at: Option<DateTime<Utc>>,
    pub last_lodged_at: Option<DateTime<Utc>>,
    /// Held-out comparison on the latest labelled rows (time split).
    pub comparison: Vec<CandidateMetrics>,
    pub chosen: Vec<(Target, ClassifierKind)>,
    pub why: String,
    pub training_seconds: f64,
    pub text_vocabulary: usize,
    pub text_classes: usize,
    pub history_sizes: [usize; 4],
    /// Targets left untrained, with why (too few labels of a class).
    #[serde(default)]
    pub skipped: Vec<(Target, String)>,
    /// Entries kept per entity field of the past record, for the card.
    #[serde(default)]
    pub entity_sizes: Vec<(String, usize)>,
}

/// A trained model, ready to score once prepared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    pub model_version: String,
    pub created_at: DateTime<Utc>,
    pub rates_version: String,
    pub regime_version: String,
    pub schema: FeatureSchema,
    pub features: FeatureSet,
    pub history: PartyHistory,
    pub classifiers: Classifiers,
    pub card: ModelCard,
    /// What an undervalued declaration owes by declared value, from what
    /// controls found (the prior for artifacts saved before it existed).
    #[serde(default)]
    pub value_stake: super::stake::ValueStake,
    /// Each feature's and score's distribution over the training traffic,
    /// for drift (none in artifacts saved before it existed).
    #[serde(default)]
    pub drift_baseline: Option<super::drift::DriftBaseline>,
}

/// Why an artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a model artifact ({source})")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: artifact format {found}, this build reads format {FORMAT_VERSION}; retrain or use a matching build"
    )]
    FormatVersion { path: PathBuf, found: u32 },
    #[error("{path}: feature schema {found} does not match the features it carries ({expected})")]
    Schema {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: {target} classifier: {source}")]
    Classifier {
        path: PathBuf,
        target: &'static str,
        #[source]
        source: ClassifierError,
    },
    #[error("{path}: no target has a classifier")]
    NoClassifier { path: PathBuf },
    #[error("{path}: {source}")]
    Features {
        path: PathBuf,
        #[source]
        source: FeatureError,
    },
}

/// The default model's artifact, as it was in `models/default` at build time.
static EMBEDDED_DEFAULT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/default/model.json"
));
/// How errors and logs name the embedded model.
pub const EMBEDDED_DEFAULT_NAME: &str = "(built-in default model)";

#[derive(Deserialize)]
struct VersionProbe {
    format_version: u32,
}

impl ModelArtifact {
    /// Checks the schema and classifiers and builds what scoring needs.
    pub fn prepare(&mut self, path: &Path) -> Result<(), ArtifactError> {
        self.history.record.freeze();
        self.features
            .prepare()
            .map_err(|source| ArtifactError::Features {
                path: path.to_owned(),
                source,
            })?;
        let expected = self.features.schema();
        if expected != self.schema {
            return Err(ArtifactError::Schema {
                path: path.to_owned(),
                found: self.schema.hash.clone(),
                expected: expected.hash,
            });
        }
        let width = self.schema.len();
        if Target::ALL
            .iter()
            .all(|t| self.classifiers.trained(*t).is_none())
        {
            return Err(ArtifactError::NoClassifier {
                path: path.to_owned(),
            });
        }
        for (target, classifier) in self.classifiers.all_mut() {
            let Some(classifier) = classifier else {
                continue;
            };
            classifier
                .prepare(width)
                .map_err(|source| ArtifactError::Classifier {
                    path: path.to_owned(),
                    target: target.name(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Loads and checks the artifact in directory `dir` (or the file itself).
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = if dir.is_dir() {
            dir.join(MODEL_FILE)
        } else {
            dir.to_owned()
        };
        let bytes = fs::read(&path).map_err(|source| ArtifactError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(&bytes, &path)
    }

    /// The default model, built into the binary (`models/default` at build
    /// time), so that an installed binary serves from any directory.
    pub fn embedded_default() -> Result<Self, ArtifactError> {
        Self::from_bytes(EMBEDDED_DEFAULT, Path::new(EMBEDDED_DEFAULT_NAME))
    }

    /// Reads an artifact from its JSON; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ArtifactError> {
        let path = path.to_owned();
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(|source| ArtifactError::Corrupt {
                path: path.clone(),
                source,
            })?;
        if probe.format_version != FORMAT_VERSION {
            return Err(ArtifactError::FormatVersion {
                path,
                found: probe.format_version,
            });
        }
        let mut artifact: ModelArtifact =
            serde_json::from_reader(BufReader::new(bytes)).map_err(|source| {
                ArtifactError::Corrupt {
                    path: path.clone(),
                    source,
                }
            })?;
        artifact.prepare(&path)?;
        Ok(artifact)
    }

    /// Writes `model.json` and `MODEL_CARD.md` into `dir` (created if needed).
    /// The JSON goes to a temporary file first, so a reader never sees half a model.
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ArtifactError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(MODEL_FILE);
        let tmp = dir.join(format!("{MODEL_FILE}.tmp"));
        {
            let file = fs::File::create(&tmp).map_err(io(&tmp))?;
            let mut out = BufWriter::new(file);
            serde_json::to_writer(&mut out, self).map_err(|source| ArtifactError::Corrupt {
                path: tmp.clone(),
                source,
            })?;
            out.flush().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        let card = dir.join(CARD_FILE);
        fs::write(&card, self.card_markdown()).map_err(io(&card))?;
        Ok(())
    }

    /// The model card as Markdown.
    pub fn card_markdown(&self) -> String {
        let c = &self.card;
        let mut md = String::new();
        md.push_str(&format!("# Model {}\n\n", self.model_version));
        md.push_str(&format!(
            "- created at: {}\n- artifact format: {}\n- feature schema: {} features, hash {}\n- EUR rates: {}; duty regime: {}\n",
            self.created_at.to_rfc3339(),
            self.format_version,
            self.schema.len(),
            self.schema.hash,
            self.rates_version,
            self.regime_version
        ));
        md.push_str(&format!(
            "- training data: {} (fingerprint {}), {} declarations lodged {} to {}, {} labelled ({} by random selection)\n",
            c.source,
            c.data_fingerprint,
            c.examples,
            c.first_lodged_at.map_or("-".into(), |t| t.to_rfc3339()),
            c.last_lodged_at.map_or("-".into(), |t| t.to_rfc3339()),
            c.labelled,
            c.labelled_random
        ));
        for (target, n) in &c.positives {
            md.push_str(&format!("- positive labels, {}: {n}\n", target.name()));
        }
        md.push_str(&format!(
            "- description classifier: {} tokens, {} HS6 classes; party history: {:?} (exporters, addresses, IOSS, declarants)\n- training took {:.1} s\n\n",
            c.text_vocabulary, c.text_classes, c.history_sizes, c.training_seconds
        ));
        md.push_str("## Held-out comparison (latest labelled declarations, time split)\n\n");
        md.push_str("| target | classifier | AUC | average precision | precision@10% | fit s | train rows | validation rows |\n|---|---|---|---|---|---|---|---|\n");
        for m in &c.comparison {
            md.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {} |\n",
                m.target.name(),
                m.kind.name(),
                m.auc,
                m.average_precision,
                m.precision_at_10pct,
                m.fit_seconds,
                m.train_rows,
                m.validation_rows
            ));
        }
        md.push_str("\n## Chosen\n\n");
        for (target, kind) in &c.chosen {
            md.push_str(&format!("- {}: {}\n", target.name(), kind.name()));
        }
        for (target, why) in &c.skipped {
            md.push_str(&format!(
                "- {}: not trained ({why}); scored by the {} classifier\n",
                target.name(),
                self.classifiers.source(*target).name()
            ));
        }
        md.push_str("\n## Undervaluation stake (evaded duties and taxes per EUR declared, from found values)\n\n| declared value up to | EUR evaded per EUR declared | found undervaluations |\n|---|---|---|\n");
        for band in &self.value_stake.bands {
            md.push_str(&format!(
                "| {} | {:.3} | {} |\n",
                band.up_to_eur
                    .map_or("above".into(), |eur| format!("EUR {eur:.0}")),
                band.evaded_per_declared,
                band.found
            ));
        }
        if !c.entity_sizes.is_empty() {
            md.push_str("\n## Past record kept (entries per field)\n\n");
            for (field, n) in &c.entity_sizes {
                md.push_str(&format!("- {field}: {n}\n"));
            }
        }
        md.push_str(&format!("\n{}\n", c.why));
        md
    }
}
