//! The `customers` projection: what customer analytics reads.
//!
//! - `shopper_days`: each shopper's purchases by day (order lines and spend, ten-thousandths),
//!   keyed `SHOPPER|DAY` — the purchase histories that lifetime models (frequency, recency, age,
//!   monetary value) and RFM segments are computed from, as of any date;
//! - `reviews`: every review (product, shopper, rating, text — data, never instructions).

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const SHOPPER_DAYS: &str = "shopper_days";
pub const REVIEWS: &str = "reviews";

const TABLES: &[TableDef] = &[
    TableDef {
        name: SHOPPER_DAYS,
        key: "key",
        defaults: || row! { "shopper_id" => "", "day" => "", "orders" => 0, "spend_e4" => 0 },
    },
    TableDef {
        name: REVIEWS,
        key: "review_id",
        defaults: || {
            row! {
                "product_id" => "", "shopper_id" => "", "rating" => 0, "text" => "", "at" => Value::Null,
                "position" => 0,
            }
        },
    },
];

/// Purchase histories and reviews.
pub struct Customers;

impl Projection for Customers {
    fn name(&self) -> &'static str {
        "customers"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(e.event_type.as_str(), "purchased" | "review_submitted")
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        match d {
            DomainEvent::Purchased(p) => {
                let day = crate::analytics::day_of(p.at);
                vec![Change::upsert(
                    SHOPPER_DAYS,
                    format!("{}|{day}", p.shopper_id.as_str()),
                    row! { "shopper_id" => p.shopper_id.as_str(), "day" => day },
                    vec![("orders", 1.0), ("spend_e4", p.unit_price.ten_thousandths() as f64 * p.quantity as f64)],
                )]
            }
            DomainEvent::ReviewSubmitted(r) => vec![Change::set(
                REVIEWS,
                r.id.to_string(),
                row! {
                    "product_id" => r.product_id.as_str(), "shopper_id" => r.shopper_id.as_str(), "rating" => r.rating,
                    "text" => r.text, "at" => json!(r.at), "position" => e.position,
                },
            )],
            _ => Vec::new(),
        }
    }
}
