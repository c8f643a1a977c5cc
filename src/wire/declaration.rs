//! `pb::Declaration` ⇄ [`domain::Declaration`]: every field is destructured so
//! that a new proto field fails to compile until it is handled here.

use chrono::{DateTime, Utc};

use super::raw::{
    RawAddress, RawDeclaration, RawEns, RawGoodsItem, RawMoney, RawParty, RawText,
    RawTransportDocument,
};
use crate::domain::validation::{
    ReferenceData, ValidationError, Violations, check_declaration, is_blank,
};
use crate::domain::{
    Address, Attributes, CarrierChannel, CountryCode, Currency, DatasetType, Declaration,
    EnsHouseConsignment, GoodsItem, Hs6, Money, Party, Text, TransportDocument,
    TransportDocumentKind,
};
use crate::pb;

/// The path of the field being parsed, built only when a violation names it:
/// formatting every path up front cost a dozen allocations per declaration.
pub(crate) type Field<'a> = &'a dyn Fn() -> String;

/// Parses and validates a wire declaration against the built-in reference data.
impl TryFrom<pb::Declaration> for Declaration {
    type Error = ValidationError;

    fn try_from(msg: pb::Declaration) -> Result<Self, Self::Error> {
        declaration_from_pb(msg, &ReferenceData::built_in())
    }
}

/// Parses and validates a wire declaration; every violation names its field path.
pub fn declaration_from_pb(
    msg: pb::Declaration,
    reference: &ReferenceData<'_>,
) -> Result<Declaration, ValidationError> {
    declaration_from_raw(RawDeclaration::<String>::from(msg), reference)
}

/// As [`declaration_from_pb`], the declaration as read from a file (its
/// text borrowed from the file) or from a wire message.
pub fn declaration_from_raw<S: RawText>(
    msg: RawDeclaration<S>,
    reference: &ReferenceData<'_>,
) -> Result<Declaration, ValidationError> {
    let mut v = Violations::default();
    let declaration = parse_declaration(msg, "", reference, &mut v);
    match declaration {
        // Cross-field rules run even after field violations, so that one
        // answer lists everything that is wrong.
        Some(mut declaration) => {
            declaration.flags = check_declaration(&declaration, "", reference, &mut v);
            v.finish(declaration)
        }
        None => Err(v
            .finish(())
            .expect_err("a declaration that failed to parse left a violation")),
    }
}

/// Parses a declaration at `prefix` (e.g. `"declaration."`), collecting violations.
/// Returns `None` when a required part is missing or malformed.
pub(crate) fn parse_declaration<S: RawText>(
    msg: RawDeclaration<S>,
    prefix: &str,
    reference: &ReferenceData<'_>,
    v: &mut Violations,
) -> Option<Declaration> {
    let RawDeclaration {
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
    let path = |name: &str| format!("{prefix}{name}");

    v.check_required(|| path("declaration_id"), declaration_id.as_ref(), 64);
    v.check_required(|| path("lrn"), lrn.as_ref(), 22);
    v.check_len(|| path("mrn"), mrn.as_ref(), 18);
    v.check_len(
        || path("additional_declaration_type"),
        additional_declaration_type.as_ref(),
        1,
    );
    v.check_len(|| path("ucr"), ucr.as_ref(), 35);
    v.check_len(|| path("location_of_goods"), location_of_goods.as_ref(), 17);
    v.check_len(|| path("flight_number"), flight_number.as_ref(), 16);

    let dataset = match pb::DatasetType::try_from(dataset) {
        Ok(pb::DatasetType::H7) => Some(DatasetType::H7),
        Ok(pb::DatasetType::H6) => Some(DatasetType::H6),
        Ok(pb::DatasetType::H1) => Some(DatasetType::H1),
        Ok(pb::DatasetType::I1) => Some(DatasetType::I1),
        Ok(pb::DatasetType::Unspecified) => {
            v.push(path("dataset"), "is required");
            None
        }
        Err(_) => {
            v.push(path("dataset"), format!("unknown dataset type {dataset}"));
            None
        }
    };
    let carrier_channel = match pb::CarrierChannel::try_from(carrier_channel) {
        Ok(pb::CarrierChannel::Unspecified) => None,
        Ok(pb::CarrierChannel::Express) => Some(CarrierChannel::Express),
        Ok(pb::CarrierChannel::Postal) => Some(CarrierChannel::Postal),
        Ok(pb::CarrierChannel::AirCargo) => Some(CarrierChannel::AirCargo),
        Err(_) => {
            v.push(
                path("carrier_channel"),
                format!("unknown carrier channel {carrier_channel}"),
            );
            None
        }
    };

    let lodged_at = match lodged_at {
        Some(ts) => parse_timestamp(ts, || path("lodged_at"), v)
            .filter(|at| lodged_in_time(*at, reference, || path("lodged_at"), v)),
        None => {
            v.push(path("lodged_at"), "is required");
            None
        }
    };
    let arrival_at = arrival_at.and_then(|ts| parse_timestamp(ts, || path("arrival_at"), v));

    // Parcels (H7/H6) name the seller and the buyer with their addresses;
    // full declarations (H1/I1) of other systems often carry only IDs.
    let parcel = dataset.is_none_or(DatasetType::is_parcel);
    let exporter = required_party(exporter, &|| path("exporter"), parcel, v);
    let importer = required_party(importer, &|| path("importer"), parcel, v);
    let declarant = required_party(declarant, &|| path("declarant"), false, v);

    if !ioss_number.as_ref().is_empty() && !is_ioss_number(ioss_number.as_ref()) {
        v.push(path("ioss_number"), "must be IM followed by 10 digits");
    }

    if transport_documents.is_empty() && parcel {
        v.push(path("transport_documents"), "at least one is required");
    }
    let transport_documents: Vec<TransportDocument> = transport_documents
        .into_iter()
        .enumerate()
        .filter_map(|(i, doc)| {
            parse_transport_document(doc, &|| path(&format!("transport_documents[{i}]")), v)
        })
        .collect();

    let transport_and_insurance_costs = transport_and_insurance_costs
        .and_then(|m| parse_money(m, &|| path("transport_and_insurance_costs"), reference, v));

    if items.is_empty() {
        v.push(path("items"), "at least one goods item is required");
    } else if items.len() > reference.limits.max_items {
        v.push(
            path("items"),
            format!(
                "{} goods items exceed the limit of {}",
                items.len(),
                reference.limits.max_items
            ),
        );
    }
    let item_count = items.len();
    let items: Vec<GoodsItem> = items
        .into_iter()
        .take(reference.limits.max_items)
        .enumerate()
        .filter_map(|(i, item)| parse_item(item, &|| path(&format!("items[{i}]")), reference, v))
        .collect();

    let ens = ens.and_then(|e| parse_ens(*e, &|| path("ens"), v).map(Box::new));

    // A key given twice keeps its last value; the checks go in key order,
    // so that two bad keys are listed the same way whatever read them.
    let attributes: Attributes = attributes
        .into_iter()
        .map(|(key, value)| (key.into(), value.into()))
        .collect();
    if attributes.len() > reference.limits.max_attributes {
        v.push(
            path("attributes"),
            format!(
                "{} attributes exceed the limit of {}",
                attributes.len(),
                reference.limits.max_attributes
            ),
        );
    }
    for (key, value) in &attributes {
        let name = key.as_str();
        if !is_attribute_key(name) {
            v.push(
                path(&format!("attributes[{name:?}]")),
                "key must be 1-64 characters of a-z, 0-9 and _",
            );
        }
        v.check_len(
            || path(&format!("attributes[{name:?}]")),
            value.as_str(),
            256,
        );
    }

    Some(Declaration {
        declaration_id: declaration_id.into(),
        lrn: lrn.into(),
        mrn: mrn.into(),
        dataset: dataset?,
        additional_declaration_type: additional_declaration_type.into(),
        lodged_at: lodged_at?,
        ucr: ucr.into(),
        exporter: exporter?,
        importer: importer?,
        declarant: declarant?,
        ioss_number: ioss_number.into(),
        transport_documents,
        location_of_goods: location_of_goods.into(),
        carrier_channel,
        flight_number: flight_number.into(),
        arrival_at,
        transport_and_insurance_costs,
        // A dropped item left a violation, so the declaration is rejected anyway.
        items: (items.len() == item_count).then_some(items)?,
        ens,
        attributes,
        flags: Vec::new(),
    })
}

fn is_ioss_number(s: &str) -> bool {
    s.len() == 12 && s.starts_with("IM") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

fn is_attribute_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(crate) fn parse_timestamp(
    ts: pbjson_types::Timestamp,
    field: impl FnOnce() -> String,
    v: &mut Violations,
) -> Option<DateTime<Utc>> {
    let parsed = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos));
    if parsed.is_none() {
        v.push(field(), "is not a valid timestamp");
    }
    parsed
}

/// Whether `at` is within the limit's reach of this machine's clock; adds a
/// violation when it is not.
fn lodged_in_time(
    at: DateTime<Utc>,
    reference: &ReferenceData<'_>,
    field: impl FnOnce() -> String,
    v: &mut Violations,
) -> bool {
    let Some(ahead) = reference.limits.max_lodged_ahead else {
        return true;
    };
    let now = Utc::now();
    // A bound past the end of time bounds nothing.
    if now
        .checked_add_signed(ahead)
        .is_none_or(|latest| at <= latest)
    {
        return true;
    }
    v.push(
        field(),
        format!(
            "{} is {} h after this server's clock ({}); at most {} h ahead is accepted",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (at - now).num_hours(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ahead.num_hours(),
        ),
    );
    false
}

pub(crate) fn timestamp_to_pb(at: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn parse_money<S: RawText>(
    msg: RawMoney<S>,
    field: Field<'_>,
    reference: &ReferenceData<'_>,
    v: &mut Violations,
) -> Option<Money> {
    let RawMoney {
        currency,
        amount_minor,
    } = msg;
    let currency = match Currency::parse(currency.as_ref()) {
        Ok(c) if reference.rates.knows(c) => Some(c),
        Ok(c) => {
            v.push(
                format!("{}.currency", field()),
                format!(
                    "currency {c} is not in the rate table {}",
                    reference.rates.version()
                ),
            );
            None
        }
        Err(reason) => {
            v.push(format!("{}.currency", field()), reason);
            None
        }
    };
    if amount_minor < 0 {
        v.push(format!("{}.amount_minor", field()), "must not be negative");
        return None;
    }
    if amount_minor > reference.limits.max_amount_minor {
        v.push(format!("{}.amount_minor", field()), "exceeds n..16,2");
        return None;
    }
    Some(Money::new(currency?, amount_minor))
}

pub(crate) fn money_to_pb(money: Money) -> pb::Money {
    pb::Money {
        currency: money.currency.as_str().to_owned(),
        amount_minor: money.amount_minor,
    }
}

fn parse_country(
    value: &str,
    field: impl FnOnce() -> String,
    v: &mut Violations,
) -> Option<CountryCode> {
    match CountryCode::parse(value) {
        Ok(c) => Some(c),
        Err(reason) => {
            v.push(field(), reason);
            None
        }
    }
}

fn optional_country(
    value: &str,
    field: impl FnOnce() -> String,
    v: &mut Violations,
) -> Option<CountryCode> {
    if value.is_empty() {
        None
    } else {
        parse_country(value, field, v)
    }
}

fn required_party<S: RawText>(
    party: Option<RawParty<S>>,
    field: Field<'_>,
    address_required: bool,
    v: &mut Violations,
) -> Option<Party> {
    match party {
        Some(p) => parse_party(p, field, address_required, v),
        None => {
            v.push(field(), "is required");
            None
        }
    }
}

fn parse_party<S: RawText>(
    msg: RawParty<S>,
    field: Field<'_>,
    address_required: bool,
    v: &mut Violations,
) -> Option<Party> {
    let RawParty {
        name,
        identification_number,
        address,
        phone,
        email,
    } = msg;
    // A party is named or identified: IDs without names are how many
    // national systems keep their history.
    if is_blank(name.as_ref()) && is_blank(identification_number.as_ref()) {
        v.push(
            format!("{}.name", field()),
            "is required (or an identification_number)",
        );
    }
    v.check_len(|| format!("{}.name", field()), name.as_ref(), 70);
    v.check_len(
        || format!("{}.identification_number", field()),
        identification_number.as_ref(),
        17,
    );
    v.check_len(|| format!("{}.phone", field()), phone.as_ref(), 50);
    v.check_len(|| format!("{}.email", field()), email.as_ref(), 256);
    let address = match address {
        Some(a) => Some(parse_address(a, &|| format!("{}.address", field()), v)?),
        None if address_required => {
            v.push(format!("{}.address", field()), "is required");
            return None;
        }
        None => None,
    };
    Some(Party {
        name: name.into(),
        identification_number: identification_number.into(),
        address,
        phone: phone.into(),
        email: email.into(),
    })
}

fn parse_address<S: RawText>(
    msg: RawAddress<S>,
    field: Field<'_>,
    v: &mut Violations,
) -> Option<Address> {
    let RawAddress {
        street_and_number,
        postcode,
        city,
        country,
    } = msg;
    v.check_len(
        || format!("{}.street_and_number", field()),
        street_and_number.as_ref(),
        70,
    );
    v.check_len(|| format!("{}.postcode", field()), postcode.as_ref(), 17);
    v.check_len(|| format!("{}.city", field()), city.as_ref(), 35);
    let country = parse_country(country.as_ref(), || format!("{}.country", field()), v)?;
    Some(Address {
        street_and_number: street_and_number.into(),
        postcode: postcode.into(),
        city: city.into(),
        country,
    })
}

fn parse_transport_document<S: RawText>(
    msg: RawTransportDocument<S>,
    field: Field<'_>,
    v: &mut Violations,
) -> Option<TransportDocument> {
    let RawTransportDocument { kind, reference } = msg;
    v.check_required(|| format!("{}.reference", field()), reference.as_ref(), 70);
    let kind = match pb::TransportDocumentKind::try_from(kind) {
        Ok(pb::TransportDocumentKind::HouseAwb) => TransportDocumentKind::HouseAwb,
        Ok(pb::TransportDocumentKind::MasterAwb) => TransportDocumentKind::MasterAwb,
        Ok(pb::TransportDocumentKind::PostalItemId) => TransportDocumentKind::PostalItemId,
        Ok(pb::TransportDocumentKind::Other) => TransportDocumentKind::Other,
        Ok(pb::TransportDocumentKind::Unspecified) => {
            v.push(format!("{}.kind", field()), "is required");
            return None;
        }
        Err(_) => {
            v.push(format!("{}.kind", field()), format!("unknown kind {kind}"));
            return None;
        }
    };
    Some(TransportDocument {
        kind,
        reference: reference.into(),
    })
}

fn parse_item<S: RawText>(
    msg: RawGoodsItem<S>,
    field: Field<'_>,
    reference: &ReferenceData<'_>,
    v: &mut Violations,
) -> Option<GoodsItem> {
    let RawGoodsItem {
        goods_item_number,
        description,
        hs6,
        intrinsic_value,
        gross_mass_g,
        quantity,
        additional_procedure_codes,
        country_of_origin,
    } = msg;
    let mut ok = true;
    if !(1..=99_999).contains(&goods_item_number) {
        v.push(
            format!("{}.goods_item_number", field()),
            "must be 1..=99999",
        );
        ok = false;
    }
    // A missing description is scored and flagged, not rejected: it is a risk
    // signal, and data from other national systems may not carry it.
    v.check_len(
        || format!("{}.description", field()),
        description.as_ref(),
        512,
    );
    let hs6 = match Hs6::parse(hs6.as_ref()) {
        Ok(code) => Some(code),
        Err(reason) => {
            v.push(format!("{}.hs6", field()), reason);
            None
        }
    };
    let intrinsic_value = match intrinsic_value {
        Some(m) => parse_money(m, &|| format!("{}.intrinsic_value", field()), reference, v),
        None => {
            v.push(format!("{}.intrinsic_value", field()), "is required");
            None
        }
    };
    if gross_mass_g < 0 {
        v.push(format!("{}.gross_mass_g", field()), "must not be negative");
        ok = false;
    } else if gross_mass_g > reference.limits.max_gross_mass_g {
        v.push(
            format!("{}.gross_mass_g", field()),
            format!(
                "exceeds {} g, the EUCDM format bound (n..16,6 kg)",
                reference.limits.max_gross_mass_g
            ),
        );
        ok = false;
    }
    if additional_procedure_codes.len() > 99 {
        v.push(
            format!("{}.additional_procedure_codes", field()),
            "at most 99 codes",
        );
        ok = false;
    }
    for (i, code) in additional_procedure_codes.iter().enumerate() {
        let b = code.as_ref().as_bytes();
        if !(b.len() == 3 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)) {
            v.push_at(
                || format!("{}.additional_procedure_codes[{i}]", field()),
                "must be a letter and two digits, e.g. C07",
            );
            ok = false;
        }
    }
    let country_of_origin = optional_country(
        country_of_origin.as_ref(),
        || format!("{}.country_of_origin", field()),
        v,
    );
    if !ok {
        return None;
    }
    Some(GoodsItem {
        goods_item_number,
        description: description.into(),
        hs6: hs6?,
        intrinsic_value: intrinsic_value?,
        gross_mass_g,
        quantity,
        additional_procedure_codes: additional_procedure_codes
            .into_iter()
            .map(Into::into)
            .collect(),
        country_of_origin,
    })
}

fn parse_ens<S: RawText>(
    msg: RawEns<S>,
    field: Field<'_>,
    v: &mut Violations,
) -> Option<EnsHouseConsignment> {
    let RawEns {
        ens_mrn,
        consignor,
        consignee,
        total_gross_mass_g,
        description,
        country_of_origin,
    } = msg;
    v.check_len(|| format!("{}.ens_mrn", field()), ens_mrn.as_ref(), 18);
    v.check_len(
        || format!("{}.description", field()),
        description.as_ref(),
        512,
    );
    if total_gross_mass_g < 0 {
        v.push(
            format!("{}.total_gross_mass_g", field()),
            "must not be negative",
        );
    }
    let consignor = match consignor {
        Some(p) => Some(parse_party(
            p,
            &|| format!("{}.consignor", field()),
            false,
            v,
        )?),
        None => None,
    };
    let consignee = match consignee {
        Some(p) => Some(parse_party(
            p,
            &|| format!("{}.consignee", field()),
            false,
            v,
        )?),
        None => None,
    };
    let country_of_origin = optional_country(
        country_of_origin.as_ref(),
        || format!("{}.country_of_origin", field()),
        v,
    );
    Some(EnsHouseConsignment {
        ens_mrn: ens_mrn.into(),
        consignor,
        consignee,
        total_gross_mass_g,
        description: description.into(),
        country_of_origin,
    })
}

impl From<&Declaration> for pb::Declaration {
    fn from(d: &Declaration) -> Self {
        let Declaration {
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
            flags: _,
        } = d;
        pb::Declaration {
            declaration_id: owned(declaration_id),
            lrn: owned(lrn),
            mrn: owned(mrn),
            dataset: match dataset {
                DatasetType::H7 => pb::DatasetType::H7,
                DatasetType::H6 => pb::DatasetType::H6,
                DatasetType::H1 => pb::DatasetType::H1,
                DatasetType::I1 => pb::DatasetType::I1,
            } as i32,
            additional_declaration_type: owned(additional_declaration_type),
            lodged_at: Some(timestamp_to_pb(*lodged_at)),
            ucr: owned(ucr),
            exporter: Some(party_to_pb(exporter)),
            importer: Some(party_to_pb(importer)),
            declarant: Some(party_to_pb(declarant)),
            ioss_number: owned(ioss_number),
            transport_documents: transport_documents
                .iter()
                .map(|doc| pb::TransportDocument {
                    kind: match doc.kind {
                        TransportDocumentKind::HouseAwb => pb::TransportDocumentKind::HouseAwb,
                        TransportDocumentKind::MasterAwb => pb::TransportDocumentKind::MasterAwb,
                        TransportDocumentKind::PostalItemId => {
                            pb::TransportDocumentKind::PostalItemId
                        }
                        TransportDocumentKind::Other => pb::TransportDocumentKind::Other,
                    } as i32,
                    reference: owned(&doc.reference),
                })
                .collect(),
            location_of_goods: owned(location_of_goods),
            carrier_channel: match carrier_channel {
                None => pb::CarrierChannel::Unspecified,
                Some(CarrierChannel::Express) => pb::CarrierChannel::Express,
                Some(CarrierChannel::Postal) => pb::CarrierChannel::Postal,
                Some(CarrierChannel::AirCargo) => pb::CarrierChannel::AirCargo,
            } as i32,
            flight_number: owned(flight_number),
            arrival_at: arrival_at.map(timestamp_to_pb),
            transport_and_insurance_costs: transport_and_insurance_costs.map(money_to_pb),
            items: items.iter().map(item_to_pb).collect(),
            ens: ens.as_deref().map(ens_to_pb),
            attributes: attributes
                .iter()
                .map(|(k, v)| (owned(k), owned(v)))
                .collect(),
        }
    }
}

fn party_to_pb(p: &Party) -> pb::Party {
    let Party {
        name,
        identification_number,
        address,
        phone,
        email,
    } = p;
    pb::Party {
        name: owned(name),
        identification_number: owned(identification_number),
        address: address.as_ref().map(|a| pb::Address {
            street_and_number: owned(&a.street_and_number),
            postcode: owned(&a.postcode),
            city: owned(&a.city),
            country: a.country.as_str().to_owned(),
        }),
        phone: owned(phone),
        email: owned(email),
    }
}

fn item_to_pb(item: &GoodsItem) -> pb::GoodsItem {
    let GoodsItem {
        goods_item_number,
        description,
        hs6,
        intrinsic_value,
        gross_mass_g,
        quantity,
        additional_procedure_codes,
        country_of_origin,
    } = item;
    pb::GoodsItem {
        goods_item_number: *goods_item_number,
        description: owned(description),
        hs6: hs6.as_str().to_owned(),
        intrinsic_value: Some(money_to_pb(*intrinsic_value)),
        gross_mass_g: *gross_mass_g,
        quantity: *quantity,
        additional_procedure_codes: additional_procedure_codes.iter().map(owned).collect(),
        country_of_origin: country_of_origin
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
    }
}

fn ens_to_pb(e: &EnsHouseConsignment) -> pb::EnsHouseConsignment {
    let EnsHouseConsignment {
        ens_mrn,
        consignor,
        consignee,
        total_gross_mass_g,
        description,
        country_of_origin,
    } = e;
    pb::EnsHouseConsignment {
        ens_mrn: owned(ens_mrn),
        consignor: consignor.as_ref().map(party_to_pb),
        consignee: consignee.as_ref().map(party_to_pb),
        total_gross_mass_g: *total_gross_mass_g,
        description: owned(description),
        country_of_origin: country_of_origin
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// A domain text as the wire message's string.
fn owned(text: &Text) -> String {
    text.as_str().to_owned()
}
