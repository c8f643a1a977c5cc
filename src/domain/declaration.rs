//! The checked H7 declaration. Values of these types come only out of
//! validation ([`crate::wire`]), so the scorer can trust them: codes are well
//! formed, required parties are present, amounts are non-negative and the
//! currency is convertible.
//!
//! Optional text fields are plain [`Text`]s where the wire format has no
//! distinction between empty and absent (proto3), so conversions stay lossless.
//!
//! Text is held inline up to 24 bytes ([`Text`]): nearly every field of a
//! declaration (ids, codes, names, postcodes) fits, so a decoder that reads
//! text in place allocates nothing per field, and dropping a declaration
//! frees nothing per field.

use chrono::{DateTime, Utc};

use super::codes::{CountryCode, Hs6};
use super::money::Money;

/// A declaration's text: kept inline when it is 24 bytes or shorter (as
/// wide as a `String`), on the heap otherwise.
pub type Text = compact_str::CompactString;

/// A declaration's extra fields by key, in key order, each key once.
///
/// A sorted vector, not a `BTreeMap`: declarations carry a handful of
/// attributes, and the map's first node (about 560 bytes, allocated per
/// declaration, then filled and freed) was a tenth of decoding a Parquet
/// file. Lookups are a binary search over a few entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes(Vec<(Text, Text)>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`; the value it had, if any (as a map's insert).
    pub fn insert(&mut self, key: Text, value: Text) -> Option<Text> {
        match self
            .0
            .binary_search_by(|(k, _)| k.as_str().cmp(key.as_str()))
        {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (key, value));
                None
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Text> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|at| &self.0[at].1)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Text, &Text)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &Text> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a Text, &'a Text);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Text, Text)>,
        fn(&'a (Text, Text)) -> (&'a Text, &'a Text),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<const N: usize> From<[(Text, Text); N]> for Attributes {
    fn from(entries: [(Text, Text); N]) -> Self {
        entries.into_iter().collect()
    }
}

/// Later entries of the same key replace earlier ones, as in a map.
impl FromIterator<(Text, Text)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (Text, Text)>>(entries: I) -> Self {
        let mut entries: Vec<(Text, Text)> = entries.into_iter().collect();
        // Last given first, a stable sort keeps it first among its key's
        // entries, and `dedup_by` keeps the first of each run.
        entries.reverse();
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        entries.dedup_by(|(a, _), (b, _)| a == b);
        Self(entries)
    }
}

/// Which declaration data set the message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetType {
    H7,
    H6,
    H1,
    I1,
}

impl DatasetType {
    /// H7 and H6 carry low-value parcels; H1 and I1 are full declarations
    /// of any trade, bulk included.
    pub fn is_parcel(self) -> bool {
        match self {
            DatasetType::H7 | DatasetType::H6 => true,
            DatasetType::H1 | DatasetType::I1 => false,
        }
    }
}

/// How the parcel reached the EU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CarrierChannel {
    Express,
    Postal,
    AirCargo,
}

/// The kind of a transport document (DE 12 05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportDocumentKind {
    HouseAwb,
    MasterAwb,
    PostalItemId,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportDocument {
    pub kind: TransportDocumentKind,
    pub reference: Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub street_and_number: Text,
    pub postcode: Text,
    pub city: Text,
    pub country: CountryCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub name: Text,
    pub identification_number: Text,
    pub address: Option<Address>,
    pub phone: Text,
    pub email: Text,
}

impl Party {
    /// The party's country, when an address is given.
    pub fn country(&self) -> Option<CountryCode> {
        self.address.as_ref().map(|a| a.country)
    }
}

/// One goods item (line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodsItem {
    pub goods_item_number: u32,
    pub description: Text,
    pub hs6: Hs6,
    pub intrinsic_value: Money,
    pub gross_mass_g: i64,
    /// 0 = not given.
    pub quantity: u32,
    pub additional_procedure_codes: Vec<Text>,
    pub country_of_origin: Option<CountryCode>,
}

/// Optional ICS2 entry summary data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsHouseConsignment {
    pub ens_mrn: Text,
    pub consignor: Option<Party>,
    pub consignee: Option<Party>,
    pub total_gross_mass_g: i64,
    pub description: Text,
    pub country_of_origin: Option<CountryCode>,
}

/// A validated H7 declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub declaration_id: Text,
    pub lrn: Text,
    pub mrn: Text,
    pub dataset: DatasetType,
    pub additional_declaration_type: Text,
    pub lodged_at: DateTime<Utc>,
    pub ucr: Text,
    pub exporter: Party,
    pub importer: Party,
    pub declarant: Party,
    pub ioss_number: Text,
    pub transport_documents: Vec<TransportDocument>,
    pub location_of_goods: Text,
    pub carrier_channel: Option<CarrierChannel>,
    pub flight_number: Text,
    pub arrival_at: Option<DateTime<Utc>>,
    pub transport_and_insurance_costs: Option<Money>,
    pub items: Vec<GoodsItem>,
    /// Boxed: about 400 bytes inline, present on a minority of
    /// declarations, and every declaration is moved several times through
    /// a batch's pipeline (moves were a tenth of a rescore's CPU).
    pub ens: Option<Box<EnsHouseConsignment>>,
    /// Extra categorical fields from national systems; sorted for stable output.
    pub attributes: Attributes,
    /// Risk-relevant facts found while validating (not errors).
    pub flags: Vec<DataFlag>,
}

impl Declaration {
    /// Loads the first byte of every text the scorer reads, all at once.
    /// Each text is a heap allocation of its own; in a declaration made
    /// long before it is scored (the scoring bench's traffic) they have left
    /// the cache, and hashing them one after another waited for each miss
    /// in turn. Touched together first, the misses overlap. A declaration
    /// scored just after it was decoded (`rescore`) gains nothing: measured.
    pub fn touch_texts(&self) {
        fn first(s: &str) -> u8 {
            s.as_bytes().first().copied().unwrap_or(0)
        }
        fn party(p: &Party) -> [u8; 4] {
            let (street, postcode) = p.address.as_ref().map_or((0, 0), |a| {
                (first(&a.street_and_number), first(&a.postcode))
            });
            [
                first(&p.name),
                first(&p.identification_number),
                street,
                postcode,
            ]
        }
        let mut sum = first(&self.declaration_id) ^ first(&self.ioss_number);
        for byte in party(&self.importer)
            .into_iter()
            .chain(party(&self.exporter))
            .chain(party(&self.declarant))
        {
            sum ^= byte;
        }
        for item in &self.items {
            sum ^= first(&item.description);
        }
        for value in self.attributes.values() {
            sum ^= first(value);
        }
        std::hint::black_box(sum);
    }

    /// The reference of the first transport document of `kind`, if any.
    pub fn transport_reference(&self, kind: TransportDocumentKind) -> Option<&str> {
        self.transport_documents
            .iter()
            .find(|d| d.kind == kind)
            .map(|d| d.reference.as_str())
    }
}

/// A fact noticed during validation that is a risk signal, not a format error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFlag {
    /// A well-formed HS6 that the shipped nomenclature does not list.
    UnknownHs6 { goods_item_number: u32, hs6: Hs6 },
    /// An H7 consignment whose intrinsic value exceeds EUR 150.
    H7ValueOver150 { total_eur_cents: i64 },
    /// No description at all (H7 requires one; other national data may lack it).
    MissingDescription { goods_item_number: u32 },
    /// A description that is only a stop word or generic term.
    VagueDescription { goods_item_number: u32 },
    /// An H7/H6 goods item heavier than a parcel can be (over the limit of
    /// `Limits::parcel_max_gross_mass_g`, 1 t by default).
    ImplausibleMass {
        goods_item_number: u32,
        gross_mass_g: i64,
    },
    /// Additional procedure codes that H7 rules forbid together
    /// (C08 with F48/F49, or an IOSS number with anything but C07/F48).
    InconsistentProcedureCodes { goods_item_number: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch runs move every declaration through several vectors, and the
    /// moves were a tenth of a rescore's CPU: what is rare or large stays
    /// behind a pointer. A field that grows it past this bound should be
    /// boxed too, or the bound raised knowingly.
    #[test]
    fn attributes_behave_as_a_sorted_map() {
        use std::collections::BTreeMap;
        let entries = [("b", "1"), ("a", "2"), ("c", "3"), ("a", "4"), ("b", "")];
        let ours: Attributes = entries
            .iter()
            .map(|(k, v)| (Text::from(*k), Text::from(*v)))
            .collect();
        let theirs: BTreeMap<&str, &str> = entries.into_iter().collect();
        let listed: Vec<(&str, &str)> =
            ours.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(listed, theirs.clone().into_iter().collect::<Vec<_>>());
        for key in ["a", "b", "c", "d", ""] {
            assert_eq!(
                ours.get(key).map(Text::as_str),
                theirs.get(key).copied(),
                "{key}"
            );
        }
        assert_eq!(ours.len(), 3);
        let mut more = ours.clone();
        assert_eq!(more.insert("a".into(), "5".into()), Some(Text::from("4")));
        assert_eq!(more.insert("0".into(), "6".into()), None);
        assert_eq!(
            more.values().map(Text::as_str).collect::<Vec<_>>(),
            ["6", "5", "", "3"]
        );
        assert!(Attributes::new().is_empty());
    }

    #[test]
    fn a_declaration_stays_small_to_move() {
        let size = std::mem::size_of::<Declaration>();
        assert!(size <= 896, "Declaration is {size} bytes");
    }
}
