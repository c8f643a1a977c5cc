//! The proto3 JSON mapping read into the raw shape, text borrowed from the
//! line where it has no escapes. It takes the common form of the mapping
//! and refuses the rest (enums as numbers, `null` for text or numbers,
//! unknown fields): a refused line is read again as the wire message,
//! which accepts exactly what the mapping allows and words the errors.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::RawDeclaration;
use crate::domain::Text;
use crate::json_number::NumberDeserialize;
use crate::pb;

/// The `attributes` column of a CSV or Parquet row: a JSON object of text,
/// read as the JSON Lines form reads it (text borrowed from the cell where
/// it has no escapes; a key given twice listed twice).
pub fn attributes_cell(cell: &str) -> serde_json::Result<Vec<(JsonText<'_>, JsonText<'_>)>> {
    // The common form without serde's visitors; serde words what it refuses.
    if let Some(pairs) = super::direct::attributes(cell) {
        return Ok(pairs);
    }
    let mut deserializer = serde_json::Deserializer::from_str(cell);
    let pairs = attributes(&mut deserializer)?;
    deserializer.end()?;
    Ok(pairs)
}

/// Text of a JSON line: borrowed from the line, or unescaped into a string
/// of its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JsonText<'a>(pub Cow<'a, str>);

/// Owned text (a wire message's, as a CSV or Parquet cell's JSON reads
/// when the direct reader hands it on).
impl From<String> for JsonText<'_> {
    fn from(text: String) -> Self {
        JsonText(Cow::Owned(text))
    }
}

impl AsRef<str> for JsonText<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<JsonText<'_>> for Text {
    fn from(text: JsonText<'_>) -> Text {
        Text::from(text.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = JsonText<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonText(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonText(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonText(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// A line of a file of training examples: the declaration in the raw shape,
/// the result and truth as wire messages (they are rare in batch input).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExample<'a> {
    #[serde(borrow, deserialize_with = "optional")]
    pub declaration: Option<RawDeclaration<JsonText<'a>>>,
    pub result: Option<pb::InspectionResult>,
    pub truth: Option<pb::GroundTruth>,
}

/// A message, read from a JSON object only. serde's derived structs also
/// take an array of their fields in order, which the wire message refuses.
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(deserializer)).map(Obj)
    }
}

/// A deserializer that reads a struct as a map, so that only an object
/// reads as one.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// An optional message field, from an object (or `null`).
pub(super) fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Obj<T>>::deserialize(deserializer).map(|o| o.map(|Obj(t)| t))
}

/// A repeated message field, from an array of objects.
pub(super) fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Vec::<Obj<T>>::deserialize(deserializer).map(|v| v.into_iter().map(|Obj(t)| t).collect())
}

/// A number given as a JSON number or a string holding one, as the wire
/// message reads it.
pub(super) fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
    <T as std::str::FromStr>::Err: fmt::Display,
{
    NumberDeserialize::<T>::deserialize(deserializer).map(|n| n.0)
}

/// An enum by its full name; anything else is refused (the wire message
/// reads numbers too).
fn enum_value<'de, D: Deserializer<'de>>(
    deserializer: D,
    from_name: fn(&str) -> Option<i32>,
) -> Result<i32, D::Error> {
    let name = JsonText::deserialize(deserializer)?;
    from_name(name.as_ref()).ok_or_else(|| de::Error::custom("unknown enum name"))
}

pub(super) fn dataset<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    enum_value(deserializer, |n| {
        pb::DatasetType::from_str_name(n).map(Into::into)
    })
}

pub(super) fn carrier_channel<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    enum_value(deserializer, |n| {
        pb::CarrierChannel::from_str_name(n).map(Into::into)
    })
}

pub(super) fn transport_document_kind<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<i32, D::Error> {
    enum_value(deserializer, |n| {
        pb::TransportDocumentKind::from_str_name(n).map(Into::into)
    })
}

/// A JSON object of text, as key-value pairs in the order given. A key
/// given twice is listed twice: the declaration's [`crate::domain::Attributes`]
/// keep its last value, as the wire message's map does (and in `n log n`,
/// where looking each key up in the pairs so far was quadratic in a
/// hostile line's thousands of keys).
pub(super) fn attributes<'de, D, S>(deserializer: D) -> Result<Vec<(S, S)>, D::Error>
where
    D: Deserializer<'de>,
    S: Deserialize<'de> + AsRef<str>,
{
    struct PairsVisitor<S>(std::marker::PhantomData<S>);

    impl<'de, S: Deserialize<'de> + AsRef<str>> Visitor<'de> for PairsVisitor<S> {
        type Value = Vec<(S, S)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of strings")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs: Vec<(S, S)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(pair) = map.next_entry::<S, S>()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }

    deserializer.deserialize_map(PairsVisitor(std::marker::PhantomData))
}
