//! The `EventStore` trait every backend implements, its errors, limits and subscriptions.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::ids::{InvalidValue, MAX_TAG_LEN, Position, StreamId};

/// Why the store refused or failed an operation. Refusals (bad input, conflicts) leave the store
/// as it was; `Failed` and `Io` mean the store has stopped accepting writes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stream id, tag or event field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: String, reason: String },
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyBatch,
    /// An event over the configured maximum size.
    #[error("event {event_id} is {size} bytes, over the maximum of {max}")]
    EventTooLarge { event_id: Uuid, size: usize, max: usize },
    /// A batch with more events than the configured maximum.
    #[error("a batch of {size} events is over the maximum of {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// The stream's version is not the expected one.
    #[error("stream {stream}: expected {expected}, but the stream is at version {actual}")]
    WrongExpectedVersion { stream: StreamId, expected: ExpectedVersion, actual: u64 },
    /// An event id that is already stored with different content, in another stream, or
    /// together with events that are not.
    #[error("event id {event_id} is already stored {reason}")]
    IdConflict { event_id: Uuid, reason: String },
    /// Stored data fails its checks: never skipped, never served.
    #[error("corrupt log: {file}, offset {offset}: {reason}")]
    Corruption { file: PathBuf, offset: u64, reason: String },
    /// The disk is full: the append failed and nothing of it is acknowledged. The store stops;
    /// it opens again once space is freed.
    #[error("disk full while writing {file}: {source}")]
    DiskFull { file: PathBuf, source: std::io::Error },
    /// A write or fsync failed earlier: the store is stopped (fail-stop) and must be reopened.
    #[error("the store stopped after a failed write or fsync ({0}); reopen it")]
    Failed(String),
    /// Another process holds the data directory.
    #[error("{dir} is in use by another process (one writer per data directory); read-only commands still work")]
    Locked { dir: PathBuf },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// An I/O error other than a full disk.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// A database backend failed.
    #[error("backend: {0}")]
    Backend(String),
    /// The append was made under a lease that has moved on (another node holds it now) or
    /// lapsed: this process no longer owns what it acted for, and nothing was written.
    /// `token` is the one the append carried; `None` when this node knew it did not hold the
    /// lease and refused the append itself.
    #[error("lease {lease} ({}) is no longer held by this node; nothing was written", fence_token(.token))]
    Fenced { lease: String, token: Option<i64> },
}

fn fence_token(token: &Option<i64>) -> String {
    token.map_or_else(|| "not held here".to_string(), |t| format!("token {t}"))
}

/// A lease's fencing token, carried by every append made on behalf of what the lease owns. A
/// backend that keeps leases refuses the append once the lease has another token or has lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub token: i64,
}

impl StoreError {
    /// An invalid-input error for `field`.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        StoreError::InvalidInput { field: field.to_string(), reason: reason.to_string() }
    }

    /// Whether the store refused the request (bad input or conflict) rather than failed.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidInput { .. }
                | StoreError::EmptyBatch
                | StoreError::EventTooLarge { .. }
                | StoreError::BatchTooLarge { .. }
                | StoreError::WrongExpectedVersion { .. }
                | StoreError::IdConflict { .. }
                | StoreError::Fenced { .. }
        )
    }
}

impl From<InvalidValue> for StoreError {
    fn from(e: InvalidValue) -> Self {
        StoreError::invalid("stream id", e)
    }
}

/// Bounds every backend enforces the same way.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest event (payload plus envelope fields), in bytes.
    pub max_event_size: usize,
    /// The most events one append may carry.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_event_size: 1 << 20, max_batch: 20_000 }
    }
}

impl Limits {
    /// Checks a batch before it reaches storage, so bad input writes nothing.
    pub fn check(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        if events.len() > self.max_batch {
            return Err(StoreError::BatchTooLarge { size: events.len(), max: self.max_batch });
        }
        for (i, e) in events.iter().enumerate() {
            let size = encoded_size(e);
            if size > self.max_event_size {
                return Err(StoreError::EventTooLarge { event_id: e.event_id, size, max: self.max_event_size });
            }
            if e.event_type.is_empty()
                || e.event_type.len() > 100
                || !e.event_type.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            {
                return Err(StoreError::invalid(&format!("events[{i}].event_type"), "must be 1-100 of a-z, 0-9, _"));
            }
            if e.schema_version == 0 {
                return Err(StoreError::invalid(&format!("events[{i}].schema_version"), "must be at least 1"));
            }
            if e.event_id.is_nil() {
                return Err(StoreError::invalid(&format!("events[{i}].event_id"), "must not be nil"));
            }
            if e.tags.len() > 64 {
                return Err(StoreError::invalid(&format!("events[{i}].tags"), "at most 64 tags"));
            }
            for t in &e.tags {
                if t.is_empty() || t.len() > MAX_TAG_LEN || t.chars().any(char::is_control) {
                    return Err(StoreError::invalid(
                        &format!("events[{i}].tags"),
                        format!("tag {t:?} is empty, longer than {MAX_TAG_LEN} bytes or holds a control character"),
                    ));
                }
            }
            if e.tags.iter().enumerate().any(|(k, t)| e.tags[..k].contains(t)) {
                return Err(StoreError::invalid(&format!("events[{i}].tags"), "a tag appears twice"));
            }
            if events[..i].iter().any(|p| p.event_id == e.event_id) {
                return Err(StoreError::invalid(&format!("events[{i}].event_id"), "appears twice in the batch"));
            }
        }
        Ok(())
    }
}

/// The size an event takes in the embedded log, used for the size limit on every backend.
pub fn encoded_size(e: &NewEvent) -> usize {
    e.payload.len() + e.event_type.len() + e.tags.iter().map(|t| t.len() + 2).sum::<usize>() + 96
}

/// Reading direction within a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending versions.
    Forward,
    /// Descending versions.
    Backward,
}

/// The size of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StoreStats {
    /// Events stored.
    pub events: u64,
    /// Streams with at least one event.
    pub streams: u64,
    /// The position of the last event (0 when empty).
    pub last_position: Position,
    /// Bytes the log takes on disk (or in the database).
    pub bytes: u64,
}

/// Whether a store can take appends, as health checks report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StoreHealth {
    /// Appends are taken.
    Ok,
    /// The last append was refused for a full disk (at `since`); appends resume by themselves
    /// once there is space.
    DiskFull { since: chrono::DateTime<chrono::Utc> },
    /// A write or fsync failed: the store takes no append until it is opened again.
    Failed { reason: String },
}

/// The operations of an append-only, globally ordered event log.
///
/// Every backend passes the same conformance suite (`tests/conformance.rs`).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its version is `expected`; all or nothing. A retry whose
    /// event ids are already stored, with the same content, returns the first result with
    /// `deduplicated` set and writes nothing.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// [`append`](Self::append) on behalf of a lease: refused with [`StoreError::Fenced`] when
    /// the lease is no longer held with `fence.token`. A backend without leases (one process per
    /// log: the embedded store locks its directory) has no other holder to fence off, and
    /// appends.
    async fn append_fenced(
        &self,
        fence: &Fence,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let _ = fence;
        self.append(stream, expected, events).await
    }

    /// Reads up to `limit` events of a stream from `from_version` (inclusive) in `direction`;
    /// `u64::MAX` reading backward means "from the end".
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events in global order from position `from` (inclusive).
    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events carrying `tag`, in global order, from position `from`.
    async fn read_by_tag(&self, tag: &str, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stored events with these ids, in global order; ids not stored are left out. Ingest
    /// checks a whole batch with it before writing anything, so that a known id with different
    /// content refuses the batch before any of it is written. A backend without an id index
    /// may return nothing: its appends still refuse such ids, one stream at a time.
    async fn read_events_by_id(&self, ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
        let _ = ids;
        Ok(Vec::new())
    }

    /// The stream's current version (0 when it does not exist).
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// Counts of the log.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Waits until the log holds an event after `after`, or about a second has passed.
    /// Subscriptions are built on it; a backend wakes it on its own commit signal.
    async fn wait_for_append(&self, after: Position);

    /// Stops accepting writes, finishes the ones in flight and releases the store's resources.
    async fn close(&self);

    /// Whether the store takes appends now.
    fn health(&self) -> StoreHealth {
        StoreHealth::Ok
    }
}

/// A live, gap-free feed of the log in global order: it catches up from a position, then follows
/// new appends. Dropping it stops the feed.
pub struct Subscription {
    rx: mpsc::Receiver<Result<RecordedEvent, StoreError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next event. A lost database connection is retried inside the feed; any other error
    /// is delivered once and ends it (`None` after that).
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        self.rx.recv().await
    }

    /// The next event if one is already here, without waiting.
    pub fn try_next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many events a subscription reads per round trip while catching up.
const SUBSCRIPTION_BATCH: usize = 1_000;

/// Whether the log holds an event at `position` recorded at `recorded_at`: what ties something
/// saved beside the log (a checkpoint, a catalog map, an image of tables) to the log it was made
/// from, so that one of another log (another database behind the same data directory, a log
/// restored from an older backup) is not taken for this one's.
pub async fn holds(
    store: &dyn EventStore,
    position: Position,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    let at = store.read_all(position, 1).await?;
    Ok(at.first().is_some_and(|e| e.position == position && e.recorded_at == recorded_at))
}

/// Subscribes to the whole log from position `from` (inclusive).
///
/// The feed reads in batches with [`EventStore::read_all`] and, once caught up, waits with
/// [`EventStore::wait_for_append`]. Because it asks for "the next position after the last one
/// it delivered" and every backend only exposes positions whose predecessors are all visible,
/// it can neither skip nor repeat an event.
pub fn subscribe_all(store: Arc<dyn EventStore>, from: Position) -> Subscription {
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_BATCH * 2);
    let task = tokio::spawn(async move {
        let mut next = from.max(1);
        loop {
            match store.read_all(next, SUBSCRIPTION_BATCH).await {
                Ok(batch) if batch.is_empty() => store.wait_for_append(next - 1).await,
                Ok(batch) => {
                    for e in batch {
                        debug_assert!(e.position >= next, "read_all must return positions from `next` on");
                        next = e.position + 1;
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                }
                // A lost database connection is transient: the backend reconnects, and the
                // feed resumes from the position after the last one it delivered.
                Err(StoreError::Backend(e)) => {
                    tracing::warn!(error = %e, position = next, "subscription read failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Subscription { rx, task }
}

/// What an event id of an incoming batch is already stored (or staged) as.
#[derive(Debug, Clone)]
pub struct KnownEvent {
    /// The stream it is in.
    pub stream: StreamId,
    /// Its version there.
    pub stream_version: u64,
    /// Its global position.
    pub position: Position,
    /// Whether its content equals the incoming event's.
    pub same_content: bool,
}

/// Decides whether a batch is a retry, given what each of its event ids is already known as.
///
/// `Ok(Some(result))`: every event is stored, in this stream, at consecutive versions (positions
/// rising; other streams' events may stand between them on PostgreSQL) and with the same
/// content, so the batch is answered as the first attempt was. `Ok(None)`: none is known.
/// Anything in between is an [`StoreError::IdConflict`]. Every backend decides retries here.
pub fn check_retry(
    stream: &StreamId,
    events: &[NewEvent],
    known: &[Option<KnownEvent>],
) -> Result<Option<AppendResult>, StoreError> {
    let Some(first_known) = known.iter().position(Option::is_some) else { return Ok(None) };
    let event_id = events[first_known].event_id;
    if known.iter().any(Option::is_none) {
        return Err(StoreError::IdConflict { event_id, reason: "while others of its batch are not".into() });
    }
    let known: Vec<&KnownEvent> = known.iter().flatten().collect();
    for (i, k) in known.iter().enumerate() {
        let event_id = events[i].event_id;
        if &k.stream != stream {
            return Err(StoreError::IdConflict { event_id, reason: format!("in stream {}", k.stream) });
        }
        if !k.same_content {
            return Err(StoreError::IdConflict { event_id, reason: "with different content".into() });
        }
        if i > 0 && (known[i - 1].stream_version + 1 != k.stream_version || known[i - 1].position >= k.position) {
            return Err(StoreError::IdConflict { event_id, reason: "in a different order or batch".into() });
        }
    }
    let (first, last) = (known[0], known[known.len() - 1]);
    Ok(Some(AppendResult {
        first_position: first.position,
        last_position: last.position,
        stream_version: last.stream_version,
        deduplicated: true,
    }))
}
