//! Projections: the read side of mall.
//!
//! Projections follow the global log from a checkpoint and turn each event into row changes with
//! a pure function; sinks (PostgreSQL tables or in-memory tables) apply the changes together with
//! the checkpoint. This crate depends on `mall-events` only, never on `mall-actors`.
//!
//! The runner, the sinks and rebuilds arrive with the projections issue; for now the crate holds
//! only the position type every projection checkpoints with.

/// A global log position: a projection's checkpoint is the last position it applied.
pub use mall_events::Position;
