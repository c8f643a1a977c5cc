//! A declaration as read, before validation: the wire message's shape with
//! its text as `S`, owned (`String`, from a wire message) or borrowed from
//! the file being read (a CSV or Parquet cell). Validation
//! ([`super::declaration`]) takes either, so a file's text goes into the
//! checked declaration's inline [`crate::domain::Text`] without a `String`
//! per field on the way; a wire message is moved in as it is.
//!
//! Every struct mirrors its `pb` message field for field; the conversions
//! destructure each message, so a new proto field fails to compile until
//! it is handled here.

use std::borrow::Cow;

use crate::domain::Text;
use crate::pb;

/// Text of a declaration as read: what validation checks as a `str` and
/// keeps as [`Text`].
pub trait RawText: AsRef<str> + Into<Text> {}

impl RawText for String {}
impl RawText for &str {}
impl RawText for Cow<'_, str> {}

pub struct RawDeclaration<S> {
    pub declaration_id: S,
    pub lrn: S,
    pub mrn: S,
    /// A `pb::DatasetType` value.
    pub dataset: i32,
    pub additional_declaration_type: S,
    pub lodged_at: Option<pbjson_types::Timestamp>,
    pub ucr: S,
    pub exporter: Option<RawParty<S>>,
    pub importer: Option<RawParty<S>>,
    pub declarant: Option<RawParty<S>>,
    pub ioss_number: S,
    pub transport_documents: Vec<RawTransportDocument<S>>,
    pub location_of_goods: S,
    /// A `pb::CarrierChannel` value.
    pub carrier_channel: i32,
    pub flight_number: S,
    pub arrival_at: Option<pbjson_types::Timestamp>,
    pub transport_and_insurance_costs: Option<RawMoney<S>>,
    pub items: Vec<RawGoodsItem<S>>,
    pub ens: Option<RawEns<S>>,
    /// Key and value, in no particular order (the wire's is a map).
    pub attributes: Vec<(S, S)>,
}

pub struct RawParty<S> {
    pub name: S,
    pub identification_number: S,
    pub address: Option<RawAddress<S>>,
    pub phone: S,
    pub email: S,
}

pub struct RawAddress<S> {
    pub street_and_number: S,
    pub postcode: S,
    pub city: S,
    pub country: S,
}

pub struct RawTransportDocument<S> {
    /// A `pb::TransportDocumentKind` value.
    pub kind: i32,
    pub reference: S,
}

pub struct RawMoney<S> {
    pub currency: S,
    pub amount_minor: i64,
}

pub struct RawGoodsItem<S> {
    pub goods_item_number: u32,
    pub description: S,
    pub hs6: S,
    pub intrinsic_value: Option<RawMoney<S>>,
    pub gross_mass_g: i64,
    pub quantity: u32,
    pub additional_procedure_codes: Vec<S>,
    pub country_of_origin: S,
}

pub struct RawEns<S> {
    pub ens_mrn: S,
    pub consignor: Option<RawParty<S>>,
    pub consignee: Option<RawParty<S>>,
    pub total_gross_mass_g: i64,
    pub description: S,
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
            ens: ens.map(RawEns::from),
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
