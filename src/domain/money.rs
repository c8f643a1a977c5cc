//! Money in integer minor units and its conversion to EUR through a versioned
//! table of reference rates.

// Looked up for every goods item: FxHash, not SipHash (keys are ours).
use rustc_hash::FxHashMap as HashMap;
use std::sync::LazyLock;

use super::codes::Currency;

/// An amount in the minor units of its currency (ISO 4217 exponent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub currency: Currency,
    pub amount_minor: i64,
}

impl Money {
    pub fn new(currency: Currency, amount_minor: i64) -> Self {
        Self {
            currency,
            amount_minor,
        }
    }

    /// EUR amount given in cents.
    pub fn eur_cents(amount: i64) -> Self {
        Self::new(Currency::EUR, amount)
    }
}

/// One currency's reference rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Units of the currency that one EUR buys.
    pub units_per_eur: f64,
    /// ISO 4217 minor-unit digits (2 for CNY, 0 for JPY and KRW).
    pub minor_digits: u8,
}

/// A versioned table of EUR reference rates.
#[derive(Debug, Clone)]
pub struct RateTable {
    version: String,
    rates: HashMap<Currency, Rate>,
}

/// Errors in a rate table file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RateTableError {
    #[error("rate table line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("rate table has no '# version=' line")]
    MissingVersion,
    #[error("rate table has no EUR row")]
    MissingEur,
}

static BUILT_IN: LazyLock<RateTable> = LazyLock::new(|| {
    RateTable::parse(include_str!("../../data/reference/eur_rates.csv"))
        .expect("the built-in rate table is checked by a unit test")
});

impl RateTable {
    /// The table shipped with the binary (`data/reference/eur_rates.csv`).
    pub fn built_in() -> &'static RateTable {
        &BUILT_IN
    }

    /// Parses `currency,units_per_eur,minor_digits` rows; `#` lines are
    /// comments, one of which must carry `version=...`.
    pub fn parse(text: &str) -> Result<Self, RateTableError> {
        let mut version = None;
        let mut rates = HashMap::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim();
            if let Some(comment) = raw.strip_prefix('#') {
                if let Some(v) = comment.trim().strip_prefix("version=") {
                    version = Some(v.trim().to_owned());
                }
                continue;
            }
            if raw.is_empty() || raw.starts_with("currency,") {
                continue;
            }
            let bad = |reason: &str| RateTableError::BadLine {
                line,
                reason: reason.to_owned(),
            };
            let mut fields = raw.split(',');
            let (Some(code), Some(rate), Some(digits), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("expected currency,units_per_eur,minor_digits"));
            };
            let currency = Currency::parse(code).map_err(bad)?;
            let units_per_eur: f64 = rate.parse().map_err(|_| bad("rate is not a number"))?;
            if !(units_per_eur.is_finite() && units_per_eur > 0.0) {
                return Err(bad("rate must be positive"));
            }
            let minor_digits: u8 = digits
                .parse()
                .ok()
                .filter(|d| *d <= 4)
                .ok_or_else(|| bad("minor_digits must be 0..=4"))?;
            rates.insert(
                currency,
                Rate {
                    units_per_eur,
                    minor_digits,
                },
            );
        }
        let version = version.ok_or(RateTableError::MissingVersion)?;
        if !rates.contains_key(&Currency::EUR) {
            return Err(RateTableError::MissingEur);
        }
        Ok(Self { version, rates })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn knows(&self, currency: Currency) -> bool {
        self.rates.contains_key(&currency)
    }

    pub fn rate(&self, currency: Currency) -> Option<Rate> {
        self.rates.get(&currency).copied()
    }

    /// Number of currencies in the table, EUR included.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The amount in EUR (as a float, for features and reporting), or `None`
    /// for a currency the table does not know.
    pub fn to_eur(&self, money: Money) -> Option<f64> {
        let rate = self.rate(money.currency)?;
        let major = money.amount_minor as f64 / 10f64.powi(i32::from(rate.minor_digits));
        Some(major / rate.units_per_eur)
    }

    /// The amount in EUR cents, rounded to the nearest cent.
    pub fn to_eur_cents(&self, money: Money) -> Option<i64> {
        self.to_eur(money).map(|eur| (eur * 100.0).round() as i64)
    }

    /// Converts EUR (major units) into minor units of `currency`, rounded.
    pub fn from_eur(&self, eur: f64, currency: Currency) -> Option<Money> {
        let rate = self.rate(currency)?;
        let minor = eur * rate.units_per_eur * 10f64.powi(i32::from(rate.minor_digits));
        Some(Money::new(currency, minor.round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table_covers_the_ecb_currencies() {
        let table = RateTable::built_in();
        assert!(table.len() >= 31, "EUR plus at least 30 currencies");
        for code in [
            "KRW", "CNY", "USD", "HKD", "GBP", "JPY", "CHF", "SEK", "PLN",
        ] {
            assert!(table.knows(Currency::parse(code).unwrap()), "{code}");
        }
        assert!(table.version().starts_with("ecb"));
    }

    #[test]
    fn converts_with_the_currency_exponent() {
        let table = RateTable::parse(
            "# version=t1\ncurrency,units_per_eur,minor_digits\nEUR,1,2\nCNY,8,2\nJPY,160,0\n",
        )
        .unwrap();
        let cny = Currency::parse("CNY").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(table.to_eur_cents(Money::new(cny, 800)), Some(100));
        assert_eq!(table.to_eur_cents(Money::new(jpy, 1600)), Some(1000));
        assert_eq!(table.to_eur_cents(Money::eur_cents(1234)), Some(1234));
        assert_eq!(table.from_eur(1.0, jpy), Some(Money::new(jpy, 160)));
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(table.to_eur(Money::new(usd, 1)), None);
    }

    #[test]
    fn rejects_bad_tables_with_the_line() {
        assert_eq!(
            RateTable::parse("EUR,1,2\n").unwrap_err(),
            RateTableError::MissingVersion
        );
        let err = RateTable::parse("# version=x\nEUR,1,2\nUSD,-1,2\n").unwrap_err();
        assert!(
            matches!(err, RateTableError::BadLine { line: 3, .. }),
            "{err}"
        );
        let err = RateTable::parse("# version=x\nUSD,1,2\n").unwrap_err();
        assert_eq!(err, RateTableError::MissingEur);
    }
}
