//! Merchandising rules: what they match, how conflicting rules shape a listing, and the engine
//! that writes rules by itself — all pure, so a listing and every generated rule can be
//! reproduced from the facts and rules recorded.
//!
//! **Conflict order** (a listing of one district, after the score has ordered it):
//! 1. `hide`: a product any active hide rule matches leaves the listing.
//! 2. `filter`: a filter scoped to the district (or to none) keeps only what it matches; a
//!    product must match every such filter.
//! 3. `boost` / `bury`: of the rules matching a product, the highest priority acts alone (ties:
//!    the greater strength, then the smaller rule id); its signed strength is the product's raw
//!    rules value, normalized over the listing to [0, 1] as the score's rules part (all equal:
//!    0 for every product, so rules that touch nothing change no order).
//! 4. `pin`: a product takes the position of its highest-priority pin (ties: the smaller rule
//!    id); where two products want one position, the higher priority (then the smaller product
//!    id) has it and the other takes the next free one. Pins are placed after sorting, so they
//!    hold in personalized listings too.
//!
//! Every product's `rules` names the rules that acted on it (a losing boost or pin is not named).
//!
//! **The engine** (`generate`, on the 15-minute `merchandising` job) looks at every product's
//! facts and the engine's own rules and decides, rule by rule:
//! - `out_of_stock`: stock 0 → hide (priority 100), until restocked;
//! - `featured`: the tag `featured` → pin to the district's top positions in product-id order
//!   (priority 50), while the tag stays;
//! - `high_converter`: at least [`MIN_VIEWS`] views, in the district's top decile by shrunk
//!   conversion and 1.2× its rate → boost 0.5 (priority 10) for 24 hours;
//! - `low_performer`: at least 2 × [`MIN_VIEWS`] views, in the bottom decile and below half the
//!   district's rate → bury 0.5 (priority 10) for 24 hours.
//!
//! A rule whose evidence still holds is revised when its figures moved by a quarter or its
//! window ends within the hour (24 more hours); one whose evidence is gone expires with the
//! reason; any rule whose window closed expires. Rule ids are derived from the rule and the
//! product, so a revision keeps its id.

pub mod ordering;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use mall_events::domain::{Condition, DomainEvent, MerchandisingRuleExpired, MerchandisingRuleSet, RuleAction};
use mall_events::ids::{DistrictSlug, ProductId};
use mall_events::measures::Prior;
use uuid::Uuid;

/// The fewest views before a product's conversion makes it a high converter.
pub const MIN_VIEWS: u64 = 100;
/// How long a generated boost or bury lasts before it is looked at again.
pub const WINDOW_HOURS: i64 = 24;

/// A rule as folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub set: MerchandisingRuleSet,
    pub expired: bool,
}

impl Rule {
    /// Whether the rule acts at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        !self.expired && self.set.valid_from <= now && self.set.valid_until.is_none_or(|u| now < u)
    }
}

/// Every rule, folded from merchandising's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(pub BTreeMap<Uuid, Rule>);

impl Rules {
    pub fn apply(&mut self, d: &DomainEvent) {
        match d {
            DomainEvent::MerchandisingRuleSet(s) => {
                self.0.insert(s.rule_id, Rule { set: s.clone(), expired: false });
            }
            DomainEvent::MerchandisingRuleExpired(x) => {
                if let Some(r) = self.0.get_mut(&x.rule_id) {
                    r.expired = true;
                }
            }
            _ => {}
        }
    }

    /// The rules acting at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> Vec<&MerchandisingRuleSet> {
        self.0.values().filter(|r| r.active(now)).map(|r| &r.set).collect()
    }
}

/// What a rule can match a product on.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub product_id: String,
    pub district: String,
    pub tags: Vec<String>,
    pub price: f64,
    pub stock: u32,
    pub views: u64,
    pub conversions: u64,
}

/// Each product's performance percentile within its district (0–100, by conversion shrunk
/// toward the district's rate, as the score's performance part) and the posterior rates, with
/// each district's pooled rate.
pub struct Performance {
    pub percentile: HashMap<String, f64>,
    pub rate: HashMap<String, f64>,
    pub district_rate: HashMap<String, f64>,
}

pub fn performance(facts: &[Facts]) -> Performance {
    let mut by_district: BTreeMap<&str, Vec<&Facts>> = BTreeMap::new();
    for f in facts {
        by_district.entry(&f.district).or_default().push(f);
    }
    let (mut percentile, mut rate, mut district_rate) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (d, list) in by_district {
        let views: u64 = list.iter().map(|f| f.views).sum();
        let conversions: u64 = list.iter().map(|f| f.conversions.min(f.views)).sum();
        let prior = Prior::district(views, conversions, 0);
        district_rate.insert(d.to_string(), prior.mean());
        let mut posts: Vec<(f64, &str)> = list
            .iter()
            .map(|f| (prior.update(f.conversions.min(f.views), f.views).mean(), f.product_id.as_str()))
            .collect();
        posts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        let n = posts.len();
        for (post, id) in &posts {
            // Its mid-rank among the district's products (ties share the middle of their ranks).
            let below = posts.iter().filter(|(p, _)| p < post).count() as f64;
            let level = posts.iter().filter(|(p, _)| p == post).count() as f64;
            let pct = if n <= 1 { 50.0 } else { 100.0 * (below + (level - 1.0) / 2.0) / (n - 1) as f64 };
            percentile.insert(id.to_string(), pct);
            rate.insert(id.to_string(), *post);
        }
    }
    Performance { percentile, rate, district_rate }
}

/// Whether a condition matches a product (with its percentile).
pub fn matches(c: &Condition, f: &Facts, percentile: f64) -> bool {
    c.product_id.as_ref().is_none_or(|p| p.as_str() == f.product_id)
        && c.district.as_ref().is_none_or(|d| d.as_str() == f.district)
        && c.tags.iter().all(|t| f.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        && c.price_min.is_none_or(|m| f.price >= m)
        && c.price_max.is_none_or(|m| f.price <= m)
        && c.stock_min.is_none_or(|m| f.stock >= m)
        && c.stock_max.is_none_or(|m| f.stock <= m)
        && c.percentile_min.is_none_or(|m| percentile >= m)
        && c.percentile_max.is_none_or(|m| percentile <= m)
}

/// How the rules shaped one product of a listing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shaping {
    /// The rules part of its score, in [0, 1] over the listing.
    pub part: f64,
    /// The position a pin gives it, from 1.
    pub pin: Option<u32>,
    /// The rules that acted on it.
    pub rules: Vec<Uuid>,
}

/// Shapes one district's listing: which products stay (`None`: hidden or filtered out) and how
/// the rules acted on each (see the module's conflict order). `products` are the listing's
/// facts; `percentile` their performance percentiles.
pub fn shape(
    district: &str,
    products: &[&Facts],
    rules: &[&MerchandisingRuleSet],
    percentile: &HashMap<String, f64>,
) -> Vec<Option<Shaping>> {
    let pct = |f: &Facts| percentile.get(&f.product_id).copied().unwrap_or(50.0);
    let filters: Vec<&&MerchandisingRuleSet> = rules
        .iter()
        .filter(|r| {
            r.action == RuleAction::Filter && r.condition.district.as_ref().is_none_or(|d| d.as_str() == district)
        })
        .collect();
    let by_priority = |a: &&&MerchandisingRuleSet, b: &&&MerchandisingRuleSet| {
        b.priority.cmp(&a.priority).then(b.strength.total_cmp(&a.strength)).then(a.rule_id.cmp(&b.rule_id))
    };
    let mut raw: Vec<Option<(f64, Shaping, i32)>> = products
        .iter()
        .map(|f| {
            let p = pct(f);
            let matching: Vec<&&MerchandisingRuleSet> = rules.iter().filter(|r| matches(&r.condition, f, p)).collect();
            if matching.iter().any(|r| r.action == RuleAction::Hide) {
                return None;
            }
            if !filters.iter().all(|r| matches(&r.condition, f, p)) {
                return None;
            }
            let mut s = Shaping::default();
            s.rules.extend(filters.iter().map(|r| r.rule_id));
            let mut moves: Vec<&&MerchandisingRuleSet> =
                matching.iter().copied().filter(|r| matches!(r.action, RuleAction::Boost | RuleAction::Bury)).collect();
            moves.sort_by(by_priority);
            let value = match moves.first() {
                Some(r) => {
                    s.rules.push(r.rule_id);
                    if r.action == RuleAction::Boost { r.strength } else { -r.strength }
                }
                None => 0.0,
            };
            let mut pins: Vec<&&MerchandisingRuleSet> =
                matching.iter().copied().filter(|r| r.action == RuleAction::Pin).collect();
            pins.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.rule_id.cmp(&b.rule_id)));
            let pin_priority = pins.first().map_or(i32::MIN, |r| r.priority);
            if let Some(r) = pins.first() {
                s.pin = r.position;
                s.rules.push(r.rule_id);
            }
            Some((value, s, pin_priority))
        })
        .collect();
    // Normalize the raw values over what stays.
    let values = raw.iter().flatten().map(|x| x.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    for (value, s, _) in raw.iter_mut().flatten() {
        s.part = if hi > lo { (*value - lo) / (hi - lo) } else { 0.0 };
    }
    // Pins contending for one position: the higher priority, then the smaller product id, has it.
    let mut wanted: Vec<(u32, i32, &str, usize)> = raw
        .iter()
        .enumerate()
        .filter_map(|(k, x)| {
            x.as_ref().and_then(|(_, s, p)| s.pin.map(|pin| (pin, *p, products[k].product_id.as_str(), k)))
        })
        .collect();
    wanted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    let mut taken = std::collections::BTreeSet::new();
    for (pin, _, _, k) in wanted {
        let mut at = pin;
        while !taken.insert(at) {
            at += 1;
        }
        if let Some((_, s, _)) = raw[k].as_mut() {
            s.pin = Some(at);
        }
    }
    raw.into_iter().map(|x| x.map(|(_, s, _)| s)).collect()
}

/// Orders a listing already sorted by score with its pins: each pinned item goes to its
/// position (1-based, or the end when the listing is shorter), the rest keep their order.
pub fn place_pins<T>(sorted: Vec<T>, pin: impl Fn(&T) -> Option<u32>) -> Vec<T> {
    let (mut pinned, rest): (Vec<T>, Vec<T>) = sorted.into_iter().partition(|x| pin(x).is_some());
    pinned.sort_by_key(|x| pin(x));
    let mut out: Vec<T> = rest;
    for x in pinned {
        let at = (pin(&x).unwrap_or(1) as usize).saturating_sub(1).min(out.len());
        out.insert(at, x);
    }
    out
}

/// What the engine decided for one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(MerchandisingRuleSet),
    Expire(MerchandisingRuleExpired),
}

/// The id of the engine's rule of a kind for a product.
pub fn rule_id(rule: &str, product: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("mall/merchandising/{rule}/{product}").as_bytes())
}

/// A rule the engine would have in force for a product now, with its evidence.
fn wanted(f: &Facts, perf: &Performance, featured_rank: Option<u32>, now: DateTime<Utc>) -> Vec<MerchandisingRuleSet> {
    let pct = perf.percentile.get(&f.product_id).copied().unwrap_or(50.0);
    let rate = perf.rate.get(&f.product_id).copied().unwrap_or(0.0);
    let district_rate = perf.district_rate.get(&f.district).copied().unwrap_or(0.0);
    let product = ProductId::parse(f.product_id.clone()).ok();
    let district = DistrictSlug::parse(f.district.clone()).ok();
    let cond = Condition { product_id: product, ..Condition::default() };
    let evidence: BTreeMap<String, f64> = [
        ("views", f.views as f64),
        ("conversions", f.conversions as f64),
        ("conversion", rate),
        ("district_conversion", district_rate),
        ("percentile", pct),
        ("stock", f64::from(f.stock)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let make = |rule: &str, action, strength, position, priority, until: Option<DateTime<Utc>>, reason: String| {
        MerchandisingRuleSet {
            rule_id: rule_id(rule, &f.product_id),
            action,
            condition: Condition {
                district: if action == RuleAction::Pin { district.clone() } else { None },
                ..cond.clone()
            },
            strength,
            position,
            priority,
            valid_from: now,
            valid_until: until,
            auto: true,
            rule: rule.to_string(),
            reason,
            evidence: evidence.clone(),
            at: now,
        }
    };
    let day = Some(now + Duration::hours(WINDOW_HOURS));
    let mut out = Vec::new();
    if f.stock == 0 {
        out.push(make("out_of_stock", RuleAction::Hide, 0.0, None, 100, None, "out of stock".to_string()));
    }
    if let Some(rank) = featured_rank {
        out.push(make(
            "featured",
            RuleAction::Pin,
            0.0,
            Some(rank),
            50,
            None,
            format!("tagged featured: pinned to position {rank} of {}", f.district),
        ));
    }
    if f.views >= MIN_VIEWS && pct >= 90.0 && rate >= 1.2 * district_rate {
        out.push(make(
            "high_converter",
            RuleAction::Boost,
            0.5,
            None,
            10,
            day,
            format!(
                "converts at {:.1}% against the district's {:.1}% over {} views (top decile)",
                rate * 100.0,
                district_rate * 100.0,
                f.views
            ),
        ));
    }
    if f.views >= 2 * MIN_VIEWS && pct <= 10.0 && rate < 0.5 * district_rate {
        out.push(make(
            "low_performer",
            RuleAction::Bury,
            0.5,
            None,
            10,
            day,
            format!(
                "converts at {:.1}% against the district's {:.1}% over {} views (bottom decile)",
                rate * 100.0,
                district_rate * 100.0,
                f.views
            ),
        ));
    }
    out
}

/// Whether the figures behind a rule moved by a quarter or more.
fn moved(old: &BTreeMap<String, f64>, new: &BTreeMap<String, f64>) -> bool {
    ["views", "conversion"].iter().any(|k| {
        let (a, b) = (old.get(*k).copied().unwrap_or(0.0), new.get(*k).copied().unwrap_or(0.0));
        (a - b).abs() > 0.25 * a.abs().max(1e-9)
    })
}

/// The engine's decisions at `now`, given every product's facts and every rule.
pub fn generate(facts: &[Facts], rules: &Rules, now: DateTime<Utc>) -> Vec<Change> {
    let perf = performance(facts);
    // Featured products, by district in product-id order: positions 1, 2, ...
    let mut featured: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in facts.iter().filter(|f| f.stock > 0 && f.tags.iter().any(|t| t.eq_ignore_ascii_case("featured"))) {
        featured.entry(&f.district).or_default().push(&f.product_id);
    }
    let rank_of = |f: &Facts| {
        let list = featured.get(f.district.as_str())?;
        let mut sorted = list.clone();
        sorted.sort();
        sorted.iter().position(|p| *p == f.product_id).map(|k| k as u32 + 1)
    };
    let mut want: BTreeMap<Uuid, MerchandisingRuleSet> = BTreeMap::new();
    for f in facts {
        for r in wanted(f, &perf, rank_of(f), now) {
            want.insert(r.rule_id, r);
        }
    }
    let mut out = Vec::new();
    for (id, rule) in &rules.0 {
        if rule.expired {
            continue;
        }
        if rule.set.valid_until.is_some_and(|u| u <= now) && !want.contains_key(id) {
            out.push(Change::Expire(MerchandisingRuleExpired {
                rule_id: *id,
                reason: "its window closed".into(),
                at: now,
            }));
            continue;
        }
        if !rule.set.auto {
            continue;
        }
        match want.get(id) {
            None => out.push(Change::Expire(MerchandisingRuleExpired {
                rule_id: *id,
                reason: format!("the evidence for {} no longer holds", rule.set.rule),
                at: now,
            })),
            Some(new) => {
                let ending = rule.set.valid_until.is_some_and(|u| u - now <= Duration::hours(1));
                if ending || moved(&rule.set.evidence, &new.evidence) || rule.set.position != new.position {
                    out.push(Change::Set(new.clone()));
                }
            }
        }
    }
    for (id, rule) in want {
        if rules.0.get(&id).is_none_or(|r| r.expired) {
            out.push(Change::Set(rule));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn f(id: &str, views: u64, conversions: u64, stock: u32, tags: &[&str]) -> Facts {
        Facts {
            product_id: id.into(),
            district: "toys".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            price: 10.0,
            stock,
            views,
            conversions,
        }
    }

    /// Twenty ordinary products at 5%, and whatever the test adds.
    fn district(extra: Vec<Facts>) -> Vec<Facts> {
        let mut v: Vec<Facts> = (0..20).map(|i| f(&format!("p{i:02}"), 400, 20, 5, &[])).collect();
        v.extend(extra);
        v
    }

    fn sets(changes: &[Change]) -> Vec<(&str, &str, RuleAction)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Set(s) => Some((s.rule.as_str(), s.condition.product_id.as_ref()?.as_str(), s.action)),
                _ => None,
            })
            .collect()
    }

    fn fold(changes: &[Change]) -> Rules {
        let mut rules = Rules::default();
        for c in changes {
            match c {
                Change::Set(s) => rules.apply(&DomainEvent::MerchandisingRuleSet(s.clone())),
                Change::Expire(x) => rules.apply(&DomainEvent::MerchandisingRuleExpired(x.clone())),
            }
        }
        rules
    }

    #[test]
    fn a_high_converter_is_boosted_with_its_evidence_and_the_boost_expires_when_it_stops() {
        // Given a product converting at 20% among products at 5%,
        let facts = district(vec![f("star", 400, 80, 5, &[])]);
        // when the engine looks,
        let changes = generate(&facts, &Rules::default(), now());
        // then it boosts it, for a day, saying why.
        assert_eq!(sets(&changes), vec![("high_converter", "star", RuleAction::Boost)]);
        let Change::Set(boost) = &changes[0] else { panic!() };
        assert_eq!((boost.strength, boost.auto, boost.valid_until), (0.5, true, Some(now() + Duration::hours(24))));
        assert!(boost.reason.contains("top decile") && boost.evidence["views"] == 400.0, "{boost:?}");
        // A second look with the same facts changes nothing;
        let rules = fold(&changes);
        assert!(generate(&facts, &rules, now() + Duration::minutes(15)).is_empty());
        // when its conversion falls to the district's, the boost expires with the reason;
        let fallen = district(vec![f("star", 800, 40, 5, &[])]);
        let later = generate(&fallen, &rules, now() + Duration::hours(2));
        assert!(
            matches!(&later[..], [Change::Expire(x)] if x.rule_id == boost.rule_id && x.reason.contains("no longer holds")),
            "{later:?}"
        );
        // and a boost whose evidence moved by a quarter is revised under the same id.
        let grown = district(vec![f("star", 600, 120, 5, &[])]);
        let revised = generate(&grown, &rules, now() + Duration::hours(2));
        assert!(matches!(&revised[..], [Change::Set(s)] if s.rule_id == boost.rule_id && s.evidence["views"] == 600.0));
    }

    #[test]
    fn a_low_performer_is_buried_thin_evidence_is_left_alone() {
        let facts = district(vec![f("dud", 400, 0, 5, &[]), f("new", 20, 0, 5, &[])]);
        let changes = generate(&facts, &Rules::default(), now());
        assert_eq!(sets(&changes), vec![("low_performer", "dud", RuleAction::Bury)]);
    }

    #[test]
    fn out_of_stock_is_hidden_until_restocked() {
        let facts = district(vec![f("gone", 400, 20, 0, &[])]);
        let changes = generate(&facts, &Rules::default(), now());
        assert_eq!(sets(&changes), vec![("out_of_stock", "gone", RuleAction::Hide)]);
        let rules = fold(&changes);
        let restocked = district(vec![f("gone", 400, 20, 3, &[])]);
        assert!(matches!(&generate(&restocked, &rules, now())[..], [Change::Expire(_)]));
    }

    #[test]
    fn featured_products_are_pinned_to_the_top_in_order() {
        let facts = district(vec![f("b-feat", 10, 0, 5, &["featured"]), f("a-feat", 10, 0, 5, &["Featured"])]);
        let changes = generate(&facts, &Rules::default(), now());
        let mut pins: Vec<(&str, Option<u32>)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Set(s) if s.action == RuleAction::Pin => {
                    Some((s.condition.product_id.as_ref()?.as_str(), s.position))
                }
                _ => None,
            })
            .collect();
        pins.sort_by_key(|p| p.1);
        assert_eq!(pins, vec![("a-feat", Some(1)), ("b-feat", Some(2))]);
    }

    #[test]
    fn an_admin_rule_expires_only_when_its_window_closes() {
        let admin = MerchandisingRuleSet {
            rule_id: Uuid::from_u128(1),
            action: RuleAction::Boost,
            condition: Condition { tags: vec!["wood".into()], ..Condition::default() },
            strength: 0.3,
            position: None,
            priority: 0,
            valid_from: now(),
            valid_until: Some(now() + Duration::hours(1)),
            auto: false,
            rule: "admin".into(),
            reason: "spring".into(),
            evidence: BTreeMap::new(),
            at: now(),
        };
        let rules = fold(&[Change::Set(admin)]);
        assert!(generate(&district(vec![]), &rules, now()).is_empty());
        let later = generate(&district(vec![]), &rules, now() + Duration::hours(1));
        assert!(matches!(&later[..], [Change::Expire(x)] if x.reason == "its window closed"), "{later:?}");
    }

    fn rule(
        id: u128,
        action: RuleAction,
        cond: Condition,
        strength: f64,
        priority: i32,
        position: Option<u32>,
    ) -> MerchandisingRuleSet {
        MerchandisingRuleSet {
            rule_id: Uuid::from_u128(id),
            action,
            condition: cond,
            strength,
            position,
            priority,
            valid_from: now(),
            valid_until: None,
            auto: false,
            rule: "admin".into(),
            reason: "test".into(),
            evidence: BTreeMap::new(),
            at: now(),
        }
    }

    fn product(id: &str) -> Condition {
        Condition { product_id: Some(ProductId::parse(id.to_string()).unwrap()), ..Condition::default() }
    }

    #[test]
    fn conflicts_resolve_in_the_documented_order() {
        let facts = [
            f("a", 10, 1, 5, &["wood"]),
            f("b", 10, 1, 5, &["wood"]),
            f("c", 10, 1, 5, &[]),
            f("d", 10, 1, 5, &["wood"]),
        ];
        let list: Vec<&Facts> = facts.iter().collect();
        let pct: HashMap<String, f64> = HashMap::new();
        let wood = Condition { tags: vec!["wood".into()], ..Condition::default() };
        let rules = [
            rule(1, RuleAction::Boost, wood.clone(), 0.4, 0, None),
            // b: a bury of higher priority beats the boost.
            rule(2, RuleAction::Bury, product("b"), 0.8, 5, None),
            // d: hidden, whatever else matches it.
            rule(3, RuleAction::Hide, product("d"), 0.0, 0, None),
            // a and c both want position 1: c's pin has the higher priority.
            rule(4, RuleAction::Pin, product("a"), 0.0, 1, Some(1)),
            rule(5, RuleAction::Pin, product("c"), 0.0, 2, Some(1)),
        ];
        let refs: Vec<&MerchandisingRuleSet> = rules.iter().collect();
        let s = shape("toys", &list, &refs, &pct);
        let (a, b, c) = (s[0].clone().unwrap(), s[1].clone().unwrap(), s[2].clone().unwrap());
        assert!(s[3].is_none(), "hidden");
        // Raw values: a +0.4, b −0.8, c 0 → normalized over the listing.
        assert_eq!((a.part, b.part), (1.0, 0.0));
        assert!((c.part - 0.8 / 1.2).abs() < 1e-12);
        assert_eq!(b.rules, vec![Uuid::from_u128(2)], "the losing boost is not named");
        assert_eq!((c.pin, a.pin), (Some(1), Some(2)));
        assert_eq!(a.rules, vec![Uuid::from_u128(1), Uuid::from_u128(4)]);
        // Placing pins over a score order [b, a, c]: c first, a second, b after.
        let order = place_pins(vec![("b", None), ("a", Some(2)), ("c", Some(1))], |x| x.1);
        assert_eq!(order.iter().map(|x| x.0).collect::<Vec<_>>(), ["c", "a", "b"]);
        // A filter keeps only what it matches.
        let only_wood = [rule(6, RuleAction::Filter, wood, 0.0, 0, None)];
        let refs: Vec<&MerchandisingRuleSet> = only_wood.iter().collect();
        let s = shape("toys", &list, &refs, &pct);
        assert_eq!(s.iter().map(Option::is_some).collect::<Vec<_>>(), [true, true, false, true]);
        // Nothing acting: every rules part is 0.
        assert!(shape("toys", &list, &[], &pct).iter().all(|x| x.as_ref().unwrap().part == 0.0));
    }
}
