//! `parcel-risk train`: fit a model from TrainingExample JSONL or CSV.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::load_examples;
use crate::domain::Declaration;
use crate::features::window::SplitSignal;
use crate::io::Format;
use crate::model::ClassifierKind;
use crate::model::ModelArtifact;
use crate::model::train::{TrainParams, train};
use crate::scoring::Scorer;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training data: TrainingExample lines (JSONL) or CSV.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Output directory, e.g. models/candidate.
    #[arg(long)]
    pub out: PathBuf,
    /// Model version string (default: the directory name and the time).
    #[arg(long)]
    pub version: Option<String>,
    /// Only declarations lodged before this instant (RFC 3339 or YYYY-MM-DD), for a time split.
    #[arg(long, value_parser = super::parse_instant)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Classifier kinds to compare (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ClassifierKind::ALL.to_vec())]
    pub candidates: Vec<ClassifierKind>,
    /// Share of the latest labelled declarations held out for the comparison.
    #[arg(long, default_value_t = 0.2)]
    pub validation_share: f64,
    /// Seed of the random forest.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Gradient boosting's shrinkage per tree (library default 0.1).
    #[arg(long)]
    pub boosting_learning_rate: Option<f64>,
    /// Most boosting rounds (library default 400).
    #[arg(long)]
    pub boosting_max_trees: Option<usize>,
    /// Boosting keeps the fewest trees whose validation log-loss is within
    /// this share of the lowest (library default 0.002; 0 keeps the lowest).
    #[arg(long)]
    pub boosting_stop_tolerance: Option<f64>,
    /// How much the duty and VAT a control recovered weighs each
    /// misdescription label in boosting, 0 to 1: 1 counts it by its share of
    /// the mean (from a quarter to four times), 0 counts every label once.
    #[arg(long, default_value_t = 1.0)]
    pub misdescription_revenue_weight: f64,
    /// Replace a model already in --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    // Before minutes of training, not after: a model that serves may live there.
    let existing = args.out.join(crate::model::artifact::MODEL_FILE);
    anyhow::ensure!(
        args.force || !existing.exists(),
        "{} holds a model already; pass --force to replace it, or choose another --out",
        args.out.display()
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.misdescription_revenue_weight),
        "--misdescription-revenue-weight {} is outside 0..=1",
        args.misdescription_revenue_weight
    );
    let started = Instant::now();
    let (mut examples, rejected) = load_examples(&args.data, args.format, super::Truth::Drop)?;
    if let Some(until) = args.until {
        examples.retain(|e| e.declaration.lodged_at < until);
    }
    anyhow::ensure!(
        !examples.is_empty(),
        "no usable declarations in {}",
        args.data.display()
    );
    let loaded = started.elapsed();
    let mut params = TrainParams {
        candidates: args.candidates,
        validation_share: args.validation_share,
        seed: args.seed,
        misdescription_revenue_weight: args.misdescription_revenue_weight,
        ..TrainParams::default()
    };
    if let Some(rate) = args.boosting_learning_rate {
        params.boosting = params.boosting.learning_rate(rate);
    }
    if let Some(tolerance) = args.boosting_stop_tolerance {
        params.boosting = params.boosting.stop_tolerance(tolerance);
    }
    if let Some(trees) = args.boosting_max_trees {
        params.boosting_max_trees = trees;
    }
    let name = args
        .out
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let version = args
        .version
        .unwrap_or_else(|| format!("{name}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    let n = examples.len();
    // The latest declarations, to prove the written artifact on.
    let proof: Vec<Declaration> = examples
        .iter()
        .skip(n.saturating_sub(PROOF_DECLARATIONS))
        .map(|e| e.declaration.clone())
        .collect();
    let artifact = train(examples, &params, &args.data.display().to_string(), version)
        .context("training failed")?;
    artifact.save(&args.out)?;
    let proved = prove_round_trip(artifact, &args.out, &proof)?;
    eprintln!("{}", proved.card_markdown());
    eprintln!(
        "read {} back: it scores the latest {} declarations identically",
        args.out.display(),
        proof.len()
    );
    eprintln!(
        "trained on {n} declarations ({rejected} rejected) in {:.1} s (reading {:.1} s); wrote {}",
        started.elapsed().as_secs_f64(),
        loaded.as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Declarations `train` scores with the model it wrote and with the one it
/// read back.
const PROOF_DECLARATIONS: usize = 2_000;

/// Loads the artifact written to `dir` and checks that it scores every
/// declaration exactly as the model in memory does (every score, the
/// priority, the reason codes): what is served is what was trained. Returns
/// the model read back.
pub fn prove_round_trip(
    trained: ModelArtifact,
    dir: &std::path::Path,
    declarations: &[Declaration],
) -> anyhow::Result<std::sync::Arc<ModelArtifact>> {
    let loaded = ModelArtifact::load(dir).with_context(|| {
        format!(
            "the artifact just written to {} cannot be read back",
            dir.display()
        )
    })?;
    let original = Scorer::new(std::sync::Arc::new(trained));
    let reread = Scorer::new(std::sync::Arc::new(loaded));
    for d in declarations {
        let a = original.score(d, SplitSignal::default());
        let b = reread.score(d, SplitSignal::default());
        let same = a.overall_score.to_bits() == b.overall_score.to_bits()
            && a.undervaluation_score.to_bits() == b.undervaluation_score.to_bits()
            && a.misdescription_score.to_bits() == b.misdescription_score.to_bits()
            && a.priority_value.to_bits() == b.priority_value.to_bits()
            && a.reasons
                .iter()
                .map(|r| r.code)
                .eq(b.reasons.iter().map(|r| r.code));
        anyhow::ensure!(
            same,
            "the artifact written to {} scores declaration {} differently from the trained model \
             (overall {} vs {}); it must not be served",
            dir.display(),
            d.declaration_id,
            a.overall_score,
            b.overall_score
        );
    }
    Ok(reread.model().clone())
}
