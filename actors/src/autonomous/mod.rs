//! The autonomous core: the task queue every system's actions go through (kept as events), its
//! priority formula and scheduler, and the job runner that gives each system its heartbeat.
//!
//! The deciders decide *what* should happen; the queue decides *when*.
//!
//! - [`jobs`]: the job runner: every job of the seed at its cadence, on a clock tests drive;
//! - [`learning`]: the learning cycle: finished work turned into insights fed back to priorities;
//! - [`priority`]: the formula, 0–100, from performance;
//! - [`queue`]: the queue as a fold of the core's events, and the scheduler's pick.
//! - [`scheduler`]: the live queue: its only writer, running tasks on their executors.

pub mod jobs;
pub mod learning;
pub mod priority;
pub mod queue;
pub mod scheduler;
