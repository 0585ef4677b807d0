//! mall's event log: the only source of truth.
//!
//! Everything in mall — vendor edits, learning signals, decisions, generated copy — is an event
//! appended here; actors (`mall-actors`) and projections (`mall-projections`) are folds over it.
//! This crate depends on no other mall crate.
//!
//! Modules:
//! - [`ids`]: stream ids, product ids, slugs, prices: values parsed once at the edge;
//! - [`domain`]: the event types (catalog records and learning signals), their streams and tags;
//! - [`decisions`]: the events of mall's own decisions, generations and experiments;
//! - [`autonomous`]: the events of the autonomous core (task queue, systems, jobs);
//! - [`evolution`]: the events of district evolution (voice proposals, tests, suggestions);
//! - [`health`]: the events of self-healing (checks, issues, repairs, notifications);
//! - [`codec`]: rmp-serde payloads with named fields, and upcasting of old schema versions;
//! - [`envelope`]: what is stored around each payload;
//! - [`store`]: the [`EventStore`] trait, its errors and subscriptions;
//! - [`text`]: the characters text may hold (no controls; invisible ones do not count);
//! - [`embedded`]: the default backend, segment files with group commit;
//! - `fuzzing` (hidden): the parsers' fuzz entry points, shared by `cargo fuzz` and the tests;
//! - `postgres` (feature `postgres`): the PostgreSQL backend;
//! - `kurrent` (feature `kurrentdb`): the KurrentDB adapter.

pub mod analytics;
pub mod autonomous;
pub mod codec;
pub mod decisions;
pub mod domain;
pub mod embedded;
pub mod envelope;
pub mod evolution;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod ids;
#[cfg(feature = "kurrentdb")]
pub mod kurrent;
pub mod measures;
pub mod merchandising;
pub mod plugins;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod pricing;
pub mod records;
pub mod social;
pub mod store;
pub mod text;

pub use domain::DomainEvent;
pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
pub use ids::{Position, StreamId};
pub use store::{
    Direction, EventStore, Fence, Limits, StoreError, StoreHealth, StoreStats, Subscription, subscribe_all,
};
