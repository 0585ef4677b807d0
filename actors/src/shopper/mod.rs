//! Shopper profile: recency-weighted interests by district and by tag, district affinity,
//! recent actions and a predicted next action with its reason.
//!
//! A shopper's signals live in the streams of the products they concern, tagged with the
//! shopper; the profile reads them by tag. What a signal alone does not say — the product's
//! tags — the shell looks up in the catalog and passes in with the event ([`ShopperInput`]).

pub mod actor;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use mall_events::domain::DomainEvent;
use mall_events::ids::Position;
use serde::{Deserialize, Serialize};

/// Interests halve in weight every this many days without new signals.
pub use mall_events::measures::HALF_LIFE_DAYS;
/// The recent actions a profile keeps.
pub const RECENT: usize = 20;
/// The interests kept per kind (the weakest are dropped).
pub const MAX_INTERESTS: usize = 50;

/// One signal with the catalog facts it concerns.
#[derive(Debug, Clone)]
pub struct ShopperInput<'a> {
    pub event: &'a DomainEvent,
    pub position: Position,
    /// The district of the product (from the event's tags).
    pub district: Option<String>,
    /// The product's tags at the time.
    pub product_tags: Vec<String>,
}

/// One recent action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The signal's type (`product_viewed`, `searched`, ...).
    pub kind: String,
    /// The product, or the query for a search.
    pub subject: String,
    pub at: DateTime<Utc>,
}

/// What the profile expects the shopper to do next, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub action: String,
    pub target: Option<String>,
    pub reason: String,
}

/// A shopper's folded profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShopperState {
    /// Interest by district, decayed to `as_of`.
    pub districts: BTreeMap<String, f64>,
    /// Interest by product tag, decayed to `as_of`.
    pub tags: BTreeMap<String, f64>,
    pub recent: VecDeque<Action>,
    /// Products in the cart (added and not removed or bought).
    pub cart: BTreeMap<String, u32>,
    pub purchases: u64,
    /// The time the interests are decayed to (the latest signal's).
    pub as_of: Option<DateTime<Utc>>,
    pub position: Position,
}

impl ShopperState {
    /// Folds one of the shopper's signals. Total: other events are ignored.
    pub fn evolve(&mut self, input: &ShopperInput<'_>) {
        let e = input.event;
        self.position = self.position.max(input.position);
        let (Some(at), false) = (e.signal_at(), matches!(e, DomainEvent::ImpressionServed(_))) else { return };
        // Decay everything to the newer of the two times; a late signal is decayed to now.
        let now = self.as_of.map_or(at, |t| t.max(at));
        if let Some(prev) = self.as_of {
            let days = (now - prev).num_milliseconds() as f64 / 86_400_000.0;
            let f = mall_events::measures::decay(days);
            self.districts.values_mut().for_each(|v| *v *= f);
            self.tags.values_mut().for_each(|v| *v *= f);
        }
        let late = mall_events::measures::decay((now - at).num_milliseconds() as f64 / 86_400_000.0);
        self.as_of = Some(now);
        let w = e.interest_weight() * late;
        if let Some(d) = &input.district {
            *self.districts.entry(d.clone()).or_default() += w;
        }
        let words: Vec<String> = match e {
            DomainEvent::Searched(s) => s.query.split_whitespace().map(|w| w.to_lowercase()).collect(),
            _ => input.product_tags.iter().map(|t| t.to_lowercase()).collect(),
        };
        for t in words {
            *self.tags.entry(t).or_default() += w;
        }
        prune(&mut self.districts);
        prune(&mut self.tags);
        let subject = match e {
            DomainEvent::Searched(s) => s.query.clone(),
            other => other.product_id().map(|p| p.as_str().to_string()).unwrap_or_default(),
        };
        match e {
            DomainEvent::AddedToCart(c) => *self.cart.entry(subject.clone()).or_default() += c.quantity,
            DomainEvent::RemovedFromCart(c) => {
                if let Some(q) = self.cart.get_mut(&subject) {
                    *q = q.saturating_sub(c.quantity);
                    if *q == 0 {
                        self.cart.remove(&subject);
                    }
                }
            }
            DomainEvent::Purchased(_) => {
                self.purchases += 1;
                self.cart.remove(&subject);
            }
            _ => {}
        }
        self.recent.push_front(Action { kind: e.event_type().to_string(), subject, at });
        self.recent.truncate(RECENT);
    }

    /// Districts by affinity, strongest first, as shares of the total interest.
    pub fn affinity(&self) -> Vec<(String, f64)> {
        let total: f64 = self.districts.values().filter(|v| **v > 0.0).sum();
        let mut v: Vec<(String, f64)> =
            self.districts.iter().filter(|(_, w)| **w > 0.0).map(|(k, w)| (k.clone(), w / total)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Tags by interest, strongest first.
    pub fn top_tags(&self, n: usize) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> =
            self.tags.iter().filter(|(_, w)| **w > 0.0).map(|(k, w)| (k.clone(), *w)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// The predicted next action: the rules in order, the first that applies.
    pub fn predict(&self) -> Prediction {
        if let Some((product, _)) = self.cart.iter().next() {
            return Prediction {
                action: "purchase".into(),
                target: Some(product.clone()),
                reason: format!("{} product(s) in the cart and not yet bought", self.cart.len()),
            };
        }
        if let Some(last) = self.recent.front().filter(|a| a.kind == "searched") {
            return Prediction {
                action: "view_search_result".into(),
                target: Some(last.subject.clone()),
                reason: format!("searched for {:?} last", last.subject),
            };
        }
        if let Some((district, share)) = self.affinity().into_iter().next() {
            return Prediction {
                action: "browse_district".into(),
                target: Some(district.clone()),
                reason: format!("{:.0}% of recent interest is in {district}", share * 100.0),
            };
        }
        Prediction { action: "browse".into(), target: None, reason: "no signals yet".into() }
    }
}

fn prune(m: &mut BTreeMap<String, f64>) {
    if m.len() > MAX_INTERESTS {
        let mut v: Vec<(String, f64)> = std::mem::take(m).into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(MAX_INTERESTS);
        *m = v.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn fold(events: &[(DomainEvent, &str, &[&str])]) -> ShopperState {
        let mut s = ShopperState::default();
        for (i, (e, d, tags)) in events.iter().enumerate() {
            s.evolve(&ShopperInput {
                event: e,
                position: i as u64 + 1,
                district: Some(d.to_string()),
                product_tags: tags.iter().map(|t| t.to_string()).collect(),
            });
        }
        s
    }

    #[test]
    fn given_views_in_two_districts_then_affinity_favours_the_one_with_carts() {
        let s = fold(&[
            (viewed("p1", "s1"), "toys", &["wood"]),
            (viewed("p2", "s1"), "garden", &["tools"]),
            (carted("p2", "s1"), "garden", &["tools"]),
        ]);
        let a = s.affinity();
        assert_eq!(a[0].0, "garden");
        assert!(a[0].1 > 0.7, "{a:?}");
        assert_eq!(s.top_tags(1)[0].0, "tools");
    }

    #[test]
    fn given_an_item_in_the_cart_then_the_prediction_is_a_purchase_with_its_reason() {
        let s = fold(&[(carted("p2", "s1"), "garden", &[])]);
        let p = s.predict();
        assert_eq!((p.action.as_str(), p.target.as_deref()), ("purchase", Some("p2")));
        assert!(p.reason.contains("cart"));
    }

    #[test]
    fn given_a_purchase_then_the_cart_empties_and_the_prediction_follows_affinity() {
        let s = fold(&[(carted("p2", "s1"), "garden", &[]), (bought("p2", "s1"), "garden", &[])]);
        assert!(s.cart.is_empty());
        assert_eq!(s.predict().action, "browse_district");
        assert_eq!(s.recent.len(), 2);
    }

    #[test]
    fn given_old_interest_then_newer_signals_outweigh_it() {
        let mut old = viewed("p1", "s1");
        let mut new = viewed("p2", "s1");
        set_at(&mut old, "2026-01-01T00:00:00Z");
        set_at(&mut new, "2026-03-01T00:00:00Z");
        let s =
            fold(&[(old.clone(), "toys", &[]), (old.clone(), "toys", &[]), (old, "toys", &[]), (new, "garden", &[])]);
        assert_eq!(s.affinity()[0].0, "garden", "{:?}", s.districts);
    }
}
