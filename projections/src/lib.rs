//! Projections: the read side of mall.
//!
//! Projections follow the global log from a checkpoint and turn each event into row changes with
//! a pure function; sinks apply the changes together with the checkpoint, so each event takes
//! effect exactly once and a rebuild from position 0 ends with the rows the live projection has.
//! This crate depends on `mall-events` only, never on `mall-actors`.
//!
//! Modules:
//! - [`change`]: rows, row operations and table definitions;
//! - [`runner`]: the `Projection` and `Sink` traits, catching up, following, lag;
//! - [`memory`]: the in-memory sink (the embedded default);
//! - `postgres` (feature `postgres`): the PostgreSQL sink, shadow tables and the swap;
//! - [`catalog`]: the `products`, `product_metrics` and `districts` tables;
//! - [`personalization`]: the `shopper_interests` and `shopper_profiles` tables;
//! - [`optimization`]: the `optimization_log`, `experiments` and `copy_history` tables;
//! - [`autonomous`]: the `autonomous_tasks` and `job_runs` tables;
//! - [`evolution`]: the `district_personalities` and `district_suggestions` tables;
//! - [`merchandising`]: the `merchandising_rules` table;
//! - [`health`]: the `health_issues`, `health_checks` and `health_notifications` tables;
//! - [`analytics`]: the `district_hours`, `product_days`, `search_days`, `anomalies` and
//!   `analytics_narratives` tables;
//! - [`social`]: the `social_calendars` and `campaigns` tables;
//! - [`plugins`]: the `ai_plugins` and `plugin_proposals` tables;
//! - [`customers`]: the `shopper_days` and `reviews` tables.

pub mod analytics;
pub mod autonomous;
pub mod catalog;
pub mod change;
pub mod customers;
pub mod evolution;
pub mod health;
pub mod memory;
pub mod merchandising;
pub mod optimization;
pub mod personalization;
pub mod plugins;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod runner;
pub mod social;

/// A global log position: a projection's checkpoint is the last position it applied.
pub use mall_events::Position;
