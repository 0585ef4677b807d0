//! The envelope: what the log stores around every payload.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::codec::{self, CodecError};
use crate::domain::DomainEvent;
use crate::ids::{Position, StreamId};

/// An event about to be appended: everything but the fields the store assigns
/// (stream, version, position, recorded-at).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// UUIDv7, client-supplied where the client has one: a retry with the same id is stored once.
    pub event_id: Uuid,
    /// The stable type string.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u16,
    /// Secondary keys the event is also indexed under (`shopper:7`, `district:toys`).
    pub tags: Vec<String>,
    /// The id shared by every event of one piece of work.
    pub correlation_id: Option<Uuid>,
    /// The id of the event or command that caused this one.
    pub causation_id: Option<Uuid>,
    /// The rmp-serde encoded payload.
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// Wraps a domain event: encodes it and takes its type, version and intrinsic tags, plus
    /// `extra_tags` (such as the district of a signal, which only the catalog knows).
    pub fn from_domain(event: &DomainEvent, event_id: Uuid, extra_tags: Vec<String>) -> Result<Self, CodecError> {
        let mut tags = event.intrinsic_tags();
        for t in extra_tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Ok(Self {
            event_id,
            event_type: event.event_type().to_string(),
            schema_version: event.schema_version(),
            tags,
            correlation_id: None,
            causation_id: None,
            payload: codec::encode(event)?,
        })
    }

    /// Sets the correlation and causation ids.
    pub fn caused_by(mut self, correlation_id: Uuid, causation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self.causation_id = Some(causation_id);
        self
    }

    /// Whether `recorded` is this same event (what makes a retried append idempotent).
    pub fn same_as(&self, recorded: &RecordedEvent) -> bool {
        self.event_id == recorded.event_id
            && self.event_type == recorded.event_type
            && self.schema_version == recorded.schema_version
            && self.payload == recorded.payload
            && self.tags == recorded.tags
            && self.correlation_id == recorded.correlation_id
            && self.causation_id == recorded.causation_id
    }
}

/// An event as stored: the full envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: StreamId,
    /// 1 for a stream's first event, then +1 per event.
    pub stream_version: u64,
    /// The event's place in the global order, 1-based and rising (gap-free on the embedded store; on
    /// PostgreSQL an aborted append leaves a hole, never a skipped event).
    pub position: Position,
    pub event_type: String,
    pub schema_version: u16,
    /// When the store accepted it (UTC, microsecond precision on every backend).
    pub recorded_at: DateTime<Utc>,
    pub tags: Vec<String>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    #[serde(skip)]
    pub payload: Vec<u8>,
}

impl RecordedEvent {
    /// Decodes the payload, upcasting older schema versions.
    pub fn decode(&self) -> Result<DomainEvent, CodecError> {
        codec::decode(&self.event_type, self.schema_version, &self.payload)
    }

    /// The envelope with the payload decoded to JSON, for `mall events tail --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("an envelope serializes");
        let data = match self.decode() {
            Ok(e) => serde_json::to_value(e).expect("an event serializes"),
            Err(e) => serde_json::json!({ "undecodable": e.to_string() }),
        };
        v["data"] = data;
        v
    }
}

/// What an append expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version (0 means: no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (0 when it does not exist) satisfies it.
    pub fn accepts(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// What a successful append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The global position of the batch's first event.
    pub first_position: Position,
    /// The global position of the batch's last event.
    pub last_position: Position,
    /// The stream's version after the batch's last event.
    pub stream_version: u64,
    /// True when every event was already stored by an earlier attempt (an idempotent retry).
    pub deduplicated: bool,
}
