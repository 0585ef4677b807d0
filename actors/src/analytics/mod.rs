//! Analytics (issue 15, under way).
//!
//! - [`anomaly`]: anomalies in hourly series, seasonal and robust.
//! - [`demand`]: demand forecasts for intermittent sellers (Croston, SBA), days of cover.
//! - [`segments`]: purchase histories as lifetime models read them, RFM, lifecycle segments.
//! - [`sentiment`]: an offline lexicon scorer for review text.

pub mod anomaly;
pub mod demand;
pub mod segments;
pub mod sentiment;
