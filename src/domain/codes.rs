//! Small checked codes: HS6 sub-headings, ISO country and currency codes.
//!
//! Each is a `Copy` newtype over ASCII bytes so that the hot path compares and
//! hashes them without allocating.

use std::fmt;

/// A six-digit Harmonized System sub-heading (DE 18 09 056), leading zeros kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hs6([u8; 6]);

/// How many distinct codes there are: compared pairwise for the usual few
/// (no allocation), through a set for long lists.
pub fn distinct_hs6(codes: impl ExactSizeIterator<Item = Hs6> + Clone) -> usize {
    if codes.len() <= 32 {
        codes
            .clone()
            .enumerate()
            .filter(|(k, code)| !codes.clone().take(*k).any(|earlier| earlier == *code))
            .count()
    } else {
        codes.collect::<std::collections::BTreeSet<Hs6>>().len()
    }
}

impl Hs6 {
    /// Fills unused slots of fixed-size arrays; never shown or scored.
    pub const PADDING: Hs6 = Hs6(*b"000000");

    /// Parses exactly six ASCII digits.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let bytes = s.as_bytes();
        if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err("must be exactly six digits");
        }
        let mut code = [0u8; 6];
        code.copy_from_slice(bytes);
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).expect("HS6 codes hold ASCII digits")
    }

    /// The HS chapter (first two digits), e.g. "85".
    pub fn chapter(&self) -> &str {
        &self.as_str()[..2]
    }

    /// The HS heading (first four digits), e.g. "8517".
    pub fn heading(&self) -> &str {
        &self.as_str()[..4]
    }

    /// The heading as a number (first four digits), cheaper to compare than text.
    pub fn heading_number(&self) -> u32 {
        self.as_u32() / 100
    }

    /// The chapter as a number (first two digits).
    pub fn chapter_number(&self) -> u32 {
        self.as_u32() / 10_000
    }

    /// The sub-heading as an integer, handy as a compact key.
    pub fn as_u32(&self) -> u32 {
        self.0
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    }
}

impl fmt::Debug for Hs6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hs6({})", self.as_str())
    }
}

impl fmt::Display for Hs6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 3166-1 alpha-2 country code (two upper-case letters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses two upper-case ASCII letters. Whether the code is assigned is not
    /// checked: national systems use user-assigned codes such as "XK".
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let bytes = s.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err("must be an ISO 3166-1 alpha-2 code (two upper-case letters)");
        }
        Ok(Self([bytes[0], bytes[1]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("country codes hold ASCII letters")
    }

    pub fn as_bytes(&self) -> &[u8; 2] {
        &self.0
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 4217 alphabetic currency code known to the rate table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    /// Checks the shape only (three upper-case letters); see
    /// [`crate::domain::RateTable::knows`] for whether it can be converted.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let bytes = s.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err("must be an ISO 4217 code (three upper-case letters)");
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("currency codes hold ASCII letters")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_codes_are_counted_for_short_and_long_lists() {
        let codes = |n: usize| -> Vec<Hs6> {
            (0..n)
                .map(|i| Hs6::parse(&format!("{:06}", 610000 + i % 7)).unwrap())
                .collect()
        };
        assert_eq!(distinct_hs6(codes(0).into_iter()), 0);
        assert_eq!(distinct_hs6(codes(5).into_iter()), 5);
        assert_eq!(distinct_hs6(codes(20).into_iter()), 7);
        assert_eq!(distinct_hs6(codes(40).into_iter()), 7);
    }

    #[test]
    fn hs6_keeps_leading_zeros_and_splits_levels() {
        let code = Hs6::parse("010121").unwrap();
        assert_eq!(code.as_str(), "010121");
        assert_eq!(code.chapter(), "01");
        assert_eq!(code.heading(), "0101");
        assert_eq!(code.as_u32(), 10121);
    }

    #[test]
    fn hs6_rejects_wrong_shapes() {
        for bad in ["", "12345", "1234567", "12345a", "８５１７１３", " 85171"] {
            assert!(Hs6::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn country_and_currency_require_upper_case() {
        assert!(CountryCode::parse("CN").is_ok());
        assert!(CountryCode::parse("cn").is_err());
        assert!(CountryCode::parse("CHN").is_err());
        assert!(Currency::parse("CNY").is_ok());
        assert!(Currency::parse("cny").is_err());
        assert!(Currency::parse("EURO").is_err());
    }
}
