//! The duty and VAT regime for low-value consignments, from a versioned table
//! (`data/reference/regime.json`), and what a consignment owes under it.
//!
//! Periods: the EUR 150 duty relief (until 1 July 2026), the flat EUR 3 per
//! distinct HS6 sub-heading per parcel (1 July 2026 – 1 July 2028), then MFN
//! duty. VAT is due at the destination member state's standard rate either way
//! (through IOSS at the sale, or at import).

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::codes::{CountryCode, Hs6, distinct_hs6};
use super::validation::H7_THRESHOLD_EUR_CENTS;

/// How duty is assessed in a period.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DutyRule {
    /// No duty up to EUR 150 intrinsic value; MFN above.
    #[serde(rename = "relief_up_to_150")]
    ReliefUpTo150,
    /// A flat amount per distinct HS6 sub-heading per parcel (up to EUR 150;
    /// MFN above).
    FlatPerSubheading { eur_per_subheading: f64 },
    /// MFN ad-valorem duty on every consignment.
    Mfn,
}

#[derive(Debug, Clone, Deserialize)]
struct Period {
    from: NaiveDate,
    to: Option<NaiveDate>,
    duty: DutyRule,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRegime {
    version: String,
    default_vat_pct: f64,
    vat_pct: HashMap<String, f64>,
    periods: Vec<Period>,
    default_mfn_duty_pct: f64,
    mfn_duty_pct: HashMap<String, f64>,
}

/// The regime table.
#[derive(Debug, Clone)]
pub struct Regime {
    version: String,
    default_vat_pct: f64,
    vat_pct: HashMap<CountryCode, f64>,
    periods: Vec<Period>,
    default_mfn_duty_pct: f64,
    mfn_duty_pct: HashMap<Hs6, f64>,
}

/// A malformed regime table.
#[derive(Debug, thiserror::Error)]
pub enum RegimeError {
    #[error("regime table: {0}")]
    Json(#[from] serde_json::Error),
    #[error("regime table: bad code {0:?}")]
    BadCode(String),
    #[error("regime table: periods must be ordered and not overlap")]
    Periods,
}

static BUILT_IN: LazyLock<Regime> = LazyLock::new(|| {
    Regime::parse(include_str!("../../data/reference/regime.json"))
        .expect("the built-in regime table is checked by a unit test")
});

/// One goods line as the regime sees it.
#[derive(Debug, Clone, Copy)]
pub struct DutiableLine {
    pub hs6: Hs6,
    pub value_eur: f64,
}

impl Regime {
    pub fn built_in() -> &'static Regime {
        &BUILT_IN
    }

    pub fn parse(text: &str) -> Result<Self, RegimeError> {
        let raw: RawRegime = serde_json::from_str(text)?;
        let vat_pct = raw
            .vat_pct
            .into_iter()
            .map(|(c, v)| {
                CountryCode::parse(&c)
                    .map(|c| (c, v))
                    .map_err(|_| RegimeError::BadCode(c))
            })
            .collect::<Result<_, _>>()?;
        let mfn_duty_pct = raw
            .mfn_duty_pct
            .into_iter()
            .map(|(c, v)| {
                Hs6::parse(&c)
                    .map(|c| (c, v))
                    .map_err(|_| RegimeError::BadCode(c))
            })
            .collect::<Result<_, _>>()?;
        for pair in raw.periods.windows(2) {
            if pair[0].to != Some(pair[1].from) {
                return Err(RegimeError::Periods);
            }
        }
        Ok(Self {
            version: raw.version,
            default_vat_pct: raw.default_vat_pct,
            vat_pct,
            periods: raw.periods,
            default_mfn_duty_pct: raw.default_mfn_duty_pct,
            mfn_duty_pct,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Standard VAT rate of the destination, percent.
    pub fn vat_pct(&self, destination: Option<CountryCode>) -> f64 {
        destination
            .and_then(|c| self.vat_pct.get(&c).copied())
            .unwrap_or(self.default_vat_pct)
    }

    /// MFN ad-valorem duty of a sub-heading, percent (the documented default
    /// for codes the table does not list).
    pub fn mfn_duty_pct(&self, hs6: Hs6) -> f64 {
        self.mfn_duty_pct
            .get(&hs6)
            .copied()
            .unwrap_or(self.default_mfn_duty_pct)
    }

    /// The duty rule in force at an instant; before the first period, the first.
    pub fn duty_rule_at(&self, at: DateTime<Utc>) -> DutyRule {
        let day = at.date_naive();
        self.periods
            .iter()
            .find(|p| p.from <= day && p.to.is_none_or(|to| day < to))
            .or_else(|| self.periods.first())
            .map_or(DutyRule::Mfn, |p| p.duty)
    }

    /// Duty owed on a consignment lodged at `at`, EUR.
    pub fn duty_eur(&self, at: DateTime<Utc>, lines: &[DutiableLine]) -> f64 {
        let total: f64 = lines.iter().map(|l| l.value_eur).sum();
        let over_threshold = total * 100.0 > H7_THRESHOLD_EUR_CENTS as f64;
        let mfn = || -> f64 {
            lines
                .iter()
                .map(|l| l.value_eur * self.mfn_duty_pct(l.hs6) / 100.0)
                .sum()
        };
        match self.duty_rule_at(at) {
            DutyRule::ReliefUpTo150 if over_threshold => mfn(),
            DutyRule::ReliefUpTo150 => 0.0,
            DutyRule::FlatPerSubheading { .. } if over_threshold => mfn(),
            DutyRule::FlatPerSubheading { eur_per_subheading } => {
                eur_per_subheading * distinct_hs6(lines.iter().map(|l| l.hs6)) as f64
            }
            DutyRule::Mfn => mfn(),
        }
    }

    /// Duty plus import VAT owed on a consignment, EUR. VAT is levied on the
    /// value plus transport and duty.
    pub fn taxes_eur(
        &self,
        at: DateTime<Utc>,
        destination: Option<CountryCode>,
        lines: &[DutiableLine],
        transport_eur: f64,
    ) -> f64 {
        let duty = self.duty_eur(at, lines);
        let value: f64 = lines.iter().map(|l| l.value_eur).sum();
        duty + (value + transport_eur + duty) * self.vat_pct(destination) / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn line(hs6: &str, value_eur: f64) -> DutiableLine {
        DutiableLine {
            hs6: Hs6::parse(hs6).unwrap(),
            value_eur,
        }
    }

    #[test]
    fn flat_duty_counts_distinct_subheadings_at_the_date_boundaries() {
        let regime = Regime::built_in();
        // 1 silk blouse + 2 wool blouses = 2 sub-headings = EUR 6 (Council example).
        let lines = [
            line("610610", 20.0),
            line("610690", 15.0),
            line("610690", 15.0),
        ];
        assert_eq!(regime.duty_eur(at(2026, 6, 30), &lines), 0.0);
        assert_eq!(regime.duty_eur(at(2026, 7, 1), &lines), 6.0);
        assert_eq!(regime.duty_eur(at(2028, 6, 30), &lines), 6.0);
        let after = regime.duty_eur(at(2028, 7, 1), &lines);
        assert!((after - 50.0 * 4.0 / 100.0).abs() < 1e-9, "{after}");
        let midnight = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        assert_eq!(regime.duty_eur(midnight, &lines), 6.0);
        let before = Utc.with_ymd_and_hms(2026, 6, 30, 23, 59, 59).unwrap();
        assert_eq!(regime.duty_eur(before, &lines), 0.0);
    }

    #[test]
    fn over_150_pays_mfn_duty_and_vat_follows_the_destination() {
        let regime = Regime::built_in();
        let lines = [line("640411", 200.0)];
        let duty = regime.duty_eur(at(2026, 9, 1), &lines);
        assert!((duty - 33.8).abs() < 1e-9, "{duty}");
        let be = CountryCode::parse("BE").ok();
        let lu = CountryCode::parse("LU").ok();
        let small = [line("392690", 10.0)];
        let taxes_be = regime.taxes_eur(at(2026, 9, 1), be, &small, 0.0);
        let taxes_lu = regime.taxes_eur(at(2026, 9, 1), lu, &small, 0.0);
        assert!((taxes_be - (3.0 + 13.0 * 0.21)).abs() < 1e-9, "{taxes_be}");
        assert!(taxes_lu < taxes_be);
        assert!(regime.version().starts_with("eu-lvc"));
    }
}
