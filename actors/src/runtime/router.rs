//! The router: follows the log in global order and delivers each event to the actors it
//! concerns — a product's stream to its product actor, a `district:` tag to the district, a
//! `shopper:` tag to the shopper profile (each kind says which instances an event concerns) —
//! and keeps the catalog that ingest and the profiles read.
//!
//! Its checkpoint (the last position every concerned actor has acknowledged) is saved beside
//! the snapshots; after a restart it resumes there, and anything delivered twice is skipped by
//! the actors, which remember how far they folded. The catalog map is saved there too (every
//! [`CATALOG_EVERY`] rounds and when the router stops), so that a start reads only the log after
//! it, not the whole log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use mall_events::domain::DomainEvent;
use mall_events::ids::Position;
use mall_events::{RecordedEvent, StoreError, subscribe_all};
use tokio::sync::watch;

use super::Runtime;
use super::entity::{Deliver, District, Kind, Product, Shopper};
use super::registry::Registry;
use super::shards::{Held, SHARDS, shard_of_actor};
use crate::catalog::Catalog;

const CHECKPOINT_KEY: &str = "router-checkpoint";
/// Versioned: an image of an older shape is not read (the log is, once).
const CATALOG_KEY: &str = "router-catalog.v2";
/// Rounds between two saves of the catalog map.
const CATALOG_EVERY: u64 = 100;

/// The catalog as saved: the last event it reflects (position and the time the log recorded
/// it, which tie it to this log) and the catalog itself.
#[derive(serde::Serialize, serde::Deserialize)]
struct CatalogImage {
    position: Position,
    recorded_at: chrono::DateTime<chrono::Utc>,
    catalog: Catalog,
}
/// Events delivered per round.
const ROUND: usize = 2_000;

/// The three registries and the router's progress.
pub struct Actors {
    pub rt: Arc<Runtime>,
    pub products: Registry<Product>,
    pub districts: Registry<District>,
    pub shoppers: Registry<Shopper>,
    /// The last position delivered and acknowledged.
    pub delivered: watch::Sender<Position>,
    /// How far the actors of the shards held were delivered (leases keep it as each shard's
    /// checkpoint, for the next holder).
    pub progress: watch::Sender<Progress>,
}

/// The router's progress: every shard in `shards` (with its token) delivered up to `position`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub position: Position,
    pub shards: Vec<Option<Held>>,
}

impl Actors {
    /// Registries over `arbiters`; nothing runs until [`Actors::run`].
    pub fn new(rt: Arc<Runtime>, arbiters: Vec<actix::ArbiterHandle>) -> Arc<Self> {
        Arc::new(Self {
            products: Registry::new(rt.clone(), arbiters.clone()),
            districts: Registry::new(rt.clone(), arbiters.clone()),
            shoppers: Registry::new(rt.clone(), arbiters),
            delivered: watch::channel(0).0,
            progress: watch::channel(Progress::default()).0,
            rt,
        })
    }

    /// Loads the catalog: from its saved image, when it is of this log, and the log after it
    /// (catalog events only are decoded).
    pub async fn load_catalog(&self) -> Result<(), mall_events::StoreError> {
        let mut from = 1;
        let image: Option<CatalogImage> = self.rt.snapshots.load(CATALOG_KEY).and_then(|b| super::snapshot::decode(&b));
        if let Some(image) = image {
            if mall_events::store::holds(&*self.rt.store, image.position, image.recorded_at).await? {
                *self.rt.catalog.write().expect("catalog") = image.catalog;
                from = image.position + 1;
            } else {
                tracing::warn!("a saved catalog of another log is ignored; reading the whole log");
            }
        }
        let mut last_read = None;
        loop {
            let batch = self.rt.store.read_all(from, 10_000).await?;
            let Some(last) = batch.last() else {
                // What was read need not be read again at the next start.
                if let Some(last) = last_read {
                    self.save_catalog(&last);
                }
                return Ok(());
            };
            from = last.position + 1;
            for e in &batch {
                self.note_recorded(e);
            }
            self.rt.catalog.write().expect("catalog").saw(last.position);
            last_read = Some(last.clone());
        }
    }

    /// Applies a recorded event to the catalog when it concerns it.
    fn note_recorded(&self, e: &RecordedEvent) {
        if Catalog::concerns(&e.event_type)
            && let Ok(d) = e.decode()
        {
            self.note(e.position, e.event_id, &d);
        }
    }

    /// Applies a catalog event at `position` (the router does it as it follows the log; the API
    /// does it as soon as its own append is acknowledged, so that the next request sees the new
    /// district or product).
    pub fn note(&self, position: Position, event_id: uuid::Uuid, d: &DomainEvent) {
        self.rt.catalog.write().expect("catalog").apply(position, event_id, d);
    }

    /// Saves the catalog as of `last` (the last event delivered).
    fn save_catalog(&self, last: &RecordedEvent) {
        let image = CatalogImage {
            position: last.position,
            recorded_at: last.recorded_at,
            catalog: self.rt.catalog.read().expect("catalog").clone(),
        };
        if let Some(bytes) = super::snapshot::encode(&image) {
            self.rt.snapshots.save(CATALOG_KEY, &bytes);
        }
    }

    /// The saved checkpoint, when it is of this log (the event there was recorded at the time
    /// saved with it); otherwise 0: everything is delivered again, and the actors pass by what
    /// they have folded.
    pub(super) async fn checkpoint(&self) -> Position {
        let saved: Option<(Position, chrono::DateTime<chrono::Utc>)> =
            self.rt.snapshots.load(CHECKPOINT_KEY).and_then(|b| super::snapshot::decode(&b));
        let Some((position, recorded_at)) = saved else { return 0 };
        match mall_events::store::holds(&*self.rt.store, position, recorded_at).await {
            Ok(true) => position,
            _ => {
                tracing::warn!(position, "the router's checkpoint is not of this log; delivering the whole log again");
                0
            }
        }
    }

    /// Follows the log until `shutdown` fires, delivering to the actors of the shards this
    /// process runs ([`Runtime::shards`]: all of them, unless leases share them out); the
    /// catalog follows the log always. A shard taken is delivered again what the log holds after
    /// its checkpoint (the last holder's, or this process's own saved one; the actors pass by
    /// what they folded); the actors of a shard lost are passivated.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut shards = self.rt.shards().watch();
        let mut open = true;
        let mut owning: Vec<Option<Held>> = vec![None; SHARDS];
        let mut followed = self.rt.catalog.read().expect("catalog").seen();
        let now = shards.borrow_and_update().clone();
        self.change_shards(&mut owning, now, followed, &shutdown).await;
        // `send_replace` stores the value even while nobody listens (`send` would drop it).
        self.delivered.send_replace(followed);
        let mut sub = subscribe_all(self.rt.store.clone(), followed + 1);
        let (mut rounds, mut unsaved): (u64, Option<Arc<RecordedEvent>>) = (0, None);
        loop {
            let first = tokio::select! {
                e = sub.next() => e,
                changed = shards.changed(), if open => {
                    if changed.is_err() {
                        open = false;
                        continue;
                    }
                    let now = shards.borrow_and_update().clone();
                    self.change_shards(&mut owning, now, followed, &shutdown).await;
                    continue;
                }
                _ = shutdown.changed() => {
                    if let Some(last) = unsaved {
                        self.save_catalog(&last);
                    }
                    return;
                }
            };
            let Some(Ok(first)) = first else {
                tracing::error!("the router's subscription ended");
                return;
            };
            let mut round = vec![Arc::new(first)];
            while round.len() < ROUND {
                match sub.try_next() {
                    Some(Ok(e)) => round.push(Arc::new(e)),
                    _ => break,
                }
            }
            let last_event = round.last().expect("non-empty").clone();
            let last = last_event.position;
            followed = last;
            self.note_round(&round);
            let to: Vec<bool> = owning.iter().map(Option::is_some).collect();
            if to.iter().any(|h| *h) {
                self.send_round(round, &to).await;
                if let Some(bytes) = super::snapshot::encode(&(last, last_event.recorded_at)) {
                    self.rt.snapshots.save(CHECKPOINT_KEY, &bytes);
                }
            }
            self.delivered.send_replace(last);
            self.progress.send_replace(Progress { position: last, shards: owning.clone() });
            rounds += 1;
            if rounds % CATALOG_EVERY == 0 {
                self.save_catalog(&last_event);
                unsaved = None;
            } else {
                unsaved = Some(last_event);
            }
        }
    }

    /// The shards held change from `owning` to `now`: the actors of each shard lost (or taken
    /// again under another token: another holder may have acted in between) are passivated, and
    /// each shard taken is delivered what the log holds after its checkpoint up to `followed`.
    async fn change_shards(
        &self,
        owning: &mut Vec<Option<Held>>,
        now: Vec<Option<Held>>,
        followed: Position,
        shutdown: &watch::Receiver<bool>,
    ) {
        let now: Vec<Option<Held>> = (0..SHARDS).map(|k| now.get(k).copied().flatten()).collect();
        let token = |h: &Option<Held>| h.map(|h| h.token);
        let lost: Vec<bool> = (0..SHARDS).map(|k| owning[k].is_some() && token(&owning[k]) != token(&now[k])).collect();
        if lost.iter().any(|l| *l) {
            tracing::info!(shards = ?shard_list(&lost), "this node no longer runs these shards' actors: passivating them");
            let none_left = now.iter().all(Option::is_none);
            futures_util::future::join3(
                self.products.passivate_where(|id| lost[shard_of_actor::<Product>(id)]),
                self.shoppers.passivate_where(|id| lost[shard_of_actor::<Shopper>(id)]),
                self.districts.passivate_where(|_| none_left),
            )
            .await;
        }
        let gained: Vec<bool> = (0..SHARDS).map(|k| now[k].is_some() && token(&owning[k]) != token(&now[k])).collect();
        *owning = now.clone();
        if gained.iter().any(|g| *g) {
            tracing::info!(shards = ?shard_list(&gained), "this node runs these shards' actors now: delivering what they have not");
            // Each shard from its own checkpoint; the earliest first, the others joining as the
            // delivery passes theirs.
            let mut from: Vec<Option<Position>> = vec![None; SHARDS];
            for k in (0..SHARDS).filter(|k| gained[*k]) {
                from[k] = Some(match now[k].and_then(|h| h.checkpoint) {
                    Some(p) => p,
                    None => self.checkpoint().await,
                });
            }
            self.catch_up(&from, followed, shutdown).await;
        }
        self.progress.send_replace(Progress { position: followed, shards: now });
    }

    /// Delivers again, to the actors only (the catalog has them), the events after each shard's
    /// checkpoint in `from` up to `followed`. A read that fails for a while (a lost connection) is
    /// tried again until `shutdown`: the shard's actors would otherwise not be shown what the last
    /// holder left undelivered. One that cannot succeed (a corrupt log) is not tried for ever.
    async fn catch_up(&self, from: &[Option<Position>], followed: Position, shutdown: &watch::Receiver<bool>) {
        let Some(mut at) = from.iter().flatten().min().map(|p| p + 1) else { return };
        let mut pause = Duration::from_millis(100);
        while at <= followed {
            let batch = match self.rt.store.read_all(at, ROUND).await {
                Ok(b) => b,
                Err(e @ (StoreError::Backend(_) | StoreError::Io { .. })) if !*shutdown.borrow() => {
                    tracing::warn!(error = %e, at, "cannot read the log to deliver it again; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, at, "cannot read the log to deliver it again");
                    return;
                }
            };
            pause = Duration::from_millis(100);
            let round: Vec<Arc<RecordedEvent>> =
                batch.into_iter().take_while(|e| e.position <= followed).map(Arc::new).collect();
            let Some(last) = round.last().cloned() else { return };
            at = last.position + 1;
            let to: Vec<bool> = from.iter().map(|f| f.is_some_and(|f| f < last.position)).collect();
            self.send_round(round, &to).await;
        }
    }

    /// Applies a round to the catalog.
    fn note_round(&self, round: &[Arc<RecordedEvent>]) {
        for e in round {
            self.note_recorded(e);
        }
        if let Some(last) = round.last() {
            self.rt.catalog.write().expect("catalog").saw(last.position);
        }
    }

    /// Sends a round to the actors it concerns, among those of the shards `to` picks (districts,
    /// which only fold, wherever any shard is).
    async fn send_round(&self, round: Vec<Arc<RecordedEvent>>, to: &[bool]) {
        let mine = |k: usize| to.get(k).copied().unwrap_or(false);
        // Districts first, so that their priors are shown before products decide.
        if to.iter().any(|t| *t) {
            let districts = routed::<District>(&round);
            join_all(districts.into_iter().map(|(id, v)| async move { self.districts.send(&id, Deliver(v)).await }))
                .await;
        }
        let products = routed::<Product>(&round).into_iter().filter(|(id, _)| mine(shard_of_actor::<Product>(id)));
        let products = products.map(|(id, v)| async move { self.products.send(&id, Deliver(v)).await });
        let shoppers = routed::<Shopper>(&round).into_iter().filter(|(id, _)| mine(shard_of_actor::<Shopper>(id)));
        let shoppers = shoppers.map(|(id, v)| async move { self.shoppers.send(&id, Deliver(v)).await });
        futures_util::future::join(join_all(products), join_all(shoppers)).await;
    }
}

/// The shards a mask picks, for the log.
fn shard_list(mask: &[bool]) -> Vec<usize> {
    (0..mask.len()).filter(|k| mask[*k]).collect()
}

/// A round's events grouped by the instances of `K` they concern, in log order.
fn routed<K: Kind>(round: &[Arc<RecordedEvent>]) -> HashMap<K::Id, Vec<Arc<RecordedEvent>>> {
    let mut to: HashMap<K::Id, Vec<Arc<RecordedEvent>>> = HashMap::new();
    for e in round {
        K::route(e, &mut |id| to.entry(id).or_default().push(e.clone()));
    }
    to
}
