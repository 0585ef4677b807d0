//! The router: follows the log in global order and delivers each event to the actors it
//! concerns — a product's stream to its product actor, a `district:` tag to the district, a
//! `shopper:` tag to the shopper profile — and keeps the catalog map that ingest and the
//! profiles read.
//!
//! Its checkpoint (the last position every concerned actor has acknowledged) is saved beside
//! the snapshots; after a restart it resumes there, and anything delivered twice is skipped by
//! the actors, which remember how far they folded. The catalog map is saved there too (every
//! [`CATALOG_EVERY`] rounds and when the router stops), so that a start reads only the log after
//! it, not the whole log.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use mall_events::domain::DomainEvent;
use mall_events::ids::{DistrictSlug, Position, ProductId, ShopperId};
use mall_events::{RecordedEvent, subscribe_all};
use tokio::sync::watch;

use super::entity::{Deliver, District, Product, Shopper};
use super::registry::Registry;
use super::{CatalogEntry, Runtime};

/// The event types that change the shared catalog maps.
const CATALOG_TYPES: &[&str] = &["district_opened", "product_listed", "product_edited", "copy_applied"];
const CHECKPOINT_KEY: &str = "router-checkpoint";
const CATALOG_KEY: &str = "router-catalog";
/// Rounds between two saves of the catalog map.
const CATALOG_EVERY: u64 = 100;

/// The catalog map as saved: the last event it reflects (position and the time the log recorded
/// it, which tie it to this log), the districts' names and voices, and each product's entry.
#[derive(serde::Serialize, serde::Deserialize)]
struct CatalogImage {
    position: Position,
    recorded_at: chrono::DateTime<chrono::Utc>,
    districts: Vec<(String, String, Option<mall_events::domain::Personality>)>,
    products: Vec<(String, String, Vec<String>)>,
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
}

impl Actors {
    /// Registries over `arbiters`; nothing runs until [`Actors::run`].
    pub fn new(rt: Arc<Runtime>, arbiters: Vec<actix::ArbiterHandle>) -> Arc<Self> {
        Arc::new(Self {
            products: Registry::new(rt.clone(), arbiters.clone()),
            districts: Registry::new(rt.clone(), arbiters.clone()),
            shoppers: Registry::new(rt.clone(), arbiters),
            delivered: watch::channel(0).0,
            rt,
        })
    }

    /// Loads the catalog and district maps: from their saved image, when it is of this log, and
    /// the log after it (catalog events only are decoded).
    pub async fn load_catalog(&self) -> Result<(), mall_events::StoreError> {
        let mut from = 1;
        let image: Option<CatalogImage> = self.rt.snapshots.load(CATALOG_KEY).and_then(|b| super::snapshot::decode(&b));
        if let Some(image) = image {
            if mall_events::store::holds(&*self.rt.store, image.position, image.recorded_at).await? {
                let mut districts = self.rt.districts.write().expect("districts");
                for (slug, name, personality) in image.districts {
                    districts
                        .insert(slug, super::DistrictInfo { name, personality, prior: crate::stats::Prior::DEFAULT });
                }
                let mut catalog = self.rt.catalog.write().expect("catalog");
                for (id, district, tags) in image.products {
                    catalog.insert(id, CatalogEntry { district, tags });
                }
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
            last_read = Some(last.clone());
            for e in &batch {
                if CATALOG_TYPES.contains(&e.event_type.as_str()) {
                    if let Ok(d) = e.decode() {
                        self.note(&d);
                    }
                }
            }
        }
    }

    /// Records what a catalog event says in the shared maps (the router does it as it follows the
    /// log; the API does it as soon as its own append is acknowledged, so that the next request
    /// sees the new district or product).
    pub fn note(&self, d: &DomainEvent) {
        if let DomainEvent::DistrictOpened(o) = d {
            // The district's actor publishes its prior as it folds; this only makes the slug known.
            self.rt.districts.write().expect("districts").entry(o.slug.as_str().to_string()).or_insert_with(|| {
                super::DistrictInfo {
                    name: o.name.clone(),
                    personality: Some(o.personality.clone()),
                    prior: crate::stats::Prior::DEFAULT,
                }
            });
            return;
        }
        let mut catalog = self.rt.catalog.write().expect("catalog");
        match d {
            DomainEvent::ProductListed(p) => {
                catalog.insert(
                    p.product_id.as_str().into(),
                    CatalogEntry { district: p.district.as_str().into(), tags: p.tags.clone() },
                );
            }
            DomainEvent::ProductEdited(p) => {
                if let Some(c) = catalog.get_mut(p.product_id.as_str()) {
                    if let Some(d) = &p.district {
                        c.district = d.as_str().into();
                    }
                    if let Some(t) = &p.tags {
                        c.tags = t.clone();
                    }
                }
            }
            DomainEvent::CopyApplied(a) => {
                if let (Some(c), mall_events::domain::Content::Tags { tags }) =
                    (catalog.get_mut(a.product_id.as_str()), &a.content)
                {
                    c.tags = tags.clone();
                }
            }
            _ => {}
        }
    }

    /// Saves the catalog map as of `last` (the last event delivered).
    fn save_catalog(&self, last: &RecordedEvent) {
        let image = CatalogImage {
            position: last.position,
            recorded_at: last.recorded_at,
            districts: (self.rt.districts.read().expect("districts").iter())
                .map(|(slug, d)| (slug.clone(), d.name.clone(), d.personality.clone()))
                .collect(),
            products: (self.rt.catalog.read().expect("catalog").iter())
                .map(|(id, c)| (id.clone(), c.district.clone(), c.tags.clone()))
                .collect(),
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

    /// Follows the log from the saved checkpoint until `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let from = self.checkpoint().await;
        // `send_replace` stores the value even while nobody listens (`send` would drop it).
        self.delivered.send_replace(from);
        let mut sub = subscribe_all(self.rt.store.clone(), from + 1);
        let (mut rounds, mut unsaved): (u64, Option<Arc<RecordedEvent>>) = (0, None);
        loop {
            let first = tokio::select! {
                e = sub.next() => e,
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
            self.deliver(round).await;
            self.delivered.send_replace(last);
            if let Some(bytes) = super::snapshot::encode(&(last, last_event.recorded_at)) {
                self.rt.snapshots.save(CHECKPOINT_KEY, &bytes);
            }
            rounds += 1;
            if rounds % CATALOG_EVERY == 0 {
                self.save_catalog(&last_event);
                unsaved = None;
            } else {
                unsaved = Some(last_event);
            }
        }
    }

    /// Delivers one round: every actor gets its events in order, all actors at once.
    async fn deliver(&self, round: Vec<Arc<RecordedEvent>>) {
        let mut products: HashMap<String, Vec<Arc<RecordedEvent>>> = HashMap::new();
        let mut districts: HashMap<String, Vec<Arc<RecordedEvent>>> = HashMap::new();
        let mut shoppers: HashMap<String, Vec<Arc<RecordedEvent>>> = HashMap::new();
        for e in round {
            if CATALOG_TYPES.contains(&e.event_type.as_str()) {
                if let Ok(d) = e.decode() {
                    self.note(&d);
                }
            }
            if e.stream_id.category() == "product" {
                products.entry(e.stream_id.as_str()["product-".len()..].to_string()).or_default().push(e.clone());
            }
            for t in &e.tags {
                if let Some(d) = t.strip_prefix("district:") {
                    districts.entry(d.to_string()).or_default().push(e.clone());
                } else if let Some(s) = t.strip_prefix("shopper:") {
                    shoppers.entry(s.to_string()).or_default().push(e.clone());
                }
            }
            if e.stream_id.category() == "district" && !e.tags.iter().any(|t| t.starts_with("district:")) {
                districts.entry(e.stream_id.as_str()["district-".len()..].to_string()).or_default().push(e.clone());
            }
        }
        // Districts first, so their priors are published before products decide.
        join_all(
            districts
                .into_iter()
                .filter_map(|(k, v)| DistrictSlug::parse(k).ok().map(|id| self.districts.get(&id).send(Deliver(v)))),
        )
        .await;
        let products = products
            .into_iter()
            .filter_map(|(k, v)| ProductId::parse(k).ok().map(|id| self.products.get(&id).send(Deliver(v))));
        let shoppers = shoppers
            .into_iter()
            .filter_map(|(k, v)| ShopperId::parse(k).ok().map(|id| self.shoppers.get(&id).send(Deliver(v))));
        futures_util::future::join(join_all(products), join_all(shoppers)).await;
    }
}
