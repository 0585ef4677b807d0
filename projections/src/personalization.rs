//! The `personalization` projection: each shopper's recency-weighted interest in districts and
//! products (`shopper_interests`) and their profile (`shopper_profiles`: signal counts, spend,
//! the last district they were seen in).
//!
//! Decay relative to a moving reference: each interest row keeps its score as of its latest
//! signal (`last_at`); a signal decays the other side to the later of the two times and adds
//! ([`Op::Decay`](crate::change::Op::Decay)), so a score stays within its weights' range for any
//! accepted time (an epoch-scaled sum overflowed after about 2045 and underflowed for signals
//! twenty years before its epoch). A reader decays a score from its `last_at` to now — or, for
//! shares and ratios, which decay alike, to the shopper's latest signal.

use chrono::{DateTime, Utc};
use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use mall_events::ids::tag;
use serde_json::Value;

use crate::change::{Change, Op, TableDef};
use crate::row;
use crate::runner::Projection;

pub const SHOPPER_INTERESTS: &str = "shopper_interests";
pub const SHOPPER_PROFILES: &str = "shopper_profiles";
/// Interest halves every week (the one definition, shared with the shopper actors).
pub use mall_events::measures::HALF_LIFE_DAYS;

const TABLES: &[TableDef] = &[
    TableDef {
        name: SHOPPER_INTERESTS,
        key: "key",
        defaults: || row! { "shopper_id" => "", "facet" => "", "score" => 0.0, "signals" => 0, "last_at" => Value::Null },
    },
    TableDef {
        name: SHOPPER_PROFILES,
        key: "shopper_id",
        defaults: || {
            row! {
                "signals" => 0, "views" => 0, "clicks" => 0, "carts" => 0, "purchases" => 0, "bounces" => 0,
                "searches" => 0, "spend_e4" => 0, "last_district" => Value::Null, "last_at" => Value::Null,
            }
        },
    },
];

/// A stored score (as of `last_at`) as interest at `now`.
pub fn interest_at(score: f64, last_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let days = (now - last_at).num_milliseconds() as f64 / 86_400_000.0;
    score * mall_events::measures::decay(days)
}

/// Shopper interests.
pub struct Personalization;

impl Projection for Personalization {
    fn name(&self) -> &'static str {
        "personalization"
    }

    fn version(&self) -> u32 {
        // 2: scores as of each row's `last_at` (they were scaled to a fixed epoch).
        // 3: decayed at the tables' microseconds (batch boundaries no longer change a score).
        3
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let (Some(shopper), Some(at)) = (d.shopper_id(), d.signal_at()) else { return Vec::new() };
        let district = e.tags.iter().find_map(|t| tag::district_of(t));
        let mut counts = vec![("signals", 1.0)];
        match d {
            DomainEvent::ProductViewed(_) => counts.push(("views", 1.0)),
            DomainEvent::ProductClicked(_) => counts.push(("clicks", 1.0)),
            DomainEvent::AddedToCart(_) => counts.push(("carts", 1.0)),
            DomainEvent::Purchased(p) => {
                counts.push(("purchases", 1.0));
                counts.push(("spend_e4", p.unit_price.ten_thousandths() as f64 * p.quantity as f64));
            }
            DomainEvent::Bounced(_) => counts.push(("bounces", 1.0)),
            DomainEvent::Searched(_) => counts.push(("searches", 1.0)),
            _ => {}
        }
        let mut seen = row! { "last_at" => at };
        if let Some(slug) = district {
            seen.insert("last_district".into(), Value::from(slug));
        }
        let mut out = vec![Change::upsert(SHOPPER_PROFILES, shopper.as_str(), seen, counts)];
        let w = d.interest_weight();
        if w == 0.0 {
            return out;
        }
        let mut facets: Vec<String> = e.tags.iter().filter(|t| tag::district_of(t).is_some()).cloned().collect();
        if let Some(p) = d.product_id() {
            facets.push(format!("product:{p}"));
        }
        for facet in facets {
            let key = format!("{shopper}/{facet}");
            out.push(Change::upsert(
                SHOPPER_INTERESTS,
                key.clone(),
                row! { "shopper_id" => shopper, "facet" => facet },
                vec![("signals", 1.0)],
            ));
            out.push(Change {
                table: SHOPPER_INTERESTS,
                key,
                op: Op::Decay { score: "score", at: "last_at", weight: w, time: at, half_life_days: HALF_LIFE_DAYS },
            });
        }
        out
    }
}
