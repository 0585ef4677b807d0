//! The shopper profile as an actor: its rules behind the shell's [`Kind`] trait, and the facts
//! of other systems its fold reads (a product's tags as of the signal's position).

use mall_events::domain::DomainEvent;
use mall_events::ids::{Position, ProductId, ShopperId, tag};
use mall_events::{Direction, RecordedEvent, StoreError, StreamId};

use super::{ShopperInput, ShopperState};
use crate::catalog::Catalog;
use crate::runtime::Runtime;
use crate::runtime::entity::{Kind, Source, Until};

/// Shopper-profile actors.
pub struct Shopper;

impl Kind for Shopper {
    type Id = ShopperId;
    type State = ShopperState;
    type Input = ();
    type Decision = crate::shopper::Prediction;
    const NAME: &'static str = "shopper";
    /// The shopper's predicted next action (from the state alone; shown, not recorded).
    fn decide(s: &ShopperState, _: &()) -> Vec<crate::shopper::Prediction> {
        vec![s.predict()]
    }
    fn source(id: &ShopperId) -> Source {
        Source::Tag(tag::shopper(id))
    }
    fn route(e: &RecordedEvent, to: &mut dyn FnMut(ShopperId)) {
        for t in &e.tags {
            if let Some(s) = t.strip_prefix(tag::SHOPPER_PREFIX)
                && let Ok(s) = ShopperId::parse(s)
            {
                to(s);
            }
        }
    }
    fn cursor(s: &ShopperState) -> u64 {
        s.position
    }
    fn last_position(s: &ShopperState) -> u64 {
        s.position
    }
    fn pass(s: &mut ShopperState, e: &RecordedEvent) {
        s.position = e.position;
    }
    fn evolve(s: &mut ShopperState, e: &RecordedEvent, d: &DomainEvent, rt: &Runtime) {
        let district = e.tags.iter().find_map(|t| tag::district_of(t)).map(str::to_string);
        let product_tags = d
            .product_id()
            .map(|p| rt.catalog.read().expect("catalog").tags_at(p.as_str(), e.position).to_vec())
            .unwrap_or_default();
        s.evolve(&ShopperInput { event: d, position: e.position, district, product_tags });
    }
    fn facts_until(rt: &Runtime) -> Position {
        rt.catalog.read().expect("catalog").seen()
    }
    /// The catalog facts of every product the shopper's signals (up to `until`) name, read from
    /// those products' streams.
    async fn prepare(rt: &Runtime, id: &ShopperId, until: Until) -> Result<(), StoreError> {
        let mut products = std::collections::BTreeSet::new();
        let (tag, mut from) = (tag::shopper(id), 1);
        loop {
            let batch = rt.store.read_by_tag(&tag, from, 1_000).await?;
            let Some(last) = batch.last() else { break };
            from = last.position + 1;
            let within = batch.iter().take_while(|e| until.includes(e));
            products.extend(within.filter_map(|e| e.stream_id.as_str().strip_prefix("product-").map(str::to_string)));
            if batch.iter().any(|e| !until.includes(e)) {
                break;
            }
        }
        for p in products {
            let Ok(p) = ProductId::parse(p) else { continue };
            let stream = StreamId::product(&p);
            let mut from = 1;
            loop {
                let batch = rt.store.read_stream(&stream, from, Direction::Forward, 1_000).await?;
                let Some(last) = batch.last() else { break };
                from = last.stream_version + 1;
                let mut catalog = rt.catalog.write().expect("catalog");
                for e in batch.iter().filter(|e| Catalog::concerns(&e.event_type)) {
                    if let Ok(d) = e.decode() {
                        catalog.apply(e.position, e.event_id, &d);
                    }
                }
            }
        }
        rt.catalog.write().expect("catalog").saw(Position::MAX);
        Ok(())
    }
}
