//! The HS nomenclature shipped with the binary (`data/hs/harmonized-system.csv`,
//! HS 2022 edition, public domain): chapters, headings and six-digit
//! sub-headings with their descriptions.
//!
//! A well-formed HS6 that is missing here is accepted and flagged, never
//! rejected: editions differ (HS 2017 vs 2022), and an unknown code is itself a
//! risk signal.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::codes::Hs6;

/// Lookup of HS codes to their descriptions.
#[derive(Debug)]
pub struct Nomenclature {
    edition: &'static str,
    subheadings: HashMap<Hs6, String>,
    headings: HashMap<String, String>,
    chapters: HashMap<String, String>,
}

static BUILT_IN: LazyLock<Nomenclature> = LazyLock::new(|| {
    Nomenclature::parse(
        "HS2022",
        include_str!("../../data/hs/harmonized-system.csv"),
    )
    .expect("the built-in nomenclature is checked by a unit test")
});

/// A malformed nomenclature file.
#[derive(Debug, thiserror::Error)]
#[error("nomenclature line {line}: {reason}")]
pub struct NomenclatureError {
    pub line: u64,
    pub reason: String,
}

impl Nomenclature {
    /// The nomenclature shipped with the binary.
    pub fn built_in() -> &'static Nomenclature {
        &BUILT_IN
    }

    /// Parses the `section,hscode,description,parent,level` CSV.
    pub fn parse(edition: &'static str, text: &str) -> Result<Self, NomenclatureError> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut nomenclature = Nomenclature {
            edition,
            subheadings: HashMap::new(),
            headings: HashMap::new(),
            chapters: HashMap::new(),
        };
        for record in reader.records() {
            let record = record.map_err(|e| NomenclatureError {
                line: e.position().map_or(0, |p| p.line()),
                reason: e.to_string(),
            })?;
            let line = record.position().map_or(0, |p| p.line());
            // The table closes with statistical totals ("TOTAL", 99, 9999, 999999)
            // that are not goods.
            if record.get(0) == Some("TOTAL") {
                continue;
            }
            let (Some(code), Some(description)) = (record.get(1), record.get(2)) else {
                return Err(NomenclatureError {
                    line,
                    reason: "expected at least 3 columns".into(),
                });
            };
            let description = description.to_owned();
            match code.len() {
                2 => {
                    nomenclature.chapters.insert(code.to_owned(), description);
                }
                4 => {
                    nomenclature.headings.insert(code.to_owned(), description);
                }
                6 => {
                    let hs6 = Hs6::parse(code).map_err(|reason| NomenclatureError {
                        line,
                        reason: reason.into(),
                    })?;
                    nomenclature.subheadings.insert(hs6, description);
                }
                _ => {
                    return Err(NomenclatureError {
                        line,
                        reason: format!("code {code:?} is not 2, 4 or 6 digits"),
                    });
                }
            }
        }
        Ok(nomenclature)
    }

    /// The edition this table holds, e.g. "HS2022".
    pub fn edition(&self) -> &'static str {
        self.edition
    }

    pub fn contains(&self, hs6: Hs6) -> bool {
        self.subheadings.contains_key(&hs6)
    }

    pub fn describe(&self, hs6: Hs6) -> Option<&str> {
        self.subheadings.get(&hs6).map(String::as_str)
    }

    pub fn describe_heading(&self, heading: &str) -> Option<&str> {
        self.headings.get(heading).map(String::as_str)
    }

    pub fn describe_chapter(&self, chapter: &str) -> Option<&str> {
        self.chapters.get(chapter).map(String::as_str)
    }

    /// Number of six-digit sub-headings.
    pub fn subheading_count(&self) -> usize {
        self.subheadings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_nomenclature_has_the_2022_subheadings() {
        let hs = Nomenclature::built_in();
        // 5,612 goods sub-headings; the file's 999999 "not specified" total is skipped.
        assert_eq!(hs.subheading_count(), 5612);
        assert!(!hs.contains(Hs6::parse("999999").unwrap()));
        let smartphones = Hs6::parse("851713").unwrap();
        assert!(hs.describe(smartphones).unwrap().contains("smartphones"));
        assert!(hs.describe_heading("8517").is_some());
        assert!(hs.describe_chapter("85").is_some());
        // 851712 (mobile phones) was split into 851713/851714 in HS 2022.
        assert!(!hs.contains(Hs6::parse("851712").unwrap()));
    }
}
