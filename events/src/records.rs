//! Parsing records (the JSON users send: HTTP bodies, `mall import` lines) into domain events,
//! with the path of the offending field on any error.

use serde::de::DeserializeOwned;

use crate::domain::DomainEvent;

/// Why a record was refused: the field's path (such as `price` or `personality.tone`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct RecordError {
    /// The path of the offending field, when one is to blame.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> RecordError {
    let path = e.path().to_string();
    let mut message = e.into_inner().to_string();
    // serde_json appends " at line L column C", which says less than the path does.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    let mut field = (path != "." && !path.is_empty()).then_some(path);
    // A missing field is reported at its parent: name the field itself.
    if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        field = Some(field.map_or(name.to_string(), |p| format!("{p}.{name}")));
    }
    RecordError { field, message }
}

/// Parses JSON into `T`, naming the path of the field that failed. Strict: a key named twice in
/// one object (which would otherwise let the last one win silently) and anything after the
/// document are refused.
pub fn from_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, RecordError> {
    no_duplicate_keys(json)?;
    let de = &mut serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(path_error)?;
    de.end().map_err(|e| RecordError { field: None, message: format!("{e}: nothing may follow the JSON document") })?;
    Ok(value)
}

/// Walks a JSON document and refuses the first object that names a key twice, with its path.
fn no_duplicate_keys(json: &[u8]) -> Result<(), RecordError> {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), found: self.found })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
                if !seen.insert(key) {
                    *self.found.borrow_mut() = Some(path);
                    return Err(A::Error::custom("duplicate key"));
                }
                map.next_value_seed(Walk { path, found: self.found })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    // Malformed JSON is reported by the real parse, with its path.
    let _ = Walk { path: String::new(), found: &found }.deserialize(&mut de);
    match found.into_inner() {
        Some(path) => Err(RecordError { field: Some(path), message: "the field appears twice".into() }),
        None => Ok(()),
    }
}

/// Deserializes an already parsed JSON value into `T`, naming the path of the field that failed.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, RecordError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

/// Parses and validates one record: `{"type": "...", ...}`.
pub fn parse_record(json: &[u8]) -> Result<DomainEvent, RecordError> {
    let mut fields: serde_json::Map<String, serde_json::Value> = from_json(json)?;
    let ty = match fields.remove("type") {
        Some(serde_json::Value::String(t)) => t,
        Some(_) => return Err(RecordError { field: Some("type".into()), message: "must be a string".into() }),
        None => return Err(RecordError { field: Some("type".into()), message: "missing field `type`".into() }),
    };
    parse_typed(&ty, serde_json::Value::Object(fields))
}

/// Parses and validates the fields of a record whose type is known (`POST /api/products` may
/// leave `type` out).
pub fn parse_typed(event_type: &str, fields: serde_json::Value) -> Result<DomainEvent, RecordError> {
    use DomainEvent as E;
    let event = match event_type {
        "district_opened" => E::DistrictOpened(from_value(fields)?),
        "product_listed" => E::ProductListed(from_value(fields)?),
        "product_edited" => E::ProductEdited(from_value(fields)?),
        "stock_changed" => E::StockChanged(from_value(fields)?),
        "price_changed" => E::PriceChanged(from_value(fields)?),
        "product_viewed" => E::ProductViewed(from_value(fields)?),
        "product_clicked" => E::ProductClicked(from_value(fields)?),
        "impression_served" => E::ImpressionServed(from_value(fields)?),
        "added_to_cart" => E::AddedToCart(from_value(fields)?),
        "removed_from_cart" => E::RemovedFromCart(from_value(fields)?),
        "purchased" => E::Purchased(from_value(fields)?),
        "searched" => E::Searched(from_value(fields)?),
        "bounced" => E::Bounced(from_value(fields)?),
        "review_submitted" => E::ReviewSubmitted(from_value(fields)?),
        other => {
            return Err(RecordError {
                field: Some("type".into()),
                message: format!(
                    "unknown record type {other:?}; expected one of {}",
                    crate::domain::RECORD_TYPES.join(", ")
                ),
            });
        }
    };
    event.validate().map_err(|(field, e)| RecordError { field: Some(field), message: e.0 })?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_signal_parses() {
        let e = parse_record(br#"{"type":"product_viewed","id":"0193a1b2-0000-7000-8000-000000000001","shopper_id":"s1","session_id":"x","at":"2026-11-24T10:00:00Z","product_id":"p1","dwell_ms":1200}"#).unwrap();
        assert_eq!(e.event_type(), "product_viewed");
        assert_eq!(e.stream_id().as_str(), "product-p1");
        assert_eq!(e.intrinsic_tags(), vec!["shopper:s1".to_string()]);
    }

    #[test]
    fn every_refusal_names_the_field_as_the_client_wrote_it() {
        let e = parse_record(br#"{"type":"product_viewed","id":"00000000-0000-0000-0000-000000000000","shopper_id":"s1","session_id":"x","at":"2026-11-24T10:00:00Z","product_id":"p1","dwell_ms":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("id"), "{e}");
        let e = parse_record(br#"{"type":"product_listed","product_id":"p1","district":"toys","title":"T","price":"1","currency":"EUR","stock":1,"attributes":{"size":[1,2]}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("attributes.size"), "{e}");
        let e = parse_record(br#"{"type":"searched","id":"0193a1b2-0000-7000-8000-000000000001","shopper_id":"s1","session_id":"x","at":"2026-11-24T10:00:00Z","query":"q","result_ids":["ok","not ok"]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("result_ids[1]"), "{e}");
    }

    #[test]
    fn duplicate_keys_and_trailing_data_are_refused() {
        let e = parse_record(br#"{"type":"stock_changed","product_id":"p1","stock":1,"stock":2}"#).unwrap_err();
        assert_eq!((e.field.as_deref(), e.message.as_str()), (Some("stock"), "the field appears twice"));
        let e = from_json::<serde_json::Value>(br#"{"signals":[{"a":1},{"b":1,"b":2}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("signals[1].b"));
        let e = from_json::<serde_json::Value>(br#"{"a":1} {"b":2}"#).unwrap_err();
        assert!(e.message.contains("nothing may follow"), "{e}");
        assert!(from_json::<serde_json::Value>(b"{\"a\":1}\n  ").is_ok(), "trailing white space is fine");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_record(br#"{"type":"product_listed","product_id":"p1","district":"toys","title":"T","price":"-3","currency":"EUR","stock":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("price"), "{e}");
        let e = parse_record(br#"{"type":"district_opened","slug":"toys","name":"Toys","personality":{"tone":"fun","style":"s","audience":"kids","extra":1}}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(e.field.as_deref(), Some("personality.extra"), "{e}");
        let e = parse_record(br#"{"type":"added_to_cart","id":"0193a1b2-0000-7000-8000-000000000001","shopper_id":"s1","session_id":"x","at":"2026-11-24T10:00:00Z","product_id":"p1","quantity":0}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("quantity"));
        let e = parse_record(br#"{"type":"teleported"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("type"), "{e}");
        let e = parse_record(br#"{"type":"product_viewed","id":"0193a1b2-0000-7000-8000-000000000001","shopper_id":"s1","session_id":"x","at":"2026-11-24T10:00:00Z","product_id":"p1","dwell_ms":"long"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("dwell_ms"), "{e}");
    }
}
