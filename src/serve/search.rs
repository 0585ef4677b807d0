//! Query embeddings for `GET /api/search`, which never waits on the model: a query's vector
//! comes from a cache; on a miss the model is asked within a short timeout, inside its own
//! hourly budget and a bound on concurrent calls; a slow or failing model opens a breaker for a
//! while. Whenever the model's vector is not at hand, the query is matched with the built-in
//! embedder against the built-in vectors of the products' copy (cached by the copy's hash), so
//! search keeps its semantic part while the model stalls or is down. A call that outlives its
//! timeout still fills the cache for the next search.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use lru::LruCache;
use mall_actors::executors::Embedder;
use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::product::{embedding_text, text_hash};
use mall_actors::runtime::Budget;

/// How long a search waits for the model's vector of a new query.
pub const MODEL_WAIT: Duration = Duration::from_millis(300);
/// How long the model is left alone after it was slow or failed.
pub const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// Model calls for query vectors at once; more searches use the built-in embedder.
const CONCURRENT_CALLS: usize = 4;
const QUERIES_CACHED: usize = 10_000;
const PRODUCTS_CACHED: usize = 100_000;

/// A query's vector and which embedder made it.
#[derive(Debug, Clone)]
pub enum QueryVector {
    /// The configured model's: compared with the products' stored embeddings.
    Model(Arc<Vec<f32>>),
    /// The built-in embedder's: compared with the built-in vectors of the products' copy.
    Builtin(Arc<Vec<f32>>),
}

/// Query vectors for search.
pub struct QueryEmbedder {
    model: Arc<dyn Embedder>,
    queries: Mutex<LruCache<String, Arc<Vec<f32>>>>,
    products: Mutex<LruCache<u64, Arc<Vec<f32>>>>,
    pub budget: Budget,
    permits: Arc<tokio::sync::Semaphore>,
    /// The model is not asked before this instant.
    open_until: Mutex<Option<Instant>>,
    wait: Duration,
}

fn key(query: &str) -> String {
    query.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

impl QueryEmbedder {
    /// Query vectors from `model`, at most `per_hour` model calls in a rolling hour.
    pub fn new(model: Arc<dyn Embedder>, per_hour: u32) -> Arc<Self> {
        Arc::new(Self {
            model,
            queries: Mutex::new(LruCache::new(NonZeroUsize::new(QUERIES_CACHED).expect("non-zero"))),
            products: Mutex::new(LruCache::new(NonZeroUsize::new(PRODUCTS_CACHED).expect("non-zero"))),
            budget: Budget::with_share(per_hour, per_hour),
            permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS)),
            open_until: Mutex::new(None),
            wait: MODEL_WAIT,
        })
    }

    fn open_breaker(&self) {
        *self.open_until.lock().expect("breaker") = Some(Instant::now() + BREAKER_OPEN);
    }

    fn breaker_open(&self) -> bool {
        self.open_until.lock().expect("breaker").is_some_and(|t| Instant::now() < t)
    }

    /// The query's vector: the model's when it is cached or comes within [`MODEL_WAIT`], the
    /// built-in embedder's otherwise.
    pub async fn vector(self: &Arc<Self>, query: &str) -> QueryVector {
        let builtin = || QueryVector::Builtin(Arc::new(HashEmbedder::vector(query)));
        if self.model.is_builtin() {
            return builtin();
        }
        let key = key(query);
        if let Some(v) = self.queries.lock().expect("queries").get(&key) {
            return QueryVector::Model(v.clone());
        }
        if self.breaker_open() {
            return builtin();
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else { return builtin() };
        if !self.budget.take("search") {
            return builtin();
        }
        let this = self.clone();
        let text = query.to_string();
        let call = tokio::spawn(async move {
            let result = this.model.embed(&text).await;
            drop(permit);
            match result {
                Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => {
                    let v = Arc::new(v);
                    this.queries.lock().expect("queries").put(key, v.clone());
                    Some(v)
                }
                _ => {
                    this.open_breaker();
                    None
                }
            }
        });
        match tokio::time::timeout(self.wait, call).await {
            Ok(Ok(Some(v))) => QueryVector::Model(v),
            Ok(_) => builtin(),
            Err(_) => {
                // Slow: leave the model alone for a while; the call may still fill the cache.
                self.open_breaker();
                builtin()
            }
        }
    }

    /// The built-in vector of a product's copy (cached by the copy's hash).
    pub fn product_vector(&self, title: &str, description: &str, tags: &[String]) -> Arc<Vec<f32>> {
        let text = embedding_text(title, description, tags);
        let hash = text_hash(&text);
        if let Some(v) = self.products.lock().expect("products").get(&hash) {
            return v.clone();
        }
        let v = Arc::new(HashEmbedder::vector(&text));
        self.products.lock().expect("products").put(hash, v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use mall_actors::executors::GenerationError;

    use super::*;

    /// A model that never answers.
    struct Stalled(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Embedder for Stalled {
        fn id(&self) -> String {
            "stalled".into()
        }
        async fn embed(&self, _: &str) -> Result<Vec<f32>, GenerationError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending().await
        }
    }

    struct Fixed;

    #[async_trait]
    impl Embedder for Fixed {
        fn id(&self) -> String {
            "fixed".into()
        }
        async fn embed(&self, _: &str) -> Result<Vec<f32>, GenerationError> {
            Ok(vec![1.0, 0.0])
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_model_costs_one_short_wait_then_the_breaker_keeps_searches_off_it() {
        let stalled = Arc::new(Stalled(Default::default()));
        let q = QueryEmbedder::new(stalled.clone(), 100);
        assert!(matches!(q.vector("wooden train").await, QueryVector::Builtin(_)));
        for i in 0..20 {
            assert!(matches!(q.vector(&format!("query {i}")).await, QueryVector::Builtin(_)));
        }
        assert_eq!(stalled.0.load(std::sync::atomic::Ordering::SeqCst), 1, "one call, then the breaker");
        tokio::time::advance(BREAKER_OPEN + Duration::from_secs(1)).await;
        q.vector("after a while").await;
        assert_eq!(stalled.0.load(std::sync::atomic::Ordering::SeqCst), 2, "tried again once the breaker closes");
    }

    #[tokio::test]
    async fn a_models_vector_is_cached_and_the_budget_bounds_new_queries() {
        let q = QueryEmbedder::new(Arc::new(Fixed), 2);
        assert!(matches!(q.vector("a").await, QueryVector::Model(_)));
        assert!(matches!(q.vector("  A ").await, QueryVector::Model(_)), "the same query, cached");
        assert!(matches!(q.vector("b").await, QueryVector::Model(_)));
        assert!(matches!(q.vector("c").await, QueryVector::Builtin(_)), "the hour's budget is spent");
        assert!(matches!(q.vector("a").await, QueryVector::Model(_)), "cached queries cost nothing");
    }

    #[tokio::test]
    async fn with_the_builtin_embedder_the_model_is_never_asked() {
        let q = QueryEmbedder::new(Arc::new(HashEmbedder), 0);
        let QueryVector::Builtin(v) = q.vector("wooden train").await else { panic!("builtin") };
        assert_eq!(*v, HashEmbedder::vector("wooden train"));
        let p = q.product_vector("Wooden train", "Beech.", &["wood".into()]);
        assert_eq!(*p, HashEmbedder::vector(&embedding_text("Wooden train", "Beech.", &["wood".into()])));
    }
}
