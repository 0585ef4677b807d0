//! The ranker: each district's products in storefront order, computed off the request path.
//!
//! A background task waits for the catalog projection to move, reads the catalog tables and
//! their checkpoint together (one snapshot), scores every in-stock product of every district
//! with the parts that are the same for every shopper, and publishes the result; requests only
//! look it up (a shopper's request adds their personalization part and re-sorts). Beside
//! PostgreSQL the result is also written to the `district_rankings` table, for other readers.
//! Under a stream of writes the ranker recomputes at most every few tens of milliseconds, and
//! never spends more than about a third of its time doing so.
//!
//! Scores (`w_p × performance + w_r × rules + w_t × recency` here; `w_s × personalization` per
//! shopper, in `storefront`), the weights 0.4, 0.3, 0.2 and 0.1 unless configured
//! (`--score-weights`, for every district or one), each part in [0, 1] over the district:
//! - performance: seven tenths the conversion rate (carts or purchases per view) shrunk towards
//!   the district's prior — the same measures the product actors decide with
//!   (`mall_events::measures`), so one view and one purchase cannot top a listing — divided by
//!   the best in the district; three tenths popularity, `ln(1 + views + carts + purchases)`
//!   relative to the district's most popular;
//! - merchandising rules: the active rules of `merchandising_rules` applied in their conflict
//!   order (`mall_actors::merchandising`): hidden and filtered products leave the listing, the
//!   winning boost or bury sets the part (normalized over the district), pins place products
//!   after sorting; each product names the rules that acted on it;
//! - recency: half how late in the log the product was listed, relative to the district's
//!   newest; half the recency of its demand, halving for every week between its last signal and
//!   the district's latest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use mall_actors::merchandising::{self, Facts};
use mall_events::domain::MerchandisingRuleSet;
use mall_events::ids::Position;
use mall_events::measures::{self, Prior};
use mall_projections::catalog::{DISTRICTS, PRODUCT_METRICS, PRODUCTS};
use mall_projections::change::Row;
use mall_projections::merchandising::{DISTRICT_ORDERINGS, MERCHANDISING_RULES};
use serde_json::Value;
use tokio::sync::watch;

use crate::readside::ReadSide;

/// The shortest pause between two rankings.
const MIN_PAUSE: Duration = Duration::from_millis(20);

pub fn n(r: &Row, k: &str) -> f64 {
    r.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

/// A count column (0 when absent or not a count).
fn c(r: &Row, k: &str) -> u64 {
    r.get(k).and_then(Value::as_u64).unwrap_or(0)
}

pub fn s<'a>(r: &'a Row, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The weights of the score's parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub performance: f64,
    pub rules: f64,
    pub personalization: f64,
    pub recency: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { performance: 0.4, rules: 0.3, personalization: 0.2, recency: 0.1 }
    }
}

impl Weights {
    /// `P,R,S,T` (performance, rules, personalization, recency): non-negative, scaled to sum 1.
    pub fn parse(s: &str) -> Result<Weights, String> {
        let v: Vec<f64> = s
            .split(',')
            .map(|x| x.trim().parse::<f64>().map_err(|_| format!("{x:?} is not a number")))
            .collect::<Result<_, _>>()?;
        let [p, r, pe, t] = v[..] else { return Err("four weights: performance,rules,personalization,recency".into()) };
        if v.iter().any(|x| !x.is_finite() || *x < 0.0) || v.iter().sum::<f64>() <= 0.0 {
            return Err("weights are non-negative numbers, not all zero".into());
        }
        let sum = p + r + pe + t;
        Ok(Weights { performance: p / sum, rules: r / sum, personalization: pe / sum, recency: t / sum })
    }
}

impl From<mall_events::domain::OrderingWeights> for Weights {
    fn from(w: mall_events::domain::OrderingWeights) -> Self {
        Weights { performance: w.performance, rules: w.rules, personalization: w.personalization, recency: w.recency }
    }
}

impl From<Weights> for mall_events::domain::OrderingWeights {
    fn from(w: Weights) -> Self {
        mall_events::domain::OrderingWeights {
            performance: w.performance,
            rules: w.rules,
            personalization: w.personalization,
            recency: w.recency,
        }
    }
}

impl Weights {
    /// A product's score under these weights, from its parts.
    pub fn score(&self, r: &Ranked, personalization: f64) -> f64 {
        self.performance * r.performance
            + self.rules * r.rules
            + self.personalization * personalization
            + self.recency * r.recency
    }
}

/// A district's ordering test under way: its id, name and the challenger's weights.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderingTest {
    pub test_id: uuid::Uuid,
    pub name: String,
    pub challenger: Weights,
}

/// The score's weights: every district's, and those of districts configured apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreConfig {
    pub default: Weights,
    pub districts: HashMap<String, Weights>,
}

impl ScoreConfig {
    pub fn of(&self, district: &str) -> Weights {
        self.districts.get(district).copied().unwrap_or(self.default)
    }
}

/// One in-stock product with the parts of its score that do not depend on the shopper.
pub struct Ranked {
    pub product: Row,
    /// Its id and district (read often: the row is a map).
    pub id: String,
    pub district: String,
    /// Its id in the recommender's model, once known (ids there never change).
    pub model_id: std::sync::OnceLock<u32>,
    /// The product's fields as every shopper sees them, serialized once: the inside of a JSON
    /// object, without braces (see `storefront::write_product`).
    pub fields: String,
    /// The experiment under way and its challenger copy.
    pub experiment: Option<(uuid::Uuid, String)>,
    /// The price test under way and its challenger price.
    pub price_test: Option<(uuid::Uuid, String)>,
    /// `w_p × performance + w_r × rules + w_t × recency`.
    pub score: f64,
    pub performance: f64,
    pub rules: f64,
    pub recency: f64,
    /// The district's weights.
    pub weights: Weights,
    /// The merchandising rules that acted on it.
    pub applied: Vec<uuid::Uuid>,
    /// The position a pin gives it, from 1.
    pub pin: Option<u32>,
}

/// The rankings at one position of the catalog projection.
#[derive(Default)]
pub struct Rankings {
    /// The catalog checkpoint the rankings reflect.
    pub position: Position,
    /// Each district's in-stock products, best first.
    pub ranked: HashMap<String, Arc<Vec<Ranked>>>,
    /// Where each in-stock product is: its district and place in `ranked`.
    pub index: HashMap<String, (String, usize)>,
    /// Anonymous pages, serialized on first use: (district, page, limit) → body.
    pub pages: Mutex<HashMap<(String, usize, usize), Bytes>>,
    /// When a rule's window opens or closes next (the rankings are made again then).
    pub next_change: Option<DateTime<Utc>>,
    /// Each district's ordering test under way.
    pub tests: HashMap<String, OrderingTest>,
}

impl Rankings {
    /// Every ranked product, district by district.
    pub fn all(&self) -> impl Iterator<Item = &Ranked> {
        self.ranked.values().flat_map(|r| r.iter())
    }
}

/// Ranks one district's products under the active `rules`.
fn rank(
    slug: &str,
    products: Vec<Row>,
    metrics: &HashMap<String, Row>,
    district: Option<&Row>,
    rules: &[&MerchandisingRuleSet],
    weights: Weights,
) -> Vec<Ranked> {
    let newest = products.iter().map(|p| n(p, "listed_position")).fold(1.0, f64::max);
    // The counts of a row, as the shared measures take them.
    let counts = |r: Option<&Row>| r.map_or((0, 0, 0), |r| (c(r, "views"), c(r, "carts"), c(r, "purchases")));
    let (dv, dcarts, dpurchases) = counts(district);
    let prior = Prior::district(dv, dcarts, dpurchases);
    let posterior = |p: &Row| {
        let (views, carts, purchases) = counts(metrics.get(s(p, "product_id")));
        prior.update(measures::conversions(views, carts, purchases), views).mean()
    };
    let demand = |p: &Row| {
        let (views, carts, purchases) = counts(metrics.get(s(p, "product_id")));
        ((views + carts + purchases) as f64).ln_1p()
    };
    let last_signal = |p: &Row| {
        metrics
            .get(s(p, "product_id"))
            .and_then(|m| m.get("last_signal_at"))
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
    };
    let products: Vec<Row> = products.into_iter().filter(|p| s(p, "status") == "in_stock").collect();
    let posts: Vec<f64> = products.iter().map(posterior).collect();
    let best = posts.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let demands: Vec<f64> = products.iter().map(demand).collect();
    let most = demands.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let latest = products.iter().filter_map(last_signal).max();
    let facts: Vec<Facts> =
        products.iter().map(|p| super::merchandising::facts_of(p, metrics.get(s(p, "product_id")))).collect();
    let perf = merchandising::performance(&facts);
    let shaped = merchandising::shape(slug, &facts.iter().collect::<Vec<_>>(), rules, &perf.percentile);
    let mut ranked: Vec<Ranked> = products
        .into_iter()
        .zip(posts)
        .zip(demands)
        .zip(shaped)
        .filter_map(|(((p, post), demand), shaping)| {
            let shaping = shaping?;
            let performance = 0.7 * post / best + 0.3 * demand / most;
            let rules = shaping.part;
            let demand_recency = match (last_signal(&p), latest) {
                (Some(at), Some(latest)) => ((at - latest).num_milliseconds() as f64 / (7.0 * 86_400_000.0)).exp2(),
                _ => 0.0,
            };
            let recency = 0.5 * n(&p, "listed_position") / newest + 0.5 * demand_recency;
            let score = weights.performance * performance + weights.rules * rules + weights.recency * recency;
            let fields = serde_json::json!({
                "product_id": s(&p, "product_id"), "district": s(&p, "district"), "title": s(&p, "title"),
                "tags": p.get("tags"), "currency": s(&p, "currency"), "stock": p.get("stock"),
                "image_url": p.get("image_url"), "seo_title": p.get("seo_title"), "rules": shaping.rules,
            })
            .to_string();
            let fields = fields[1..fields.len() - 1].to_string();
            let experiment = match (
                p.get("experiment_id").and_then(Value::as_str).and_then(|x| x.parse().ok()),
                p.get("challenger").and_then(Value::as_str),
            ) {
                (Some(x), Some(c)) => Some((x, c.to_string())),
                _ => None,
            };
            let price_test = match (
                p.get("price_test_id").and_then(Value::as_str).and_then(|x| x.parse().ok()),
                p.get("challenger_price").and_then(Value::as_str),
            ) {
                (Some(x), Some(c)) => Some((x, c.to_string())),
                _ => None,
            };
            Some(Ranked {
                id: s(&p, "product_id").to_string(),
                district: s(&p, "district").to_string(),
                model_id: std::sync::OnceLock::new(),
                product: p,
                fields,
                experiment,
                price_test,
                score,
                performance,
                rules,
                recency,
                weights,
                applied: shaping.rules,
                pin: shaping.pin,
            })
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    merchandising::place_pins(ranked, |r| r.pin)
}

/// The active rules (and when the next window opens or closes), from `merchandising_rules`.
async fn active_rules(
    read: &ReadSide,
    now: DateTime<Utc>,
) -> Result<(Vec<MerchandisingRuleSet>, Option<DateTime<Utc>>), mall_projections::runner::SinkError> {
    let rows = match read.get("merchandising") {
        Some(_) => read.rows("merchandising", MERCHANDISING_RULES, crate::readside::Filter::All).await?,
        None => Vec::new(),
    };
    let rules: Vec<MerchandisingRuleSet> =
        rows.iter().filter(|r| s(r, "status") == "active").filter_map(super::merchandising::rule_of_row).collect();
    let next = rules.iter().flat_map(|r| [Some(r.valid_from), r.valid_until]).flatten().filter(|t| *t > now).min();
    let active = rules.into_iter().filter(|r| r.valid_from <= now && r.valid_until.is_none_or(|u| now < u)).collect();
    Ok((active, next))
}

/// Reads the catalog at one position and ranks every district.
async fn build(read: &ReadSide, config: &ScoreConfig) -> Result<Rankings, mall_projections::runner::SinkError> {
    let now = Utc::now();
    let (rules, next_change) = active_rules(read, now).await?;
    // Layouts adopted by ordering tests (over the configured weights), and tests under way.
    let orderings = match read.get("merchandising") {
        Some(_) => read.rows("merchandising", DISTRICT_ORDERINGS, crate::readside::Filter::All).await?,
        None => Vec::new(),
    };
    let weights_of = |v: Option<&Value>| {
        v.filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value::<mall_events::domain::OrderingWeights>(v.clone()).ok())
            .filter(|w| w.valid())
            .map(Weights::from)
    };
    let mut config = config.clone();
    let mut tests = HashMap::new();
    for o in &orderings {
        let district = s(o, "district").to_string();
        if let Some(layout) = weights_of(o.get("layout")) {
            config.districts.insert(district.clone(), layout);
        }
        if let (Some(id), Some(challenger)) =
            (o.get("test_id").and_then(Value::as_str).and_then(|t| t.parse().ok()), weights_of(o.get("challenger")))
        {
            tests.insert(district, OrderingTest { test_id: id, name: s(o, "test_name").to_string(), challenger });
        }
    }
    let config = &config;
    let (mut tables, position) = read.snapshot("catalog", &[PRODUCTS, PRODUCT_METRICS, DISTRICTS]).await?;
    let districts: HashMap<String, Row> =
        tables.pop().unwrap_or_default().into_iter().map(|d| (s(&d, "slug").to_string(), d)).collect();
    let metrics: HashMap<String, Row> =
        tables.pop().unwrap_or_default().into_iter().map(|m| (s(&m, "product_id").to_string(), m)).collect();
    let mut by_district: HashMap<String, Vec<Row>> = districts.keys().map(|d| (d.clone(), Vec::new())).collect();
    for p in tables.pop().unwrap_or_default() {
        by_district.entry(s(&p, "district").to_string()).or_default().push(p);
    }
    let ranked: HashMap<String, Arc<Vec<Ranked>>> = by_district
        .into_iter()
        .map(|(d, products)| {
            let scoped: Vec<&MerchandisingRuleSet> =
                rules.iter().filter(|r| r.condition.district.as_ref().is_none_or(|x| x.as_str() == d)).collect();
            let r = rank(&d, products, &metrics, districts.get(&d), &scoped, config.of(&d));
            (d, Arc::new(r))
        })
        .collect();
    let index = ranked
        .iter()
        .flat_map(|(d, r)| {
            r.iter().enumerate().map(move |(k, x)| (s(&x.product, "product_id").to_string(), (d.clone(), k)))
        })
        .collect();
    Ok(Rankings { position, ranked, index, pages: Mutex::default(), next_change, tests })
}

/// The latest rankings, kept current by a background task.
pub struct Ranker {
    latest: watch::Sender<Arc<Rankings>>,
}

impl Ranker {
    /// Starts ranking on the current actix runtime; stops when `shutdown` fires.
    pub fn start(read: Arc<ReadSide>, config: ScoreConfig, mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let ranker = Arc::new(Self { latest: watch::channel(Arc::new(Rankings::default())).0 });
        let r = ranker.clone();
        actix_web::rt::spawn(async move {
            let Some(catalog) = read.get("catalog") else { return };
            let mut applied = catalog.applied.subscribe();
            // The merchandising rules' table moving makes the rankings again too.
            let mut rules_applied = match read.get("merchandising") {
                Some(m) => m.applied.subscribe(),
                None => watch::channel(0).1,
            };
            let mut rules_at: Option<Position> = None;
            let mut next_change: Option<DateTime<Utc>> = None;
            let mut written: HashMap<String, Vec<(String, u64)>> = HashMap::new();
            let mut last_write = Instant::now() - Duration::from_secs(60);
            let mut ranked_at = None;
            // The table is written at most once a second, with the latest rankings.
            let mut unwritten: Option<Arc<Rankings>> = None;
            loop {
                let moved = async {
                    loop {
                        if Some(*applied.borrow_and_update()) != ranked_at {
                            return;
                        }
                        if applied.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                };
                let rules_moved = async {
                    loop {
                        if Some(*rules_applied.borrow_and_update()) != rules_at {
                            return;
                        }
                        if rules_applied.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                };
                let window = async {
                    match next_change {
                        Some(at) => {
                            let wait = (at - Utc::now()).to_std().unwrap_or_default();
                            tokio::time::sleep(wait + Duration::from_millis(5)).await
                        }
                        None => std::future::pending().await,
                    }
                };
                let write_due = async {
                    match &unwritten {
                        Some(_) => tokio::time::sleep_until((last_write + Duration::from_secs(1)).into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = moved => {}
                    _ = rules_moved => {}
                    _ = window => {}
                    _ = write_due => {
                        if let Some(rankings) = unwritten.take() {
                            if let Some(Err(e)) = write_table(&read, &rankings, &mut written).await {
                                tracing::warn!(error = %e, "district_rankings not written; retrying later");
                                unwritten = Some(rankings);
                            }
                            last_write = Instant::now();
                        }
                        continue;
                    }
                    _ = shutdown.changed() => return,
                }
                let started = Instant::now();
                let rules_position = *rules_applied.borrow();
                match build(&read, &config).await {
                    Ok(rankings) => {
                        ranked_at = Some(rankings.position);
                        rules_at = Some(rules_position);
                        next_change = rankings.next_change;
                        let rankings = Arc::new(rankings);
                        r.latest.send_replace(rankings.clone());
                        if read.database_url.is_some() {
                            unwritten = Some(rankings);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rankings not computed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                tokio::time::sleep(MIN_PAUSE.max(started.elapsed() * 2)).await;
            }
        });
        ranker
    }

    /// The latest rankings.
    pub fn current(&self) -> Arc<Rankings> {
        self.latest.borrow().clone()
    }

    /// The first rankings at `min` or later, waiting up to `bound` (then the latest).
    pub async fn at_least(&self, min: Position, bound: Duration) -> Arc<Rankings> {
        let mut rx = self.latest.subscribe();
        let _ = tokio::time::timeout(bound, rx.wait_for(|r| r.position >= min)).await;
        self.current()
    }
}

/// Writes the districts whose ranking changed to `district_rankings` (PostgreSQL only), under
/// the `district_rankings` checkpoint row, never moving it back.
async fn write_table(
    read: &ReadSide,
    rankings: &Rankings,
    written: &mut HashMap<String, Vec<(String, u64)>>,
) -> Option<Result<(), String>> {
    let mut client = match read.pg().await? {
        Ok(c) => c,
        Err(e) => return Some(Err(e.to_string())),
    };
    let changed: Vec<(&String, &Arc<Vec<Ranked>>, Vec<(String, u64)>)> = rankings
        .ranked
        .iter()
        .map(|(d, r)| (d, r, r.iter().map(|x| (s(&x.product, "product_id").to_string(), x.score.to_bits())).collect()))
        .filter(|(d, _, sig)| written.get(*d) != Some(sig))
        .collect();
    if changed.is_empty() {
        return Some(Ok(()));
    }
    let result = async {
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO mall_projection_checkpoints (name, version) VALUES ('district_rankings', 1) ON CONFLICT (name) DO NOTHING",
            &[],
        )
        .await?;
        let at: i64 = tx
            .query_one("SELECT position FROM mall_projection_checkpoints WHERE name = 'district_rankings' FOR UPDATE", &[])
            .await?
            .get(0);
        if at > rankings.position as i64 {
            return Ok::<bool, tokio_postgres::Error>(false);
        }
        for (district, ranked, _) in &changed {
            tx.execute("DELETE FROM district_rankings WHERE district = $1", &[district]).await?;
            let rows: Vec<Value> = ranked
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    serde_json::json!({
                        "district": district, "rank": i + 1, "product_id": s(&r.product, "product_id"), "score": r.score,
                        "performance": r.performance, "rules": r.rules, "recency": r.recency, "position": rankings.position,
                    })
                })
                .collect();
            tx.execute(
                "INSERT INTO district_rankings SELECT * FROM jsonb_populate_recordset(NULL::district_rankings, $1::text::jsonb)",
                &[&Value::Array(rows).to_string()],
            )
            .await?;
        }
        tx.execute(
            "UPDATE mall_projection_checkpoints SET position = $1, updated_at = now() WHERE name = 'district_rankings'",
            &[&(rankings.position as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
    .await;
    Some(match result {
        Ok(wrote) => {
            if wrote {
                for (d, _, sig) in changed {
                    written.insert(d.clone(), sig);
                }
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    })
}
