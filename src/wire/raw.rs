//! A declaration as read, before validation: the wire message's shape with
//! its text as `S`, owned (`String`, from a wire message) or borrowed from
//! the file being read (a CSV, Parquet or Arrow cell, a JSON line's text).
//! Validation ([`super::declaration`]) takes either, so a file's text goes
//! into the checked declaration's inline [`crate::domain::Text`] without a
//! `String` per field on the way (a wire message's strings are copied in
//! when short, kept when long).
//!
//! Every struct mirrors its `pb` message field for field; the conversions
//! destructure each message, so a new proto field fails to compile until
//! it is handled here.

use serde::Deserialize;

use crate::domain::Text;
use crate::pb;

pub mod direct;
mod json;

pub use json::{JsonText, Obj, RawExample, attributes_cell};

/// Text of a declaration as read: what validation checks as a `str` and
/// keeps as [`Text`].
pub trait RawText: AsRef<str> + Into<Text> {}

impl RawText for String {}
impl RawText for JsonText<'_> {}

// The serde attributes read the proto3 JSON mapping's common form
// ([`json`]): lowerCamelCase names or the original ones, enums by name,
// numbers as numbers or strings. Whatever they refuse is read again as the
// wire message, which has the last word (see `io::jsonl`).

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default + AsRef<str>")
)]
pub struct RawDeclaration<S> {
    #[serde(alias = "declaration_id")]
    pub declaration_id: S,
    pub lrn: S,
    pub mrn: S,
    /// A `pb::DatasetType` value.
    #[serde(deserialize_with = "json::dataset")]
    pub dataset: i32,
    #[serde(alias = "additional_declaration_type")]
    pub additional_declaration_type: S,
    #[serde(alias = "lodged_at")]
    pub lodged_at: Option<pbjson_types::Timestamp>,
    pub ucr: S,
    #[serde(deserialize_with = "json::optional")]
    pub exporter: Option<RawParty<S>>,
    #[serde(deserialize_with = "json::optional")]
    pub importer: Option<RawParty<S>>,
    #[serde(deserialize_with = "json::optional")]
    pub declarant: Option<RawParty<S>>,
    #[serde(alias = "ioss_number")]
    pub ioss_number: S,
    #[serde(alias = "transport_documents", deserialize_with = "json::objects")]
    pub transport_documents: Vec<RawTransportDocument<S>>,
    #[serde(alias = "location_of_goods")]
    pub location_of_goods: S,
    /// A `pb::CarrierChannel` value.
    #[serde(alias = "carrier_channel", deserialize_with = "json::carrier_channel")]
    pub carrier_channel: i32,
    #[serde(alias = "flight_number")]
    pub flight_number: S,
    #[serde(alias = "arrival_at")]
    pub arrival_at: Option<pbjson_types::Timestamp>,
    #[serde(
        alias = "transport_and_insurance_costs",
        deserialize_with = "json::optional"
    )]
    pub transport_and_insurance_costs: Option<RawMoney<S>>,
    #[serde(deserialize_with = "json::objects")]
    pub items: Vec<RawGoodsItem<S>>,
    /// Boxed as the declaration's is ([`crate::domain::Declaration::ens`]).
    #[serde(deserialize_with = "json::optional")]
    pub ens: Option<Box<RawEns<S>>>,
    /// Key and value, in no particular order (the wire's is a map).
    #[serde(deserialize_with = "json::attributes")]
    pub attributes: Vec<(S, S)>,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct RawParty<S> {
    pub name: S,
    #[serde(alias = "identification_number")]
    pub identification_number: S,
    #[serde(deserialize_with = "json::optional")]
    pub address: Option<RawAddress<S>>,
    pub phone: S,
    pub email: S,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct RawAddress<S> {
    #[serde(alias = "street_and_number")]
    pub street_and_number: S,
    pub postcode: S,
    pub city: S,
    pub country: S,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct RawTransportDocument<S> {
    /// A `pb::TransportDocumentKind` value.
    #[serde(deserialize_with = "json::transport_document_kind")]
    pub kind: i32,
    pub reference: S,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct RawMoney<S> {
    pub currency: S,
    #[serde(alias = "amount_minor", deserialize_with = "json::number")]
    pub amount_minor: i64,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct RawGoodsItem<S> {
    #[serde(alias = "goods_item_number", deserialize_with = "json::number")]
    pub goods_item_number: u32,
    pub description: S,
    pub hs6: S,
    #[serde(alias = "intrinsic_value", deserialize_with = "json::optional")]
    pub intrinsic_value: Option<RawMoney<S>>,
    #[serde(alias = "gross_mass_g", deserialize_with = "json::number")]
    pub gross_mass_g: i64,
    #[serde(deserialize_with = "json::number")]
    pub quantity: u32,
    #[serde(alias = "additional_procedure_codes")]
    pub additional_procedure_codes: Vec<S>,
    #[serde(alias = "country_of_origin")]
    pub country_of_origin: S,
}

#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct RawEns<S> {
    #[serde(alias = "ens_mrn")]
    pub ens_mrn: S,
    #[serde(deserialize_with = "json::optional")]
    pub consignor: Option<RawParty<S>>,
    #[serde(deserialize_with = "json::optional")]
    pub consignee: Option<RawParty<S>>,
    #[serde(alias = "total_gross_mass_g", deserialize_with = "json::number")]
    pub total_gross_mass_g: i64,
    pub description: S,
    #[serde(alias = "country_of_origin")]
    pub country_of_origin: S,
}

impl<S: From<String>> From<pb::Declaration> for RawDeclaration<S> {
    fn from(msg: pb::Declaration) -> Self {
        let pb::Declaration {
            declaration_id,
            lrn,
            mrn,
            dataset,
            additional_declaration_type,
            lodged_at,
            ucr,
            exporter,
            importer,
            declarant,
            ioss_number,
            transport_documents,
            location_of_goods,
            carrier_channel,
            flight_number,
            arrival_at,
            transport_and_insurance_costs,
            items,
            ens,
            attributes,
        } = msg;
        Self {
            declaration_id: declaration_id.into(),
            lrn: lrn.into(),
            mrn: mrn.into(),
            dataset,
            additional_declaration_type: additional_declaration_type.into(),
            lodged_at,
            ucr: ucr.into(),
            exporter: exporter.map(RawParty::from),
            importer: importer.map(RawParty::from),
            declarant: declarant.map(RawParty::from),
            ioss_number: ioss_number.into(),
            transport_documents: transport_documents
                .into_iter()
                .map(RawTransportDocument::from)
                .collect(),
            location_of_goods: location_of_goods.into(),
            carrier_channel,
            flight_number: flight_number.into(),
            arrival_at,
            transport_and_insurance_costs: transport_and_insurance_costs.map(RawMoney::from),
            items: items.into_iter().map(RawGoodsItem::from).collect(),
            ens: ens.map(|e| Box::new(RawEns::from(e))),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl<S: From<String>> From<pb::Party> for RawParty<S> {
    fn from(msg: pb::Party) -> Self {
        let pb::Party {
            name,
            identification_number,
            address,
            phone,
            email,
        } = msg;
        Self {
            name: name.into(),
            identification_number: identification_number.into(),
            address: address.map(RawAddress::from),
            phone: phone.into(),
            email: email.into(),
        }
    }
}

impl<S: From<String>> From<pb::Address> for RawAddress<S> {
    fn from(msg: pb::Address) -> Self {
        let pb::Address {
            street_and_number,
            postcode,
            city,
            country,
        } = msg;
        Self {
            street_and_number: street_and_number.into(),
            postcode: postcode.into(),
            city: city.into(),
            country: country.into(),
        }
    }
}

impl<S: From<String>> From<pb::TransportDocument> for RawTransportDocument<S> {
    fn from(msg: pb::TransportDocument) -> Self {
        let pb::TransportDocument { kind, reference } = msg;
        Self {
            kind,
            reference: reference.into(),
        }
    }
}

impl<S: From<String>> From<pb::Money> for RawMoney<S> {
    fn from(msg: pb::Money) -> Self {
        let pb::Money {
            currency,
            amount_minor,
        } = msg;
        Self {
            currency: currency.into(),
            amount_minor,
        }
    }
}

impl<S: From<String>> From<pb::GoodsItem> for RawGoodsItem<S> {
    fn from(msg: pb::GoodsItem) -> Self {
        let pb::GoodsItem {
            goods_item_number,
            description,
            hs6,
            intrinsic_value,
            gross_mass_g,
            quantity,
            additional_procedure_codes,
            country_of_origin,
        } = msg;
        Self {
            goods_item_number,
            description: description.into(),
            hs6: hs6.into(),
            intrinsic_value: intrinsic_value.map(RawMoney::from),
            gross_mass_g,
            quantity,
            additional_procedure_codes: additional_procedure_codes
                .into_iter()
                .map(S::from)
                .collect(),
            country_of_origin: country_of_origin.into(),
        }
    }
}

impl<S: From<String>> From<pb::EnsHouseConsignment> for RawEns<S> {
    fn from(msg: pb::EnsHouseConsignment) -> Self {
        let pb::EnsHouseConsignment {
            ens_mrn,
            consignor,
            consignee,
            total_gross_mass_g,
            description,
            country_of_origin,
        } = msg;
        Self {
            ens_mrn: ens_mrn.into(),
            consignor: consignor.map(RawParty::from),
            consignee: consignee.map(RawParty::from),
            total_gross_mass_g,
            description: description.into(),
            country_of_origin: country_of_origin.into(),
        }
    }
}
