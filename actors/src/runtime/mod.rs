//! The actix shells around the pure cores: one actor per product, district and shopper profile,
//! activated on demand from a snapshot plus the events after it, fed in log order by the
//! router, passivated when idle or when too many are resident, and reloaded from the log after
//! a panic.
//!
//! Modules:
//! - [`snapshot`]: snapshot stores (files, memory) and their encoding;
//! - [`entity`]: the generic actor shell and the `Kind` trait every kind implements (in its own
//!   folder: `product/actor.rs`, `district/actor.rs`, `shopper/actor.rs`);
//! - [`registry`]: resident actors, activation and the bound on residents;
//! - [`router`]: follows the log and delivers each event to the actors it concerns.

pub mod entity;
pub mod registry;
pub mod router;
pub mod shards;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mall_events::EventStore;
use mall_events::domain::Personality;

use crate::catalog::Catalog;
use crate::executors::{Embedder, Generator};
use crate::product::Policy;
use crate::stats::Prior;

/// A district as its products' actors see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DistrictInfo {
    pub name: String,
    pub personality: Option<Personality>,
    pub prior: Prior,
}

/// The hourly budget of generation calls, shared fairly: the whole mall may spend `per_hour`
/// calls in any rolling hour, and one subject (a product) at most `per_subject` of them, so that
/// no product — a failing one least of all — can starve the others.
///
/// The window rolls: calls are counted by the minute and expire an hour after they were spent,
/// so the budget refills gradually rather than all at once on the hour. A std mutex, not a tokio
/// one: nothing awaits while it is held.
///
/// Several nodes on one database [`split`](Self::split) the mall's budget: each spends at most
/// its part, and the parts add up to the mall's.
pub struct Budget {
    per_hour: u32,
    per_subject: u32,
    /// This process's part of `per_hour` (all of it, alone).
    part: std::sync::atomic::AtomicU32,
    spent: Mutex<Spent>,
}

#[derive(Default)]
struct Spent {
    /// (minute, calls) for the last hour, oldest first.
    minutes: std::collections::VecDeque<(u64, u32)>,
    total: u32,
    /// Per subject: the minutes of its calls in the last hour.
    subjects: HashMap<String, std::collections::VecDeque<u64>>,
}

impl Budget {
    /// A budget of `per_hour` calls, of which one subject may spend at most 1% (at least 3).
    pub fn new(per_hour: u32) -> Self {
        Self::with_share(per_hour, (per_hour / 100).max(3))
    }

    /// A budget of `per_hour` calls, at most `per_subject` of them for one subject.
    pub fn with_share(per_hour: u32, per_subject: u32) -> Self {
        Self {
            per_hour,
            per_subject,
            part: std::sync::atomic::AtomicU32::new(per_hour),
            spent: Mutex::new(Spent::default()),
        }
    }

    /// Spends only this node's part of the mall's budget from now on: of `nodes` alive, it is the
    /// `rank`th (0-based, each node a different rank). The calls the mall may spend are divided
    /// evenly, the first nodes taking one more of what does not divide. Calls spent already
    /// count against the new part.
    pub fn split(&self, nodes: usize, rank: usize) {
        let nodes = nodes.max(1) as u32;
        let part = self.per_hour / nodes + u32::from((rank as u32) < self.per_hour % nodes);
        self.part.store(part, std::sync::atomic::Ordering::Relaxed);
    }

    /// The calls this process may spend in an hour: the whole mall's, or its node's part.
    pub fn per_hour(&self) -> u32 {
        self.part.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The calls the whole mall may spend in an hour.
    pub fn mall_per_hour(&self) -> u32 {
        self.per_hour
    }

    /// The calls one subject may spend in an hour.
    pub fn per_subject(&self) -> u32 {
        self.per_subject
    }

    fn minute(now: Instant) -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        now.saturating_duration_since(*START.get_or_init(Instant::now)).as_secs() / 60 + 60
    }

    fn expire(spent: &mut Spent, minute: u64) {
        while spent.minutes.front().is_some_and(|(m, _)| *m + 60 <= minute) {
            let (_, n) = spent.minutes.pop_front().expect("a minute");
            spent.total = spent.total.saturating_sub(n);
        }
        spent.subjects.retain(|_, calls| {
            while calls.front().is_some_and(|m| *m + 60 <= minute) {
                calls.pop_front();
            }
            !calls.is_empty()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spent> {
        let mut spent = self.spent.lock().expect("budget");
        Self::expire(&mut spent, Self::minute(Instant::now()));
        spent
    }

    /// Calls left in the rolling hour (of this process's part).
    pub fn left(&self) -> u32 {
        self.per_hour().saturating_sub(self.lock().total)
    }

    /// Whether one more call fits (in this process's part).
    pub fn available(&self) -> bool {
        self.left() > 0
    }

    /// Whether one more call fits for `subject`: in this process's part and within its share.
    pub fn available_for(&self, subject: &str) -> bool {
        let spent = self.lock();
        spent.total < self.per_hour() && spent.subjects.get(subject).map_or(0, |c| c.len() as u32) < self.per_subject
    }

    /// Spends one call for `subject`; false when the budget or the subject's share is used up.
    pub fn take(&self, subject: &str) -> bool {
        let minute = Self::minute(Instant::now());
        let mut spent = self.lock();
        let mine = spent.subjects.get(subject).map_or(0, |c| c.len() as u32);
        if spent.total >= self.per_hour() || mine >= self.per_subject {
            return false;
        }
        spent.total += 1;
        match spent.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => spent.minutes.push_back((minute, 1)),
        }
        spent.subjects.entry(subject.to_string()).or_default().push_back(minute);
        true
    }

    /// Gives back a call taken for `subject` for a decision that was not recorded.
    pub fn refund(&self, subject: &str) {
        let mut spent = self.lock();
        let Some(calls) = spent.subjects.get_mut(subject) else { return };
        let Some(minute) = calls.pop_back() else { return };
        if calls.is_empty() {
            spent.subjects.remove(subject);
        }
        spent.total = spent.total.saturating_sub(1);
        if let Some(entry) = spent.minutes.iter_mut().rev().find(|(m, _)| *m == minute) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }
}

/// Where a product's decided generation goes once its decision is recorded. Without one (the
/// runtime alone, as in its own tests) the actor runs it at once; `mall serve` installs the task
/// queue, so that the product decides *that* something should happen and the queue *when*.
#[async_trait::async_trait]
pub trait Dispatch: Send + Sync + 'static {
    /// Takes on the decision (recorded, in flight); false when it could not (the actor then runs
    /// it now: a decision is never left without its generation).
    async fn dispatch(&self, decision: &mall_events::domain::OptimizationDecided, district: &str) -> bool;
}

/// Settings of the actor runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub policy: Policy,
    /// A snapshot is written every this many events folded.
    pub snapshot_every: u64,
    /// An actor idle this long is passivated.
    pub idle_timeout: Duration,
    /// The most actors of each kind resident at once; the least recently used is passivated.
    pub max_resident: usize,
    /// Generation calls allowed per hour, across all products.
    pub generations_per_hour: u32,
    /// Generation calls one product may spend per hour (default: 1% of the budget, at least 3).
    pub generations_per_product: Option<u32>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            snapshot_every: 100,
            idle_timeout: Duration::from_secs(300),
            max_resident: 100_000,
            generations_per_hour: 1_000,
            generations_per_product: None,
        }
    }
}

/// What every actor shares: the log, the snapshots, the executors, the budget, the catalog the
/// router keeps, and what the shell shows of one kind to the others (the district priors).
pub struct Runtime {
    pub store: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn snapshot::SnapshotStore>,
    pub generator: Arc<dyn Generator>,
    pub embedder: Arc<dyn Embedder>,
    pub config: RuntimeConfig,
    pub budget: Budget,
    /// Kept by the router from catalog events (and by the API as soon as its own catalog write
    /// is acknowledged).
    pub catalog: RwLock<Catalog>,
    /// Each district's conversion prior, shown by the shell after a district actor folds; a
    /// product's decision records the prior it was made with.
    pub priors: RwLock<HashMap<String, Prior>>,
    /// Where decided generations go (none: run at once).
    dispatch: std::sync::OnceLock<Arc<dyn Dispatch>>,
    /// The shards of actors this process runs (unset: all of them).
    shards: std::sync::OnceLock<shards::Shards>,
    /// Events an actor could not fold (they do not decode, or its fold panicked): passed by
    /// from then on, and shown to a person.
    parked: Mutex<Vec<ParkedEvent>>,
    /// Whether `parked` holds anything: every fold asks, and almost always nothing is.
    any_parked: std::sync::atomic::AtomicBool,
    /// Tests only: the fold of the event at this position panics (0: none).
    #[doc(hidden)]
    pub poison_position: std::sync::atomic::AtomicU64,
}

/// An event an actor passed by, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParkedEvent {
    /// `product-p1`, `shopper-s7`, ...
    pub actor: String,
    pub position: u64,
    pub event_type: String,
    pub error: String,
}

impl Runtime {
    /// A runtime over `store`.
    pub fn new(
        store: Arc<dyn EventStore>,
        snapshots: Arc<dyn snapshot::SnapshotStore>,
        generator: Arc<dyn Generator>,
        embedder: Arc<dyn Embedder>,
        config: RuntimeConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            snapshots,
            generator,
            embedder,
            budget: match config.generations_per_product {
                Some(share) => Budget::with_share(config.generations_per_hour, share),
                None => Budget::new(config.generations_per_hour),
            },
            config,
            catalog: RwLock::default(),
            priors: RwLock::default(),
            dispatch: std::sync::OnceLock::new(),
            shards: std::sync::OnceLock::new(),
            parked: Mutex::default(),
            any_parked: std::sync::atomic::AtomicBool::new(false),
            poison_position: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Sends decided generations to `dispatch` from now on (once; later calls are ignored).
    pub fn set_dispatch(&self, dispatch: Arc<dyn Dispatch>) {
        let _ = self.dispatch.set(dispatch);
    }

    /// Where decided generations go, if anywhere but the actor.
    /// The shards this process runs as leases tell them (before the router starts); without
    /// this, it runs every actor, unfenced.
    pub fn set_shards(&self, shards: shards::Shards) {
        let _ = self.shards.set(shards);
    }

    /// The shards this process runs.
    pub fn shards(&self) -> &shards::Shards {
        self.shards.get_or_init(shards::Shards::all)
    }

    pub fn dispatcher(&self) -> Option<&Arc<dyn Dispatch>> {
        self.dispatch.get()
    }

    /// Parks an event for an actor (once).
    pub fn park(&self, actor: String, e: &mall_events::RecordedEvent, error: String) {
        let mut parked = self.parked.lock().expect("parked");
        if !parked.iter().any(|p| p.actor == actor && p.position == e.position) {
            tracing::error!(actor, position = e.position, error, "an event the actor cannot fold is parked");
            parked.push(ParkedEvent { actor, position: e.position, event_type: e.event_type.clone(), error });
            self.any_parked.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Whether an event is parked for an actor; the actor's name is built (and the lock taken)
    /// only when something is parked at all, so the fold of every event does not pay for it.
    pub fn is_parked(&self, position: u64, actor: impl FnOnce() -> String) -> bool {
        if !self.any_parked.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let actor = actor();
        self.parked.lock().expect("parked").iter().any(|p| p.position == position && p.actor == actor)
    }

    /// Every parked event.
    pub fn parked(&self) -> Vec<ParkedEvent> {
        self.parked.lock().expect("parked").clone()
    }

    /// The district's name and voice from the catalog, and its prior as last shown (defaults
    /// before it has folded).
    pub fn district(&self, slug: &str) -> DistrictInfo {
        let prior = self.priors.read().expect("priors").get(slug).copied().unwrap_or(Prior::DEFAULT);
        match self.catalog.read().expect("catalog").district(slug) {
            Some(d) => DistrictInfo { name: d.name.clone(), personality: Some(d.personality.clone()), prior },
            None => DistrictInfo { name: slug.to_string(), personality: None, prior },
        }
    }

    /// Whether a product is listed.
    pub fn listed(&self, product: &str) -> bool {
        self.catalog.read().expect("catalog").product(product).is_some()
    }
}

#[cfg(test)]
mod tests;
