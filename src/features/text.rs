//! Description → HS6 classifier: multinomial naive Bayes fitted with linfa on
//! bag-of-words counts, compiled into a token table for sparse scoring.
//!
//! Training data are the declarations' own (description, declared HS6) pairs:
//! most traders describe and classify honestly, so a declared HS6 that the
//! description makes unlikely is a misdescription signal.
//!
//! linfa's `MultinomialNb` needs a dense matrix. Its token likelihoods depend
//! only on the per-class token totals, so it is fitted on one aggregated row
//! per class (classes × vocabulary, small) and the class priors come from the
//! class counts. The fitted likelihoods are then read back through the public
//! `NaiveBayes::joint_log_likelihood` on unit rows and stored per token, so
//! scoring a description costs a few table look-ups, not a dense product.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap as HashMap;

use linfa::prelude::*;
use linfa_bayes::{MultinomialNb, NaiveBayes};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::domain::Hs6;

/// Lower-cased alphanumeric words of two or more characters.
pub fn tokens(description: &str) -> impl Iterator<Item = String> + '_ {
    description
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct TextParams {
    /// Largest vocabulary (most frequent tokens by document frequency).
    pub max_vocabulary: usize,
    /// Tokens seen in fewer documents are ignored.
    pub min_document_frequency: u32,
    /// Most frequent declared HS6 codes kept as classes.
    pub max_classes: usize,
    /// Codes with fewer examples are not classes.
    pub min_class_examples: u32,
    /// Additive (Laplace) smoothing.
    pub alpha: f64,
}

impl Default for TextParams {
    fn default() -> Self {
        Self {
            max_vocabulary: 5000,
            min_document_frequency: 3,
            max_classes: 400,
            min_class_examples: 20,
            alpha: 1.0,
        }
    }
}

/// Errors while fitting or loading the classifier.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("the text classifier needs at least two HS6 codes with enough examples, found {0}")]
    TooFewClasses(usize),
    #[error("fitting the naive Bayes model: {0}")]
    Fit(String),
    #[error("text classifier tables are inconsistent: {0}")]
    Inconsistent(String),
}

/// The fitted classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextClassifier {
    /// Token → index into the rows of `token_log_prob`.
    vocabulary: Vec<String>,
    /// Class index → HS6.
    classes: Vec<Hs6Code>,
    /// Log prior of each class (from the class counts).
    log_prior: Vec<f64>,
    /// `vocabulary.len() × classes.len()`, row-major: ln P(token | class).
    token_log_prob: Vec<f64>,
    /// The linfa model the table was read from, kept for provenance and checks.
    naive_bayes: MultinomialNb<f64, usize>,
    #[serde(skip)]
    index: HashMap<String, u32>,
    /// Identifies these tables in the per-thread caches of readings
    /// ([`TextClassifier::read`]); 0 until fitted or prepared.
    #[serde(skip)]
    id: u64,
}

/// Ids of fitted or prepared classifiers: a cache filled by one is never
/// read for another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The classifier's best candidates, best first: at most three, kept inline
/// (no allocation, no shared counter to bump from several threads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidates {
    best: [(Hs6, f64); 3],
    len: u8,
}

impl Candidates {
    /// The first three of `ranked`.
    pub fn new(ranked: &[(Hs6, f64)]) -> Self {
        let mut best = [(Hs6::PADDING, 0.0); 3];
        let len = ranked.len().min(3);
        best[..len].copy_from_slice(&ranked[..len]);
        Self {
            best,
            len: len as u8,
        }
    }
}

impl std::ops::Deref for Candidates {
    type Target = [(Hs6, f64)];
    fn deref(&self) -> &[(Hs6, f64)] {
        &self.best[..usize::from(self.len)]
    }
}

/// What the classifier reads in a description, given the declared code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// P(declared HS6 | description), when the code is a class.
    pub p_declared: Option<f64>,
    /// P(the declared heading | description).
    pub p_heading: f64,
    /// The best three candidates, best first.
    pub predicted: Candidates,
}

/// Readings per thread, by (description, declared HS6). Traffic repeats
/// itself (the same listings ship thousands of times), so most descriptions
/// are read once per thread rather than once per item. Bounded: emptied when
/// full.
#[derive(Default)]
struct ReadingCache {
    owner: u64,
    entries: HashMap<u64, (Box<str>, Hs6, Reading)>,
    posterior: Posterior,
}

/// Readings a thread keeps: ~64 K descriptions, a few MB.
const READING_CACHE_ENTRIES: usize = 1 << 16;

thread_local! {
    static READINGS: RefCell<ReadingCache> = RefCell::new(ReadingCache::default());
}

fn reading_key(description: &str, hs6: Hs6) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    description.hash(&mut h);
    hs6.hash(&mut h);
    h.finish()
}

/// HS6 as it is stored in artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hs6Code(pub Hs6);

impl TryFrom<String> for Hs6Code {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Hs6::parse(&s).map(Hs6Code)
    }
}

impl From<Hs6Code> for String {
    fn from(c: Hs6Code) -> String {
        c.0.as_str().to_owned()
    }
}

/// The classifier's view of one description.
#[derive(Debug, Clone, Default)]
pub struct Posterior {
    probabilities: Vec<f64>,
}

impl TextClassifier {
    /// Fits on (description, declared HS6) pairs.
    pub fn fit<'a>(
        pairs: impl Iterator<Item = (&'a str, Hs6)> + Clone,
        params: TextParams,
    ) -> Result<Self, TextError> {
        // Classes: the most frequent declared codes.
        let mut class_counts: HashMap<Hs6, u32> = HashMap::default();
        let mut document_frequency: HashMap<String, u32> = HashMap::default();
        for (description, hs6) in pairs.clone() {
            *class_counts.entry(hs6).or_default() += 1;
            let mut seen: Vec<String> = tokens(description).collect();
            seen.sort_unstable();
            seen.dedup();
            for token in seen {
                *document_frequency.entry(token).or_default() += 1;
            }
        }
        let mut classes: Vec<(Hs6, u32)> = class_counts
            .into_iter()
            .filter(|(_, n)| *n >= params.min_class_examples)
            .collect();
        classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        classes.truncate(params.max_classes);
        if classes.len() < 2 {
            return Err(TextError::TooFewClasses(classes.len()));
        }
        let class_index: HashMap<Hs6, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (*c, i))
            .collect();

        let mut vocabulary: Vec<(String, u32)> = document_frequency
            .into_iter()
            .filter(|(_, df)| *df >= params.min_document_frequency)
            .collect();
        vocabulary.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        vocabulary.truncate(params.max_vocabulary);
        // An empty vocabulary (no descriptions at all) still yields a model of
        // priors, with one never-seen placeholder token for linfa.
        if vocabulary.is_empty() {
            vocabulary.push(("\u{0}".to_owned(), 0));
        }
        let index: HashMap<String, u32> = vocabulary
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.clone(), i as u32))
            .collect();
        let v = vocabulary.len();
        let k = classes.len();

        // One aggregated row of token counts per class.
        let mut counts = Array2::<f64>::zeros((k, v));
        for (description, hs6) in pairs {
            let Some(&c) = class_index.get(&hs6) else {
                continue;
            };
            for token in tokens(description) {
                if let Some(&t) = index.get(&token) {
                    counts[(c, t as usize)] += 1.0;
                }
            }
        }
        let targets = Array1::from_iter(0..k);
        let dataset = Dataset::new(counts, targets);
        let naive_bayes = {
            // linfa-bayes 0.8.1 leaves a `dbg!` of every class histogram in
            // `fit`; keep it off our stderr.
            let _quiet = gag::Gag::stderr().ok();
            MultinomialNb::params()
                .alpha(params.alpha)
                .fit(&dataset)
                .map_err(|e| TextError::Fit(e.to_string()))?
        };

        let total: f64 = classes.iter().map(|(_, n)| f64::from(*n)).sum();
        let log_prior = classes
            .iter()
            .map(|(_, n)| (f64::from(*n) / total).ln())
            .collect();
        let token_log_prob = read_token_table(&naive_bayes, v, k)?;
        Ok(Self {
            vocabulary: vocabulary.into_iter().map(|(t, _)| t).collect(),
            classes: classes.into_iter().map(|(c, _)| Hs6Code(c)).collect(),
            log_prior,
            token_log_prob,
            naive_bayes,
            index,
            id: next_id(),
        })
    }

    /// Rebuilds the look-up index after deserialising and checks the tables
    /// against the linfa model on a sample of tokens.
    pub fn prepare(&mut self) -> Result<(), TextError> {
        let v = self.vocabulary.len();
        let k = self.classes.len();
        if self.log_prior.len() != k || self.token_log_prob.len() != v * k || k < 2 {
            return Err(TextError::Inconsistent(format!(
                "{v} tokens, {k} classes, {} priors, {} likelihoods",
                self.log_prior.len(),
                self.token_log_prob.len()
            )));
        }
        let sample: Vec<usize> = (0..v).step_by((v / 8).max(1)).take(8).collect();
        let check = read_rows(&self.naive_bayes, &sample, v, k)?;
        for (row, t) in sample.iter().enumerate() {
            for c in 0..k {
                let stored = self.token_log_prob[t * k + c];
                if (stored - check[row * k + c]).abs() > 1e-6 {
                    return Err(TextError::Inconsistent(format!(
                        "token {t} class {c}: table {stored}, model {}",
                        check[row * k + c]
                    )));
                }
            }
        }
        self.index = self
            .vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        self.id = next_id();
        Ok(())
    }

    /// What the description says about the declared code: the same answer as
    /// [`TextClassifier::posterior`] followed by `probability_of`,
    /// `heading_probability` and `top(3)`, remembered per thread.
    pub fn read(&self, description: &str, hs6: Hs6) -> Reading {
        READINGS.with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                // Re-entered on this thread (cannot happen today): no cache.
                return self.read_uncached(description, hs6, &mut Posterior::default());
            };
            let cache = &mut *cache;
            if cache.owner != self.id || self.id == 0 {
                cache.entries.clear();
                cache.owner = self.id;
            }
            let key = reading_key(description, hs6);
            if let Some((text, code, reading)) = cache.entries.get(&key)
                && *code == hs6
                && **text == *description
            {
                return *reading;
            }
            let reading = self.read_uncached(description, hs6, &mut cache.posterior);
            if cache.entries.len() >= READING_CACHE_ENTRIES {
                cache.entries.clear();
            }
            cache
                .entries
                .insert(key, (description.into(), hs6, reading));
            reading
        })
    }

    fn read_uncached(&self, description: &str, hs6: Hs6, posterior: &mut Posterior) -> Reading {
        self.posterior(description, posterior);
        Reading {
            p_declared: self.probability_of(posterior, hs6),
            p_heading: self.heading_probability(posterior, hs6),
            predicted: Candidates::new(&self.top(posterior, 3)),
        }
    }

    pub fn classes(&self) -> impl Iterator<Item = Hs6> + '_ {
        self.classes.iter().map(|c| c.0)
    }

    pub fn vocabulary_len(&self) -> usize {
        self.vocabulary.len()
    }

    /// Class probabilities for a description (the priors when no token is known).
    pub fn posterior(&self, description: &str, out: &mut Posterior) {
        let k = self.classes.len();
        out.probabilities.clear();
        out.probabilities.extend_from_slice(&self.log_prior);
        let mut lowered = String::new();
        for word in description.split(|c: char| !c.is_alphanumeric()) {
            if word.chars().nth(1).is_none() {
                continue;
            }
            // Same tokens as `tokens`, without an allocation per ASCII word.
            let token = if word.is_ascii() {
                lowered.clear();
                lowered.push_str(word);
                lowered.make_ascii_lowercase();
                lowered.as_str()
            } else {
                lowered = word.to_lowercase();
                lowered.as_str()
            };
            if let Some(&t) = self.index.get(token) {
                let row = &self.token_log_prob[t as usize * k..(t as usize + 1) * k];
                for (acc, lp) in out.probabilities.iter_mut().zip(row) {
                    *acc += lp;
                }
            }
        }
        let max = out
            .probabilities
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for p in &mut out.probabilities {
            *p = (*p - max).exp();
            sum += *p;
        }
        for p in &mut out.probabilities {
            *p /= sum;
        }
    }

    /// P(class = hs6), or `None` when the code is not a class.
    pub fn probability_of(&self, posterior: &Posterior, hs6: Hs6) -> Option<f64> {
        self.classes
            .iter()
            .position(|c| c.0 == hs6)
            .map(|i| posterior.probabilities[i])
    }

    /// P(the goods are under this heading): the sum over its classes.
    pub fn heading_probability(&self, posterior: &Posterior, hs6: Hs6) -> f64 {
        self.classes
            .iter()
            .zip(&posterior.probabilities)
            .filter(|(c, _)| c.0.heading_number() == hs6.heading_number())
            .map(|(_, p)| p)
            .sum()
    }

    /// The `n` most probable classes, best first (ties by code).
    pub fn top(&self, posterior: &Posterior, n: usize) -> Vec<(Hs6, f64)> {
        // Ranked before `b`: more probable, or as probable with a lower code.
        let before = |a: &(Hs6, f64), b: &(Hs6, f64)| a.1 > b.1 || (a.1 == b.1 && a.0 < b.0);
        let mut ranked: Vec<(Hs6, f64)> = Vec::with_capacity(n + 1);
        for (c, p) in self.classes.iter().zip(&posterior.probabilities) {
            let candidate = (c.0, *p);
            if ranked.len() == n && !ranked.last().is_some_and(|last| before(&candidate, last)) {
                continue;
            }
            let at = ranked
                .iter()
                .position(|r| before(&candidate, r))
                .unwrap_or(ranked.len());
            ranked.insert(at, candidate);
            ranked.truncate(n);
        }
        ranked
    }
}

/// ln P(token | class) for every token, read from the fitted linfa model.
fn read_token_table(
    model: &MultinomialNb<f64, usize>,
    v: usize,
    k: usize,
) -> Result<Vec<f64>, TextError> {
    let all: Vec<usize> = (0..v).collect();
    let mut table = Vec::with_capacity(v * k);
    for block in all.chunks(256) {
        table.extend(read_rows(model, block, v, k)?);
    }
    Ok(table)
}

/// ln P(token | class) for the given tokens, row-major (token, class):
/// `joint_log_likelihood(unit row) - joint_log_likelihood(zero row)`.
fn read_rows(
    model: &MultinomialNb<f64, usize>,
    tokens: &[usize],
    v: usize,
    k: usize,
) -> Result<Vec<f64>, TextError> {
    let mut x = Array2::<f64>::zeros((tokens.len() + 1, v));
    for (row, t) in tokens.iter().enumerate() {
        x[(row, *t)] = 1.0;
    }
    let jll = model.joint_log_likelihood(x.view());
    let mut out = vec![0.0; tokens.len() * k];
    for c in 0..k {
        let column = jll
            .get(&c)
            .ok_or_else(|| TextError::Inconsistent(format!("class {c} missing from the model")))?;
        let base = column[tokens.len()];
        for row in 0..tokens.len() {
            out[row * k + c] = column[row] - base;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings for the few examples of `pairs`.
    fn small_params() -> TextParams {
        TextParams {
            min_class_examples: 5,
            ..TextParams::default()
        }
    }

    fn pairs() -> Vec<(&'static str, Hs6)> {
        let phone = Hs6::parse("851713").unwrap();
        let case = Hs6::parse("392690").unwrap();
        let shirt = Hs6::parse("610910").unwrap();
        let mut v = Vec::new();
        for _ in 0..30 {
            v.push(("Smartphone 128GB android", phone));
            v.push(("Android mobile phone", phone));
            v.push(("Phone case silicone", case));
            v.push(("TPU phone cover", case));
            v.push(("Cotton T-shirt", shirt));
            v.push(("Men's cotton tee", shirt));
        }
        v
    }

    #[test]
    fn classifies_descriptions_and_round_trips() {
        let data = pairs();
        let params = small_params();
        let model = TextClassifier::fit(data.iter().copied(), params).unwrap();
        let mut post = Posterior::default();
        model.posterior("silicone case for phone", &mut post);
        let (best, p) = model.top(&post, 1)[0];
        assert_eq!(best.as_str(), "392690");
        assert!(p > 0.8, "{p}");
        model.posterior("cotton shirt", &mut post);
        assert!(
            model
                .probability_of(&post, Hs6::parse("851713").unwrap())
                .unwrap()
                < 0.05
        );

        let json = serde_json::to_string(&model).unwrap();
        let mut back: TextClassifier = serde_json::from_str(&json).unwrap();
        back.prepare().unwrap();
        let mut post2 = Posterior::default();
        back.posterior("cotton shirt", &mut post2);
        model.posterior("cotton shirt", &mut post);
        assert_eq!(post.probabilities, post2.probabilities);
    }

    #[test]
    fn cached_readings_equal_fresh_ones_and_never_cross_models() {
        let params = small_params();
        let one = TextClassifier::fit(pairs().iter().copied(), params).unwrap();
        // A second model that reads phones as cases.
        let swapped: Vec<(&str, Hs6)> = pairs()
            .into_iter()
            .map(|(d, c)| match c.as_str() {
                "851713" => (d, Hs6::parse("392690").unwrap()),
                "392690" => (d, Hs6::parse("851713").unwrap()),
                _ => (d, c),
            })
            .collect();
        let two = TextClassifier::fit(swapped.iter().copied(), params).unwrap();
        let phone = Hs6::parse("851713").unwrap();
        let descriptions = [
            "Android mobile phone",
            "TPU phone cover",
            "cotton tee",
            "",
            "??",
        ];
        for _ in 0..3 {
            for model in [&one, &two] {
                for d in descriptions {
                    let fresh = model.read_uncached(d, phone, &mut Posterior::default());
                    assert_eq!(model.read(d, phone), fresh, "{d:?}");
                }
            }
        }
        assert_ne!(
            one.read("Android mobile phone", phone).predicted[0].0,
            two.read("Android mobile phone", phone).predicted[0].0
        );
    }

    #[test]
    fn tampered_tables_are_refused() {
        let params = small_params();
        let model = TextClassifier::fit(pairs().iter().copied(), params).unwrap();
        let mut bad = model.clone();
        bad.token_log_prob[0] += 1.0;
        assert!(bad.prepare().is_err());
        let mut short = model;
        short.token_log_prob.pop();
        assert!(short.prepare().is_err());
    }
}
