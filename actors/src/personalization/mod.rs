//! Predictive personalization (issue 14, under way).
//!
//! - [`eval`]: offline evaluation of recommendations against baselines.

pub mod eval;
