//! Test helpers: event constructors and the given/when/then harness for the product decider.

#![allow(missing_docs)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use mall_events::domain::*;
use mall_events::ids::*;
use uuid::Uuid;

use crate::product::{Command, DecideInput, Policy, ProductState, decide};
use crate::stats::Prior;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn pid(p: &str) -> ProductId {
    ProductId::parse(p).unwrap()
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn sig_id() -> Uuid {
    Uuid::from_u128(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128)
}

pub fn opened(slug: &str) -> DomainEvent {
    DomainEvent::DistrictOpened(DistrictOpened {
        slug: DistrictSlug::parse(slug).unwrap(),
        name: format!("The {slug} district"),
        personality: Personality {
            tone: "playful".into(),
            style: "short sentences".into(),
            audience: "parents".into(),
        },
    })
}

pub fn listed(p: &str, district: &str, title: &str) -> DomainEvent {
    DomainEvent::ProductListed(ProductListed {
        product_id: pid(p),
        district: DistrictSlug::parse(district).unwrap(),
        title: title.into(),
        description: format!("{title}, made well."),
        price: Price::parse("19.90").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        tags: vec!["gift".into()],
        attributes: BTreeMap::new(),
        image_url: None,
        stock: 5,
    })
}

/// An edit of `p` that changes nothing yet: set the fields it should change.
pub fn edit(p: &str) -> ProductEdited {
    ProductEdited {
        product_id: pid(p),
        district: None,
        title: None,
        description: None,
        price: None,
        currency: None,
        tags: None,
        attributes: None,
        image_url: None,
        stock: None,
    }
}

/// An edit moving `p` to `district`.
pub fn moved(p: &str, district: &str) -> DomainEvent {
    DomainEvent::ProductEdited(ProductEdited { district: Some(DistrictSlug::parse(district).unwrap()), ..edit(p) })
}

/// An edit setting `p`'s tags.
pub fn retagged(p: &str, tags: &[&str]) -> DomainEvent {
    DomainEvent::ProductEdited(ProductEdited { tags: Some(tags.iter().map(|t| t.to_string()).collect()), ..edit(p) })
}

macro_rules! sig {
    ($variant:ident, $p:expr, $s:expr, { $($f:ident : $v:expr),* }) => {
        DomainEvent::$variant($variant {
            id: sig_id(),
            shopper_id: ShopperId::parse($s).unwrap(),
            session_id: SessionId::parse("sess").unwrap(),
            at: t0(),
            product_id: pid($p),
            campaign: None,
            $($f: $v),*
        })
    };
}

pub fn viewed(p: &str, s: &str) -> DomainEvent {
    sig!(ProductViewed, p, s, { dwell_ms: 5_000 })
}
pub fn carted(p: &str, s: &str) -> DomainEvent {
    sig!(AddedToCart, p, s, { quantity: 1 })
}
pub fn reviewed(p: &str, s: &str, rating: u8, text: &str) -> DomainEvent {
    sig!(ReviewSubmitted, p, s, { rating: rating, text: text.into() })
}
pub fn bounced(p: &str, s: &str) -> DomainEvent {
    sig!(Bounced, p, s, {})
}
pub fn impression(p: &str, s: &str) -> DomainEvent {
    sig!(ImpressionServed, p, s, { list: ListName::parse("home").unwrap(), position: 1, policy: None })
}
pub fn bought(p: &str, s: &str) -> DomainEvent {
    sig!(Purchased, p, s, {
        order_id: OrderId::parse("o1").unwrap(),
        quantity: 1,
        unit_price: Price::parse("19.90").unwrap(),
        currency: Currency::parse("EUR").unwrap()
    })
}

/// Sets a signal's time.
pub fn set_at(e: &mut DomainEvent, rfc3339: &str) {
    let at: DateTime<Utc> = rfc3339.parse().unwrap();
    match e {
        DomainEvent::ProductViewed(x) => x.at = at,
        DomainEvent::AddedToCart(x) => x.at = at,
        DomainEvent::Purchased(x) => x.at = at,
        DomainEvent::Bounced(x) => x.at = at,
        _ => panic!("not a signal this helper knows"),
    }
}

/// `n` views of `p` by distinct shoppers, `conversions` of them followed by a cart.
pub fn traffic(p: &str, n: usize, conversions: usize) -> Vec<DomainEvent> {
    let mut v = Vec::new();
    for i in 0..n {
        let s = format!("shopper-{i}");
        v.push(viewed(p, &s));
        if i < conversions {
            v.push(carted(p, &s));
        }
    }
    v
}

/// A complete, healthy product: listed, with tags, SEO and a current embedding.
pub fn healthy(p: &str) -> Vec<DomainEvent> {
    let mut state = ProductState::default();
    state.evolve(&listed(p, "toys", "Wooden train"), 1, 1);
    vec![
        listed(p, "toys", "Wooden train"),
        DomainEvent::CopyApplied(CopyApplied {
            decision_id: Uuid::from_u128(900),
            product_id: pid(p),
            content: Content::Seo(Seo { title: "Wooden train".into(), meta_description: "A train.".into() }),
            at: t0(),
        }),
        DomainEvent::CopyApplied(CopyApplied {
            decision_id: Uuid::from_u128(901),
            product_id: pid(p),
            content: Content::Embedding { vector: vec![0.0; 4], text_hash: state.copy_hash() },
            at: t0(),
        }),
    ]
}

/// given(events).when(input).then(...): folds the events into a fresh product, then decides.
pub struct Given {
    pub state: ProductState,
}

pub fn given(events: impl IntoIterator<Item = DomainEvent>) -> Given {
    let mut state = ProductState::default();
    for (i, e) in events.into_iter().enumerate() {
        state.evolve(&e, i as u64 + 1, i as u64 + 1);
    }
    Given { state }
}

/// The default input: a 10% district prior, budget available, the default policy, at `t0`.
pub fn input() -> DecideInput {
    DecideInput {
        prior: Prior { alpha: 2.0, beta: 18.0 },
        budget_available: true,
        policy: Policy::default(),
        decision_id: Uuid::from_u128(42),
        now: t0(),
    }
}

impl Given {
    pub fn when(&self, input: DecideInput) -> Vec<Command> {
        decide(&self.state, &input)
    }
}

/// The (command, rule) of each `Optimize` decided.
pub fn rules(commands: &[Command]) -> Vec<(CommandKind, String)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Optimize(d) => Some((d.command, d.rule.clone())),
            _ => None,
        })
        .collect()
}

/// A recorded decision (a listed product without SEO decides to have it written).
pub fn decided_for_tests() -> DomainEvent {
    let commands = given([opened("toys"), listed("p1", "toys", "Wooden train")]).when(input());
    commands
        .into_iter()
        .find_map(|c| match c {
            Command::Optimize(_) => Some(c.into_event()),
            _ => None,
        })
        .expect("a listed product without SEO decides")
}
