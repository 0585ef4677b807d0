//! Analytics (issue 15, under way).
//!
//! - [`anomaly`]: anomalies in hourly series, seasonal and robust.
//! - [`report`]: a period's metrics, products, terms and anomalies, and the narrative from them.
//! - [`demand`]: demand forecasts for intermittent sellers (Croston, SBA), days of cover.
//! - [`segments`]: purchase histories as lifetime models read them, RFM, lifecycle segments.
//! - [`sentiment`]: an offline lexicon scorer for review text.

pub mod anomaly;
pub mod demand;
pub mod report;
pub mod segments;
pub mod sentiment;
