//! Payload codec: rmp-serde with named fields, and upcasting of older schema versions on read.
//!
//! Payloads are encoded as MessagePack maps (field names included) so that fields can be added
//! without breaking old readers. A stored shape never changes: a change bumps the type's schema
//! version and registers an [`Upcaster`] that turns the previous version's value into the next.

use serde::Serialize;

use crate::domain::{self, DomainEvent};

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The event type is not one this build knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The stored schema version is newer than this build, or no upcaster leads from it.
    #[error("event type {event_type:?} has no decoder for schema version {version}")]
    UnknownVersion { event_type: String, version: u16 },
    /// The bytes are not a valid payload of the type.
    #[error("cannot decode {event_type:?} v{version}: {reason}")]
    Malformed { event_type: String, version: u16, reason: String },
    /// An upcaster refused the value.
    #[error("cannot upcast {event_type:?} from v{version}: {reason}")]
    Upcast { event_type: String, version: u16, reason: String },
    /// The payload decodes but holds a value the edge refuses (stored before a bound existed, or
    /// written past the edge): the same rule as for records users send.
    #[error("{event_type:?} holds a value that is not accepted: {field}: {reason}")]
    Invalid { event_type: String, field: String, reason: String },
    /// The payload could not be encoded.
    #[error("cannot encode payload: {0}")]
    Encode(String),
}

/// Turns one stored schema version of one event type into the next version's value.
#[derive(Clone, Copy)]
pub struct Upcaster {
    /// The event type it applies to.
    pub event_type: &'static str,
    /// The version it reads; it produces `from_version + 1`.
    pub from_version: u16,
    /// The transformation, on the decoded MessagePack value.
    pub apply: fn(rmpv::Value) -> Result<rmpv::Value, String>,
}

/// The schema version each event type is written with by this build: 1, plus one for every
/// upcaster registered for the type (a new version is introduced by adding its upcaster).
pub fn current_version(event_type: &str) -> Option<u16> {
    current_version_with(UPCASTERS, event_type)
}

fn current_version_with(upcasters: &[Upcaster], event_type: &str) -> Option<u16> {
    domain::EVENT_TYPES
        .contains(&event_type)
        .then(|| 1 + upcasters.iter().filter(|u| u.event_type == event_type).count() as u16)
}

/// The upcasters of this build: each turns one stored version of a type into the next. A shape
/// change adds its upcaster here (from the old version to the new) and the new version's golden
/// bytes under `events/tests/golden/`, keeping the old ones.
pub const UPCASTERS: &[Upcaster] =
    &[Upcaster { event_type: "optimization_decided", from_version: 1, apply: decided_v1_to_v2 }];

/// `optimization_decided` v1 → v2: the `generator` field; every v1 decision used the configured
/// generator (the offline fallback did not exist).
fn decided_v1_to_v2(mut v: rmpv::Value) -> Result<rmpv::Value, String> {
    let rmpv::Value::Map(map) = &mut v else { return Err("payload is not a map".into()) };
    if !map.iter().any(|(k, _)| k.as_str() == Some("generator")) {
        map.push((rmpv::Value::from("generator"), rmpv::Value::from("configured")));
    }
    Ok(v)
}

/// Encodes a value as a MessagePack map with named fields.
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes an event's payload (its fields, without the `type`, which the envelope carries).
pub fn encode(event: &DomainEvent) -> Result<Vec<u8>, CodecError> {
    event.encode_current().map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a stored payload of any known type and version, upcasting with [`UPCASTERS`], and
/// checks it by the rule every record passes at the edge ([`DomainEvent::validate`]), so that an
/// event no backend or read side can hold is refused here too.
pub fn decode(event_type: &str, version: u16, payload: &[u8]) -> Result<DomainEvent, CodecError> {
    let event = decode_with(UPCASTERS, event_type, version, payload)?;
    event.validate().map_err(|(field, e)| CodecError::Invalid {
        event_type: event_type.to_string(),
        field,
        reason: e.0,
    })?;
    Ok(event)
}

/// Decodes with an explicit upcaster chain (what [`decode`] does with this build's chain).
pub fn decode_with(
    upcasters: &[Upcaster],
    event_type: &str,
    version: u16,
    payload: &[u8],
) -> Result<DomainEvent, CodecError> {
    let current =
        current_version_with(upcasters, event_type).ok_or_else(|| CodecError::UnknownType(event_type.to_string()))?;
    if version == current {
        return decode_current(event_type, payload);
    }
    if version > current || version == 0 {
        return Err(CodecError::UnknownVersion { event_type: event_type.to_string(), version });
    }
    let mut value: rmpv::Value = rmp_serde::from_slice(payload).map_err(|e| CodecError::Malformed {
        event_type: event_type.to_string(),
        version,
        reason: e.to_string(),
    })?;
    for v in version..current {
        let step = upcasters
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == v)
            .ok_or_else(|| CodecError::UnknownVersion { event_type: event_type.to_string(), version: v })?;
        value = (step.apply)(value).map_err(|reason| CodecError::Upcast {
            event_type: event_type.to_string(),
            version: v,
            reason,
        })?;
    }
    let bytes = to_bytes(&value)?;
    decode_current(event_type, &bytes)
}

/// Decodes a payload written at the type's current version.
fn decode_current(event_type: &str, payload: &[u8]) -> Result<DomainEvent, CodecError> {
    DomainEvent::decode_current(event_type, payload)
        .ok_or_else(|| CodecError::UnknownType(event_type.to_string()))?
        .map_err(|e| CodecError::Malformed { event_type: event_type.to_string(), version: 0, reason: e.to_string() })
}
