//! Actors: where mall decides.
//!
//! Each product, district and shopper profile is a long-lived actor that folds its events
//! (`evolve`) and decides optimization commands from that state alone (`decide`). This crate
//! sits between the event log (`mall-events`), which it reads and appends to, and the `mall`
//! binary, which hosts the actors. It never depends on `mall-projections`.
//!
//! Modules:
//! - [`autonomous`]: the autonomous core: the task queue, its priority formula and scheduler, the jobs;
//! - [`catalog`]: the catalog's rules and the facts other systems read from it (a product's tags as of a position);
//! - [`audit`]: copy histories and the verification of recorded decisions by replay;
//! - [`stats`]: Beta priors, posteriors and the always-valid stopping rule;
//! - [`experiment`]: the deterministic split of shoppers and the experiments' verdicts;
//! - [`product`]: product intelligence, the pure core (`evolve`, `decide`, `on_generated`);
//! - [`district`]: district state and the conversion prior it lends its products;
//! - [`guardrails`]: the one check every generated text passes before anyone sees it;
//! - [`executors`]: the offline and model generators and the embedder;
//! - [`runtime`]: the actix shells, registries, snapshots and the router;
//! - [`shopper`]: shopper profiles, interests and predicted next action;
//! - [`testing`] (tests only): event constructors and the given/when/then harness.

pub mod audit;
pub mod autonomous;
pub mod catalog;
pub mod district;
pub mod executors;
pub mod experiment;
pub mod guardrails;
pub mod product;
pub mod runtime;
pub mod shopper;
pub mod stats;
#[cfg(test)]
pub mod testing;

/// The event vocabulary the actors fold, re-exported so that callers name one crate.
pub use mall_events::domain;
