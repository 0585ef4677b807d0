//! The KurrentDB backend (feature `kurrentdb`), through the `kurrentdb` crate — the maintained
//! successor of the `eventstore` crate, from the same vendor.
//!
//! Mapping: a mall stream is a KurrentDB stream of the same name; mall's envelope fields that
//! KurrentDB has no place for (schema version, tags, correlation and causation ids) travel in
//! the event's custom metadata, encoded with rmp-serde. Stream versions are KurrentDB revisions
//! plus one.
//!
//! Where KurrentDB differs from the other backends, and what mall does about it:
//! - global positions are the server's `$all` commit positions: strictly increasing, but not
//!   contiguous (subscriptions only rely on "strictly increasing");
//! - there is no tag index: `read_by_tag` filters `$all` (fine for tools, slow for large logs);
//! - idempotent retries and content checks are the server's own (it recognizes event ids when
//!   the expected version matches); `IdConflict` is not reported;
//! - live subscribers poll `$all` every 100 ms rather than being woken by the server.

use std::time::Duration;

use async_trait::async_trait;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::ids::{Position, StreamId};
use crate::store::{Direction, EventStore, Limits, StoreError, StoreStats};

/// Envelope fields carried in KurrentDB's custom metadata.
#[derive(Serialize, Deserialize)]
struct Meta {
    schema_version: u16,
    tags: Vec<String>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

/// The KurrentDB event store.
pub struct KurrentStore {
    client: Client,
    limits: Limits,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl KurrentStore {
    /// Connects with a `kurrentdb://` (or `esdb://`) connection string.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let settings: ClientSettings = url.parse().map_err(backend)?;
        let client = Client::new(settings).map_err(backend)?;
        Ok(Self { client, limits: Limits::default() })
    }

    fn to_recorded(e: &kurrentdb::RecordedEvent) -> Result<Option<RecordedEvent>, StoreError> {
        if e.stream_id().starts_with('$') || e.event_type.starts_with('$') {
            return Ok(None);
        }
        let Ok(stream_id) = StreamId::parse(e.stream_id()) else { return Ok(None) };
        let meta: Meta = rmp_serde::from_slice(&e.custom_metadata).map_err(backend)?;
        Ok(Some(RecordedEvent {
            event_id: e.id,
            stream_id,
            stream_version: e.revision + 1,
            position: e.position.commit,
            event_type: e.event_type.clone(),
            schema_version: meta.schema_version,
            recorded_at: e.created,
            tags: meta.tags,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            payload: e.data.to_vec(),
        }))
    }

    /// Reads `$all` from `from`, keeping events that pass `keep`, until `limit` are found.
    async fn scan_all(
        &self,
        from: Position,
        limit: usize,
        keep: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadAllOptions::default()
            .forwards()
            .position(StreamPosition::Position(kurrentdb::Position { commit: from, prepare: from }))
            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
        let mut stream = self.client.read_all(&options).await.map_err(backend)?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(resolved) = stream.next().await.map_err(backend)? else { break };
            if let Some(e) = Self::to_recorded(resolved.get_original_event())?
                && e.position >= from
                && keep(&e)
            {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl EventStore for KurrentStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.limits.check(&events)?;
        let state = match expected {
            ExpectedVersion::Any => StreamState::Any,
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => StreamState::NoStream,
            ExpectedVersion::Exact(v) => StreamState::StreamRevision(v - 1),
        };
        let mut data = Vec::with_capacity(events.len());
        for e in events {
            let meta = rmp_serde::to_vec_named(&Meta {
                schema_version: e.schema_version,
                tags: e.tags,
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
            })
            .map_err(backend)?;
            data.push(EventData::binary(e.event_type, e.payload.into()).id(e.event_id).metadata(meta.into()));
        }
        let options = AppendToStreamOptions::default().stream_state(state);
        match self.client.append_to_stream(stream.as_str(), &options, data).await {
            Ok(w) => Ok(AppendResult {
                first_position: w.position.commit,
                last_position: w.position.commit,
                stream_version: w.next_expected_version + 1,
                deduplicated: false,
            }),
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => Err(StoreError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual: match current {
                    CurrentRevision::Current(r) => r + 1,
                    CurrentRevision::NoStream => 0,
                },
            }),
            Err(e) => Err(backend(e)),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 || (direction == Direction::Backward && from_version == 0) {
            return Ok(Vec::new());
        }
        let options = match direction {
            Direction::Forward => ReadStreamOptions::default()
                .forwards()
                .position(StreamPosition::Position(from_version.saturating_sub(1)))
                .max_count(limit),
            Direction::Backward if from_version == u64::MAX => {
                ReadStreamOptions::default().backwards().position(StreamPosition::End).max_count(limit)
            }
            Direction::Backward => ReadStreamOptions::default()
                .backwards()
                .position(StreamPosition::Position(from_version - 1))
                .max_count(limit),
        };
        let mut read = match self.client.read_stream(stream.as_str(), &options).await {
            Ok(r) => r,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(e) = Self::to_recorded(resolved.get_original_event())? {
                        out.push(e);
                    }
                }
                Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => break,
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(out)
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.scan_all(from, limit, |_| true).await
    }

    async fn read_by_tag(&self, tag: &str, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.scan_all(from, limit, |e| e.tags.iter().any(|t| t == tag)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.read_stream(stream, u64::MAX, Direction::Backward, 1).await?.first().map_or(0, |e| e.stream_version))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        // KurrentDB keeps no such counts for mall's events: count them (a full read of $all).
        let all = self.scan_all(0, usize::MAX, |_| true).await?;
        let streams: std::collections::HashSet<&str> = all.iter().map(|e| e.stream_id.as_str()).collect();
        Ok(StoreStats {
            events: all.len() as u64,
            streams: streams.len() as u64,
            last_position: all.last().map_or(0, |e| e.position),
            bytes: all.iter().map(|e| e.payload.len() as u64).sum(),
        })
    }

    async fn wait_for_append(&self, _after: Position) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn close(&self) {}
}
