//! The live recommender: mall's model (`mall_actors::personalization::recommend`) folded from
//! the log as it grows — the same model `mall eval recommendations` measures — shared by the
//! personalize endpoint, district listings and search (their personalization part).
//!
//! A background task reads the log in batches from the start and then waits for appends; each
//! batch is folded under one short write lock. Reads take a read lock for one shopper's scores.
//! The position folded is published, so a read with `min_position` waits (up to a bound) for a
//! signal it just wrote to be counted.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::personalization::eval::Interaction;
use mall_actors::personalization::recommend::{Model, Params};
use mall_events::domain::DomainEvent;
use mall_events::ids::Position;
use mall_events::{EventStore, RecordedEvent};
use tokio::sync::watch;

/// Events read per batch.
const BATCH: usize = 2_000;

/// What the recommender folds.
fn folds(event_type: &str) -> bool {
    matches!(
        event_type,
        "product_viewed" | "product_clicked" | "added_to_cart" | "purchased" | "product_listed" | "product_edited"
    )
}

/// The model, kept current with the log.
pub struct Recommender {
    model: RwLock<Model>,
    folded: watch::Sender<Position>,
}

impl Recommender {
    /// Starts folding the log on the current runtime; stops when `shutdown` fires.
    pub fn start(store: Arc<dyn EventStore>, mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let r = Arc::new(Self { model: RwLock::new(Model::new(Params::default())), folded: watch::channel(0).0 });
        let me = r.clone();
        actix_web::rt::spawn(async move {
            let mut next: Position = 1;
            loop {
                let batch = tokio::select! {
                    b = store.read_all(next, BATCH) => b,
                    _ = shutdown.changed() => return,
                };
                match batch {
                    Ok(batch) if batch.is_empty() => {
                        tokio::select! {
                            _ = store.wait_for_append(next - 1) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                    Ok(batch) => {
                        let last = batch.last().map_or(next, |e| e.position);
                        me.fold(&batch);
                        next = last + 1;
                        me.folded.send_replace(last);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, position = next, "recommender: log read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        });
        r
    }

    fn fold(&self, batch: &[RecordedEvent]) {
        let decoded: Vec<DomainEvent> =
            batch.iter().filter(|e| folds(&e.event_type)).filter_map(|e| e.decode().ok()).collect();
        if decoded.is_empty() {
            return;
        }
        let mut model = self.model.write().expect("recommender lock");
        for d in &decoded {
            match d {
                DomainEvent::ProductListed(p) => model.set_vector(
                    p.product_id.as_str(),
                    HashEmbedder::vector(&format!("{} {}", p.title, p.tags.join(" "))),
                ),
                DomainEvent::ProductEdited(p) => {
                    if let Some(title) = &p.title {
                        let tags = p.tags.as_deref().unwrap_or_default().join(" ");
                        model.set_vector(p.product_id.as_str(), HashEmbedder::vector(&format!("{title} {tags}")));
                    }
                }
                _ => {
                    let (Some(shopper), Some(product), Some(at)) = (d.shopper_id(), d.product_id(), d.signal_at())
                    else {
                        continue;
                    };
                    model.observe(&Interaction {
                        shopper: shopper.as_str().to_string(),
                        product: product.as_str().to_string(),
                        at,
                        weight: d.interest_weight(),
                        purchase: matches!(d, DomainEvent::Purchased(_)),
                    });
                }
            }
        }
    }

    /// Reads the model.
    pub fn with<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        f(&self.model.read().expect("recommender lock"))
    }

    /// The last position folded.
    pub fn position(&self) -> Position {
        *self.folded.borrow()
    }

    /// Waits (up to `bound`) until `min` is folded.
    pub async fn wait_for(&self, min: Position, bound: Duration) {
        let mut rx = self.folded.subscribe();
        let _ = tokio::time::timeout(bound, rx.wait_for(|p| *p >= min)).await;
    }
}
