//! Reason codes with evidence an officer can check. Codes are stable strings
//! (catalogue in `docs/reason-codes.md`); each carries the facts behind it and
//! a contribution: with a logistic model, the sum of the positive log-odds
//! contributions of the features the reason stands for; otherwise a fixed
//! weight. Reasons are sorted by contribution, highest first.

use crate::domain::validation::{H7_THRESHOLD_EUR_CENTS, matched_stop_words};
use crate::domain::{DataFlag, Declaration};
// Looked up for every reason given: FxHash, the codes are ours.
use rustc_hash::FxHashMap as HashMap;
use std::sync::LazyLock;

use crate::features::record::RecordFields;
use crate::features::{BASE_FEATURES, Signals};

/// Reason families (as in the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCategory {
    Valuation,
    Threshold,
    Description,
    Classification,
    Weight,
    Party,
    Fiscal,
    DataQuality,
    Random,
    /// The model's score without a rule-based reason.
    Model,
}

/// One reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: &'static str,
    pub category: ReasonCategory,
    /// 0 = declaration level.
    pub goods_item_number: u32,
    pub contribution: f64,
    pub message: String,
    pub evidence: Vec<(&'static str, String)>,
}

/// Features each reason stands for, by name prefix or exact name.
fn features_of(code: &str) -> &'static [&'static str] {
    match code {
        "VAL_UNIT_VALUE_BELOW_REF_P05" | "VAL_BELOW_LAP_LIKE_BOUND" => &[
            "uv_min_log_ratio_kg",
            "uv_wmean_log_ratio_kg",
            "uv_min_log_ratio_article",
            "uv_below_p05_value_share",
            "uv_value_gap_share",
        ],
        "THR_BUNCHING_BELOW_150" => &["thr_near_150", "thr_gap_to_150"],
        "THR_H7_VALUE_OVER_150" => &["thr_over_150"],
        "THR_SPLIT_SAME_CONSIGNEE_SAME_DAY" => &[
            "spl_log_buyer_parcels",
            "spl_same_seller_parcels",
            "spl_combined_over_150",
        ],
        "DESC_STOP_WORD" => &["desc_vague_share"],
        "DQ_MISSING_DESCRIPTION" => &["desc_missing_share"],
        "DESC_HS_MISMATCH" => &[
            "txt_p_declared_min",
            "txt_p_heading_min",
            "txt_other_chapter_max",
        ],
        "CLS_LOWER_DUTY_SHIFT" => &["cls_duty_delta_max"],
        "DQ_UNKNOWN_HS6" => &["cls_unknown_hs6"],
        "WGT_IMPLAUSIBLE_FOR_GOODS" => &["wgt_mass_z_max", "wgt_mass_z_min"],
        "WGT_ENS_H7_MISMATCH" => &["ens_mass_mismatch"],
        "PTY_SELLER_HISTORY" => &[
            "pty_exporter_fraud_rate",
            "pty_exporter_uv_rate",
            "pty_exporter_md_rate",
            "pty_exporter_caught_before",
        ],
        "PTY_ADDRESS_HIGH_FAN_IN" => &["pty_address_log_names", "pty_address_fraud_rate"],
        "FIS_IOSS_SHARED_ACROSS_SELLERS" => &["pty_ioss_log_exporters", "pty_ioss_fraud_rate"],
        "FIS_IOSS_INVALID_OR_INCONSISTENT" => &["fis_procedure_inconsistent"],
        _ => &[],
    }
}

/// EUR with two decimals, without the cost of exact float formatting. The
/// same text as `{:.2}` except on half-cent ties, which are rounded away
/// from zero as money usually is (`{:.2}` rounds them to even): 69 cents
/// for 80 g is EUR 8.63/kg here. Ratios of round amounts make such ties
/// (2 rows in 2,000 generated declarations).
fn money(eur: f64) -> String {
    let cents = (eur * 100.0).round();
    if !cents.is_finite() || cents.abs() >= 1e15 {
        return format!("{eur:.2}");
    }
    let cents = cents as i64;
    let mut out = String::with_capacity(12);
    if cents < 0 {
        out.push('-');
    }
    let (whole, rest) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    out.push_str(itoa::Buffer::new().format(whole));
    out.push('.');
    out.push(char::from(b'0' + (rest / 10) as u8));
    out.push(char::from(b'0' + (rest % 10) as u8));
    out
}

/// Columns of the features each reason stands for. Reasons only use base
/// features, whose positions are fixed, so this is computed once.
fn feature_columns(code: &str) -> &'static [usize] {
    static COLUMNS: LazyLock<HashMap<&'static str, Vec<usize>>> = LazyLock::new(|| {
        CODES
            .iter()
            .map(|code| {
                let columns = features_of(code)
                    .iter()
                    .filter_map(|name| BASE_FEATURES.iter().position(|f| f == name))
                    .collect();
                (*code, columns)
            })
            .collect()
    });
    COLUMNS.get(code).map_or(&[], Vec::as_slice)
}

/// The reason of a random pick (never disclosed to the trade).
pub fn random_sample() -> Reason {
    Reason {
        code: "RND_COMPLIANCE_SAMPLE",
        category: ReasonCategory::Random,
        goods_item_number: 0,
        contribution: 0.0,
        message: "Selected at random for compliance measurement".to_owned(),
        evidence: vec![("selection", "random".to_owned())],
    }
}

/// Shared state was configured but not reached: the split-consignment,
/// address and IOSS windows saw only this replica's traffic, so their
/// signals may be weaker than the whole traffic's.
pub fn windows_local_only() -> Reason {
    Reason {
        code: "DQ_WINDOWS_LOCAL_ONLY",
        category: ReasonCategory::DataQuality,
        goods_item_number: 0,
        contribution: 0.0,
        message: "Cross-declaration windows read from this replica only: the shared state was unreachable".to_owned(),
        evidence: vec![("windows", "local".to_owned())],
    }
}

/// The reason of a risk-selected declaration no rule explains: the model's
/// score and the features that raised it most.
pub fn model_score(score: f64, top_features: &[(&'static str, f64)]) -> Reason {
    let mut evidence = vec![("fraud_probability", format!("{score:.3}"))];
    evidence.extend(
        top_features
            .iter()
            .map(|(name, c)| (*name, format!("{c:+.2} log-odds"))),
    );
    Reason {
        code: "RSK_MODEL_SCORE",
        category: ReasonCategory::Model,
        goods_item_number: 0,
        contribution: top_features.iter().map(|(_, c)| c).sum(),
        message: format!(
            "High fraud probability ({score:.2}) from the combination of the features listed"
        ),
        evidence,
    }
}

/// Every code `explain` can emit from base features (`PTY_PAST_RECORD`
/// reads the past-record columns at the end of the row instead).
const CODES: &[&str] = &[
    "VAL_UNIT_VALUE_BELOW_REF_P05",
    "VAL_BELOW_LAP_LIKE_BOUND",
    "THR_BUNCHING_BELOW_150",
    "THR_H7_VALUE_OVER_150",
    "THR_SPLIT_SAME_CONSIGNEE_SAME_DAY",
    "DESC_STOP_WORD",
    "DQ_MISSING_DESCRIPTION",
    "DESC_HS_MISMATCH",
    "CLS_LOWER_DUTY_SHIFT",
    "DQ_UNKNOWN_HS6",
    "WGT_IMPLAUSIBLE_FOR_GOODS",
    "WGT_ENS_H7_MISMATCH",
    "PTY_SELLER_HISTORY",
    "PTY_ADDRESS_HIGH_FAN_IN",
    "FIS_IOSS_SHARED_ACROSS_SELLERS",
    "FIS_IOSS_INVALID_OR_INCONSISTENT",
];

/// A field's record counts as bad from this many frauds found, at a
/// smoothed rate at least this many times the overall one.
const RECORD_MIN_FRAUD: u32 = 2;
const RECORD_RATE_FACTOR: f64 = 2.0;

/// Builds the reasons of an assessment. `contributions` are the per-feature
/// log-odds contributions of a logistic model, in schema order.
/// `fields` name the past-record fields of `s.record`, whose four columns
/// each end the row.
pub fn explain(
    d: &Declaration,
    s: &Signals,
    fields: &RecordFields,
    contributions: Option<&[f64]>,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    // The worst past record among the entities and codes named (the
    // importer's, a seller × HS6 pair's...), with its counts as evidence.
    let record = &s.record;
    let worst = record
        .fields
        .iter()
        .enumerate()
        .map(|(index, f)| (index, f, record.fraud_rate(f)))
        .filter(|(index, f, rate)| {
            record.is_present(*index)
                && f.fraud >= RECORD_MIN_FRAUD
                && *rate >= RECORD_RATE_FACTOR * record.prior
        })
        .max_by(|a, b| a.2.total_cmp(&b.2));
    if let Some((index, f, rate)) = worst {
        let name = fields
            .fields
            .get(index)
            .map_or_else(String::new, |f| f.name());
        let value = fields.describe(index, d);
        let columns = contributions.map(|c| {
            let start = c.len().saturating_sub(4 * record.len()) + 4 * index;
            c.get(start..start + 4)
                .map_or(0.0, |v| v.iter().map(|x| x.max(0.0)).sum())
        });
        let prior = record.prior;
        let weight = 1.0 + rate / prior.max(1e-3) / 4.0;
        reasons.push(Reason {
            code: "PTY_PAST_RECORD",
            category: ReasonCategory::Party,
            goods_item_number: 0,
            contribution: columns.map_or(weight, |c| c.max(weight * 0.01)),
            message: format!(
                "{name} {value}: {} of {} past inspections found fraud (smoothed {:.0} % against {:.0} % overall)",
                f.fraud,
                f.inspected,
                100.0 * rate,
                100.0 * prior
            ),
            evidence: vec![
                ("record_field", name),
                ("record_value", value),
                ("past_inspections", f.inspected.to_string()),
                ("past_frauds", f.fraud.to_string()),
                ("smoothed_fraud_rate", format!("{rate:.3}")),
                ("overall_fraud_rate", format!("{prior:.3}")),
                ("times_seen", f.seen.to_string()),
            ],
        });
    }
    let mut push = |code: &'static str,
                    category,
                    item: u32,
                    weight: f64,
                    message: String,
                    evidence: Vec<(&'static str, String)>| {
        let contribution = match contributions {
            Some(c) => feature_columns(code)
                .iter()
                .filter_map(|&i| c.get(i))
                .map(|v| v.max(0.0))
                .sum::<f64>()
                .max(weight * 0.01),
            None => weight,
        };
        reasons.push(Reason {
            code,
            category,
            goods_item_number: item,
            contribution,
            message,
            evidence,
        });
    };

    for i in &s.items {
        if let Some((ratio, r)) = i.per_kg {
            let median = r.stats.median.exp();
            let declared = i.declared_eur_per_kg.unwrap_or(0.0);
            let below_half = declared < 0.5 * median;
            // Built only for an item that gets a reason (most get none), each
            // figure formatted once for the message and the evidence.
            if below_half || ratio < r.stats.p05 - r.stats.median {
                let declared_text = money(declared);
                let cell = r.cell.describe();
                let (code, weight, message, median_text) = if below_half {
                    let median_text = money(median);
                    let message = format!(
                        "Declared EUR {declared_text}/kg is under half the reference median of EUR {median_text}/kg for {cell}"
                    );
                    ("VAL_BELOW_LAP_LIKE_BOUND", 2.0, message, median_text)
                } else {
                    let message = format!(
                        "Declared EUR {declared_text}/kg is below the 5th percentile for {cell}"
                    );
                    ("VAL_UNIT_VALUE_BELOW_REF_P05", 1.5, message, money(median))
                };
                push(
                    code,
                    ReasonCategory::Valuation,
                    i.goods_item_number,
                    weight,
                    message,
                    vec![
                        ("declared_eur_per_kg", declared_text),
                        ("ref_median_eur_per_kg", median_text),
                        ("ref_p05_eur_per_kg", money(r.stats.p05.exp())),
                        ("ref_cell", cell),
                        ("ref_sample_size", r.stats.n.to_string()),
                        // The item assessment's expected value (in cents there).
                        ("expected_value_eur", money(i.stake_eur.max(i.declared_eur))),
                    ],
                );
            }
        }
        if i.vague {
            let description = d
                .items
                .iter()
                .find(|x| x.goods_item_number == i.goods_item_number)
                .map_or("", |x| x.description.as_str());
            push(
                "DESC_STOP_WORD",
                ReasonCategory::Description,
                i.goods_item_number,
                1.5,
                format!(
                    "Description {description:?} is a generic term the ICS2 stop-word list rejects"
                ),
                vec![(
                    "matched_stop_words",
                    matched_stop_words(description).join(";"),
                )],
            );
        }
        if i.missing_description {
            push(
                "DQ_MISSING_DESCRIPTION",
                ReasonCategory::DataQuality,
                i.goods_item_number,
                1.0,
                "No goods description".to_owned(),
                vec![],
            );
        }
        if let Some((best, p)) = i.predicted.first() {
            let p_declared = i.p_declared.unwrap_or(i.p_heading);
            if *best != i.hs6 && *p > 0.5 && p_declared < 0.1 && best.heading() != i.hs6.heading() {
                push(
                    "DESC_HS_MISMATCH",
                    ReasonCategory::Classification,
                    i.goods_item_number,
                    1.5,
                    format!(
                        "The description reads as HS {best} (p={p:.2}), not the declared HS {}",
                        i.hs6
                    ),
                    vec![
                        ("declared_hs6", i.hs6.to_string()),
                        ("predicted_hs6", best.to_string()),
                        ("predicted_probability", format!("{p:.3}")),
                        ("declared_probability", format!("{p_declared:.3}")),
                    ],
                );
                if i.duty_delta_pct > 0.0 {
                    push(
                        "CLS_LOWER_DUTY_SHIFT",
                        ReasonCategory::Classification,
                        i.goods_item_number,
                        0.5,
                        format!(
                            "The predicted HS {best} carries {:.1} points more MFN duty",
                            i.duty_delta_pct
                        ),
                        vec![("duty_delta_pct", format!("{:.1}", i.duty_delta_pct))],
                    );
                }
            }
        }
        if i.unknown_hs6 {
            push(
                "DQ_UNKNOWN_HS6",
                ReasonCategory::DataQuality,
                i.goods_item_number,
                0.5,
                format!("HS {} is not in the HS 2022 nomenclature", i.hs6),
                vec![("declared_hs6", i.hs6.to_string())],
            );
        }
        if let Some((z, r)) = i.mass {
            if z.abs() > 3.0 {
                let item = d
                    .items
                    .iter()
                    .find(|x| x.goods_item_number == i.goods_item_number);
                let grams = item.map_or(0.0, |x| {
                    x.gross_mass_g as f64 / f64::from(x.quantity.max(1))
                });
                push(
                    "WGT_IMPLAUSIBLE_FOR_GOODS",
                    ReasonCategory::Weight,
                    i.goods_item_number,
                    2.0,
                    format!(
                        "{grams:.0} g per article is far from the {:.0} g typical of HS {} (z={z:.1})",
                        r.stats.median.exp(),
                        i.hs6
                    ),
                    vec![
                        ("grams_per_article", format!("{grams:.0}")),
                        ("ref_median_grams", format!("{:.0}", r.stats.median.exp())),
                        ("ref_p25_grams", format!("{:.0}", r.stats.p25.exp())),
                        ("ref_p75_grams", format!("{:.0}", r.stats.p75.exp())),
                        ("ref_cell", r.cell.describe()),
                        ("z_score", format!("{z:.2}")),
                    ],
                );
            }
        }
    }

    if let Some(ens) = d.ens.as_ref().filter(|e| e.total_gross_mass_g > 0) {
        let items_g: i64 = d.items.iter().map(|i| i.gross_mass_g).sum();
        let gap = (ens.total_gross_mass_g - items_g).abs() as f64
            / ens.total_gross_mass_g.max(items_g) as f64;
        if gap > 0.2 {
            push(
                "WGT_ENS_H7_MISMATCH",
                ReasonCategory::Weight,
                0,
                1.0,
                format!(
                    "The ENS gives {} g, the H7 items {items_g} g",
                    ens.total_gross_mass_g
                ),
                vec![
                    ("ens_total_gross_mass_g", ens.total_gross_mass_g.to_string()),
                    ("h7_items_gross_mass_g", items_g.to_string()),
                ],
            );
        }
    }

    let threshold = H7_THRESHOLD_EUR_CENTS as f64 / 100.0;
    if d.dataset.is_parcel() && (130.0..threshold).contains(&s.declared_eur) {
        push(
            "THR_BUNCHING_BELOW_150",
            ReasonCategory::Threshold,
            0,
            1.0,
            format!(
                "Consignment value EUR {:.2} sits just under the EUR 150 H7 limit",
                s.declared_eur
            ),
            vec![("declared_value_eur", money(s.declared_eur))],
        );
    }
    if d.flags
        .iter()
        .any(|f| matches!(f, DataFlag::H7ValueOver150 { .. }))
    {
        push(
            "THR_H7_VALUE_OVER_150",
            ReasonCategory::Threshold,
            0,
            2.0,
            format!(
                "H7 declaration worth EUR {:.2}, over the EUR 150 limit",
                s.declared_eur
            ),
            vec![("declared_value_eur", money(s.declared_eur))],
        );
    }
    // Splitting to stay under EUR 150 is a parcel fraud; full declarations
    // (H1/I1) of one importer on one day are ordinary trade.
    if d.dataset.is_parcel()
        && s.split.buyer_parcels > 0
        && s.split.combined_value_eur_cents > H7_THRESHOLD_EUR_CENTS
    {
        push(
            "THR_SPLIT_SAME_CONSIGNEE_SAME_DAY",
            ReasonCategory::Threshold,
            0,
            2.0,
            format!(
                "{} other parcel(s) to the same buyer within 24 h; together EUR {:.2}",
                s.split.buyer_parcels,
                s.split.combined_value_eur_cents as f64 / 100.0
            ),
            vec![
                ("sibling_parcels", s.split.buyer_parcels.to_string()),
                (
                    "siblings_from_same_seller",
                    s.split.same_seller_parcels.to_string(),
                ),
                (
                    "combined_value_eur",
                    money(s.split.combined_value_eur_cents as f64 / 100.0),
                ),
            ],
        );
    }
    if s.exporter.caught_before && s.exporter.fraud_rate > 0.3 {
        push(
            "PTY_SELLER_HISTORY",
            ReasonCategory::Party,
            0,
            1.5,
            format!(
                "Seller found non-compliant before (smoothed rate {:.0} %)",
                100.0 * s.exporter.fraud_rate
            ),
            vec![
                ("seller_fraud_rate", format!("{:.3}", s.exporter.fraud_rate)),
                (
                    "seller_inspections",
                    format!("{:.0}", s.exporter.log_inspected.exp_m1()),
                ),
                (
                    "seller_declarations",
                    format!("{:.0}", s.exporter.log_seen.exp_m1()),
                ),
            ],
        );
    }
    if s.address_names >= 4 {
        push(
            "PTY_ADDRESS_HIGH_FAN_IN",
            ReasonCategory::Party,
            0,
            1.0,
            format!(
                "The delivery address received for {} different names",
                s.address_names
            ),
            vec![("distinct_names_at_address", s.address_names.to_string())],
        );
    }
    if s.ioss_exporters >= 3 {
        push(
            "FIS_IOSS_SHARED_ACROSS_SELLERS",
            ReasonCategory::Fiscal,
            0,
            1.5,
            format!(
                "IOSS number {} is used by {} different sellers",
                d.ioss_number, s.ioss_exporters
            ),
            vec![
                ("ioss_number", d.ioss_number.as_str().to_owned()),
                ("distinct_sellers", s.ioss_exporters.to_string()),
            ],
        );
    }
    if d.flags
        .iter()
        .any(|f| matches!(f, DataFlag::InconsistentProcedureCodes { .. }))
    {
        push(
            "FIS_IOSS_INVALID_OR_INCONSISTENT",
            ReasonCategory::Fiscal,
            0,
            1.0,
            "Additional procedure codes that H7 rules forbid together".to_owned(),
            vec![("ioss_number", d.ioss_number.as_str().to_owned())],
        );
    }
    reasons.sort_by(|a, b| {
        b.contribution
            .total_cmp(&a.contribution)
            .then(a.code.cmp(b.code))
    });
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_writes_what_two_decimal_formatting_writes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Values from 0.001 to 1e7, both signs; random mantissas are never
            // exact half-cent ties.
            let magnitude = 10f64.powf((x % 10_000) as f64 / 1000.0 - 3.0);
            let v = if x & 1 == 0 { magnitude } else { -magnitude };
            let expected = format!("{v:.2}");
            let expected = if expected == "-0.00" {
                "0.00".to_owned()
            } else {
                expected
            };
            assert_eq!(money(v), expected, "{v}");
        }
        assert_eq!(money(1234.5), "1234.50");
        assert_eq!(money(0.69 / 0.08), "8.63");
        assert_eq!(money(-0.125), "-0.13");
        assert_eq!(money(f64::NAN), "NaN");
    }

    #[test]
    fn every_reason_maps_to_base_features() {
        for code in CODES {
            let wanted = features_of(code);
            assert!(!wanted.is_empty(), "{code}");
            assert_eq!(
                feature_columns(code).len(),
                wanted.len(),
                "{code}: a feature name is not in BASE_FEATURES"
            );
        }
        assert!(feature_columns("NOT_A_CODE").is_empty());
    }
}
