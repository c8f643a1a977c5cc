//! The `attributes` map as categorical features: for the most common keys,
//! one indicator per frequent value plus one for any other value. Data from
//! other national systems thus trains without code changes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::Attributes;

/// Most keys and values per key encoded.
const MAX_KEYS: usize = 8;
const MAX_VALUES: usize = 6;
/// A value must appear in this share of declarations to get its own indicator.
const MIN_VALUE_SHARE: f64 = 0.005;

/// The fitted encoder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributeEncoder {
    /// (key, frequent values), in feature order.
    keys: Vec<(String, Vec<String>)>,
}

impl AttributeEncoder {
    /// Learns keys and values from the declarations' attribute maps.
    pub fn fit<'a>(maps: impl Iterator<Item = &'a Attributes>) -> Self {
        let mut rows = 0usize;
        let mut key_counts: HashMap<&str, usize> = HashMap::new();
        let mut value_counts: HashMap<(&str, &str), usize> = HashMap::new();
        for map in maps {
            rows += 1;
            for (k, v) in map {
                *key_counts.entry(k).or_default() += 1;
                *value_counts.entry((k, v)).or_default() += 1;
            }
        }
        let mut keys: Vec<(&str, usize)> = key_counts.into_iter().collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        keys.truncate(MAX_KEYS);
        let min_count = ((rows as f64) * MIN_VALUE_SHARE).ceil() as usize;
        let keys = keys
            .into_iter()
            .map(|(key, _)| {
                let mut values: Vec<(&str, usize)> = value_counts
                    .iter()
                    .filter(|((k, _), n)| *k == key && **n >= min_count.max(2))
                    .map(|((_, v), n)| (*v, *n))
                    .collect();
                values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                values.truncate(MAX_VALUES);
                (
                    key.to_owned(),
                    values.into_iter().map(|(v, _)| v.to_owned()).collect(),
                )
            })
            .collect();
        Self { keys }
    }

    /// Feature names, `attr.<key>=<value>` and `attr.<key>.other`.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (key, values) in &self.keys {
            for value in values {
                names.push(format!("attr.{key}={value}"));
            }
            names.push(format!("attr.{key}.other"));
        }
        names
    }

    /// Appends the indicators of one declaration.
    pub fn encode(&self, attributes: &Attributes, out: &mut Vec<f64>) {
        // All indicators off, then one pass over the declaration's few
        // attributes turns on the ones it has (cheaper than a map search
        // per known key).
        let start = out.len();
        let width: usize = self.keys.iter().map(|(_, values)| values.len() + 1).sum();
        out.resize(start + width, 0.0);
        for (key, value) in attributes {
            let mut offset = start;
            for (known, values) in &self.keys {
                if known == key {
                    let at = values
                        .iter()
                        .position(|v| v == value)
                        .unwrap_or(values.len());
                    out[offset + at] = 1.0;
                    break;
                }
                offset += values.len() + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_frequent_values_and_other() {
        let maps: Vec<Attributes> = (0..100)
            .map(|i| {
                let mut m = Attributes::new();
                m.insert("platform".into(), if i % 2 == 0 { "a" } else { "b" }.into());
                if i == 0 {
                    m.insert("platform".into(), "rare".into());
                }
                m
            })
            .collect();
        let enc = AttributeEncoder::fit(maps.iter());
        assert_eq!(
            enc.names(),
            vec!["attr.platform=b", "attr.platform=a", "attr.platform.other"]
        );
        let mut out = Vec::new();
        enc.encode(&maps[1], &mut out);
        enc.encode(
            &Attributes::from([("platform".into(), "zzz".into())]),
            &mut out,
        );
        enc.encode(&Attributes::new(), &mut out);
        assert_eq!(out, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn each_key_fills_its_own_columns() {
        let maps: Vec<Attributes> = (0..100)
            .map(|i| {
                Attributes::from([
                    ("platform".into(), ["a", "b"][i % 2].into()),
                    ("payment".into(), ["card", "wallet", "cash"][i % 3].into()),
                ])
            })
            .collect();
        let enc = AttributeEncoder::fit(maps.iter());
        let names = enc.names();
        let declaration = Attributes::from([
            ("payment".into(), "crypto".into()),
            ("platform".into(), "b".into()),
            ("unknown".into(), "x".into()),
        ]);
        let mut out = vec![7.0];
        enc.encode(&declaration, &mut out);
        assert_eq!(out[0], 7.0);
        let on: Vec<&str> = names
            .iter()
            .zip(&out[1..])
            .filter(|(_, v)| **v == 1.0)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            on,
            vec!["attr.payment.other", "attr.platform=b"],
            "{names:?}"
        );
        assert_eq!(out.len(), names.len() + 1);
    }
}
