//! The common form of a JSON Lines declaration, read byte by byte into the
//! raw shape without serde's visitors: what protobuf's JSON printers and
//! our own writer produce (field names as given, strings without escapes,
//! integers as plain numbers or strings, enums by name, no `null`s).
//!
//! It is the first of three readings (see `io::jsonl::decode_line`).
//! Anything it does not know for sure, it hands on by answering `None`:
//! an escape, a `null`, an unknown or repeated field, a number with a
//! fraction or exponent, bad JSON. The serde reading of the raw shape
//! ([`super::json`]) then has the line, and after it the wire message,
//! which has the last word. So this reader never refuses a line; it only
//! has to read what it accepts exactly as serde would. Through serde's
//! visitors, reading the JSON was about 57 % of decoding a JSON Lines
//! declaration (most of it per-field dispatch and per-string set-up on
//! strings of ten or twenty bytes).

use std::borrow::Cow;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, Error as ValueError};

use super::{
    JsonText, RawAddress, RawDeclaration, RawEns, RawExample, RawGoodsItem, RawMoney, RawParty,
    RawTransportDocument,
};
use crate::pb;

type Text<'a> = JsonText<'a>;

/// A declaration line in the common form, or `None` to ask serde.
pub fn declaration(line: &str) -> Option<RawDeclaration<Text<'_>>> {
    let mut reader = Reader::new(line);
    let declaration = reader.declaration()?;
    reader.end()?;
    Some(declaration)
}

/// An example line in the common form, or `None` to ask serde. Its result
/// and truth are wire messages, read in place by serde_json as the serde
/// reading reads them (a labelled history has a truth on every line).
pub fn example(line: &str) -> Option<RawExample<'_>> {
    let mut reader = Reader::new(line);
    let mut example = RawExample::default();
    let mut seen = 0;
    reader.object(|r, key| {
        match key {
            "declaration" => example.declaration = Some(r.field(&mut seen, 0)?.declaration()?),
            "result" => example.result = Some(r.field(&mut seen, 1)?.message()?),
            "truth" => example.truth = Some(r.field(&mut seen, 2)?.message()?),
            _ => return None,
        };
        Some(())
    })?;
    reader.end()?;
    Some(example)
}

/// A timestamp written `YYYY-MM-DDTHH:MM:SS` in UTC (`Z` or `+00:00`), as
/// protobuf's printers and most systems write whole seconds, or `None` for
/// any other form (fractions, other offsets, a leap second, a date that
/// does not exist), which chrono's RFC 3339 parser then reads. The same
/// instant as that parser gives; chrono's general parser was 1-2 % of
/// decoding a declaration.
pub(crate) fn utc_timestamp(text: &str) -> Option<pbjson_types::Timestamp> {
    let b = text.as_bytes();
    let (stamp, zone) = b.split_at_checked(19)?;
    if !matches!(zone, b"Z" | b"+00:00")
        || [stamp[4], stamp[7], stamp[10], stamp[13], stamp[16]] != *b"--T::"
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        stamp[from..to].iter().try_fold(0u32, |n, &digit| {
            digit
                .is_ascii_digit()
                .then(|| n * 10 + u32::from(digit - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(0, 4)?).ok()?,
        number(5, 7)?,
        number(8, 10)?,
    )?;
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if second > 59 {
        return None;
    }
    let at = date.and_hms_opt(hour, minute, second)?.and_utc();
    Some(pbjson_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

/// The `attributes` cell of a CSV or Parquet row in the common form (a
/// JSON object of strings without escapes), or `None` to ask serde. A key
/// given twice is listed twice, as serde's reading lists it.
pub fn attributes(cell: &str) -> Option<Vec<(Text<'_>, Text<'_>)>> {
    let mut reader = Reader::new(cell);
    let mut pairs = Vec::new();
    reader.object(|r, key| {
        let value = r.text()?;
        pairs.push((JsonText(Cow::Borrowed(key)), value));
        Some(())
    })?;
    reader.end()?;
    Some(pairs)
}

/// The `ens` cell of a CSV or Parquet row in the common form, or `None` to
/// read it as the wire message.
pub fn ens(cell: &str) -> Option<RawEns<Text<'_>>> {
    let mut reader = Reader::new(cell);
    let ens = reader.ens()?;
    reader.end()?;
    Some(ens)
}

/// Marks field `bit` as given; `None` when it was given before (serde
/// refuses a field twice, under either of its names).
fn first_time(seen: &mut u32, bit: u32) -> Option<()> {
    let mask = 1 << bit;
    (*seen & mask == 0).then(|| *seen |= mask)
}

/// Where a string's text stops: at its closing quote, a backslash or a
/// control character (which JSON does not allow in a string), or `None` at
/// the end of the line. Eight bytes at a time: the strings are short, and
/// `memchr2` plus a check for control characters cost half again as much.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte below `n` (`n` ≤ 0x80); the lowest one set
    // is exact, the ones above it may be borrows.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let stops =
            below(word ^ (ONES * 0x22), 1) | below(word ^ (ONES * 0x5c), 1) | below(word, 0x20);
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

struct Reader<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(line: &'a str) -> Self {
        Self { line, at: 0 }
    }

    /// The reader at the value of field `bit`, given for the first time.
    fn field(&mut self, seen: &mut u32, bit: u32) -> Option<&mut Self> {
        first_time(seen, bit)?;
        Some(self)
    }

    fn bytes(&self) -> &'a [u8] {
        self.line.as_bytes()
    }

    /// The next byte after JSON whitespace, not taken.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Nothing but whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// A string without escapes or control characters, borrowed.
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = string_stop(&self.bytes()[start..])?;
        if self.bytes()[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are at an ASCII quote, so on character boundaries.
        self.line.get(start..start + len)
    }

    fn text(&mut self) -> Option<Text<'a>> {
        self.str().map(|s| JsonText(Cow::Borrowed(s)))
    }

    /// Calls `field` with each key, the reader at its value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.str()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Calls `element` with the reader at each element.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn texts(&mut self) -> Option<Vec<Text<'a>>> {
        let mut texts = Vec::new();
        self.array(|r| {
            texts.push(r.text()?);
            Some(())
        })?;
        Some(texts)
    }

    /// An integer as `json::number` reads it: a string through `FromStr`,
    /// or a plain JSON integer through a range check (serde's reading of
    /// a `u64` or `i64` into `T`). Fractions, exponents, `-0` and integers
    /// past 64 bits (serde_json makes floats of them) are left to serde.
    fn integer<T>(&mut self) -> Option<T>
    where
        T: FromStr + TryFrom<u64> + TryFrom<i64>,
    {
        if self.peek()? == b'"' {
            return self.str()?.parse().ok();
        }
        let bytes = self.bytes();
        let start = self.at;
        let negative = bytes[start] == b'-';
        let digits_from = start + usize::from(negative);
        let digits = bytes[digits_from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let number = &self.line[digits_from..digits_from + digits];
        // JSON has no leading zeros; `-0` is a float to serde_json.
        if digits == 0 || (number.starts_with('0') && (digits > 1 || negative)) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = bytes.get(digits_from + digits) {
            return None;
        }
        self.at = digits_from + digits;
        if negative {
            T::try_from(self.line[start..self.at].parse::<i64>().ok()?).ok()
        } else {
            T::try_from(number.parse::<u64>().ok()?).ok()
        }
    }

    /// An enum by its full name, as `json::enum_value` reads it.
    fn enum_value(&mut self, from_name: impl Fn(&str) -> Option<i32>) -> Option<i32> {
        from_name(self.str()?)
    }

    /// A wire message by serde_json, from where the reader is to the end of
    /// the value (a `null` is left to serde, as everywhere here).
    fn message<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        if self.peek()? != b'{' {
            return None;
        }
        let mut values = serde_json::Deserializer::from_str(&self.line[self.at..]).into_iter();
        let message = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(message)
    }

    fn timestamp(&mut self) -> Option<pbjson_types::Timestamp> {
        let text = self.str()?;
        utc_timestamp(text).or_else(|| {
            pbjson_types::Timestamp::deserialize(BorrowedStrDeserializer::<ValueError>::new(text))
                .ok()
        })
    }

    fn declaration(&mut self) -> Option<RawDeclaration<Text<'a>>> {
        let mut d = RawDeclaration::default();
        let mut seen = 0;
        self.object(|r, key| {
            let bit = match key {
                "declarationId" | "declaration_id" => 0,
                "lrn" => 1,
                "mrn" => 2,
                "dataset" => 3,
                "additionalDeclarationType" | "additional_declaration_type" => 4,
                "lodgedAt" | "lodged_at" => 5,
                "ucr" => 6,
                "exporter" => 7,
                "importer" => 8,
                "declarant" => 9,
                "iossNumber" | "ioss_number" => 10,
                "transportDocuments" | "transport_documents" => 11,
                "locationOfGoods" | "location_of_goods" => 12,
                "carrierChannel" | "carrier_channel" => 13,
                "flightNumber" | "flight_number" => 14,
                "arrivalAt" | "arrival_at" => 15,
                "transportAndInsuranceCosts" | "transport_and_insurance_costs" => 16,
                "items" => 17,
                "ens" => 18,
                "attributes" => 19,
                _ => return None,
            };
            first_time(&mut seen, bit)?;
            match bit {
                0 => d.declaration_id = r.text()?,
                1 => d.lrn = r.text()?,
                2 => d.mrn = r.text()?,
                3 => {
                    d.dataset =
                        r.enum_value(|n| pb::DatasetType::from_str_name(n).map(Into::into))?
                }
                4 => d.additional_declaration_type = r.text()?,
                5 => d.lodged_at = Some(r.timestamp()?),
                6 => d.ucr = r.text()?,
                7 => d.exporter = Some(r.party()?),
                8 => d.importer = Some(r.party()?),
                9 => d.declarant = Some(r.party()?),
                10 => d.ioss_number = r.text()?,
                11 => {
                    r.array(|r| {
                        d.transport_documents.push(r.transport_document()?);
                        Some(())
                    })?;
                }
                12 => d.location_of_goods = r.text()?,
                13 => {
                    d.carrier_channel =
                        r.enum_value(|n| pb::CarrierChannel::from_str_name(n).map(Into::into))?
                }
                14 => d.flight_number = r.text()?,
                15 => d.arrival_at = Some(r.timestamp()?),
                16 => d.transport_and_insurance_costs = Some(r.money()?),
                17 => {
                    r.array(|r| {
                        d.items.push(r.item()?);
                        Some(())
                    })?;
                }
                18 => d.ens = Some(Box::new(r.ens()?)),
                _ => {
                    // A key given twice is listed twice, as `json::attributes` does.
                    r.object(|r, key| {
                        let value = r.text()?;
                        d.attributes.push((JsonText(Cow::Borrowed(key)), value));
                        Some(())
                    })?;
                }
            }
            Some(())
        })?;
        Some(d)
    }

    fn party(&mut self) -> Option<RawParty<Text<'a>>> {
        let mut p = RawParty::default();
        let mut seen = 0;
        self.object(|r, key| {
            match key {
                "name" => p.name = r.field(&mut seen, 0)?.text()?,
                "identificationNumber" | "identification_number" => {
                    p.identification_number = r.field(&mut seen, 1)?.text()?
                }
                "address" => p.address = Some(r.field(&mut seen, 2)?.address()?),
                "phone" => p.phone = r.field(&mut seen, 3)?.text()?,
                "email" => p.email = r.field(&mut seen, 4)?.text()?,
                _ => return None,
            };
            Some(())
        })?;
        Some(p)
    }

    fn address(&mut self) -> Option<RawAddress<Text<'a>>> {
        let mut a = RawAddress::default();
        let mut seen = 0;
        self.object(|r, key| {
            match key {
                "streetAndNumber" | "street_and_number" => {
                    a.street_and_number = r.field(&mut seen, 0)?.text()?
                }
                "postcode" => a.postcode = r.field(&mut seen, 1)?.text()?,
                "city" => a.city = r.field(&mut seen, 2)?.text()?,
                "country" => a.country = r.field(&mut seen, 3)?.text()?,
                _ => return None,
            };
            Some(())
        })?;
        Some(a)
    }

    fn transport_document(&mut self) -> Option<RawTransportDocument<Text<'a>>> {
        let mut t = RawTransportDocument::default();
        let mut seen = 0;
        self.object(|r, key| {
            match key {
                "kind" => {
                    t.kind = r.field(&mut seen, 0)?.enum_value(|n| {
                        pb::TransportDocumentKind::from_str_name(n).map(Into::into)
                    })?
                }
                "reference" => t.reference = r.field(&mut seen, 1)?.text()?,
                _ => return None,
            };
            Some(())
        })?;
        Some(t)
    }

    fn money(&mut self) -> Option<RawMoney<Text<'a>>> {
        let mut m = RawMoney::default();
        let mut seen = 0;
        self.object(|r, key| {
            match key {
                "currency" => m.currency = r.field(&mut seen, 0)?.text()?,
                "amountMinor" | "amount_minor" => {
                    m.amount_minor = r.field(&mut seen, 1)?.integer()?
                }
                _ => return None,
            };
            Some(())
        })?;
        Some(m)
    }

    fn item(&mut self) -> Option<RawGoodsItem<Text<'a>>> {
        let mut i = RawGoodsItem::default();
        let mut seen = 0;
        self.object(|r, key| {
            match key {
                "goodsItemNumber" | "goods_item_number" => {
                    i.goods_item_number = r.field(&mut seen, 0)?.integer()?
                }
                "description" => i.description = r.field(&mut seen, 1)?.text()?,
                "hs6" => i.hs6 = r.field(&mut seen, 2)?.text()?,
                "intrinsicValue" | "intrinsic_value" => {
                    i.intrinsic_value = Some(r.field(&mut seen, 3)?.money()?)
                }
                "grossMassG" | "gross_mass_g" => {
                    i.gross_mass_g = r.field(&mut seen, 4)?.integer()?
                }
                "quantity" => i.quantity = r.field(&mut seen, 5)?.integer()?,
                "additionalProcedureCodes" | "additional_procedure_codes" => {
                    i.additional_procedure_codes = r.field(&mut seen, 6)?.texts()?
                }
                "countryOfOrigin" | "country_of_origin" => {
                    i.country_of_origin = r.field(&mut seen, 7)?.text()?
                }
                _ => return None,
            };
            Some(())
        })?;
        Some(i)
    }

    fn ens(&mut self) -> Option<RawEns<Text<'a>>> {
        let mut e = RawEns::default();
        let mut seen = 0;
        self.object(|r, key| {
            match key {
                "ensMrn" | "ens_mrn" => e.ens_mrn = r.field(&mut seen, 0)?.text()?,
                "consignor" => e.consignor = Some(r.field(&mut seen, 1)?.party()?),
                "consignee" => e.consignee = Some(r.field(&mut seen, 2)?.party()?),
                "totalGrossMassG" | "total_gross_mass_g" => {
                    e.total_gross_mass_g = r.field(&mut seen, 3)?.integer()?
                }
                "description" => e.description = r.field(&mut seen, 4)?.text()?,
                "countryOfOrigin" | "country_of_origin" => {
                    e.country_of_origin = r.field(&mut seen, 5)?.text()?
                }
                _ => return None,
            };
            Some(())
        })?;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_stops_where_a_byte_by_byte_scan_does() {
        let by_byte = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let alphabet: &[u8] = b"a\"\\\x00\x1f\x20\x21\x7f\x80\xff\xc3\xa9\x5b\x5d";
        // Every string of up to 17 bytes drawn from an alphabet of the edges,
        // by a fixed pseudo-random walk.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 18) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i * 3 % 60)) as usize + i) % alphabet.len()])
                .collect();
            assert_eq!(string_stop(&bytes), by_byte(&bytes), "{bytes:?}");
        }
        assert_eq!(string_stop(b"abcdefghij\"x"), Some(10));
        assert_eq!(string_stop(b"abcdefgh"), None);
    }

    /// An ENS as its texts and mass, to compare readings.
    fn flat<S: AsRef<str>>(e: RawEns<S>) -> Vec<String> {
        let owned =
            |texts: &[&S]| -> Vec<String> { texts.iter().map(|t| t.as_ref().to_owned()).collect() };
        let party = |p: Option<RawParty<S>>| -> Vec<String> {
            p.map_or_else(
                || vec!["-".to_owned()],
                |p| {
                    let a = p.address.map_or_else(
                        || vec!["-".to_owned()],
                        |a| owned(&[&a.street_and_number, &a.postcode, &a.city, &a.country]),
                    );
                    [
                        owned(&[&p.name, &p.identification_number, &p.phone, &p.email]),
                        a,
                    ]
                    .concat()
                },
            )
        };
        [
            owned(&[&e.ens_mrn, &e.description, &e.country_of_origin]),
            vec![e.total_gross_mass_g.to_string()],
            party(e.consignor),
            party(e.consignee),
        ]
        .concat()
    }

    #[test]
    fn ens_and_attributes_cells_read_as_serde_reads_them_or_are_handed_on() {
        let cells = [
            r#"{"ensMrn":"26BE0000000000001","consignor":{"name":"S","address":{"streetAndNumber":"1 Rd","postcode":"1","city":"C","country":"CN"}},"consignee":{"name":"B"},"totalGrossMassG":"450","description":"shoes","countryOfOrigin":"CN"}"#,
            r#"{"ens_mrn":"M","total_gross_mass_g":450,"country_of_origin":"CN"}"#,
            r#" { "description" : "x" } "#,
            r#"{}"#,
            r#"{"consignor":null}"#,
            r#"{"description":"a\"b"}"#,
            r#"{"description":"x","description":"y"}"#,
            r#"{"unknown":1}"#,
            r#"{"totalGrossMassG":1.5}"#,
            r#"{"description":"x"} trailing"#,
            r#"not json"#,
        ];
        let mut read_directly = 0;
        for cell in cells {
            let wire = serde_json::from_str::<pb::EnsHouseConsignment>(cell)
                .ok()
                .map(|m| flat(RawEns::<String>::from(m)));
            if let Some(direct) = ens(cell) {
                read_directly += 1;
                let direct = flat(direct);
                assert_eq!(Some(direct), wire, "{cell}");
            }
        }
        assert_eq!(read_directly, 4);
        let pairs = |cell| {
            attributes(cell).map(|p| {
                p.into_iter()
                    .map(|(k, v)| (k.0.into_owned(), v.0.into_owned()))
                    .collect::<Vec<_>>()
            })
        };
        let owned = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pairs(r#"{"b":"1","a":"2","b":"3"}"#),
            Some(owned(&[("b", "1"), ("a", "2"), ("b", "3")]))
        );
        assert_eq!(pairs(" {} "), Some(Vec::new()));
        for handed_on in [
            r#"{"k":5}"#,
            r#"{"k":"\u00e9"}"#,
            r#"{"k":null}"#,
            "{",
            "[]",
        ] {
            assert_eq!(pairs(handed_on), None, "{handed_on}");
        }
    }

    #[test]
    fn utc_timestamps_read_as_chrono_reads_them_or_are_handed_on() {
        let chrono = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.timestamp())
        };
        let mut read = 0;
        // Dates and times at and past their bounds, in every zone form.
        for date in [
            "2026-08-31",
            "2024-02-29",
            "2026-02-29",
            "2026-02-30",
            "2026-13-01",
            "2026-00-10",
            "0000-01-01",
            "9999-12-31",
            "1970-01-01",
            "2026-1-01",
            "2026-01-0a",
        ] {
            for time in [
                "00:00:00", "23:59:59", "11:39:55", "24:00:00", "23:60:00", "23:59:60", "1:00:00",
            ] {
                for zone in [
                    "Z", "+00:00", "z", "-00:00", "+01:00", ".5Z", "", "ZZ", " Z",
                ] {
                    for separator in ["T", "t", " "] {
                        let text = format!("{date}{separator}{time}{zone}");
                        if let Some(fast) = utc_timestamp(&text) {
                            read += 1;
                            assert_eq!(Some(fast.seconds), chrono(&text), "{text}");
                            assert_eq!(fast.nanos, 0);
                        }
                    }
                }
            }
        }
        // 5 dates that exist, 3 times, 2 zones, 1 separator.
        assert_eq!(read, 5 * 3 * 2);
        assert_eq!(utc_timestamp("2026-08-31T11:39:55é"), None);
        assert_eq!(utc_timestamp("2026-08-31T11:39"), None);
    }

    #[test]
    fn integers_are_read_as_serde_reads_them_or_handed_on() {
        let read = |text: &str| Reader::new(text).integer::<i64>();
        assert_eq!(read("0"), Some(0));
        assert_eq!(read("-12"), Some(-12));
        assert_eq!(read("\"77\""), Some(77));
        assert_eq!(read("9223372036854775807"), Some(i64::MAX));
        assert_eq!(read("-9223372036854775808"), Some(i64::MIN));
        for handed_on in [
            "-0",
            "01",
            "1.5",
            "1e3",
            "9223372036854775808",
            "-",
            "x",
            "null",
        ] {
            assert_eq!(read(handed_on), None, "{handed_on}");
        }
        assert_eq!(Reader::new("4294967296").integer::<u32>(), None);
    }
}
