//! H7 validation: field violations that name their path, limits, and the
//! cross-field rules and flags that apply once every field is parsed.
//!
//! Format errors reject a declaration; risk signals (an unknown HS6, a value
//! over EUR 150, a vague description) are recorded as [`DataFlag`]s instead.

use std::collections::HashSet;
use std::fmt;

use super::declaration::{DataFlag, DatasetType, Declaration};
use super::money::RateTable;
use super::nomenclature::Nomenclature;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path such as `items[2].hs6` (indices are 0-based positions).
    pub field: String,
    pub description: String,
}

/// Most violations one message reports; the rest are only counted. A
/// hostile message of a million bad elements must not cost a million error
/// entries (memory, and answers beyond any client's limits).
pub const MAX_VIOLATIONS: usize = 100;
/// Most bytes of a violation's field path or description (longer ones are
/// cut at a character boundary and end with "…").
pub const MAX_VIOLATION_TEXT: usize = 200;
/// Violations spelled out in the one-line form ([`ValidationError`]'s
/// `Display`, used for status messages, logs and batch rejects).
const DISPLAYED_VIOLATIONS: usize = 3;

/// The violations of one message: at most [`MAX_VIOLATIONS`], and how many
/// more there were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub violations: Vec<FieldViolation>,
    /// Violations found beyond those listed.
    pub omitted: usize,
}

impl ValidationError {
    /// Every violation found, listed or not.
    pub fn total(&self) -> usize {
        self.violations.len() + self.omitted
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for v in self.violations.iter().take(DISPLAYED_VIOLATIONS) {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", v.field, v.description)?;
        }
        let more = self.total().saturating_sub(DISPLAYED_VIOLATIONS);
        if more > 0 {
            write!(f, "; and {more} more")?;
        }
        Ok(())
    }
}

/// `text` cut to at most [`MAX_VIOLATION_TEXT`] bytes.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_VIOLATION_TEXT {
        let mut end = MAX_VIOLATION_TEXT - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Collects violations while walking a message; paths are built lazily.
/// Keeps the first [`MAX_VIOLATIONS`] and counts the rest.
#[derive(Debug, Default)]
pub struct Violations {
    list: Vec<FieldViolation>,
    omitted: usize,
}

impl Violations {
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.is_full() {
            self.omitted += 1;
            return;
        }
        self.list.push(FieldViolation {
            field: bounded(field.into()),
            description: bounded(description.into()),
        });
    }

    /// As [`Violations::push`], building the path only if it is kept.
    pub fn push_at(&mut self, field: impl FnOnce() -> String, description: impl Into<String>) {
        if self.is_full() {
            self.omitted += 1;
        } else {
            self.push(field(), description);
        }
    }

    fn is_full(&self) -> bool {
        self.list.len() >= MAX_VIOLATIONS
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(value)` when nothing was collected, else all violations.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ValidationError {
                violations: self.list,
                omitted: self.omitted,
            })
        }
    }

    /// Checks a string's length in characters against an EUCDM-style `an..max`.
    pub fn check_len(&mut self, field: impl FnOnce() -> String, value: &str, max: usize) {
        if value.len() > max && value.chars().count() > max {
            self.push_at(field, format!("longer than {max} characters"));
        }
    }

    /// Checks a required string: present and within `an..max`.
    pub fn check_required(&mut self, field: impl FnOnce() -> String, value: &str, max: usize) {
        if is_blank(value) {
            self.push_at(field, "is required");
        } else {
            self.check_len(field, value, max);
        }
    }
}

/// Sane limits on what one declaration may carry. The service configures them;
/// the defaults follow the EUCDM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Goods items per declaration (EUCDM allows 999 in H7; parcels carry far fewer).
    pub max_items: usize,
    /// Entries in the `attributes` map.
    pub max_attributes: usize,
    /// Gross mass of one item, grams: the EUCDM format bound (n..16,6 kg),
    /// beyond which a number is garbage whatever the declaration type.
    pub max_gross_mass_g: i64,
    /// Gross mass of one item of an H7/H6 parcel, grams: a heavier one is
    /// accepted and flagged ([`DataFlag::ImplausibleMass`]), never rejected.
    pub parcel_max_gross_mass_g: i64,
    /// Intrinsic value of one item, minor units (n..16,2).
    pub max_amount_minor: i64,
    /// Size of one declaration as received, bytes: a larger one is refused
    /// on its own (a stream goes on), below the transport's message limit.
    pub max_declaration_bytes: usize,
    /// How far after the validating machine's clock a declaration may be
    /// lodged. The service bounds it: the windows keep time by the latest
    /// declaration seen, so one dated years ahead would expire every buyer
    /// and address of its shard. `None` (files of history, which synthetic
    /// traffic may date ahead): any valid timestamp.
    pub max_lodged_ahead: Option<chrono::TimeDelta>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_items: 999,
            max_attributes: 64,
            max_gross_mass_g: 10_000_000_000_000,
            parcel_max_gross_mass_g: 1_000_000,
            max_amount_minor: 9_999_999_999_999_999,
            max_declaration_bytes: 1024 * 1024,
            max_lodged_ahead: None,
        }
    }
}

/// The H7 threshold: intrinsic value of the consignment, EUR cents.
pub const H7_THRESHOLD_EUR_CENTS: i64 = 15_000;

/// Terms the ICS2 stop-word list rejects as goods descriptions (Commission list, excerpt),
/// lower case. A description made only of these (and filler words) is vague.
pub const STOP_WORDS: &[&str] = &[
    "accessories",
    "accessory",
    "adapter",
    "apparel",
    "appliances",
    "articles",
    "as ordered",
    "as per invoice",
    "auto parts",
    "bags",
    "battery",
    "bazaar goods",
    "birthday gift",
    "birthday gifts",
    "cables",
    "caps",
    "cards",
    "case",
    "clothes",
    "clothing",
    "component",
    "components",
    "consolidated",
    "decorations",
    "docs",
    "documents",
    "e-commerce",
    "electronic goods",
    "electronic items",
    "electronics",
    "equipment",
    "footwear",
    "freight of all kinds",
    "garments",
    "general cargo",
    "gift",
    "gifts",
    "goods",
    "household goods",
    "items",
    "machinery",
    "merchandise",
    "parts",
    "present",
    "products",
    "sample",
    "samples",
    "see invoice",
    "shoes",
    "spare parts",
    "stuff",
    "textiles",
    "tools",
    "toys",
    "various goods",
];

/// Every word that occurs in a stop word or phrase, and the filler words:
/// the words that leave a description vague. FxHash: the words are ours.
/// Kept as bytes: an ASCII word is looked up without checking it is UTF-8.
static COVERING_WORDS: std::sync::LazyLock<rustc_hash::FxHashSet<&'static [u8]>> =
    std::sync::LazyLock::new(|| {
        STOP_WORDS
            .iter()
            .flat_map(|s| s.split(' '))
            .chain(FILLER_WORDS.iter().copied())
            .map(str::as_bytes)
            .collect()
    });

/// Longer than any covering word: an ASCII word this long is precise.
const COVERING_WORD_ROOM: usize = 24;

/// Filler words that do not make a description precise.
const FILLER_WORDS: &[&str] = &[
    "a", "an", "and", "for", "of", "the", "new", "other", "misc", "various", "free", "small",
];

/// Stop words (or phrases) the description contains, in catalogue order.
pub fn matched_stop_words(description: &str) -> Vec<&'static str> {
    let lower = description.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .collect();
    STOP_WORDS
        .iter()
        .copied()
        .filter(|stop| {
            let parts: Vec<&str> = stop.split(' ').collect();
            words.windows(parts.len()).any(|w| w == parts.as_slice())
        })
        .collect()
}

/// True when nothing in the description is more precise than a stop word:
/// every word is a stop word, part of a stop phrase, a filler or a number.
pub fn is_vague_description(description: &str) -> bool {
    // The usual case, split and lowered a byte at a time: every goods item
    // of every declaration comes through here. For ASCII text the byte and
    // the character tests are the same.
    if description.is_ascii() {
        let mut any = false;
        for raw in description
            .as_bytes()
            .split(|b| !b.is_ascii_alphanumeric() && *b != b'-')
            .filter(|w| !w.is_empty())
        {
            any = true;
            if !is_covering_ascii_word(raw) {
                return false;
            }
        }
        // A blank description is flagged as missing, not as vague.
        return any;
    }
    let mut any = false;
    let mut lowered = String::new();
    for raw in description
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
    {
        any = true;
        let covered = if raw.is_ascii() {
            is_covering_ascii_word(raw.as_bytes())
        } else {
            // Unicode lowering may turn a word into ASCII (the Kelvin sign).
            lowered.clear();
            lowered.extend(raw.chars().flat_map(char::to_lowercase));
            lowered.bytes().all(|b| b.is_ascii_digit())
                || COVERING_WORDS.contains(lowered.as_bytes())
        };
        if !covered {
            return false;
        }
    }
    any
}

/// Whether an ASCII word leaves a description vague: a number, or a
/// covering word in any case (lowered on the stack).
fn is_covering_ascii_word(raw: &[u8]) -> bool {
    if raw.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let mut room = [0u8; COVERING_WORD_ROOM];
    raw.len() <= room.len() && {
        let word = &mut room[..raw.len()];
        word.copy_from_slice(raw);
        word.make_ascii_lowercase();
        COVERING_WORDS.contains(&*word)
    }
}

/// `text.trim().is_empty()`, answered from the first byte when it is a
/// printable ASCII character (almost always), since `trim` walks Unicode
/// whitespace from both ends.
#[inline]
pub fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(b'!'..=b'~') => false,
        Some(_) => text.chars().all(char::is_whitespace),
    }
}

/// The context validation needs: the rate table and the nomenclature.
#[derive(Debug, Clone, Copy)]
pub struct ReferenceData<'a> {
    pub rates: &'a RateTable,
    pub nomenclature: &'a Nomenclature,
    pub limits: Limits,
}

impl ReferenceData<'static> {
    /// The tables shipped with the binary and default limits.
    pub fn built_in() -> Self {
        Self {
            rates: RateTable::built_in(),
            nomenclature: Nomenclature::built_in(),
            limits: Limits::default(),
        }
    }
}

/// Up to this many goods items, a repeated item number is looked for among
/// the items before each one rather than in a set.
const ITEMS_CHECKED_PAIRWISE: usize = 16;

/// Cross-field rules on a declaration whose fields are already parsed.
/// Adds violations for broken rules, at `prefix` as the declaration's own
/// fields were (`"declaration."` within a training example), and returns the
/// risk flags. The parcel checks (EUR 150, mass sanity) apply to H7/H6 only:
/// H1/I1 full declarations carry bulk trade, tonnes and millions, as normal
/// input.
pub fn check_declaration(
    declaration: &Declaration,
    prefix: &str,
    reference: &ReferenceData<'_>,
    violations: &mut Violations,
) -> Vec<DataFlag> {
    let mut flags = Vec::new();
    // A parcel's few items are checked against the items before them: no
    // set allocated and hashed per declaration (SipHash was most of this
    // check). A long declaration gets the set, so a hostile one stays linear.
    let mut seen_numbers =
        (declaration.items.len() > ITEMS_CHECKED_PAIRWISE).then(HashSet::<u32>::new);
    let mut total_eur_cents: i64 = 0;
    for (index, item) in declaration.items.iter().enumerate() {
        let repeated = match &mut seen_numbers {
            Some(seen) => !seen.insert(item.goods_item_number),
            None => declaration.items[..index]
                .iter()
                .any(|earlier| earlier.goods_item_number == item.goods_item_number),
        };
        if repeated {
            violations.push(
                format!("{prefix}items[{index}].goods_item_number"),
                format!("goods item number {} is used twice", item.goods_item_number),
            );
        }
        if declaration.dataset.is_parcel()
            && item.gross_mass_g > reference.limits.parcel_max_gross_mass_g
        {
            flags.push(DataFlag::ImplausibleMass {
                goods_item_number: item.goods_item_number,
                gross_mass_g: item.gross_mass_g,
            });
        }
        if !reference.nomenclature.contains(item.hs6) {
            flags.push(DataFlag::UnknownHs6 {
                goods_item_number: item.goods_item_number,
                hs6: item.hs6,
            });
        }
        if is_blank(&item.description) {
            flags.push(DataFlag::MissingDescription {
                goods_item_number: item.goods_item_number,
            });
        } else if is_vague_description(&item.description) {
            flags.push(DataFlag::VagueDescription {
                goods_item_number: item.goods_item_number,
            });
        }
        let codes = &item.additional_procedure_codes;
        let has = |c: &str| codes.iter().any(|x| x == c);
        let c08_mixed = has("C08") && (has("F48") || has("F49"));
        let ioss_mixed =
            !declaration.ioss_number.is_empty() && codes.iter().any(|c| c != "C07" && c != "F48");
        if c08_mixed || ioss_mixed {
            flags.push(DataFlag::InconsistentProcedureCodes {
                goods_item_number: item.goods_item_number,
            });
        }
        // The currency was checked against the table when the item was parsed.
        if let Some(cents) = reference.rates.to_eur_cents(item.intrinsic_value) {
            total_eur_cents = total_eur_cents.saturating_add(cents);
        }
    }
    if declaration.dataset == DatasetType::H7 && total_eur_cents > H7_THRESHOLD_EUR_CENTS {
        flags.push(DataFlag::H7ValueOver150 { total_eur_cents });
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_what_trim_leaves_empty() {
        for s in [
            "", " ", "\t\r\n", "\u{3000}", "\u{a0}", "\u{b}", "x", " x ", "\u{a0}x", "\0", "é",
        ] {
            assert_eq!(is_blank(s), s.trim().is_empty(), "{s:?}");
        }
    }

    #[test]
    fn violations_are_capped_counted_and_cut_at_character_boundaries() {
        let mut v = Violations::default();
        let mut built = 0;
        for i in 0..1000 {
            v.push_at(
                || {
                    built += 1;
                    format!("codes[{i}]")
                },
                "é".repeat(300),
            );
        }
        assert_eq!(
            built, MAX_VIOLATIONS,
            "paths of dropped violations are never built"
        );
        let err = v.finish(()).unwrap_err();
        assert_eq!(err.violations.len(), MAX_VIOLATIONS);
        assert_eq!(err.omitted, 1000 - MAX_VIOLATIONS);
        assert_eq!(err.total(), 1000);
        for f in &err.violations {
            assert!(f.description.len() <= MAX_VIOLATION_TEXT);
            assert!(f.description.ends_with('…'));
        }
        let line = err.to_string();
        assert!(line.ends_with("; and 997 more"), "{line}");
        assert!(line.len() < 3 * (MAX_VIOLATION_TEXT + 20));
    }

    #[test]
    fn vague_descriptions_are_only_stop_words() {
        for vague in [
            "Gift",
            "accessories",
            "birthday gifts",
            "parts & accessories",
            "2 gifts",
            "SAMPLE",
        ] {
            assert!(is_vague_description(vague), "{vague:?}");
        }
        for precise in [
            "Phone case silicone",
            "cotton T-shirt",
            "gift box with lighters",
        ] {
            assert!(!is_vague_description(precise), "{precise:?}");
        }
    }

    /// The definition `is_vague_description` implements faster.
    fn is_vague_by_definition(description: &str) -> bool {
        let words: Vec<String> = description
            .split(|c: char| !c.is_alphanumeric() && c != '-')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        !words.is_empty()
            && words.iter().all(|w| {
                FILLER_WORDS.contains(&w.as_str())
                    || w.chars().all(|c| c.is_ascii_digit())
                    || STOP_WORDS
                        .iter()
                        .any(|s| s.split(' ').any(|part| part == w))
            })
    }

    #[test]
    fn vagueness_follows_its_definition() {
        assert!(COVERING_WORDS.iter().all(|w| w.len() <= COVERING_WORD_ROOM));
        let pieces = [
            "Gift",
            "GIFTS",
            "of",
            "the",
            "phone",
            "case",
            "12",
            "x2",
            "\u{212a}",
            "toys",
            "Birthday",
            "-",
            " ",
            ", ",
            "  ",
            "é",
            "ACCESSORIES",
            "consolidated",
            "a",
            "verylongwordthatisnotastopwordatall",
            "\t",
            "3-pack",
        ];
        // Every description of up to three pieces.
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for text in [a.to_owned(), format!("{a} {b}"), format!("{a}{b} {c}")] {
                        assert_eq!(
                            is_vague_description(&text),
                            is_vague_by_definition(&text),
                            "{text:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 30_000);
    }

    #[test]
    fn stop_words_match_whole_words_and_phrases() {
        assert_eq!(
            matched_stop_words("Birthday gifts"),
            vec!["birthday gifts", "gifts"]
        );
        assert_eq!(matched_stop_words("Phone case"), vec!["case"]);
        assert!(matched_stop_words("Bookcase").is_empty());
    }

    #[test]
    fn validation_error_lists_every_field() {
        let mut v = Violations::default();
        v.push("lrn", "is required");
        v.push("items[0].hs6", "must be exactly six digits");
        let err = v.finish(()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lrn: is required; items[0].hs6: must be exactly six digits"
        );
    }
}
