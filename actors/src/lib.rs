//! Actors: where mall decides.
//!
//! Each product, district and shopper profile is a long-lived actor that folds its events
//! (`evolve`) and decides optimization commands from that state alone (`decide`). This crate
//! sits between the event log (`mall-events`), which it reads and appends to, and the `mall`
//! binary, which hosts the actors. It never depends on `mall-projections`.
//!
//! The deciders, their actix shells, the executors (LLM copywriter, embedder) and the job runner
//! arrive with the actors issue; for now the crate holds only what the log already defines.

/// The event vocabulary the actors fold, re-exported so that callers name one crate.
pub use mall_events::domain;
