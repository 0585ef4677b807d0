//! Offline evaluation of recommendations (issue 14, under way): a temporal leave-last-out split
//! per shopper, the full catalog ranked for each, and HR@k, NDCG@k and coverage for each ranker,
//! beside the baselines computed here — popularity, time-decayed popularity and item-kNN.
//!
//! The held-out item of a shopper is the last product they interacted with that they had not
//! interacted with before (a repeat cannot be a hit when seen items are left out of the ranking);
//! everything else is training data. Shoppers with fewer than two distinct products are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

/// One interaction: a shopper and a product at a time, with the signal's weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub shopper: String,
    pub product: String,
    pub at: DateTime<Utc>,
    pub weight: f64,
    /// A purchase (a repeat purchase may be recommended again; other seen products are not).
    pub purchase: bool,
}

/// The split: each shopper's training interactions and held-out product.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub train: Vec<Interaction>,
    /// Shopper → held-out product.
    pub held_out: BTreeMap<String, String>,
    pub catalog: BTreeSet<String>,
}

/// Splits by shopper, leaving out each one's last new product.
pub fn leave_last_out(mut all: Vec<Interaction>) -> Split {
    all.sort_by(|a, b| a.at.cmp(&b.at).then(a.shopper.cmp(&b.shopper)).then(a.product.cmp(&b.product)));
    let catalog: BTreeSet<String> = all.iter().map(|i| i.product.clone()).collect();
    let mut by_shopper: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (k, i) in all.iter().enumerate() {
        by_shopper.entry(&i.shopper).or_default().push(k);
    }
    let mut held: HashSet<usize> = HashSet::new();
    let mut held_out = BTreeMap::new();
    for (shopper, idx) in &by_shopper {
        let distinct: BTreeSet<&str> = idx.iter().map(|k| all[*k].product.as_str()).collect();
        if distinct.len() < 2 {
            continue;
        }
        // The last interaction with a product first seen there.
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for k in idx {
            first_seen.entry(all[*k].product.as_str()).or_insert(*k);
        }
        let (product, first) = first_seen.iter().max_by_key(|(_, k)| **k).map(|(p, k)| (*p, *k)).expect("two products");
        // Every interaction with it from its first on is held out.
        for k in idx.iter().filter(|k| **k >= first && all[**k].product == product) {
            held.insert(*k);
        }
        held_out.insert(shopper.to_string(), product.to_string());
    }
    let train = all.into_iter().enumerate().filter(|(k, _)| !held.contains(k)).map(|(_, i)| i).collect();
    Split { train, held_out, catalog }
}

/// Scores every product for a shopper (higher first); products the shopper saw are left out by
/// the evaluator.
pub trait Ranker {
    fn name(&self) -> &str;
    fn scores(&self, shopper: &str) -> HashMap<String, f64>;
}

/// Popularity: how many interactions each product had.
pub struct Popularity(HashMap<String, f64>);

impl Popularity {
    pub fn fit(train: &[Interaction]) -> Self {
        let mut counts = HashMap::new();
        for i in train {
            *counts.entry(i.product.clone()).or_insert(0.0) += 1.0;
        }
        Popularity(counts)
    }
}

impl Ranker for Popularity {
    fn name(&self) -> &str {
        "popularity"
    }
    fn scores(&self, _: &str) -> HashMap<String, f64> {
        self.0.clone()
    }
}

/// Time-decayed popularity: each interaction halves in weight every `half_life_days` before the
/// last training interaction.
pub struct DecayedPopularity(HashMap<String, f64>);

impl DecayedPopularity {
    pub fn fit(train: &[Interaction], half_life_days: f64) -> Self {
        let Some(end) = train.iter().map(|i| i.at).max() else { return DecayedPopularity(HashMap::new()) };
        let mut scores = HashMap::new();
        for i in train {
            let days = (end - i.at).num_milliseconds() as f64 / 86_400_000.0;
            *scores.entry(i.product.clone()).or_insert(0.0) += 0.5f64.powf(days / half_life_days);
        }
        DecayedPopularity(scores)
    }
}

impl Ranker for DecayedPopularity {
    fn name(&self) -> &str {
        "decayed popularity"
    }
    fn scores(&self, _: &str) -> HashMap<String, f64> {
        self.0.clone()
    }
}

/// Item-kNN: cosine similarity of products over the shoppers who interacted with them; a
/// product's score is the sum of its similarities to the shopper's products, over its `k` most
/// similar neighbours.
pub struct ItemKnn {
    seen: HashMap<String, BTreeSet<String>>,
    neighbours: HashMap<String, Vec<(String, f64)>>,
}

impl ItemKnn {
    pub fn fit(train: &[Interaction], k: usize) -> Self {
        let mut seen: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut by_item: HashMap<String, BTreeSet<String>> = HashMap::new();
        for i in train {
            seen.entry(i.shopper.clone()).or_default().insert(i.product.clone());
            by_item.entry(i.product.clone()).or_default().insert(i.shopper.clone());
        }
        let mut co: HashMap<(String, String), f64> = HashMap::new();
        for products in seen.values() {
            let v: Vec<&String> = products.iter().collect();
            for a in 0..v.len() {
                for b in a + 1..v.len() {
                    *co.entry((v[a].clone(), v[b].clone())).or_insert(0.0) += 1.0;
                }
            }
        }
        let mut neighbours: HashMap<String, Vec<(String, f64)>> = HashMap::new();
        for ((a, b), n) in co {
            let sim = n / ((by_item[&a].len() as f64) * (by_item[&b].len() as f64)).sqrt();
            neighbours.entry(a.clone()).or_default().push((b.clone(), sim));
            neighbours.entry(b).or_default().push((a, sim));
        }
        for list in neighbours.values_mut() {
            list.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            list.truncate(k);
        }
        ItemKnn { seen, neighbours }
    }
}

impl Ranker for ItemKnn {
    fn name(&self) -> &str {
        "item-kNN"
    }
    fn scores(&self, shopper: &str) -> HashMap<String, f64> {
        let mut scores = HashMap::new();
        for p in self.seen.get(shopper).into_iter().flatten() {
            for (q, sim) in self.neighbours.get(p).into_iter().flatten() {
                *scores.entry(q.clone()).or_insert(0.0) += sim;
            }
        }
        scores
    }
}

/// A ranker's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub ranker: String,
    pub shoppers: usize,
    pub hit_rate: f64,
    pub ndcg: f64,
    /// Share of the catalog that appears in someone's top k.
    pub coverage: f64,
}

/// Ranks the whole catalog for every held-out shopper (ties broken by product id; products the
/// shopper saw in training left out) and measures the held-out product's place.
pub fn evaluate(split: &Split, ranker: &dyn Ranker, k: usize) -> Figures {
    let mut seen: HashMap<&str, HashSet<&str>> = HashMap::new();
    for i in &split.train {
        seen.entry(&i.shopper).or_default().insert(&i.product);
    }
    let (mut hits, mut gain) = (0usize, 0.0f64);
    let mut shown: HashSet<String> = HashSet::new();
    for (shopper, target) in &split.held_out {
        let scores = ranker.scores(shopper);
        let none = HashSet::new();
        let mine = seen.get(shopper.as_str()).unwrap_or(&none);
        let mut ranked: Vec<(&String, f64)> = split
            .catalog
            .iter()
            .filter(|p| !mine.contains(p.as_str()))
            .map(|p| (p, scores.get(p).copied().unwrap_or(0.0)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        for (rank, (p, _)) in ranked.iter().take(k).enumerate() {
            shown.insert((*p).clone());
            if *p == target {
                hits += 1;
                gain += 1.0 / ((rank + 2) as f64).log2();
            }
        }
    }
    let n = split.held_out.len().max(1) as f64;
    Figures {
        ranker: ranker.name().to_string(),
        shoppers: split.held_out.len(),
        hit_rate: hits as f64 / n,
        ndcg: gain / n,
        coverage: shown.len() as f64 / split.catalog.len().max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn i(shopper: &str, product: &str, minute: u32) -> Interaction {
        Interaction {
            shopper: shopper.into(),
            product: product.into(),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap(),
            weight: 1.0,
            purchase: false,
        }
    }

    /// a: x, y then z; b: x, z; c: y then x; d: w alone (left out).
    fn fixture() -> Vec<Interaction> {
        vec![
            i("a", "x", 0),
            i("a", "y", 1),
            i("b", "x", 2),
            i("b", "z", 3),
            i("c", "y", 4),
            i("a", "z", 5),
            i("c", "x", 6),
            i("d", "w", 7),
        ]
    }

    #[test]
    fn each_shopper_holds_out_their_last_new_product() {
        let s = leave_last_out(fixture());
        let held: Vec<(&str, &str)> = s.held_out.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(held, vec![("a", "z"), ("b", "z"), ("c", "x")]);
        assert_eq!(s.train.len(), 5);
        assert_eq!(s.catalog.len(), 4);
    }

    #[test]
    fn the_figures_are_the_ones_computed_by_hand() {
        let s = leave_last_out(fixture());
        // Training: a{x,y}, b{x}, c{y}, d{w}: popularity x 2, y 2, w 1, z 0.
        // a (saw x, y) ranks w, z: z at rank 2 → hit, gain 1/log2(3).
        // b (saw x) ranks y, w, z: z at 3 → gain 1/log2(4) = 0.5.
        // c (saw y) ranks x, w, z: x at 1 → gain 1.
        let f = evaluate(&s, &Popularity::fit(&s.train), 10);
        assert_eq!((f.shoppers, f.hit_rate), (3, 1.0));
        let expected = (1.0 / 3f64.log2() + 0.5 + 1.0) / 3.0;
        assert!((f.ndcg - expected).abs() < 1e-12, "{f:?}");
        let top1 = evaluate(&s, &Popularity::fit(&s.train), 1);
        assert!((top1.hit_rate - 1.0 / 3.0).abs() < 1e-12 && (top1.ndcg - 1.0 / 3.0).abs() < 1e-12, "{top1:?}");
        // Coverage at 1: w (for a), y (for b), x (for c) of 4 products.
        assert_eq!(top1.coverage, 0.75);
        // Item-kNN: x and y co-occur (a), cos = 1/sqrt(2·2) = 0.5; for c (saw y) x scores 0.5 → rank 1.
        let knn = evaluate(&s, &ItemKnn::fit(&s.train, 50), 1);
        assert!(knn.hit_rate >= 1.0 / 3.0, "{knn:?}");
    }
}
