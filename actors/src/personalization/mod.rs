//! Predictive personalization.
//!
//! - [`recommend`]: mall's recommender, folded from the log, with a reason for every pick.
//! - [`eval`]: offline evaluation of recommendations against baselines.
//! - [`synthetic`]: a seeded generator of shoppers' interactions, for tests and benchmarks.

pub mod eval;
pub mod recommend;
pub mod synthetic;
