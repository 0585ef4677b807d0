//! The actor shell shared by every kind: load (snapshot + tail), fold what the router delivers
//! exactly once, snapshot every N events, passivate when idle; a kind that decides (products)
//! looks at its state through [`Kind::look`]. Each kind's rules and its `impl Kind` live in its
//! own folder (`product/`, `district/`, `shopper/`, each with an `actor.rs`); the product's
//! handlers for deciding and generating are there too, typed on the product actor alone.
//!
//! Exactly once: a stream-sourced actor (a product) remembers the stream version it folded and a
//! tag-sourced one (a district, a shopper) the global position, so an event delivered twice —
//! by the router after a restart, or after the actor re-read its own appends — is skipped, and
//! an event that arrives after a gap makes the actor read the gap from the log first.

use std::fmt::Display;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use mall_events::domain::DomainEvent;
use mall_events::ids::Position;
use mall_events::{Direction, RecordedEvent, StoreError, StreamId};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::{Runtime, snapshot};

/// How often an actor's append is retried after losing the stream's version to concurrent
/// signal appends (each retry first folds what won).
pub(crate) const APPEND_ATTEMPTS: usize = 100;

/// Where a kind's events come from.
pub enum Source {
    /// One stream, read by version.
    Stream(StreamId),
    /// Every event with a tag, read by global position.
    Tag(String),
}

/// How far a load folds: to the head of the log, or a prefix of it (`mall replay --until`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    Head,
    /// Events at or before this position.
    Position(Position),
    /// Events up to the first one recorded after this time.
    Time(chrono::DateTime<Utc>),
}

impl Until {
    /// Whether `e` is within the bound.
    pub fn includes(&self, e: &RecordedEvent) -> bool {
        match self {
            Until::Head => true,
            Until::Position(p) => e.position <= *p,
            Until::Time(t) => e.recorded_at <= *t,
        }
    }
}

/// What the shell needs of an actor kind: its rules behind one trait. The shell does the rest —
/// loading (snapshot + tail, or a full fold up to a bound, one loader for the live actors and
/// for `mall replay`), exactly-once delivery, snapshots, passivation, restarts after a panic.
pub trait Kind: Sized + Unpin + 'static {
    type Id: Clone + Eq + Hash + Display + Send + Sync + Unpin + 'static;
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Unpin + 'static;
    /// `product`, `district`, `shopper`.
    const NAME: &'static str;
    /// Where an instance's events come from.
    fn source(id: &Self::Id) -> Source;
    /// The instances an event concerns (the router delivers it to each).
    fn route(e: &RecordedEvent, to: &mut dyn FnMut(Self::Id));
    /// How far the state has folded: a stream version or a global position.
    fn cursor(state: &Self::State) -> u64;
    /// The global position of the last event folded (0: none).
    fn last_position(state: &Self::State) -> u64;
    /// What the shell gathers for a decision — the time, ids, facts of other systems (a
    /// product: its district's prior, whether the budget has room) — recorded with it.
    type Input;
    /// What the kind decides.
    type Decision;
    /// Pure: the decisions the state calls for, given the input (none, for a kind that only
    /// folds).
    fn decide(state: &Self::State, input: &Self::Input) -> Vec<Self::Decision>;
    /// Folds one event: pure and total. What it reads besides the event — facts of other
    /// systems, such as a product's tags — is read from the catalog *as of the event's
    /// position*, so that every load of the same log folds the same state.
    fn evolve(state: &mut Self::State, e: &RecordedEvent, d: &DomainEvent, rt: &Runtime);
    /// Moves the state's cursor past an event that is not folded (a parked one).
    fn pass(state: &mut Self::State, e: &RecordedEvent);
    /// The last position whose facts the runtime holds: a load folds no further (the router
    /// delivers the rest). Kinds that read no facts fold to the head.
    fn facts_until(_rt: &Runtime) -> Position {
        Position::MAX
    }
    /// Gathers, for a replay, the facts the fold of this instance will read (the runtime's
    /// catalog holds only what it is given there).
    fn prepare(_rt: &Runtime, _id: &Self::Id, _until: Until) -> impl Future<Output = Result<(), StoreError>> {
        async { Ok(()) }
    }
    /// After a batch is folded: what the kind shows the others (a district its prior). Never
    /// part of the state, never read by a fold; read by the shell as input to a decision, which
    /// records it.
    fn show(_state: &Self::State, _rt: &Runtime) {}
    /// After a fold, on a nudge and on the idle tick (time alone can call for a decision): a
    /// kind that decides looks at its state (products do; the others only fold).
    fn look(_actor: &mut EntityActor<Self>, _ctx: &mut Context<EntityActor<Self>>) {}
}

/// The position of `e` in a source's order.
fn cursor_of(source: &Source, e: &RecordedEvent) -> u64 {
    match source {
        Source::Stream(_) => e.stream_version,
        Source::Tag(_) => e.position,
    }
}

pub use crate::district::actor::District;
pub use crate::product::actor::{Execute, Product};
pub use crate::shopper::actor::Shopper;

/// Events for an actor, in log order.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Vec<Arc<RecordedEvent>>);

/// Asks for the actor's state (activating it if needed).
pub struct Get<K: Kind>(std::marker::PhantomData<K>);

impl<K: Kind> Clone for Get<K> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<K: Kind> Default for Get<K> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<K: Kind> Message for Get<K> {
    type Result = Option<K::State>;
}

/// Asks a product to look at its state and decide now (the admin API's trigger).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Nudge;

impl<K: Kind> Handler<Nudge> for EntityActor<K> {
    type Result = ();

    fn handle(&mut self, _: Nudge, ctx: &mut Context<Self>) {
        self.last_active = Instant::now();
        K::look(self, ctx);
    }
}

/// Saves a snapshot and stops.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Passivate;

/// Makes the actor panic while folding (tests of restart-from-log use it).
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poison;

/// The actix actor hosting one entity of kind `K`.
pub struct EntityActor<K: Kind> {
    pub(crate) id: K::Id,
    /// `None` until loaded, and again after a panic: the next message reloads from the log.
    pub(crate) state: Option<K::State>,
    pub(crate) rt: Arc<Runtime>,
    pub(crate) folded_since_snapshot: u64,
    pub(crate) last_active: Instant,
    pub(crate) poisoned: bool,
    /// When a `Decide` is already scheduled (a product waking when a backoff ends).
    pub(crate) wake_at: Option<Instant>,
    /// The decision an `Execute` is carrying out (a second `Execute` does not run it again).
    pub(crate) executing: Option<Uuid>,
}

impl<K: Kind> EntityActor<K> {
    /// An actor for `id`; it loads itself when started.
    pub fn new(id: K::Id, rt: Arc<Runtime>) -> Self {
        Self {
            id,
            state: None,
            rt,
            folded_since_snapshot: 0,
            last_active: Instant::now(),
            poisoned: false,
            wake_at: None,
            executing: None,
        }
    }

    fn snapshot_key(id: &K::Id) -> String {
        format!("{}-{}", K::NAME, id)
    }

    fn save_snapshot(&mut self) {
        if let Some(bytes) = self.state.as_ref().and_then(snapshot::encode) {
            tracing::debug!(kind = K::NAME, id = %self.id, bytes = bytes.len(), "saving a snapshot");
            self.rt.snapshots.save(&Self::snapshot_key(&self.id), &bytes);
            self.folded_since_snapshot = 0;
        }
    }
}

/// Loads an entity: its snapshot, then every event after it.
pub async fn load<K: Kind>(rt: &Runtime, id: &K::Id) -> Result<K::State, StoreError> {
    Ok(load_counting::<K>(rt, id).await?.0)
}

/// Folds an entity from the log alone, from its first event up to `until`, with the same fold
/// the live actor uses (`mall replay`; the live-equals-replay test). The facts the kind reads
/// are gathered first ([`Kind::prepare`]).
pub async fn replay<K: Kind>(rt: &Runtime, id: &K::Id, until: Until) -> Result<(K::State, u64), StoreError> {
    replay_observed::<K>(rt, id, until, &mut |_, _, _| {}).await
}

/// [`replay`], showing `observe` every event with the state folded just before it (`mall
/// audit`'s history and `mall replay --verify` are built this way).
pub async fn replay_observed<K: Kind>(
    rt: &Runtime,
    id: &K::Id,
    until: Until,
    observe: &mut Observer<'_, K>,
) -> Result<(K::State, u64), StoreError> {
    K::prepare(rt, id, until).await?;
    let mut state = K::State::default();
    let folded = catch_up_observed::<K>(rt, id, &mut state, until, observe).await?;
    Ok((state, folded))
}

/// Sees each event about to be folded, with the state before it.
pub type Observer<'a, K> = dyn FnMut(&<K as Kind>::State, &RecordedEvent, &DomainEvent) + 'a;

/// [`load`], also saying how many events were folded after the snapshot.
async fn load_counting<K: Kind>(rt: &Runtime, id: &K::Id) -> Result<(K::State, u64), StoreError> {
    let snapshot: Option<K::State> =
        rt.snapshots.load(&EntityActor::<K>::snapshot_key(id)).and_then(|b| snapshot::decode(&b));
    let mut state = match snapshot {
        Some(s) if of_this_log::<K>(rt, id, &s).await? => s,
        Some(_) => {
            tracing::warn!(kind = K::NAME, id = %id, "a snapshot of another log is ignored; replaying the log");
            K::State::default()
        }
        None => K::State::default(),
    };
    let folded = catch_up::<K>(rt, id, &mut state, Until::Head).await?;
    K::show(&state, rt);
    Ok((state, folded))
}

/// Whether the last event a snapshot folded is in this log, where the snapshot says: at its
/// position, in the actor's stream at its version (or carrying the actor's tag).
async fn of_this_log<K: Kind>(rt: &Runtime, id: &K::Id, state: &K::State) -> Result<bool, StoreError> {
    let at = K::last_position(state);
    if at == 0 {
        return Ok(true);
    }
    let events = rt.store.read_all(at, 1).await?;
    Ok(match (events.first(), K::source(id)) {
        (Some(e), Source::Stream(stream)) => {
            e.position == at && e.stream_id == stream && e.stream_version == K::cursor(state)
        }
        (Some(e), Source::Tag(tag)) => e.position == at && e.tags.contains(&tag),
        (None, _) => false,
    })
}

/// Folds every event of the entity's source after the state's cursor, up to `until` and no
/// further than the facts the runtime holds ([`Kind::facts_until`]); returns how many.
pub(crate) async fn catch_up<K: Kind>(
    rt: &Runtime,
    id: &K::Id,
    state: &mut K::State,
    until: Until,
) -> Result<u64, StoreError> {
    catch_up_observed::<K>(rt, id, state, until, &mut |_, _, _| {}).await
}

/// [`catch_up`], showing `observe` each event before it is folded.
async fn catch_up_observed<K: Kind>(
    rt: &Runtime,
    id: &K::Id,
    state: &mut K::State,
    until: Until,
    observe: &mut Observer<'_, K>,
) -> Result<u64, StoreError> {
    let source = K::source(id);
    let mut folded = 0;
    loop {
        let from = K::cursor(state) + 1;
        let batch = match &source {
            Source::Stream(s) => rt.store.read_stream(s, from, Direction::Forward, 1_000).await?,
            Source::Tag(t) => rt.store.read_by_tag(t, from, 1_000).await?,
        };
        if batch.is_empty() {
            return Ok(folded);
        }
        let facts = K::facts_until(rt);
        for e in &batch {
            if !until.includes(e) || e.position > facts {
                return Ok(folded);
            }
            // A panic in `evolve` leaves the state half-folded: the event is parked, and the
            // caller reloads (this time passing it by).
            let folding = std::panic::catch_unwind(AssertUnwindSafe(|| fold_one::<K>(rt, id, state, e, observe)));
            if folding.is_err() {
                rt.park(format!("{}-{id}", K::NAME), e, "the fold panicked".into());
                return Err(StoreError::Backend(format!(
                    "event {} was parked for {}-{id}; reloading",
                    e.position,
                    K::NAME
                )));
            }
            folded += 1;
        }
    }
}

/// Folds one event, or passes it by (moving the cursor) when it is parked for this actor or
/// does not decode (then it is parked): an actor never stops, or loops, on one event.
fn fold_one<K: Kind>(rt: &Runtime, id: &K::Id, state: &mut K::State, e: &RecordedEvent, observe: &mut Observer<'_, K>) {
    let actor = || format!("{}-{id}", K::NAME);
    if rt.is_parked(e.position, actor) {
        K::pass(state, e);
        return;
    }
    if rt.poison_position.load(std::sync::atomic::Ordering::Relaxed) == e.position {
        panic!("poisoned for a test at position {}", e.position);
    }
    match e.decode() {
        Ok(d) => {
            observe(state, e, &d);
            K::evolve(state, e, &d, rt);
        }
        Err(err) => {
            rt.park(actor(), e, err.to_string());
            K::pass(state, e);
        }
    }
}

impl<K: Kind> Actor for EntityActor<K> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Nothing else is handled until the state is loaded.
        let rt = self.rt.clone();
        let id = self.id.clone();
        ctx.wait(async move { load_counting::<K>(&rt, &id).await }.into_actor(self).map(|res, act, _| act.loaded(res)));
        let idle = self.rt.config.idle_timeout;
        ctx.run_interval(idle.min(Duration::from_secs(30)).max(Duration::from_millis(50)), move |act, ctx| {
            if act.last_active.elapsed() >= idle {
                act.save_snapshot();
                ctx.stop();
            } else {
                // Time alone can call for a decision (an experiment at its maximum duration, a
                // generation that never came back).
                K::look(act, ctx);
            }
        });
    }
}

impl<K: Kind> EntityActor<K> {
    /// Installs a freshly loaded state; a long tail since the snapshot earns a new one.
    fn loaded(&mut self, res: Result<(K::State, u64), StoreError>) {
        match res {
            Ok((s, folded)) => {
                self.state = Some(s);
                self.folded_since_snapshot = folded;
                if folded >= self.rt.config.snapshot_every {
                    self.save_snapshot();
                }
            }
            Err(e) => tracing::error!(kind = K::NAME, id = %self.id, error = %e, "cannot load"),
        }
    }

    /// Makes sure the state is loaded (after a panic, or a failed load), blocking the mailbox.
    fn ensure_loaded(&mut self, ctx: &mut Context<Self>) {
        if self.state.is_none() {
            let rt = self.rt.clone();
            let id = self.id.clone();
            ctx.wait(
                async move { load_counting::<K>(&rt, &id).await }.into_actor(self).map(|res, act, _| act.loaded(res)),
            );
        }
    }

    /// Folds delivered events exactly once; a gap is read from the log first.
    fn fold_delivered(&mut self, events: &[Arc<RecordedEvent>]) -> bool {
        let source = K::source(&self.id);
        let rt = self.rt.clone();
        let Some(state) = self.state.as_mut() else { return false };
        let poisoned = self.poisoned;
        let mut gap = false;
        let mut folded = 0;
        let id = self.id.clone();
        let mut current: Option<&RecordedEvent> = None;
        // A panic in `evolve` must not take the arbiter down: the event is parked, the state
        // dropped and reloaded (passing the parked event by).
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if poisoned {
                panic!("poisoned for a test");
            }
            for e in events {
                current = Some(e);
                let c = cursor_of(&source, e);
                let cur = K::cursor(state);
                if c <= cur {
                    continue;
                }
                if matches!(source, Source::Stream(_)) && c != cur + 1 {
                    gap = true;
                    break;
                }
                fold_one::<K>(&rt, &id, state, e, &mut |_, _, _| {});
                folded += 1;
            }
            current = None;
        }));
        if ok.is_err() {
            if let Some(e) = current {
                rt.park(format!("{}-{}", K::NAME, self.id), e, "the fold panicked".into());
            }
            tracing::error!(kind = K::NAME, id = %self.id, "panic while folding: reloading from the log");
            self.state = None;
            self.poisoned = false;
            return false;
        }
        self.folded_since_snapshot += folded;
        if folded > 0
            && let Some(state) = &self.state
        {
            K::show(state, &self.rt);
        }
        if self.folded_since_snapshot >= self.rt.config.snapshot_every {
            self.save_snapshot();
        }
        gap
    }
}

// Every handler below blocks the mailbox with at most one top-level `ctx.wait`, and never
// starts a `ctx.wait` from inside another one's completion: actix does not poll a wait future
// pushed from there until some other wake-up, which stalls the mailbox.
impl<K: Kind> Handler<Deliver> for EntityActor<K> {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.last_active = Instant::now();
        if self.state.is_none() {
            // Not loaded (a failed load or a panic): loading reads the log, which already holds
            // the delivered events.
            self.ensure_loaded(ctx);
            return;
        }
        let gap = self.fold_delivered(&msg.0);
        if self.state.is_none() {
            // It panicked while folding: reload now rather than on the next message.
            self.ensure_loaded(ctx);
        } else if gap {
            let (rt, id) = (self.rt.clone(), self.id.clone());
            let mut state = self.state.take().expect("loaded");
            ctx.wait(
                async move {
                    let r = catch_up::<K>(&rt, &id, &mut state, Until::Head).await;
                    (state, r)
                }
                .into_actor(self)
                .map(|(state, r), act, ctx| {
                    match r {
                        Ok(n) => act.folded_since_snapshot += n,
                        Err(e) => tracing::error!(error = %e, "cannot catch up"),
                    }
                    act.state = Some(state);
                    K::look(act, ctx);
                }),
            );
        } else {
            K::look(self, ctx);
        }
    }
}

impl<K: Kind> Handler<Get<K>> for EntityActor<K> {
    type Result = ResponseActFuture<Self, Option<K::State>>;

    fn handle(&mut self, _: Get<K>, _: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        let (rt, id) = (self.rt.clone(), self.id.clone());
        match self.state.clone() {
            // The router delivers to the actors of the shards this process runs; one of another
            // shard (held here to answer) folds what the log holds now before it answers.
            Some(mut state) if !rt.shards().holds::<K>(&id) => {
                return Box::pin(
                    async move {
                        let _ = catch_up::<K>(&rt, &id, &mut state, Until::Head).await;
                        state
                    }
                    .into_actor(self)
                    .map(|state, act, _| {
                        act.state = Some(state);
                        act.state.clone()
                    }),
                );
            }
            Some(_) => return Box::pin(actix::fut::ready(self.state.clone())),
            None => {}
        }
        Box::pin(async move { load_counting::<K>(&rt, &id).await }.into_actor(self).map(|res, act, _| {
            if act.state.is_none() {
                act.loaded(res);
            }
            act.state.clone()
        }))
    }
}

impl<K: Kind> Handler<Passivate> for EntityActor<K> {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Context<Self>) {
        self.save_snapshot();
        ctx.stop();
    }
}

impl<K: Kind> Handler<Poison> for EntityActor<K> {
    type Result = ();

    fn handle(&mut self, _: Poison, _: &mut Context<Self>) {
        self.poisoned = true;
    }
}
