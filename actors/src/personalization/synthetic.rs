//! Synthetic shoppers, seeded: products in categories with long-tailed popularity and launch
//! dates, a few companions per product (what shoppers go on to look at next), and shoppers with
//! favourite categories who come back in sittings. Views mostly; some carts and purchases. The
//! evaluator's figures on it are measured, not promised: it stands in for a store's log where no
//! public data set can be fetched, and says nothing about real data by itself.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::eval::Interaction;

/// The shape of the data set.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub shoppers: usize,
    pub products: usize,
    /// Products per category.
    pub per_category: usize,
    /// The chance that the next product is a companion of the current one.
    pub follow: f64,
    pub days: i64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { shoppers: 2_000, products: 600, per_category: 30, follow: 0.5, days: 90 }
    }
}

struct Product {
    category: usize,
    weight: f64,
    launched: i64,
    companions: [usize; 3],
}

/// Draws an index by weight among `candidates`.
fn draw(rng: &mut StdRng, candidates: &[usize], weight: impl Fn(usize) -> f64) -> Option<usize> {
    let total: f64 = candidates.iter().map(|c| weight(*c)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    for c in candidates {
        x -= weight(*c);
        if x <= 0.0 {
            return Some(*c);
        }
    }
    candidates.last().copied()
}

/// Interactions of `shape.shoppers` shoppers over `shape.days` days, the same for the same seed.
pub fn interactions(seed: u64, shape: Shape) -> Vec<Interaction> {
    let mut rng = StdRng::seed_from_u64(seed);
    let categories = shape.products.div_ceil(shape.per_category.max(1)).max(1);
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut products: Vec<Product> = (0..shape.products)
        .map(|i| {
            let rank = (i / categories + 1) as f64;
            let launched = if rng.random::<f64>() < 0.3 { rng.random_range(0..shape.days.max(1)) } else { 0 };
            Product { category: i % categories, weight: 1.0 / rank.powf(0.9), launched, companions: [i; 3] }
        })
        .collect();
    let by_category: Vec<Vec<usize>> =
        (0..categories).map(|c| (0..shape.products).filter(|p| products[*p].category == c).collect()).collect();
    for p in 0..shape.products {
        let own = &by_category[products[p].category];
        for k in 0..3 {
            // Mostly the same category; one in five elsewhere.
            let pool = if rng.random::<f64>() < 0.8 { own } else { &by_category[rng.random_range(0..categories)] };
            products[p].companions[k] = pool[rng.random_range(0..pool.len())];
        }
    }
    let all: Vec<usize> = (0..shape.products).collect();
    // Launched by `day`, fresher products drawn more.
    let weight = |products: &[Product], p: usize, day: i64| {
        let age = day - products[p].launched;
        if age < 0 { 0.0 } else { products[p].weight * (1.0 + 2.0 * (-(age as f64) / 14.0).exp()) }
    };
    let mut out = Vec::new();
    for s in 0..shape.shoppers {
        let shopper = format!("shopper-{s}");
        let favourites: Vec<usize> = (0..rng.random_range(1..=2)).map(|_| rng.random_range(0..categories)).collect();
        let sittings = 1 + (rng.random::<f64>().ln() / 0.6f64.ln()).floor().min(8.0) as usize;
        let mut days: Vec<i64> = (0..sittings).map(|_| rng.random_range(0..shape.days.max(1))).collect();
        days.sort();
        for day in days {
            let mut at = start + Duration::days(day) + Duration::minutes(rng.random_range(0..1440));
            let pool = if rng.random::<f64>() < 0.7 {
                &by_category[favourites[rng.random_range(0..favourites.len())]]
            } else {
                &all
            };
            let Some(mut current) = draw(&mut rng, pool, |p| weight(&products, p, day)) else { continue };
            for _ in 0..rng.random_range(2..=8) {
                let (w, purchase) = match rng.random::<f64>() {
                    x if x < 0.05 => (6.0, true),
                    x if x < 0.15 => (4.0, false),
                    _ => (1.0, false),
                };
                out.push(Interaction {
                    shopper: shopper.clone(),
                    product: format!("p-{current}"),
                    at,
                    weight: w,
                    purchase,
                });
                at += Duration::minutes(rng.random_range(1..20));
                let r = rng.random::<f64>();
                let next = if r < shape.follow {
                    let c = products[current].companions[rng.random_range(0..3)];
                    (weight(&products, c, day) > 0.0).then_some(c)
                } else if r < shape.follow + 0.3 {
                    draw(&mut rng, &by_category[products[current].category], |p| weight(&products, p, day))
                } else {
                    draw(&mut rng, &all, |p| weight(&products, p, day))
                };
                current = next.unwrap_or(current);
            }
        }
    }
    out
}
