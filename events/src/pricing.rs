//! The events of price tests: dynamic pricing's proposal for a product's price, tested against
//! the current price on live traffic (revenue per view), the winner kept. Both live in the
//! product's own stream, beside its copy experiments; the product actor attributes views and
//! orders to each arm and concludes the test.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decisions::Outcome;
use crate::ids::{Currency, Price, ProductId};

/// `price_test_started`: the challenger price is shown to half the shoppers (by a hash of the
/// test id and the shopper), the control price to the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTestStarted {
    pub test_id: Uuid,
    pub product_id: ProductId,
    /// The plugin proposal the test puts to the test.
    pub proposal_id: Uuid,
    pub control: Price,
    pub challenger: Price,
    pub currency: Currency,
    /// Why the challenger was proposed.
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What one arm of a price test saw.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PriceArm {
    /// Product views by shoppers of the arm.
    pub views: u64,
    /// Order lines of the arm.
    pub orders: u64,
    /// Their revenue, in ten-thousandths of the currency unit.
    pub revenue_e4: u64,
    /// The sum of each order line's revenue squared, in currency units squared (the spread of
    /// revenue per view).
    pub revenue_sq: f64,
}

impl PriceArm {
    /// Revenue per view, in currency units.
    pub fn per_view(&self) -> f64 {
        if self.views == 0 { 0.0 } else { self.revenue_e4 as f64 / 10_000.0 / self.views as f64 }
    }
}

/// `price_test_concluded`: the winner is the price from here on (the control when the test ends
/// without a clear winner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTestConcluded {
    pub test_id: Uuid,
    pub product_id: ProductId,
    pub outcome: Outcome,
    pub control: PriceArm,
    pub challenger: PriceArm,
    /// The posterior probability that the challenger earns more per view.
    pub prob_challenger_better: f64,
    /// The always-valid mixture likelihood ratio the stopping rule compared with 1/alpha.
    pub likelihood_ratio: f64,
    /// The price kept.
    pub price: Price,
    /// The policy the stopping rule applied (named numbers, as decisions record theirs).
    pub policy: std::collections::BTreeMap<String, f64>,
    pub reason: String,
    pub at: DateTime<Utc>,
}
