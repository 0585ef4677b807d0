//! The projection runner and the sink trait.
//!
//! A projection has a stable name and a version and turns each event into row changes with a
//! pure function. A sink applies one batch of changes together with the checkpoint (the last
//! position the batch covers), all or nothing; a batch whose checkpoint is not past the sink's is
//! skipped, so a batch delivered twice takes effect once. The runner reads the log in global
//! order from the sink's checkpoint and feeds it batch by batch.
//!
//! A poison event never stalls a projection: an event that does not decode, or whose changes
//! the sink refuses ([`SinkError::Rejected`], a data error rather than a lost connection), is
//! parked with its error — the batch is retried event by event to find it — and the projection
//! moves on. [`retry`] applies parked events after a fix.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_events::domain::DomainEvent;
use mall_events::{EventStore, Position, RecordedEvent, StoreError};
use tokio::sync::watch;

use crate::change::{Change, TableDef};

/// A pure projection: the same events give the same changes, always.
pub trait Projection: Send + Sync + 'static {
    /// A stable name (`products`), the key of its checkpoint and tables.
    fn name(&self) -> &'static str;
    /// Bumped when `apply` or the tables change; a new version is built beside the old one.
    fn version(&self) -> u32;
    /// The tables it writes.
    fn tables(&self) -> &'static [TableDef];
    /// The row changes `event` makes.
    fn apply(&self, event: &RecordedEvent, decoded: &DomainEvent) -> Vec<Change>;
    /// Whether `event` can change its tables at all (decided from the envelope): one that
    /// cannot is passed by without being decoded.
    fn concerns(&self, _event: &RecordedEvent) -> bool {
        true
    }
}

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink is unavailable (a lost connection): retrying later may succeed.
    #[error("sink: {0}")]
    Backend(String),
    /// The sink refused the changes themselves (a value its tables cannot hold): retrying the
    /// same changes cannot succeed. The backend's detail is in the message.
    #[error("sink refused the changes: {0}")]
    Rejected(String),
    #[error("log: {0}")]
    Log(#[from] StoreError),
    /// The tables hold another version of the projection (a blue/green deployment under way):
    /// this writer must not touch them.
    #[error("the tables hold version {found} of this projection; this is version {ours}")]
    OtherVersion { found: u32, ours: u32 },
}

/// Where a projection's rows live.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The last position applied.
    async fn checkpoint(&self) -> Result<Position, SinkError>;
    /// Applies `changes` (the events after `from` up to `to`) and moves the checkpoint to `to`,
    /// together — but only if the checkpoint is still `from`: a batch delivered twice, or one
    /// read before a rebuild was swapped in, changes nothing and returns `false` (the runner then
    /// reads the checkpoint again).
    async fn apply(
        &self,
        from: Position,
        to: Position,
        recorded_at: Option<DateTime<Utc>>,
        changes: Vec<Change>,
    ) -> Result<bool, SinkError>;
    /// Keeps `parked` (replacing an earlier record of the same position).
    async fn park(&self, parked: Parked) -> Result<(), SinkError>;
    /// Every parked event, by position.
    async fn parked(&self) -> Result<Vec<Parked>, SinkError>;
    /// Forgets a parked event (a retry applied it).
    async fn unpark(&self, position: Position) -> Result<(), SinkError>;
    /// Applies the changes of a parked event where the checkpoint already is: out of the log's
    /// order, all or nothing.
    async fn apply_unordered(&self, changes: Vec<Change>) -> Result<(), SinkError>;
}

/// An event a projection could not apply, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Parked {
    pub position: Position,
    pub event_type: String,
    pub error: String,
    pub parked_at: DateTime<Utc>,
}

impl Parked {
    fn of(e: &RecordedEvent, error: impl std::fmt::Display) -> Parked {
        Parked {
            position: e.position,
            event_type: e.event_type.clone(),
            error: error.to_string(),
            parked_at: Utc::now(),
        }
    }
}

/// How far a projection is behind the log.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Lag {
    pub checkpoint: Position,
    pub log_position: Position,
    /// Events not yet applied.
    pub positions: u64,
    /// Seconds between the newest event in the log and the last one applied (0 when caught up).
    pub seconds: f64,
}

/// The changes of a slice of the log, and the events that do not decode (to be parked).
pub fn changes_of(projection: &dyn Projection, events: &[RecordedEvent]) -> (Vec<Change>, Vec<Parked>) {
    let mut out = Vec::new();
    let mut poisoned = Vec::new();
    for e in events.iter().filter(|e| projection.concerns(e)) {
        match e.decode() {
            Ok(d) => out.extend(projection.apply(e, &d)),
            Err(err) => {
                tracing::error!(projection = projection.name(), position = e.position, error = %err, "an event that does not decode is parked");
                poisoned.push(Parked::of(e, err));
            }
        }
    }
    (out, poisoned)
}

/// Applies `events` (after `from`) one at a time, parking each that does not decode or whose
/// changes the sink refuses; returns the checkpoint reached, or `None` when someone else moved
/// the checkpoint.
async fn apply_one_by_one(
    projection: &dyn Projection,
    sink: &dyn Sink,
    mut at: Position,
    events: &[RecordedEvent],
) -> Result<Option<Position>, SinkError> {
    let start = at;
    for e in events.iter().filter(|e| e.position > start) {
        let changes = match projection.concerns(e).then(|| e.decode()) {
            None => Vec::new(),
            Some(Ok(d)) => projection.apply(e, &d),
            Some(Err(err)) => {
                sink.park(Parked::of(e, err)).await?;
                Vec::new()
            }
        };
        let applied = match sink.apply(at, e.position, Some(e.recorded_at), changes).await {
            Err(SinkError::Rejected(why)) => {
                tracing::error!(projection = projection.name(), position = e.position, error = %why, "an event the sink refuses is parked");
                sink.park(Parked::of(e, &why)).await?;
                sink.apply(at, e.position, Some(e.recorded_at), Vec::new()).await?
            }
            other => other?,
        };
        if !applied {
            return Ok(None);
        }
        at = e.position;
    }
    Ok(Some(at))
}

/// Applies everything in the log after the sink's checkpoint, `batch` events at a time, calling
/// `progress(position)` after each batch; returns the checkpoint reached.
pub async fn catch_up(
    store: &dyn EventStore,
    projection: &dyn Projection,
    sink: &dyn Sink,
    batch: usize,
    progress: impl FnMut(Position),
) -> Result<Position, SinkError> {
    catch_up_until(store, projection, sink, batch, None, progress).await
}

/// [`catch_up`], stopping at `until` (inclusive) when given.
///
/// While the sink applies one batch, the next is read from the log and turned into changes, so
/// that the log, this process and the sink's database work at the same time.
pub async fn catch_up_until(
    store: &dyn EventStore,
    projection: &dyn Projection,
    sink: &dyn Sink,
    batch: usize,
    until: Option<Position>,
    mut progress: impl FnMut(Position),
) -> Result<Position, SinkError> {
    let prepare = |from: Position| async move {
        if until.is_some_and(|u| from > u) {
            return Ok::<_, SinkError>((Vec::new(), (Vec::new(), Vec::new())));
        }
        let mut events = store.read_all(from, batch).await?;
        if let Some(u) = until {
            events.retain(|e| e.position <= u);
        }
        let (changes, poisoned) = changes_of(projection, &events);
        Ok((events, (changes, poisoned)))
    };
    let mut at = sink.checkpoint().await?;
    let mut prepared = None;
    loop {
        let (events, (changes, poisoned)) = match prepared.take() {
            Some(p) => p,
            None => prepare(at + 1).await?,
        };
        let Some(last) = events.last() else { return Ok(at) };
        let (to, recorded_at) = (last.position, last.recorded_at);
        for p in poisoned {
            sink.park(p).await?;
        }
        let (applied, next) = tokio::join!(sink.apply(at, to, Some(recorded_at), changes), prepare(to + 1));
        let applied = match applied {
            // Some event of the batch holds a value the sink refuses: find it, park it, go on.
            Err(SinkError::Rejected(_)) => apply_one_by_one(projection, sink, at, &events).await?.is_some(),
            other => other?,
        };
        if applied {
            at = to;
            progress(at);
            prepared = Some(next?);
        } else {
            // Someone else moved the checkpoint (a swapped-in rebuild, a second runner).
            at = sink.checkpoint().await?;
        }
    }
}

/// Rebuilds several projections in one pass over the log: each batch is read and decoded once,
/// and every sink still behind it gets its changes, the projections computing and the sinks
/// writing at the same time (each on its own task and connection). Each sink resumes from its
/// own checkpoint. `progress(position)` is called after each batch; returns the position every
/// sink reached.
pub async fn catch_up_all(
    store: Arc<dyn EventStore>,
    parts: &[(Arc<dyn Projection>, Arc<dyn Sink>)],
    batch: usize,
    mut progress: impl FnMut(Position),
) -> Result<Position, SinkError> {
    type Decoded = Arc<Vec<(RecordedEvent, Result<DomainEvent, String>)>>;
    let mut at = Vec::with_capacity(parts.len());
    for (_, sink) in parts {
        at.push(sink.checkpoint().await?);
    }
    let read = |from: Position| {
        let store = store.clone();
        async move {
            let events = store.read_all(from, batch).await?;
            let decoded: Vec<(RecordedEvent, Result<DomainEvent, String>)> = events
                .into_iter()
                .map(|e| {
                    let d = e.decode().map_err(|err| err.to_string());
                    (e, d)
                })
                .collect();
            Ok::<Decoded, SinkError>(Arc::new(decoded))
        }
    };
    let mut prepared = None;
    loop {
        let from = at.iter().copied().min().unwrap_or(0) + 1;
        let events = match prepared.take() {
            Some((start, events)) if start == from => events,
            _ => read(from).await?,
        };
        let Some(last) = events.last() else { return Ok(from - 1) };
        let (to, recorded_at) = (last.0.position, last.0.recorded_at);
        let writes: Vec<_> = parts
            .iter()
            .zip(&at)
            .filter(|(_, cp)| **cp < to)
            .map(|((projection, sink), cp)| {
                let (projection, sink, events, cp) = (projection.clone(), sink.clone(), events.clone(), *cp);
                tokio::spawn(async move {
                    let mut changes = Vec::new();
                    for (e, d) in events.iter().filter(|(e, _)| e.position > cp && projection.concerns(e)) {
                        match d {
                            Ok(d) => changes.extend(projection.apply(e, d)),
                            Err(err) => sink.park(Parked::of(e, err)).await?,
                        }
                    }
                    match sink.apply(cp, to, Some(recorded_at), changes).await {
                        // Find the event the sink refuses, park it, go on.
                        Err(SinkError::Rejected(_)) => {
                            let events: Vec<RecordedEvent> = events.iter().map(|(e, _)| e.clone()).collect();
                            Ok(apply_one_by_one(&*projection, &*sink, cp, &events).await?.is_some())
                        }
                        other => other,
                    }
                })
            })
            .collect();
        let (applied, next) = tokio::join!(futures_util::future::join_all(writes), read(to + 1));
        let mut all = true;
        let mut written = applied.into_iter();
        for (i, (_, sink)) in parts.iter().enumerate() {
            if at[i] >= to {
                continue;
            }
            let applied =
                written.next().expect("one result per write").map_err(|e| SinkError::Backend(e.to_string()))?;
            if applied? {
                at[i] = to;
            } else {
                all = false;
                at[i] = sink.checkpoint().await?;
            }
        }
        if all {
            prepared = Some((to + 1, next?));
        }
        progress(at.iter().copied().min().unwrap_or(to));
    }
}

/// Follows the log until `shutdown` fires, publishing the checkpoint after each batch.
pub async fn follow(
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    sink: Arc<dyn Sink>,
    applied: watch::Sender<Position>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SinkError> {
    loop {
        let at = catch_up(&*store, &*projection, &*sink, 2_000, |p| {
            applied.send_replace(p);
        })
        .await;
        match at {
            Ok(at) => {
                applied.send_replace(at);
                tokio::select! {
                    _ = store.wait_for_append(at) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(SinkError::Log(StoreError::Backend(e))) | Err(SinkError::Backend(e)) => {
                // A lost connection (log or sink): the checkpoint says where to resume.
                tracing::warn!(projection = projection.name(), error = %e, "projection paused; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(SinkError::OtherVersion { found, ours }) => {
                // Before the swap, a new version waits for its rebuild to be swapped in; after
                // it, an old version waits to be stopped. Reads go on either way.
                tracing::warn!(
                    projection = projection.name(),
                    found,
                    ours,
                    "the live tables hold another version of this projection; waiting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The lag of a sink behind the log.
pub async fn lag(store: &dyn EventStore, sink: &dyn Sink) -> Result<Lag, SinkError> {
    let checkpoint = sink.checkpoint().await?;
    let log_position = store.stats().await?.last_position;
    let seconds = if checkpoint >= log_position {
        0.0
    } else {
        let newest = store.read_all(log_position, 1).await?;
        let applied = if checkpoint == 0 { Vec::new() } else { store.read_all(checkpoint, 1).await? };
        match (newest.first(), applied.first()) {
            (Some(n), Some(a)) => (n.recorded_at - a.recorded_at).num_milliseconds().max(0) as f64 / 1000.0,
            (Some(n), None) => (Utc::now() - n.recorded_at).num_milliseconds().max(0) as f64 / 1000.0,
            _ => 0.0,
        }
    };
    Ok(Lag { checkpoint, log_position, positions: log_position.saturating_sub(checkpoint), seconds })
}

/// What [`retry`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Retried {
    /// Parked events applied and forgotten.
    pub applied: Vec<Position>,
    /// Parked events that still fail (their error updated).
    pub still_parked: Vec<Parked>,
}

/// Applies the parked events of `sink` again (after a fix), each on its own, out of the log's
/// order: an event that now decodes and is accepted is forgotten; one that still fails stays
/// parked with its new error.
pub async fn retry(store: &dyn EventStore, projection: &dyn Projection, sink: &dyn Sink) -> Result<Retried, SinkError> {
    let mut out = Retried::default();
    for p in sink.parked().await? {
        let Some(e) = store.read_all(p.position, 1).await?.into_iter().find(|e| e.position == p.position) else {
            continue;
        };
        let outcome = match e.decode() {
            Ok(d) => match sink.apply_unordered(projection.apply(&e, &d)).await {
                Ok(()) => Ok(()),
                Err(SinkError::Rejected(why)) => Err(why),
                Err(other) => return Err(other),
            },
            Err(err) => Err(err.to_string()),
        };
        match outcome {
            Ok(()) => {
                sink.unpark(p.position).await?;
                out.applied.push(p.position);
            }
            Err(why) => {
                let again = Parked::of(&e, why);
                sink.park(again.clone()).await?;
                out.still_parked.push(again);
            }
        }
    }
    Ok(out)
}
