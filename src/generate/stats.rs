//! Calibration statistics of generated traffic, to compare with the figures
//! of domain research §1.6 and §4.

use std::fmt;

use crate::domain::{Currency, Money, RateTable};
use crate::pb;

/// Counters over generated parcels; chunks merge with [`Stats::merge`].
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub parcels: u64,
    pub items: u64,
    /// Parcels with 1, 2-3, 4-8 and more items.
    pub items_per_parcel: [u64; 4],
    pub declared_item_eur: f64,
    pub true_item_eur: f64,
    /// Histogram of declared item values in EUR 0.10 steps up to EUR 100.
    declared_item_hist: Vec<u64>,
    pub sellers_cn: u64,
    pub ioss: u64,
    /// Parcels by fraud kind (index = proto enum value).
    pub fraud: [u64; 7],
    pub any_fraud: u64,
    pub rule_inspected: u64,
    pub random_inspected: u64,
    pub rule_non_compliant: u64,
    pub random_non_compliant: u64,
    /// Declared consignment values in [130, 140), [140, 150) and above 150 EUR.
    pub declared_130_140: u64,
    pub declared_140_150: u64,
    pub declared_over_150: u64,
}

const HIST_BINS: usize = 1000;

fn eur(rates: &RateTable, m: Option<&pb::Money>) -> f64 {
    m.and_then(|m| {
        let currency = Currency::parse(&m.currency).ok()?;
        rates.to_eur(Money::new(currency, m.amount_minor))
    })
    .unwrap_or(0.0)
}

impl Stats {
    pub fn record(&mut self, example: &pb::TrainingExample, rates: &RateTable) {
        let Some(d) = &example.declaration else {
            return;
        };
        if self.declared_item_hist.is_empty() {
            self.declared_item_hist = vec![0; HIST_BINS + 1];
        }
        self.parcels += 1;
        let n = d.items.len();
        self.items += n as u64;
        self.items_per_parcel[match n {
            1 => 0,
            2..=3 => 1,
            4..=8 => 2,
            _ => 3,
        }] += 1;
        let mut declared_total = 0.0;
        for item in &d.items {
            let v = eur(rates, item.intrinsic_value.as_ref());
            declared_total += v;
            self.declared_item_eur += v;
            self.declared_item_hist[((v * 10.0) as usize).min(HIST_BINS)] += 1;
        }
        if let Some(t) = &example.truth {
            self.true_item_eur += t
                .items
                .iter()
                .map(|i| eur(rates, i.intrinsic_value.as_ref()))
                .sum::<f64>();
            for k in &t.fraud_kinds {
                if let Some(slot) = usize::try_from(*k).ok().and_then(|k| self.fraud.get_mut(k)) {
                    *slot += 1;
                }
            }
            self.any_fraud += u64::from(!t.fraud_kinds.is_empty());
        }
        if d.exporter
            .as_ref()
            .and_then(|p| p.address.as_ref())
            .is_some_and(|a| a.country == "CN")
        {
            self.sellers_cn += 1;
        }
        self.ioss += u64::from(!d.ioss_number.is_empty());
        match declared_total {
            v if (130.0..140.0).contains(&v) => self.declared_130_140 += 1,
            v if (140.0..150.0).contains(&v) => self.declared_140_150 += 1,
            v if v > 150.0 => self.declared_over_150 += 1,
            _ => {}
        }
        if let Some(r) = &example.result {
            let non_compliant = r.outcome == pb::InspectionOutcome::NonCompliant as i32;
            if r.selection_reason == pb::SelectionReason::Random as i32 {
                self.random_inspected += 1;
                self.random_non_compliant += u64::from(non_compliant);
            } else {
                self.rule_inspected += 1;
                self.rule_non_compliant += u64::from(non_compliant);
            }
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.parcels += other.parcels;
        self.items += other.items;
        for i in 0..4 {
            self.items_per_parcel[i] += other.items_per_parcel[i];
        }
        self.declared_item_eur += other.declared_item_eur;
        self.true_item_eur += other.true_item_eur;
        if self.declared_item_hist.is_empty() {
            self.declared_item_hist = vec![0; HIST_BINS + 1];
        }
        for (a, b) in self
            .declared_item_hist
            .iter_mut()
            .zip(&other.declared_item_hist)
        {
            *a += b;
        }
        self.sellers_cn += other.sellers_cn;
        self.ioss += other.ioss;
        for i in 0..self.fraud.len() {
            self.fraud[i] += other.fraud[i];
        }
        self.any_fraud += other.any_fraud;
        self.rule_inspected += other.rule_inspected;
        self.random_inspected += other.random_inspected;
        self.rule_non_compliant += other.rule_non_compliant;
        self.random_non_compliant += other.random_non_compliant;
        self.declared_130_140 += other.declared_130_140;
        self.declared_140_150 += other.declared_140_150;
        self.declared_over_150 += other.declared_over_150;
    }

    /// Median declared item value, EUR (to the 0.10 bin).
    pub fn median_declared_item_eur(&self) -> f64 {
        let half = self.items / 2;
        let mut acc = 0;
        for (bin, count) in self.declared_item_hist.iter().enumerate() {
            acc += count;
            if acc > half {
                return bin as f64 / 10.0 + 0.05;
            }
        }
        f64::NAN
    }

    pub fn share(&self, count: u64) -> f64 {
        if self.parcels == 0 {
            0.0
        } else {
            count as f64 / self.parcels as f64
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.parcels;
        writeln!(f, "calibration statistics")?;
        writeln!(f, "  parcels                      {p}")?;
        writeln!(
            f,
            "  goods items                  {} ({:.2} per parcel)",
            self.items,
            self.items as f64 / p.max(1) as f64
        )?;
        writeln!(
            f,
            "  items per parcel 1/2-3/4-8   {:.1} % / {:.1} % / {:.1} %   (target 60/30/10)",
            pct(self.items_per_parcel[0], p),
            pct(self.items_per_parcel[1], p),
            pct(self.items_per_parcel[2], p)
        )?;
        writeln!(
            f,
            "  mean declared item value     EUR {:.2}   (target < 9)",
            self.declared_item_eur / self.items.max(1) as f64
        )?;
        writeln!(
            f,
            "  median declared item value   EUR {:.2}   (target about 5)",
            self.median_declared_item_eur()
        )?;
        writeln!(
            f,
            "  mean true item value         EUR {:.2}",
            self.true_item_eur / self.items.max(1) as f64
        )?;
        writeln!(
            f,
            "  sellers in China             {:.1} %   (target about 91)",
            pct(self.sellers_cn, p)
        )?;
        writeln!(
            f,
            "  under IOSS                   {:.1} %   (target about 93)",
            pct(self.ioss, p)
        )?;
        writeln!(
            f,
            "  declared EUR 130-140 / 140-150 / >150   {:.2} % / {:.2} % / {:.2} %",
            pct(self.declared_130_140, p),
            pct(self.declared_140_150, p),
            pct(self.declared_over_150, p)
        )?;
        writeln!(f, "  fraud (ground truth, share of parcels)")?;
        for (kind, count) in [
            ("undervaluation", self.fraud[1]),
            ("misdescription", self.fraud[2]),
            ("misclassification", self.fraud[3]),
            ("split consignment", self.fraud[4]),
            ("IOSS misuse", self.fraud[5]),
            ("address reuse", self.fraud[6]),
            ("any", self.any_fraud),
        ] {
            writeln!(f, "    {kind:<26} {:.2} %", pct(count, p))?;
        }
        writeln!(
            f,
            "  inspected by rule            {:.2} % of parcels, {:.1} % non-compliant",
            pct(self.rule_inspected, p),
            pct(self.rule_non_compliant, self.rule_inspected)
        )?;
        writeln!(
            f,
            "  inspected at random          {:.2} % of parcels, {:.1} % non-compliant",
            pct(self.random_inspected, p),
            pct(self.random_non_compliant, self.random_inspected)
        )?;
        Ok(())
    }
}
