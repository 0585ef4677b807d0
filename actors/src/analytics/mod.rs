//! Analytics (issue 15, under way).
//!
//! - [`anomaly`]: anomalies in hourly series, seasonal and robust.

pub mod anomaly;
