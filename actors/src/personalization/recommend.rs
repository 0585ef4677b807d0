//! mall's recommender: item-to-item transitions learned from the log, folded one interaction at
//! a time, so the same model serves the storefront (updated as signals arrive) and is measured
//! offline by `mall eval recommendations` (fed the training interactions in time order).
//!
//! - **Item to item.** Each shopper's last [`Params::window`] products are remembered. An
//!   interaction with product `b` adds to every remembered `a`: forward (`a → b`) the pair's
//!   weight, backward (`b → a`) a share [`Params::backward`] of it. A pair's weight is the
//!   geometric mean of its two signals' weights (a purchase counts more than a view — co-viewed,
//!   co-carted and co-purchased alike), halved for every [`Params::gap_half_life_hours`] between
//!   them (what a shopper looks at in one sitting belongs together more than a month apart).
//! - **Normalized for popularity.** `sim(a → b) = co(a → b) / (mass(a)^α · mass(b)^(1-α))`, the
//!   asymmetric cosine: a product everyone touches is not everyone's neighbour.
//! - **The shopper's score** of `q` is `Σ_j h^j · w_j · sim(a_j → q)` over their remembered
//!   products from the latest (`j = 0`), `h` = [`Params::history_decay`].
//! - **Thin history.** Products with less than [`Params::thin`] interaction mass take the cosine
//!   of their content vectors (the search embedding) with the shopper's last products instead.
//! - **Fallback.** Time-decayed popularity (half-life [`Params::popularity_half_life_days`])
//!   breaks ties and is all a new shopper gets.
//! - Nothing the shopper bought comes back unless it is a repeat purchase (shoppers buy it again:
//!   at least one in five of its purchases is a repeat); the caller hides what is out of stock.
//!
//! Every pick carries its reason: the product it follows, the product it resembles, or its
//! popularity. Deterministic: ties go to the smaller product id.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use super::eval::{Interaction, Ranker};
use crate::executors::embedder::cosine;

/// The model's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub window: usize,
    pub gap_half_life_hours: f64,
    pub backward: f64,
    pub alpha: f64,
    pub history_decay: f64,
    pub thin: f64,
    pub content_weight: f64,
    pub popularity_half_life_days: f64,
    pub fallback_weight: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window: 20,
            gap_half_life_hours: 24.0,
            backward: 0.5,
            alpha: 0.5,
            history_decay: 0.8,
            thin: 3.0,
            content_weight: 0.1,
            popularity_half_life_days: 7.0,
            fallback_weight: 1e-3,
        }
    }
}

/// Why a product was picked.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Shoppers who looked at `product` went on to this one.
    After { product: String },
    /// It resembles `product` (little history of its own yet).
    Similar { product: String },
    /// Popular lately.
    Popular,
}

impl Reason {
    /// The reason in words.
    pub fn text(&self) -> String {
        match self {
            Reason::After { product } => format!("shoppers who looked at {product} went on to this"),
            Reason::Similar { product } => format!("like {product}, which you looked at"),
            Reason::Popular => "popular lately".into(),
        }
    }
}

/// How many of the shopper's latest products are compared by likeness with products of thin
/// history.
const CONTENT_HISTORY: usize = 3;

/// Why a product scored, by item id (see [`Model::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Popular,
    After(u32),
    Similar(u32),
    /// Bought already, and not a repeat purchase: never picked.
    Bought,
}

/// Every product's score for one shopper, by item id.
#[derive(Debug, Clone)]
pub struct Scores {
    pub score: Vec<f64>,
    pub why: Vec<Why>,
}

/// A candidate pick, ordered best first: the higher score, then the smaller name ("less" is
/// better, so a max-heap's top is the worst kept).
struct Candidate<'a>(f64, u32, &'a str);

impl PartialEq for Candidate<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Candidate<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then_with(|| self.2.cmp(o.2))
    }
}

/// One recommended product.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub product: String,
    pub score: f64,
    pub reason: Reason,
}

#[derive(Debug, Default)]
struct Item {
    name: String,
    /// The sum of its interactions' weights.
    mass: f64,
    /// Decayed popularity as of `popularity_at`.
    popularity: f64,
    popularity_at: Option<DateTime<Utc>>,
    /// `mass^α` and `mass^(1-α)`, kept with the mass (read on every score).
    norm_from: f64,
    norm_to: f64,
    /// Forward and backward transitions to other items.
    next: HashMap<u32, f32>,
    purchases: u32,
    purchasers: u32,
    vector: Option<Vec<f32>>,
}

#[derive(Debug, Default)]
struct Shopper {
    /// Remembered products, the latest last: (item, time, weight).
    recent: VecDeque<(u32, DateTime<Utc>, f64)>,
    bought: HashSet<u32>,
}

/// The recommender's state.
#[derive(Debug, Default)]
pub struct Model {
    params: Params,
    ids: HashMap<String, u32>,
    items: Vec<Item>,
    shoppers: HashMap<String, Shopper>,
    latest: Option<DateTime<Utc>>,
    thin_with_vector: HashSet<u32>,
    /// Interactions folded (the popularity cache's version).
    folded: u64,
    /// Every item's decayed popularity relative to the most popular, as of `folded`.
    popularity_cache: std::sync::Mutex<(u64, std::sync::Arc<Vec<f64>>)>,
}

fn hours(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (a - b).num_milliseconds().unsigned_abs() as f64 / 3_600_000.0
}

impl Model {
    pub fn new(params: Params) -> Self {
        Model { params, ..Model::default() }
    }

    /// The model fed `train` in time order.
    pub fn fit(train: &[Interaction], params: Params) -> Self {
        let mut m = Model::new(params);
        for i in train {
            m.observe(i);
        }
        m
    }

    fn id(&mut self, product: &str) -> u32 {
        if let Some(id) = self.ids.get(product) {
            return *id;
        }
        let id = self.items.len() as u32;
        self.items.push(Item { name: product.to_string(), ..Item::default() });
        self.ids.insert(product.to_string(), id);
        id
    }

    fn refresh_thin(&mut self, id: u32) {
        let item = &self.items[id as usize];
        if item.vector.is_some() && item.mass < self.params.thin {
            self.thin_with_vector.insert(id);
        } else {
            self.thin_with_vector.remove(&id);
        }
    }

    /// Sets a product's content vector (its search embedding).
    pub fn set_vector(&mut self, product: &str, vector: Vec<f32>) {
        let id = self.id(product);
        self.items[id as usize].vector = Some(vector);
        self.refresh_thin(id);
    }

    /// The latest interaction's time.
    pub fn latest(&self) -> Option<DateTime<Utc>> {
        self.latest
    }

    /// How many shoppers and products the model knows.
    pub fn size(&self) -> (usize, usize) {
        (self.shoppers.len(), self.items.len())
    }

    /// Folds one interaction. Negative weights (a bounce, a removal) are ignored here.
    pub fn observe(&mut self, i: &Interaction) {
        if !(i.weight > 0.0 && i.weight.is_finite()) {
            return;
        }
        let b = self.id(&i.product);
        let p = self.params.clone();
        self.latest = Some(self.latest.map_or(i.at, |l| l.max(i.at)));
        // Decayed popularity, relative to the later of the two times.
        self.folded += 1;
        let item = &mut self.items[b as usize];
        item.mass += i.weight;
        item.norm_from = item.mass.powf(p.alpha);
        item.norm_to = item.mass.powf(1.0 - p.alpha);
        let half = p.popularity_half_life_days * 24.0;
        item.popularity = match item.popularity_at {
            Some(at) if at > i.at => item.popularity + i.weight * (-hours(at, i.at) / half).exp2(),
            Some(at) => item.popularity * (-hours(i.at, at) / half).exp2() + i.weight,
            None => i.weight,
        };
        item.popularity_at = Some(item.popularity_at.map_or(i.at, |at| at.max(i.at)));
        self.refresh_thin(b);
        let shopper = self.shoppers.entry(i.shopper.clone()).or_default();
        if i.purchase {
            let item = &mut self.items[b as usize];
            item.purchases += 1;
            if shopper.bought.insert(b) {
                item.purchasers += 1;
            }
        }
        let mut pairs = Vec::with_capacity(shopper.recent.len());
        for (a, at, w) in &shopper.recent {
            if *a != b {
                let weight = (w * i.weight).sqrt() * (-hours(i.at, *at) / p.gap_half_life_hours).exp2();
                pairs.push((*a, weight));
            }
        }
        if let Some(k) = shopper.recent.iter().position(|(a, _, _)| *a == b) {
            let (_, _, w) = shopper.recent.remove(k).expect("present");
            shopper.recent.push_back((b, i.at, w.max(i.weight)));
        } else {
            shopper.recent.push_back((b, i.at, i.weight));
            if shopper.recent.len() > p.window {
                shopper.recent.pop_front();
            }
        }
        for (a, w) in pairs {
            *self.items[a as usize].next.entry(b).or_insert(0.0) += w as f32;
            *self.items[b as usize].next.entry(a).or_insert(0.0) += (w * p.backward) as f32;
        }
    }

    fn repeatable(&self, id: u32) -> bool {
        let item = &self.items[id as usize];
        item.purchasers > 0 && 5 * (item.purchases - item.purchasers) >= item.purchases
    }

    fn popularity_at(&self, id: u32, now: DateTime<Utc>) -> f64 {
        let item = &self.items[id as usize];
        item.popularity_at.map_or(0.0, |at| {
            item.popularity * (-hours(now, at).max(0.0) / (self.params.popularity_half_life_days * 24.0)).exp2()
        })
    }

    /// Every item's decayed popularity relative to the most popular (computed once per change).
    fn relative_popularity(&self) -> std::sync::Arc<Vec<f64>> {
        let mut cache = self.popularity_cache.lock().expect("popularity cache");
        if cache.0 != self.folded || cache.1.len() != self.items.len() {
            let now = self.latest.unwrap_or_default();
            let mut pops: Vec<f64> = (0..self.items.len() as u32).map(|i| self.popularity_at(i, now)).collect();
            let max = pops.iter().copied().fold(0.0, f64::max);
            if max > 0.0 {
                pops.iter_mut().for_each(|x| *x /= max);
            }
            *cache = (self.folded, std::sync::Arc::new(pops));
        }
        cache.1.clone()
    }

    /// Every product's score for `shopper`, by the product's id ([`Model::id_of`]), with the
    /// reason that contributed most (0 and [`Why::Popular`] for products that neither follow,
    /// resemble nor are popular).
    pub fn scores(&self, shopper: &str) -> Scores {
        let p = &self.params;
        let n = self.items.len();
        let mut out = Scores { score: vec![0.0; n], why: vec![Why::Popular; n] };
        let mut top = vec![0.0f64; n];
        for (score, pop) in out.score.iter_mut().zip(self.relative_popularity().iter()) {
            *score = p.fallback_weight * pop;
        }
        let Some(s) = self.shoppers.get(shopper) else { return out };
        let mut h = 1.0;
        for (k, (a, _, w)) in s.recent.iter().rev().enumerate() {
            let item = &self.items[*a as usize];
            let mass_a = item.norm_from.max(1e-9);
            for (q, co) in &item.next {
                let q = *q as usize;
                let mass_q = self.items[q].norm_to.max(1e-9);
                let add = h * w * f64::from(*co) / (mass_a * mass_q);
                out.score[q] += add;
                if add > top[q] {
                    out.why[q] = Why::After(*a);
                    top[q] = add;
                }
            }
            // Likeness, from the latest few products only (each costs a pass over the thin ones).
            if k < CONTENT_HISTORY
                && let Some(va) = &item.vector
            {
                for q in &self.thin_with_vector {
                    let Some(vq) = &self.items[*q as usize].vector else { continue };
                    let add = h * w * p.content_weight * f64::from(cosine(va, vq)).max(0.0);
                    if add <= 0.0 || q == a {
                        continue;
                    }
                    let q = *q as usize;
                    out.score[q] += add;
                    if add > top[q] {
                        out.why[q] = Why::Similar(*a);
                        top[q] = add;
                    }
                }
            }
            h *= p.history_decay;
        }
        for b in &s.bought {
            if !self.repeatable(*b) {
                out.score[*b as usize] = 0.0;
                out.why[*b as usize] = Why::Bought;
            }
        }
        out
    }

    /// The reason of a pick, in full.
    pub fn reason(&self, why: Why) -> Reason {
        match why {
            Why::After(a) => Reason::After { product: self.items[a as usize].name.clone() },
            Why::Similar(a) => Reason::Similar { product: self.items[a as usize].name.clone() },
            Why::Popular | Why::Bought => Reason::Popular,
        }
    }

    /// The shopper's top `k` products among those `allowed` (in stock, say), best first.
    pub fn recommend(&self, shopper: &str, k: usize, allowed: impl Fn(&str) -> bool) -> Vec<Pick> {
        self.picks(&self.scores(shopper), k, allowed)
    }

    /// [`Model::recommend`] from scores already computed.
    pub fn picks(&self, scores: &Scores, k: usize, allowed: impl Fn(&str) -> bool) -> Vec<Pick> {
        // The best `k` allowed in one pass: a heap of the best so far, its top the worst kept;
        // `allowed` is asked only of candidates that would enter it.
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
        for (id, (score, why)) in scores.score.iter().zip(&scores.why).enumerate() {
            if *score <= 0.0 || *why == Why::Bought || k == 0 {
                continue;
            }
            let c = Candidate(*score, id as u32, &self.items[id].name);
            if heap.len() == k && heap.peek().is_some_and(|worst| c >= *worst) {
                continue;
            }
            if !allowed(c.2) {
                continue;
            }
            heap.push(c);
            if heap.len() > k {
                heap.pop();
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|c| Pick { product: c.2.to_string(), score: c.0, reason: self.reason(scores.why[c.1 as usize]) })
            .collect()
    }

    /// A product's id in [`Model::scores`].
    pub fn id_of(&self, product: &str) -> Option<u32> {
        self.ids.get(product).copied()
    }

    /// The product of an id.
    pub fn name_of(&self, id: u32) -> &str {
        &self.items[id as usize].name
    }

    /// The products a shopper interacted with lately, the latest first.
    pub fn recent(&self, shopper: &str) -> Vec<&str> {
        self.shoppers
            .get(shopper)
            .map(|s| s.recent.iter().rev().map(|(a, _, _)| self.items[*a as usize].name.as_str()).collect())
            .unwrap_or_default()
    }
}

impl Ranker for Model {
    fn name(&self) -> &str {
        "mall"
    }
    fn scores(&self, shopper: &str) -> HashMap<String, f64> {
        let scores = Model::scores(self, shopper);
        scores
            .score
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0.0)
            .map(|(id, s)| (self.items[id].name.clone(), *s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::personalization::eval::{self, DecayedPopularity, ItemKnn, Popularity};
    use crate::personalization::synthetic::{self, Shape};

    fn i(shopper: &str, product: &str, minute: i64, weight: f64, purchase: bool) -> Interaction {
        Interaction {
            shopper: shopper.into(),
            product: product.into(),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minute),
            weight,
            purchase,
        }
    }

    #[test]
    fn what_others_did_next_comes_first_with_its_reason() {
        // Given two shoppers who went from the kettle to the teapot, and one who looked at mugs a lot;
        let mut m = Model::new(Params::default());
        for s in ["a", "b"] {
            m.observe(&i(s, "kettle", 0, 1.0, false));
            m.observe(&i(s, "teapot", 5, 4.0, false));
        }
        for k in 0..12 {
            m.observe(&i("c", "mug", 10 + k, 1.0, false));
        }
        // when a new shopper looks at the kettle,
        m.observe(&i("d", "kettle", 20, 1.0, false));
        let picks = m.recommend("d", 3, |_| true);
        // then the teapot comes first, because of the kettle, and the popular mug after it;
        assert_eq!(picks[0].product, "teapot");
        assert_eq!(picks[0].reason, Reason::After { product: "kettle".into() });
        assert_eq!(picks[1].product, "mug");
        assert_eq!(picks[1].reason, Reason::Popular);
        // a shopper the model never saw gets what is popular, the mug first;
        let fresh = m.recommend("nobody", 1, |_| true);
        assert_eq!((fresh[0].product.as_str(), &fresh[0].reason), ("mug", &Reason::Popular));
        // and what the caller hides (out of stock) is never picked.
        assert!(m.recommend("d", 3, |p| p != "teapot").iter().all(|p| p.product != "teapot"));
    }

    #[test]
    fn a_bought_product_comes_back_only_when_shoppers_buy_it_again() {
        let mut m = Model::new(Params::default());
        // Coffee is bought again and again; the grinder once each.
        for s in ["a", "b", "c"] {
            m.observe(&i(s, "grinder", 0, 6.0, true));
            m.observe(&i(s, "coffee", 1, 6.0, true));
            m.observe(&i(s, "coffee", 30, 6.0, true));
        }
        m.observe(&i("d", "coffee", 40, 6.0, true));
        m.observe(&i("d", "grinder", 41, 6.0, true));
        let picks: Vec<String> = m.recommend("d", 5, |_| true).into_iter().map(|p| p.product).collect();
        assert!(picks.contains(&"coffee".to_string()), "{picks:?}");
        assert!(!picks.contains(&"grinder".to_string()), "{picks:?}");
    }

    #[test]
    fn a_product_without_history_is_found_by_its_likeness() {
        let mut m = Model::new(Params::default());
        let v = |x: f32, y: f32| vec![x, y];
        m.set_vector("red kite", v(1.0, 0.0));
        m.set_vector("blue kite", v(0.95, 0.05));
        m.set_vector("spoon", v(0.0, 1.0));
        m.observe(&i("a", "red kite", 0, 1.0, false));
        let picks = m.recommend("a", 2, |_| true);
        assert_eq!(picks[0].product, "blue kite");
        assert_eq!(picks[0].reason, Reason::Similar { product: "red kite".into() });
        assert!(picks.iter().all(|p| p.product != "spoon"), "{picks:?}");
    }

    #[test]
    fn on_synthetic_shoppers_it_beats_the_baselines() {
        let split = eval::leave_last_out(synthetic::interactions(7, Shape::default()));
        let f = |r: &dyn Ranker| eval::evaluate(&split, r, 10);
        let popularity = f(&Popularity::fit(&split.train));
        let decayed = f(&DecayedPopularity::fit(&split.train, 7.0));
        let knn = f(&ItemKnn::fit(&split.train, 50));
        let mall = f(&Model::fit(&split.train, Params::default()));
        eprintln!("{popularity:?}\n{decayed:?}\n{knn:?}\n{mall:?}");
        assert!(mall.ndcg >= 2.0 * popularity.ndcg, "{mall:?} vs {popularity:?}");
        assert!(mall.ndcg >= 1.1 * knn.ndcg, "{mall:?} vs {knn:?}");
    }
}
