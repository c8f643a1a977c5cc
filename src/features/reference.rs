//! Robust reference values learned from declared data: EUR per kg and EUR per
//! article by HS6 × origin, and grams per article by HS6, each with median and
//! quartiles of the logarithm, shrunk toward HS4, HS2 and the whole table for
//! sparse cells.
//!
//! Medians and quartiles stay put while fraud is a minority of a cell, so the
//! references can be learned from the very data the frauds are in.

use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::{CountryCode, Hs6};

/// Pseudo-count of the shrinkage toward the parent cell: a cell with this many
/// observations weighs as much as its parent.
const SHRINK_K: f64 = 20.0;

/// Robust statistics of a log quantity in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellStats {
    pub n: u32,
    pub median: f64,
    pub p05: f64,
    pub p25: f64,
    pub p75: f64,
}

impl CellStats {
    fn from_sorted(sorted: &[f32]) -> Option<Self> {
        if sorted.is_empty() {
            return None;
        }
        let q = |p: f64| {
            let pos = p * (sorted.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            let frac = pos - lo as f64;
            f64::from(sorted[lo]) * (1.0 - frac) + f64::from(sorted[hi]) * frac
        };
        Some(Self {
            n: sorted.len() as u32,
            median: q(0.5),
            p05: q(0.05),
            p25: q(0.25),
            p75: q(0.75),
        })
    }

    /// Blends a cell with its (already shrunk) parent by sample size.
    fn shrink_toward(self, parent: &CellStats) -> CellStats {
        let w = f64::from(self.n) / (f64::from(self.n) + SHRINK_K);
        let mix = |a: f64, b: f64| w * a + (1.0 - w) * b;
        CellStats {
            n: self.n,
            median: mix(self.median, parent.median),
            p05: mix(self.p05, parent.p05),
            p25: mix(self.p25, parent.p25),
            p75: mix(self.p75, parent.p75),
        }
    }

    /// Robust standard deviation from the inter-quartile range, floored.
    pub fn spread(&self) -> f64 {
        ((self.p75 - self.p25) / 1.349).max(0.1)
    }
}

/// Which quantity a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quantity {
    EurPerKg,
    EurPerArticle,
    GramsPerArticle,
}

/// A cell key: the level (6, 4, 2 digits or 0 for everything), the code and
/// the origin (only at HS6 level, only for values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CellKey {
    pub level: u8,
    pub code: u32,
    pub origin: Option<[u8; 2]>,
}

impl CellKey {
    fn chain(hs6: Hs6, origin: Option<CountryCode>) -> [CellKey; 5] {
        let code = hs6.as_u32();
        [
            CellKey {
                level: 6,
                code,
                origin: origin.map(|c| {
                    let b = c.as_str().as_bytes();
                    [b[0], b[1]]
                }),
            },
            CellKey {
                level: 6,
                code,
                origin: None,
            },
            CellKey {
                level: 4,
                code: code / 100,
                origin: None,
            },
            CellKey {
                level: 2,
                code: code / 10_000,
                origin: None,
            },
            CellKey {
                level: 0,
                code: 0,
                origin: None,
            },
        ]
    }

    /// Human-readable cell name for evidence, e.g. `hs6=640411|origin=CN`.
    pub fn describe(&self) -> String {
        let code = match self.level {
            6 => format!("hs6={:06}", self.code),
            4 => format!("hs4={:04}", self.code),
            2 => format!("hs2={:02}", self.code),
            _ => "all".to_owned(),
        };
        match self.origin {
            Some([a, b]) => format!("{code}|origin={}{}", a as char, b as char),
            None => code,
        }
    }
}

/// One quantity's shrunk statistics per cell.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReferenceTable {
    #[serde(with = "cells")]
    cells: HashMap<CellKey, CellStats>,
}

mod cells {
    //! JSON maps need string keys; cells are stored as a list instead.
    use super::{CellKey, CellStats};
    use rustc_hash::FxHashMap as HashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &HashMap<CellKey, CellStats>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut list: Vec<(&CellKey, &CellStats)> = map.iter().collect();
        list.sort_by_key(|(k, _)| (k.level, k.code, k.origin));
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<CellKey, CellStats>, D::Error> {
        let list: Vec<(CellKey, CellStats)> = Vec::deserialize(d)?;
        Ok(list.into_iter().collect())
    }
}

/// A reference found for an item: the statistics and the cell they come from.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    pub cell: CellKey,
    pub stats: CellStats,
}

impl ReferenceTable {
    /// The most specific cell there is for this code and origin.
    pub fn lookup(&self, hs6: Hs6, origin: Option<CountryCode>) -> Option<Reference> {
        CellKey::chain(hs6, origin).into_iter().find_map(|key| {
            self.cells.get(&key).map(|stats| Reference {
                cell: key,
                stats: *stats,
            })
        })
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Collects observations, then builds the shrunk table.
#[derive(Debug, Default)]
pub struct ReferenceBuilder {
    observations: HashMap<CellKey, Vec<f32>>,
    with_origin: bool,
}

impl ReferenceBuilder {
    pub fn new(with_origin: bool) -> Self {
        Self {
            observations: HashMap::default(),
            with_origin,
        }
    }

    /// Adds one observation of the log quantity to every level of its chain.
    pub fn add(&mut self, hs6: Hs6, origin: Option<CountryCode>, log_value: f64) {
        if !log_value.is_finite() {
            return;
        }
        let chain = CellKey::chain(hs6, origin);
        let keys: &[CellKey] = if self.with_origin && origin.is_some() {
            &chain
        } else {
            &chain[1..]
        };
        for key in keys {
            self.observations
                .entry(*key)
                .or_default()
                .push(log_value as f32);
        }
    }

    pub fn build(self) -> ReferenceTable {
        let mut raw: HashMap<CellKey, CellStats> = HashMap::default();
        for (key, mut values) in self.observations {
            values.sort_by(f32::total_cmp);
            if let Some(stats) = CellStats::from_sorted(&values) {
                raw.insert(key, stats);
            }
        }
        // Shrink from the top of the hierarchy down, so each parent is final
        // before its children use it.
        let mut keys: Vec<CellKey> = raw.keys().copied().collect();
        keys.sort_by_key(|k| (k.level, k.origin.is_some(), k.code, k.origin));
        let mut cells: HashMap<CellKey, CellStats> =
            HashMap::with_capacity_and_hasher(raw.len(), Default::default());
        for key in keys {
            let stats = raw[&key];
            let parent = match (key.level, key.origin) {
                (0, _) => None,
                (6, Some(_)) => Some(CellKey {
                    origin: None,
                    ..key
                }),
                (6, None) => Some(CellKey {
                    level: 4,
                    code: key.code / 100,
                    origin: None,
                }),
                (4, _) => Some(CellKey {
                    level: 2,
                    code: key.code / 100,
                    origin: None,
                }),
                _ => Some(CellKey {
                    level: 0,
                    code: 0,
                    origin: None,
                }),
            };
            let shrunk = match parent.and_then(|p| cells.get(&p)) {
                Some(p) => stats.shrink_toward(p),
                None => stats,
            };
            cells.insert(key, shrunk);
        }
        ReferenceTable { cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_resist_a_fraud_minority_and_sparse_cells_shrink() {
        let shoes = Hs6::parse("640411").unwrap();
        let cn = CountryCode::parse("CN").ok();
        let tr = CountryCode::parse("TR").ok();
        let mut b = ReferenceBuilder::new(true);
        for i in 0..200 {
            // 20 % undervalued at a tenth of the price.
            let eur_per_kg = if i % 5 == 0 { 2.5 } else { 25.0 };
            b.add(shoes, cn, f64::ln(eur_per_kg));
        }
        b.add(shoes, tr, f64::ln(100.0));
        let table = b.build();
        let r = table.lookup(shoes, cn).unwrap();
        assert_eq!(r.cell.describe(), "hs6=640411|origin=CN");
        assert!((r.stats.median - 25f64.ln()).abs() < 0.05);
        // One Turkish observation barely moves its cell from the HS6 median.
        let t = table.lookup(shoes, tr).unwrap();
        assert!(t.stats.median < 30f64.ln(), "{}", t.stats.median.exp());
        // Unknown origin and unknown code fall back up the chain.
        assert_eq!(
            table.lookup(shoes, None).unwrap().cell.describe(),
            "hs6=640411"
        );
        let other = Hs6::parse("640419").unwrap();
        assert_eq!(table.lookup(other, cn).unwrap().cell.describe(), "hs4=6404");
    }
}
