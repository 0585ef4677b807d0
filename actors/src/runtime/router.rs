//! The router: follows the log in global order and delivers each event to the actors it
//! concerns — a product's stream to its product actor, a `district:` tag to the district, a
//! `shopper:` tag to the shopper profile — and keeps the catalog map that ingest and the
//! profiles read.
//!
//! Its checkpoint (the last position every concerned actor has acknowledged) is saved beside
//! the snapshots; after a restart it resumes there, and anything delivered twice is skipped by
//! the actors, which remember how far they folded.

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

    /// Loads the catalog and district maps from the whole log (catalog events only are decoded).
    pub async fn load_catalog(&self) -> Result<(), mall_events::StoreError> {
        let mut from = 1;
        loop {
            let batch = self.rt.store.read_all(from, 10_000).await?;
            let Some(last) = batch.last() else { return Ok(()) };
            from = last.position + 1;
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

    /// Follows the log from the saved checkpoint until `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let from =
            self.rt.snapshots.load(CHECKPOINT_KEY).and_then(|b| b.try_into().ok().map(u64::from_le_bytes)).unwrap_or(0);
        // `send_replace` stores the value even while nobody listens (`send` would drop it).
        self.delivered.send_replace(from);
        let mut sub = subscribe_all(self.rt.store.clone(), from + 1);
        loop {
            let first = tokio::select! {
                e = sub.next() => e,
                _ = shutdown.changed() => return,
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
            let last = round.last().expect("non-empty").position;
            self.deliver(round).await;
            self.delivered.send_replace(last);
            self.rt.snapshots.save(CHECKPOINT_KEY, &last.to_le_bytes());
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
