//! Actors: where mall decides.
//!
//! Each product, district and shopper profile is a long-lived actor that folds its events
//! (`evolve`) and decides optimization commands from that state alone (`decide`). Every system is
//! one folder with its rules behind one trait (`runtime::entity::Kind`). This crate
//! sits between the event log (`mall-events`), which it reads and appends to, and the `mall`
//! binary, which hosts the actors. It never depends on `mall-projections`.
//!
//! Modules:
//! - [`autonomous`]: the autonomous core: the task queue, its priority formula and scheduler, the jobs;
//! - [`catalog`]: the catalog's rules and the facts other systems read from it (a product's tags as of a position);
//! - [`audit`]: copy histories and the verification of recorded decisions by replay;
//! - [`stats`]: Beta priors, posteriors and the always-valid stopping rule;
//! - [`product`]: product intelligence: the pure core (`evolve`, `decide`, `on_generated`), its
//!   experiments ([`experiment`]: the deterministic split of shoppers and the verdicts) and its actor;
//! - [`district`]: district state, the conversion prior it lends its products, and its actor;
//! - [`health`]: self-healing: the image fetcher safe against request forgery;
//! - [`guardrails`]: the one check every generated text passes before anyone sees it;
//! - [`executors`]: the offline and model generators and the embedder;
//! - [`runtime`]: the actix shells, registries, snapshots and the router;
//! - [`shopper`]: shopper profiles, interests, predicted next action, and its actor;
//! - [`testing`] (tests only): event constructors and the given/when/then harness.

pub mod analytics;
pub mod audit;
pub mod autonomous;
pub mod catalog;
pub mod district;
pub mod executors;
pub mod guardrails;
pub mod health;
pub mod merchandising;
/// The experiments product intelligence runs (kept at its old path).
pub use product::experiment;
pub mod personalization;
pub mod plugins;
pub mod pricing;
pub mod product;
pub mod runtime;
pub mod shopper;
pub mod social;
pub mod stats;
#[cfg(test)]
pub mod testing;
pub mod voice;

/// The event vocabulary the actors fold, re-exported so that callers name one crate.
pub use mall_events::domain;
