//! Features, computed the same way for training, the service and batch
//! rescoring. Pure: a declaration plus fitted tables in, numbers out.
//!
//! Extraction has two steps. [`FeatureSet::signals`] gathers the facts about a
//! declaration an officer can read (ratios to reference values with the cell
//! they come from, the HS6 the description suggests, party history, split
//! siblings); reason codes are built from these. [`FeatureSet::row`] turns the
//! signals into the model's numeric row, in the order of [`FeatureSchema`].

pub mod attributes;
pub mod history;
pub mod recent;
pub mod record;
pub mod reference;
pub mod text;
pub mod window;

use serde::{Deserialize, Serialize};

use crate::domain::codes::distinct_hs6;
use crate::domain::regime::Regime;
use crate::domain::validation::{H7_THRESHOLD_EUR_CENTS, is_blank};
use crate::domain::{
    CarrierChannel, DataFlag, Declaration, Hs6, InspectionResult, RateTable, SelectionReason,
};

use attributes::AttributeEncoder;
use history::{PartyHistory, PartyKeys, PartySignal, fnv1a};
use reference::{Reference, ReferenceTable};
use text::TextClassifier;
use window::SplitSignal;

/// Moves a bounded table's entries into a fresh table sized for `limit`
/// keys; called once an eviction has made room in it.
///
/// Evicting with `retain` alone is not enough: in a table this full, most
/// removed entries leave tombstones that keep counting against its spare
/// room, and hashbrown clears them in place only while the table is under
/// half full, so past that the next insert that finds no room doubles it.
/// Modelled on the address window (2^17 keys, each a new one): after about
/// 2 M keys it had grown to 2^19 buckets, twice the memory its bound needs
/// (26 MB instead of 13, times 16 shards). Per shard, that is about nine
/// days of Liège's traffic in a long-running service.
pub(crate) fn compact<V>(table: &mut rustc_hash::FxHashMap<u64, V>, limit: usize) {
    let mut fresh =
        rustc_hash::FxHashMap::with_capacity_and_hasher(limit.max(table.len()), Default::default());
    fresh.extend(table.drain());
    *table = fresh;
}

/// The base features, in row order. Attribute indicators follow them.
pub const BASE_FEATURES: &[&str] = &[
    "log_declared_eur",
    "log_items",
    "distinct_hs6_share",
    "log_mass_kg",
    "uv_min_log_ratio_kg",
    "uv_wmean_log_ratio_kg",
    "uv_min_log_ratio_article",
    "uv_below_p05_value_share",
    "uv_value_gap_share",
    "thr_near_150",
    "thr_over_150",
    "thr_gap_to_150",
    "thr_round_value_share",
    "txt_p_declared_min",
    "txt_p_heading_min",
    "txt_other_chapter_max",
    "desc_vague_share",
    "desc_missing_share",
    "wgt_mass_z_max",
    "wgt_mass_z_min",
    "cls_duty_delta_max",
    "cls_unknown_hs6",
    "ens_mass_mismatch",
    "fis_procedure_inconsistent",
    "fis_ioss_present",
    "pty_exporter_fraud_rate",
    "pty_exporter_uv_rate",
    "pty_exporter_md_rate",
    "pty_exporter_log_seen",
    "pty_exporter_caught_before",
    "pty_address_fraud_rate",
    "pty_address_log_seen",
    "pty_address_log_names",
    "pty_ioss_fraud_rate",
    "pty_ioss_log_exporters",
    "pty_declarant_fraud_rate",
    "spl_log_buyer_parcels",
    "spl_same_seller_parcels",
    "spl_combined_over_150",
    "org_exporter_cn",
    "chn_postal",
    "chn_air_cargo",
    "wgt_implausible_parcel",
];

/// The ordered feature names a model expects, and their hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSchema {
    pub names: Vec<String>,
    pub hash: String,
}

impl FeatureSchema {
    pub fn new(names: Vec<String>) -> Self {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hash = format!("{:016x}", fnv1a(&refs));
        Self { names, hash }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Reference values by cell.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct References {
    pub eur_per_kg: ReferenceTable,
    pub eur_per_article: ReferenceTable,
    pub grams_per_article: ReferenceTable,
    /// EUR per kg of what random controls found, by declared HS6 × origin:
    /// the true value where declared values are depressed across a whole
    /// cell. Used for the stake (revenue at risk) only, never as a model
    /// input: these are labels, and a row's own result would leak into it.
    /// Empty in artifacts made before it existed.
    #[serde(default)]
    pub found_eur_per_kg: ReferenceTable,
}

/// Controls found in a cell before the found values weigh as much as the
/// declared references.
const FOUND_WEIGHT_K: f64 = 30.0;

/// Everything fitted that features need, except the party history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureSet {
    pub references: References,
    pub text: TextClassifier,
    pub attributes: AttributeEncoder,
    /// The fields of the past record; its counts are in the history.
    #[serde(default)]
    pub record: record::RecordFields,
}

/// What the features know about one goods item.
#[derive(Debug, Clone)]
pub struct ItemSignals {
    pub goods_item_number: u32,
    pub hs6: Hs6,
    pub declared_eur: f64,
    /// Reference estimate of the item's value, EUR (risk evidence only).
    pub expected_eur: f64,
    /// The value the stake is computed on: the reference estimate blended
    /// with what random controls found in the cell, EUR.
    pub stake_eur: f64,
    pub declared_eur_per_kg: Option<f64>,
    /// ln(declared EUR/kg) − reference median, with the reference used.
    pub per_kg: Option<(f64, Reference)>,
    pub per_article: Option<(f64, Reference)>,
    /// Robust z-score of ln(grams per article) against the declared HS6.
    pub mass: Option<(f64, Reference)>,
    /// P(declared HS6 | description), when the code is a class of the classifier.
    pub p_declared: Option<f64>,
    pub p_heading: f64,
    /// The classifier's best candidates.
    pub predicted: text::Candidates,
    pub vague: bool,
    pub missing_description: bool,
    /// MFN duty of the best candidate minus that of the declared code, points.
    pub duty_delta_pct: f64,
    pub unknown_hs6: bool,
    pub round_value: bool,
}

/// What the features know about one declaration.
#[derive(Debug, Clone)]
pub struct Signals {
    pub declared_eur: f64,
    pub expected_eur: f64,
    pub total_mass_kg: f64,
    pub items: Vec<ItemSignals>,
    pub exporter: PartySignal,
    pub address: PartySignal,
    pub ioss: PartySignal,
    pub declarant: PartySignal,
    pub address_names: usize,
    pub ioss_exporters: usize,
    pub split: SplitSignal,
    /// The past record, field by field (see [`record::RecordFields`]).
    pub record: record::RecordSignals,
}

/// `ln(1 + n)` of a count, from a table for the small counts most rows
/// hold (the same values `f64::ln_1p` gives: it filled the table).
fn ln_1p_count(n: u32) -> f64 {
    const SMALL: usize = 4096;
    static TABLE: std::sync::LazyLock<Box<[f64]>> =
        std::sync::LazyLock::new(|| (0..SMALL).map(|n| (n as f64).ln_1p()).collect());
    TABLE
        .get(n as usize)
        .copied()
        .unwrap_or_else(|| f64::from(n).ln_1p())
}

fn clip(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(lo, hi) }
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

impl FeatureSet {
    /// The schema of rows this set produces.
    pub fn schema(&self) -> FeatureSchema {
        let mut names: Vec<String> = BASE_FEATURES.iter().map(|s| (*s).to_owned()).collect();
        names.extend(self.attributes.names());
        names.extend(self.record.names());
        FeatureSchema::new(names)
    }

    /// Gathers the signals of a declaration. `history` is the party history as
    /// of the declaration's lodging; `split` what the window says about it.
    pub fn signals(
        &self,
        d: &Declaration,
        history: &PartyHistory,
        keys: &PartyKeys,
        split: SplitSignal,
        rates: &RateTable,
        regime: &Regime,
    ) -> Signals {
        self.signals_live(d, history, keys, split, None, rates, regime)
    }

    /// As [`FeatureSet::signals`], with what live traffic has added to the
    /// past record since training ([`record::LiveRead`], read before `d`
    /// was added).
    #[allow(clippy::too_many_arguments)]
    pub fn signals_live(
        &self,
        d: &Declaration,
        history: &PartyHistory,
        keys: &PartyKeys,
        split: SplitSignal,
        live: Option<&record::LiveRead>,
        rates: &RateTable,
        regime: &Regime,
    ) -> Signals {
        let seller_country = d.exporter.country();
        let mut items = Vec::with_capacity(d.items.len());
        for item in &d.items {
            let declared_eur = rates.to_eur(item.intrinsic_value).unwrap_or(0.0);
            let articles = f64::from(item.quantity.max(1));
            let kg = item.gross_mass_g as f64 / 1000.0;
            let origin = item.country_of_origin.or(seller_country);
            let declared_eur_per_kg = (kg > 0.0).then(|| declared_eur / kg);
            let per_kg = declared_eur_per_kg.and_then(|v| {
                let r = self.references.eur_per_kg.lookup(item.hs6, origin)?;
                Some((v.max(1e-4).ln() - r.stats.median, r))
            });
            let per_article = self
                .references
                .eur_per_article
                .lookup(item.hs6, origin)
                .map(|r| ((declared_eur / articles).max(1e-4).ln() - r.stats.median, r));
            let mass = (item.gross_mass_g > 0)
                .then(|| self.references.grams_per_article.lookup(item.hs6, None))
                .flatten()
                .map(|r| {
                    let z = ((item.gross_mass_g as f64 / articles).ln() - r.stats.median)
                        / r.stats.spread();
                    (z, r)
                });
            // Expected value: the reference EUR/kg applied to the declared mass
            // (mass is hard to fake), blended with the per-article reference.
            let by_mass = per_kg.map(|(_, r)| r.stats.median.exp() * kg);
            let by_article = per_article.map(|(_, r)| r.stats.median.exp() * articles);
            let expected_eur = match (by_mass, by_article) {
                (Some(a), Some(b)) => (a * b).sqrt(),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => declared_eur,
            };

            let stake_eur = match (
                kg > 0.0,
                self.references.found_eur_per_kg.lookup(item.hs6, origin),
            ) {
                (true, Some(found)) => {
                    let w = f64::from(found.stats.n) / (f64::from(found.stats.n) + FOUND_WEIGHT_K);
                    w * found.stats.median.exp() * kg + (1.0 - w) * expected_eur
                }
                (_, _) => expected_eur,
            };

            let text::Reading {
                p_declared,
                p_heading,
                predicted,
            } = self.text.read(&item.description, item.hs6);
            let duty_delta_pct = predicted.first().map_or(0.0, |(best, _)| {
                regime.mfn_duty_pct(*best) - regime.mfn_duty_pct(item.hs6)
            });
            let missing_description = is_blank(&item.description);
            let minor_per_major = 10i64.pow(u32::from(
                rates
                    .rate(item.intrinsic_value.currency)
                    .map_or(2, |r| r.minor_digits),
            ));
            items.push(ItemSignals {
                goods_item_number: item.goods_item_number,
                hs6: item.hs6,
                declared_eur,
                expected_eur,
                stake_eur,
                declared_eur_per_kg,
                per_kg,
                per_article,
                mass,
                p_declared,
                p_heading,
                predicted,
                // Validation checked the description against the stop words
                // (a missing one is not vague); its flag is the answer.
                vague: d.flags.iter().any(|f| matches!(f, DataFlag::VagueDescription { goods_item_number } if *goods_item_number == item.goods_item_number)),
                missing_description,
                duty_delta_pct,
                unknown_hs6: d
                    .flags
                    .iter()
                    .any(|f| matches!(f, DataFlag::UnknownHs6 { goods_item_number, .. } if *goods_item_number == item.goods_item_number)),
                round_value: minor_per_major > 1
                    && item.intrinsic_value.amount_minor > 0
                    && item.intrinsic_value.amount_minor % minor_per_major == 0,
            });
        }
        let record = match live {
            Some(live) => history
                .record
                .signals_with(&self.record, &live.keys, Some(live), d),
            None => history
                .record
                .signals(&self.record, &self.record.keys(d, keys), d),
        };
        let parties = history.live_signals(keys, live.map(|l| &l.party));
        Signals {
            record,
            declared_eur: items.iter().map(|i| i.declared_eur).sum(),
            expected_eur: items.iter().map(|i| i.expected_eur).sum(),
            total_mass_kg: d.items.iter().map(|i| i.gross_mass_g as f64).sum::<f64>() / 1000.0,
            items,
            exporter: parties.exporter,
            address: parties.address,
            ioss: parties.ioss,
            declarant: parties.declarant,
            // The frozen history knows the long past; the online window
            // knows what happened since the model was trained.
            address_names: history
                .address_names(keys)
                .max(split.address_names as usize),
            ioss_exporters: history
                .ioss_exporters(keys)
                .max(split.ioss_sellers as usize),
            split,
        }
    }

    /// The model row of a declaration's signals, in schema order.
    pub fn row(&self, d: &Declaration, s: &Signals, out: &mut Vec<f64>) {
        out.clear();
        let n = s.items.len().max(1) as f64;
        let total = s.declared_eur;
        let share =
            |f: &dyn Fn(&ItemSignals) -> bool| s.items.iter().filter(|i| f(i)).count() as f64 / n;
        let min = |f: &dyn Fn(&ItemSignals) -> Option<f64>| {
            s.items
                .iter()
                .filter_map(f)
                .fold(None, |acc: Option<f64>, x| {
                    Some(acc.map_or(x, |a| a.min(x)))
                })
        };
        let max = |f: &dyn Fn(&ItemSignals) -> Option<f64>| {
            s.items
                .iter()
                .filter_map(f)
                .fold(None, |acc: Option<f64>, x| {
                    Some(acc.map_or(x, |a| a.max(x)))
                })
        };
        let distinct = distinct_hs6(s.items.iter().map(|i| i.hs6));
        let weighted_ratio = {
            let (mut num, mut den) = (0.0, 0.0);
            for i in &s.items {
                if let Some((r, _)) = i.per_kg {
                    let w = i.expected_eur.max(0.01);
                    num += w * r;
                    den += w;
                }
            }
            if den > 0.0 { num / den } else { 0.0 }
        };
        let below_p05_value: f64 = s
            .items
            .iter()
            .filter(|i| {
                i.per_kg
                    .is_some_and(|(r, rf)| r < rf.stats.p05 - rf.stats.median)
            })
            .map(|i| i.expected_eur)
            .sum();
        let threshold = H7_THRESHOLD_EUR_CENTS as f64 / 100.0;
        let ens_mismatch = d
            .ens
            .as_ref()
            .filter(|e| e.total_gross_mass_g > 0)
            .map_or(0.0, |e| {
                let items_g: i64 = d.items.iter().map(|i| i.gross_mass_g).sum();
                (e.total_gross_mass_g - items_g).abs() as f64
                    / e.total_gross_mass_g.max(items_g).max(1) as f64
            });

        out.extend_from_slice(&[
            total.ln_1p(),
            n.ln(),
            distinct as f64 / n,
            s.total_mass_kg.ln_1p(),
            clip(min(&|i| i.per_kg.map(|p| p.0)).unwrap_or(0.0), -8.0, 8.0),
            clip(weighted_ratio, -8.0, 8.0),
            clip(
                min(&|i| i.per_article.map(|p| p.0)).unwrap_or(0.0),
                -8.0,
                8.0,
            ),
            clip(below_p05_value / s.expected_eur.max(0.01), 0.0, 1.0),
            clip(1.0 - total / s.expected_eur.max(0.01), -1.0, 1.0),
            flag((130.0..threshold).contains(&total)),
            flag(total > threshold),
            clip((threshold - total) / threshold, -1.0, 1.0),
            share(&|i| i.round_value),
            min(&|i| Some(i.p_declared.unwrap_or(i.p_heading))).unwrap_or(1.0),
            min(&|i| Some(i.p_heading)).unwrap_or(1.0),
            max(&|i| {
                i.predicted
                    .first()
                    .filter(|(best, _)| best.chapter_number() != i.hs6.chapter_number())
                    .map(|(_, p)| *p)
            })
            .unwrap_or(0.0),
            share(&|i| i.vague),
            share(&|i| i.missing_description),
            clip(max(&|i| i.mass.map(|m| m.0)).unwrap_or(0.0), -10.0, 10.0),
            clip(min(&|i| i.mass.map(|m| m.0)).unwrap_or(0.0), -10.0, 10.0),
            max(&|i| Some(i.duty_delta_pct)).unwrap_or(0.0),
            flag(s.items.iter().any(|i| i.unknown_hs6)),
            clip(ens_mismatch, 0.0, 1.0),
            flag(
                d.flags
                    .iter()
                    .any(|f| matches!(f, DataFlag::InconsistentProcedureCodes { .. })),
            ),
            flag(!d.ioss_number.is_empty()),
            s.exporter.fraud_rate,
            s.exporter.undervaluation_rate,
            s.exporter.misdescription_rate,
            s.exporter.log_seen,
            flag(s.exporter.caught_before),
            s.address.fraud_rate,
            s.address.log_seen,
            (s.address_names as f64).ln_1p(),
            s.ioss.fraud_rate,
            (s.ioss_exporters as f64).ln_1p(),
            s.declarant.fraud_rate,
            f64::from(s.split.buyer_parcels).ln_1p(),
            f64::from(s.split.same_seller_parcels.min(10)),
            flag(
                s.split.buyer_parcels > 0
                    && s.split.combined_value_eur_cents > H7_THRESHOLD_EUR_CENTS,
            ),
            flag(d.exporter.country().is_some_and(|c| c.as_str() == "CN")),
            flag(d.carrier_channel == Some(CarrierChannel::Postal)),
            flag(d.carrier_channel == Some(CarrierChannel::AirCargo)),
            flag(
                d.flags
                    .iter()
                    .any(|f| matches!(f, DataFlag::ImplausibleMass { .. })),
            ),
        ]);
        debug_assert_eq!(out.len(), BASE_FEATURES.len());
        self.attributes.encode(&d.attributes, out);
        for f in &s.record.fields {
            out.extend_from_slice(&[
                s.record.fraud_rate(f),
                ln_1p_count(f.inspected),
                ln_1p_count(f.seen),
                ln_1p_count(f.days_since),
            ]);
        }
    }
}

/// Why features could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Text(#[from] text::TextError),
    #[error("no declarations to learn reference values from")]
    NoData,
    #[error("{0}")]
    Record(String),
}

impl FeatureSet {
    /// Learns reference values, the description classifier and the attribute
    /// encoder from declarations (labels are not used).
    pub fn fit(
        declarations: &[&Declaration],
        rates: &RateTable,
        text_params: text::TextParams,
    ) -> Result<Self, FeatureError> {
        if declarations.is_empty() {
            return Err(FeatureError::NoData);
        }
        let mut per_kg = reference::ReferenceBuilder::new(true);
        let mut per_article = reference::ReferenceBuilder::new(true);
        let mut grams = reference::ReferenceBuilder::new(false);
        for d in declarations {
            let seller_country = d.exporter.country();
            for item in &d.items {
                let Some(eur) = rates.to_eur(item.intrinsic_value) else {
                    continue;
                };
                let articles = f64::from(item.quantity.max(1));
                let origin = item.country_of_origin.or(seller_country);
                if item.gross_mass_g > 0 {
                    per_kg.add(
                        item.hs6,
                        origin,
                        (eur.max(1e-4) / (item.gross_mass_g as f64 / 1000.0)).ln(),
                    );
                    grams.add(item.hs6, None, (item.gross_mass_g as f64 / articles).ln());
                }
                per_article.add(item.hs6, origin, (eur.max(1e-4) / articles).ln());
            }
        }
        let pairs = declarations
            .iter()
            .flat_map(|d| d.items.iter().map(|i| (i.description.as_str(), i.hs6)));
        let text = TextClassifier::fit(pairs, text_params)?;
        let attributes = AttributeEncoder::fit(declarations.iter().map(|d| &d.attributes));
        let record = record::RecordFields::fit(declarations);
        Ok(Self {
            record,
            references: References {
                eur_per_kg: per_kg.build(),
                eur_per_article: per_article.build(),
                grams_per_article: grams.build(),
                found_eur_per_kg: ReferenceTable::default(),
            },
            text,
            attributes,
        })
    }

    /// Learns what controls found: the true EUR per kg of items in random
    /// controls (the corrected value where one was found undervalued, the
    /// declared value otherwise), by declared HS6 × origin. Random controls
    /// only: risk- and rule-selected ones over-represent fraud.
    pub fn learn_found_values<'a>(
        &mut self,
        inspected: impl Iterator<Item = (&'a Declaration, &'a InspectionResult)>,
        rates: &RateTable,
    ) {
        let mut found = reference::ReferenceBuilder::new(true);
        for (d, result) in inspected {
            if result.selection_reason != SelectionReason::Random {
                continue;
            }
            let seller_country = d.exporter.country();
            for item in d.items.iter().filter(|i| i.gross_mass_g > 0) {
                let finding = result
                    .findings
                    .iter()
                    .find(|f| f.goods_item_number == item.goods_item_number);
                let value = finding
                    .and_then(|f| f.corrected_intrinsic_value)
                    .unwrap_or(item.intrinsic_value);
                let Some(eur) = rates.to_eur(value) else {
                    continue;
                };
                found.add(
                    item.hs6,
                    item.country_of_origin.or(seller_country),
                    (eur.max(1e-4) / (item.gross_mass_g as f64 / 1000.0)).ln(),
                );
            }
        }
        self.references.found_eur_per_kg = found.build();
    }

    /// Rebuilds indexes after deserialising and checks the fitted tables.
    pub fn prepare(&mut self) -> Result<(), FeatureError> {
        self.record.check().map_err(FeatureError::Record)?;
        self.text.prepare()?;
        Ok(())
    }
}
