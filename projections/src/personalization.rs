//! The `personalization` projection: each shopper's recency-weighted interest in districts and
//! products (`shopper_interests`) and their profile (`shopper_profiles`: signal counts, spend,
//! the last district they were seen in).
//!
//! Decay without state: a signal at time t adds `w · 2^((t − EPOCH) / HALF_LIFE)` to its facet, so
//! the sums only grow (a plain `Add`), and a reader multiplies by `2^(−(now − EPOCH) / HALF_LIFE)`
//! to get interest as of now — the same numbers a fold that decays as it goes would give.

use chrono::{DateTime, TimeZone, Utc};
use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::Value;

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const SHOPPER_INTERESTS: &str = "shopper_interests";
pub const SHOPPER_PROFILES: &str = "shopper_profiles";
/// Interest halves every week.
pub const HALF_LIFE_DAYS: f64 = 7.0;

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

/// The origin of the scaled scores.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("a valid date")
}

/// `2^((t − EPOCH) / HALF_LIFE)`: a weight at `t` in epoch units.
pub fn scale(t: DateTime<Utc>) -> f64 {
    let days = (t - epoch()).num_milliseconds() as f64 / 86_400_000.0;
    (days / HALF_LIFE_DAYS).exp2()
}

/// A stored score as interest at `now`.
pub fn interest_at(score: f64, now: DateTime<Utc>) -> f64 {
    score / scale(now)
}

/// Shopper interests.
pub struct Personalization;

impl Projection for Personalization {
    fn name(&self) -> &'static str {
        "personalization"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        let (Some(shopper), Some(at)) = (d.shopper_id(), d.signal_at()) else { return Vec::new() };
        let district = e.tags.iter().find_map(|t| t.strip_prefix("district:"));
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
        let mut facets: Vec<String> = e.tags.iter().filter(|t| t.starts_with("district:")).cloned().collect();
        if let Some(p) = d.product_id() {
            facets.push(format!("product:{p}"));
        }
        let scaled = w * scale(at);
        for facet in facets {
            out.push(Change::upsert(
                SHOPPER_INTERESTS,
                format!("{shopper}/{facet}"),
                row! { "shopper_id" => shopper, "facet" => facet, "last_at" => at },
                vec![("score", scaled), ("signals", 1.0)],
            ));
        }
        out
    }
}
