//! The actix shells around the pure cores: one actor per product, district and shopper profile,
//! activated on demand from a snapshot plus the events after it, fed in log order by the
//! router, passivated when idle or when too many are resident, and reloaded from the log after
//! a panic.
//!
//! Modules:
//! - [`snapshot`]: snapshot stores (files, memory) and their encoding;
//! - [`entity`]: the generic actor shell and the three kinds it hosts;
//! - [`registry`]: resident actors, activation and the bound on residents;
//! - [`router`]: follows the log and delivers each event to the actors it concerns.

pub mod entity;
pub mod registry;
pub mod router;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mall_events::EventStore;
use mall_events::domain::Personality;

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

/// A product as ingest and the shopper profiles see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub district: String,
    pub tags: Vec<String>,
}

/// The global budget of generation calls per hour, shared by every product actor.
pub struct Budget {
    per_hour: u32,
    window: Mutex<(Instant, u32)>,
}

impl Budget {
    /// A budget of `per_hour` calls.
    pub fn new(per_hour: u32) -> Self {
        Self { per_hour, window: Mutex::new((Instant::now(), 0)) }
    }

    fn roll(&self) -> std::sync::MutexGuard<'_, (Instant, u32)> {
        let mut w = self.window.lock().expect("budget");
        if w.0.elapsed() >= Duration::from_secs(3600) {
            *w = (Instant::now(), 0);
        }
        w
    }

    /// Whether one more call fits.
    pub fn available(&self) -> bool {
        self.roll().1 < self.per_hour
    }

    /// Gives back `n` calls taken for decisions that were not recorded.
    pub fn refund(&self, n: u32) {
        let mut w = self.roll();
        w.1 = w.1.saturating_sub(n);
    }

    /// Spends one call; false when the budget is used up.
    pub fn take(&self) -> bool {
        let mut w = self.roll();
        if w.1 < self.per_hour {
            w.1 += 1;
            true
        } else {
            false
        }
    }
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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            snapshot_every: 100,
            idle_timeout: Duration::from_secs(300),
            max_resident: 100_000,
            generations_per_hour: 1_000,
        }
    }
}

/// What every actor shares: the log, the snapshots, the executors, the budget, and the small
/// read-mostly maps that actors publish for each other (district priors, the catalog).
pub struct Runtime {
    pub store: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn snapshot::SnapshotStore>,
    pub generator: Arc<dyn Generator>,
    pub embedder: Arc<dyn Embedder>,
    pub config: RuntimeConfig,
    pub budget: Budget,
    /// Published by district actors as they fold.
    pub districts: RwLock<HashMap<String, DistrictInfo>>,
    /// Published by the router from catalog events.
    pub catalog: RwLock<HashMap<String, CatalogEntry>>,
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
            budget: Budget::new(config.generations_per_hour),
            config,
            districts: RwLock::default(),
            catalog: RwLock::default(),
        })
    }

    /// The district's prior and voice as last published (defaults before it has folded).
    pub fn district(&self, slug: &str) -> DistrictInfo {
        self.districts.read().expect("districts").get(slug).cloned().unwrap_or(DistrictInfo {
            name: slug.to_string(),
            personality: None,
            prior: Prior::DEFAULT,
        })
    }
}

#[cfg(test)]
mod tests;
