//! Storefront reads, served from the read tables: a product, districts, a district's products ranked by
//! the merchandising score, search, and a shopper's profile with their personal ranking.
//!
//! The score is `0.4 × performance + 0.3 × merchandising rules + 0.2 × personalization + 0.1 ×
//! recency`, each part in [0, 1] and each returned:
//! - performance: the conversion rate (carts or purchases per view) shrunk towards the district's
//!   rate by a Beta prior of strength 20, divided by the best in the list;
//! - merchandising rules: a quarter each for copy of at least 40 characters, tags, SEO fields and
//!   a search embedding;
//! - personalization: three quarters the larger of mall's recommender score (`recommend`: what
//!   shoppers went on to from what this one looked at, likeness for products with thin history,
//!   decayed popularity for a new shopper) relative to the best in the result set and the
//!   shopper's own interest in the product relative to their strongest (what they keep coming
//!   back to), a quarter their share of interest in the product's district (0 without a
//!   shopper); search results add the same part as a fifth of their score;
//! - recency: how late in the log the product was listed, relative to the newest listing.
//!
//! Out-of-stock products are hidden. A product under test shows each shopper the copy of their
//! experiment arm, the same every time.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use mall_actors::executors::embedder::cosine;
use mall_actors::experiment::{self, Arm};
use mall_actors::personalization::recommend::{Model, Scores};
use mall_events::ids::{DistrictSlug, Position, ProductId, ShopperId, tag};
use mall_projections::catalog::{DISTRICTS, PRODUCT_METRICS, PRODUCTS};
use mall_projections::change::Row;
use mall_projections::optimization::EXPERIMENTS;
use mall_projections::personalization::{SHOPPER_PROFILES, interest_at};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::ranking::{Ranked, Rankings, n, s};
use super::reads::{MAX_WAIT, POSITION_HEADER};
use super::search::QueryVector;
use crate::readside::Filter;

/// The largest page.
const MAX_LIMIT: usize = 100;

pub(super) fn sink_error(e: mall_projections::runner::SinkError) -> ApiError {
    tracing::error!(error = %e, "read tables unavailable");
    ApiError::unavailable("the read tables are unavailable")
}

/// A counter column (0 when the row is missing).
fn count(r: &Row, k: &str) -> i64 {
    r.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// The optional `shopper` parameter, checked.
fn shopper(q: &Option<String>) -> Result<Option<ShopperId>, ApiError> {
    q.clone().map(ShopperId::parse).transpose().map_err(|e| ApiError::invalid("shopper", e.0))
}

/// The read side's position, after waiting (up to a bound) for `min` when given.
pub(super) async fn position(state: &AppState, min: Option<Position>) -> Position {
    match min {
        Some(m) => state.read.wait_for(m, MAX_WAIT).await,
        None => state.read.position(),
    }
}

fn answer(position: Position, body: Value) -> HttpResponse {
    HttpResponse::Ok().insert_header((POSITION_HEADER, position.to_string())).json(body)
}

fn district_json(d: &Row) -> Value {
    let (views, carts, purchases) = (n(d, "views"), n(d, "carts"), n(d, "purchases"));
    let copy = d.get("tagline").and_then(Value::as_str).map(|tagline| {
        json!({
            "tagline": tagline, "description": s(d, "copy_description"), "seo_title": s(d, "seo_title"),
            "seo_description": s(d, "seo_description"),
        })
    });
    json!({
        "slug": s(d, "slug"), "name": s(d, "name"),
        "personality": {"tone": s(d, "tone"), "style": s(d, "style"), "audience": s(d, "audience")},
        "copy": copy,
        "stats": {
            "impressions": n(d, "impressions"), "views": views, "clicks": n(d, "clicks"), "carts": carts,
            "purchases": purchases, "bounces": n(d, "bounces"), "revenue": n(d, "revenue_e4") / 10_000.0,
            "conversion": mall_events::measures::conversion_rate(views as u64, carts as u64, purchases as u64),
        },
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionQuery {
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

/// `GET /api/districts`.
pub async fn districts(
    state: web::Data<AppState>,
    q: super::query::Query<PositionQuery>,
) -> Result<HttpResponse, ApiError> {
    let at = position(&state, q.min_position).await;
    let mut rows = state.read.rows("catalog", DISTRICTS, Filter::All).await.map_err(sink_error)?;
    rows.sort_by(|a, b| s(a, "slug").cmp(s(b, "slug")));
    Ok(answer(at, json!({"districts": rows.iter().map(district_json).collect::<Vec<_>>()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistrictQuery {
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
    /// The shopper asking: while a new voice is tested, they get their arm's copy and voice.
    shopper: Option<String>,
}

/// `GET /api/districts/{slug}?shopper=&min_position=`: the district, its copy and voice — for a
/// shopper in the new voice's arm of a running test, the new ones.
pub async fn district(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: super::query::Query<DistrictQuery>,
) -> Result<HttpResponse, ApiError> {
    let slug = DistrictSlug::parse(path.into_inner()).map_err(|e| ApiError::invalid("slug", e.0))?;
    let shopper = self::shopper(&q.shopper)?;
    let at = position(&state, q.min_position).await;
    let d = state.read.rows("catalog", DISTRICTS, Filter::Key(slug.as_str())).await.map_err(sink_error)?;
    let d = d.first().ok_or_else(|| ApiError::not_found(format!("no district {slug}")))?;
    let products =
        state.read.rows("catalog", PRODUCTS, Filter::Eq("district", slug.as_str())).await.map_err(sink_error)?;
    let mut body = district_json(d);
    if let Some(test) = d.get("voice_test_id").and_then(Value::as_str).and_then(|t| t.parse::<uuid::Uuid>().ok()) {
        let arm = shopper.as_ref().map(|s| mall_actors::experiment::arm(test, s));
        if arm == Some(Arm::Challenger)
            && let Some(c) = d.get("challenger")
        {
            body["copy"] = c["copy"].clone();
            body["personality"] = c["personality"].clone();
        }
        body["voice_test"] = json!({
            "test_id": test,
            "arm": arm.map(|a| if a == Arm::Challenger { "challenger" } else { "control" }),
        });
    }
    body["products"] = json!(products.len());
    body["in_stock"] = json!(products.iter().filter(|p| s(p, "status") == "in_stock").count());
    Ok(answer(at, body))
}

/// A shopper's interests as of their latest signal: by district slug and by product id.
struct Interests {
    districts: HashMap<String, f64>,
    products: HashMap<String, f64>,
    district_total: f64,
    product_best: f64,
}

impl Interests {
    /// The shopper's share of interest in a district.
    fn share(&self, district: &str) -> f64 {
        if self.district_total > 0.0 {
            self.districts.get(district).copied().unwrap_or(0.0) / self.district_total
        } else {
            0.0
        }
    }

    /// The shopper's interest in a product relative to their strongest.
    fn own(&self, product: &str) -> f64 {
        if self.product_best > 0.0 {
            self.products.get(product).copied().unwrap_or(0.0) / self.product_best
        } else {
            0.0
        }
    }
}

/// The personalization part of a shopper's scores, over one result set (see the module's
/// documentation): `0.75 × max(recommender / best in the set, own interest) + 0.25 × district
/// share`.
fn personal_parts<'a>(
    state: &AppState,
    shopper: &ShopperId,
    interests: &Interests,
    set: impl Iterator<Item = &'a Ranked>,
) -> Vec<(f64, &'a Ranked)> {
    state.recommender.with(|m| parts_from(m, &m.scores(shopper.as_str()), interests, set))
}

/// [`personal_parts`] from the recommender's scores for the shopper.
fn parts_from<'a>(
    m: &Model,
    scores: &Scores,
    interests: &Interests,
    set: impl Iterator<Item = &'a Ranked>,
) -> Vec<(f64, &'a Ranked)> {
    // The shopper's own interests by the recommender's ids (a few; looked up once each).
    let own: HashMap<u32, f64> =
        interests.products.keys().filter_map(|p| Some((m.id_of(p)?, interests.own(p)))).collect();
    let raw: Vec<(f64, &Ranked)> = set
        .map(|r| {
            let id = r.model_id.get().copied().or_else(|| {
                let id = m.id_of(&r.id)?;
                let _ = r.model_id.set(id);
                Some(id)
            });
            (id.and_then(|id| scores.score.get(id as usize).copied()).unwrap_or(0.0), r)
        })
        .collect();
    let best = raw.iter().map(|x| x.0).fold(0.0, f64::max);
    // Sets come district by district: the share is looked up when the district changes.
    let mut last: (&str, f64) = ("", 0.0);
    raw.into_iter()
        .map(|(rec, r)| {
            let rec = if best > 0.0 { rec / best } else { 0.0 };
            let mine =
                if own.is_empty() { 0.0 } else { r.model_id.get().and_then(|id| own.get(id)).copied().unwrap_or(0.0) };
            if last.0 != r.district {
                last = (r.district.as_str(), interests.share(&r.district));
            }
            (0.75 * rec.max(mine) + 0.25 * last.1, r)
        })
        .collect()
}

/// The shopper's interests (after waiting for `min`, up to a bound, for the read side and the
/// recommender) and the position they reflect.
async fn interests(
    state: &AppState,
    shopper: &ShopperId,
    min: Option<Position>,
) -> Result<(Interests, Position), ApiError> {
    let at = position(state, min).await;
    if let Some(m) = min {
        state.recommender.wait_for(m, MAX_WAIT).await;
    }
    let rows = state.read.interests(shopper.as_str()).await.map_err(sink_error)?;
    // As of the shopper's latest signal: shares and ratios decay alike, and a shopper last seen
    // years ago (an imported data set) keeps interests that can be compared.
    let latest = rows.iter().map(|r| r.2).max().unwrap_or_default();
    let (mut districts, mut products) = (HashMap::new(), HashMap::new());
    for (facet, score, as_of) in rows.iter() {
        let v = interest_at(*score, *as_of, latest).max(0.0);
        if let Some(d) = tag::district_of(facet) {
            districts.insert(d.to_string(), v);
        } else if let Some(p) = facet.strip_prefix("product:") {
            products.insert(p.to_string(), v);
        }
    }
    let district_total = districts.values().sum();
    let product_best = products.values().copied().fold(0.0, f64::max);
    Ok((Interests { districts, products, district_total, product_best }, at))
}

/// Writes a product as a shopper sees it: their arm's copy when it is under test, the score
/// with their personalization part (`None`: an anonymous read, whose part is 0) under `weights`
/// (the district's, or an ordering test's challenger's).
fn write_product(
    out: &mut String,
    r: &Ranked,
    shopper: Option<&ShopperId>,
    personalization: Option<f64>,
    weights: &super::ranking::Weights,
    position: Option<usize>,
) {
    use std::fmt::Write;
    let mut description = s(&r.product, "description");
    let mut arm = "null";
    if let (Some((x, challenger)), Some(sh)) = (&r.experiment, shopper) {
        let a = experiment::arm(*x, sh);
        if a == Arm::Challenger {
            description = challenger;
        }
        arm = if a == Arm::Challenger { "\"challenger\"" } else { "\"control\"" };
    }
    // The shopper's arm's price while one is under test.
    let mut price = s(&r.product, "price");
    let mut price_arm = "null";
    if let (Some((x, challenger)), Some(sh)) = (&r.price_test, shopper) {
        let a = experiment::arm(*x, sh);
        if a == Arm::Challenger {
            price = challenger;
        }
        price_arm = if a == Arm::Challenger { "\"challenger\"" } else { "\"control\"" };
    }
    let pers = personalization.unwrap_or(0.0);
    let number = |x: f64| Value::from(x);
    out.push('{');
    out.push_str(&r.fields);
    let _ = write!(out, ",\"price\":{},\"price_test_arm\":{price_arm}", Value::from(price));
    if let Some(p) = position {
        let _ = write!(out, ",\"position\":{p}");
    }
    let _ = write!(
        out,
        ",\"description\":{},\"experiment_arm\":{arm},\"score\":{},\"parts\":{{\"performance\":{},\"rules\":{},\"personalization\":{},\"recency\":{}}}}}",
        Value::from(description),
        number(weights.score(r, pers)),
        number(r.performance),
        number(r.rules),
        number(pers),
        number(r.recency),
    );
}

/// [`write_product`] as a JSON value.
fn product_json(r: &Ranked, shopper: Option<&ShopperId>, personalization: Option<f64>) -> Value {
    let mut out = String::new();
    write_product(&mut out, r, shopper, personalization, &r.weights, None);
    serde_json::from_str(&out).expect("valid json")
}

/// A page of a district's ranking, serialized.
/// The ranking policy a listing was served under — `layout:SLUG`, or an ordering test's arm
/// `test:ID:control|challenger` — with the weights it ranked by. Impressions carry it back.
struct Policy<'a> {
    name: String,
    weights: Option<&'a super::ranking::Weights>,
}

fn page_body<'a>(
    slug: &DistrictSlug,
    (page, limit, total): (usize, usize, usize),
    items: impl Iterator<Item = (&'a Ranked, Option<f64>)>,
    shopper: Option<&ShopperId>,
    policy: &Policy,
) -> web::Bytes {
    let mut out = format!(
        "{{\"district\":{},\"page\":{page},\"limit\":{limit},\"total\":{total},\"policy\":{},\"products\":[",
        Value::from(slug.as_str()),
        Value::from(policy.name.as_str()),
    );
    for (i, (r, pers)) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let position = (page - 1) * limit + i + 1;
        write_product(&mut out, r, shopper, pers, policy.weights.unwrap_or(&r.weights), Some(position));
    }
    out.push_str("]}");
    web::Bytes::from(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductQuery {
    shopper: Option<String>,
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

/// `GET /api/products/{id}?shopper=&min_position=`: the product's row, its metrics, and the copy
/// the shopper's experiment arm gets while one runs.
pub async fn product(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: super::query::Query<ProductQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = ProductId::parse(path.into_inner()).map_err(|e| ApiError::invalid("id", e.0))?;
    let shopper = shopper(&q.shopper)?;
    let at = position(&state, q.min_position).await;
    let read = |projection, table| state.read.rows(projection, table, Filter::Key(id.as_str()));
    let p = read("catalog", PRODUCTS).await.map_err(sink_error)?;
    let p = p.into_iter().next().ok_or_else(|| ApiError::not_found(format!("no product {id}")))?;
    let m = read("catalog", PRODUCT_METRICS).await.map_err(sink_error)?.into_iter().next().unwrap_or_default();
    let mut description = s(&p, "description").to_string();
    let experiment = match (p.get("experiment_id").and_then(Value::as_str), p.get("challenger").and_then(Value::as_str))
    {
        (Some(x), Some(challenger)) => {
            let started = state
                .read
                .rows("optimization", EXPERIMENTS, Filter::Key(x))
                .await
                .map_err(sink_error)?
                .into_iter()
                .next()
                .unwrap_or_default();
            let arm = match (x.parse::<Uuid>(), &shopper) {
                (Ok(x), Some(sh)) => Some(experiment::arm(x, sh)),
                _ => None,
            };
            if arm == Some(Arm::Challenger) {
                description = challenger.to_string();
            }
            json!({
                "experiment_id": x,
                "started_at": started.get("started_at"),
                "started_position": started.get("started_position"),
                "arm": arm.map(|a| if a == Arm::Challenger { "challenger" } else { "control" }),
            })
        }
        _ => Value::Null,
    };
    // A price test: the shopper's arm's price.
    let mut price = s(&p, "price").to_string();
    let price_test =
        match (p.get("price_test_id").and_then(Value::as_str), p.get("challenger_price").and_then(Value::as_str)) {
            (Some(x), Some(challenger)) => {
                let arm = match (x.parse::<Uuid>(), &shopper) {
                    (Ok(x), Some(sh)) => Some(experiment::arm(x, sh)),
                    _ => None,
                };
                if arm == Some(Arm::Challenger) {
                    price = challenger.to_string();
                }
                json!({"test_id": x, "arm": arm})
            }
            _ => Value::Null,
        };
    let seo = match (p.get("seo_title").and_then(Value::as_str), p.get("seo_meta_description").and_then(Value::as_str))
    {
        (Some(t), Some(d)) => json!({"title": t, "meta_description": d}),
        _ => Value::Null,
    };
    Ok(answer(
        at,
        json!({
            "product_id": id, "district": s(&p, "district"), "title": s(&p, "title"), "description": description,
            "tags": p.get("tags"), "seo": seo, "price": price, "currency": s(&p, "currency"),
            "stock": p.get("stock"), "status": s(&p, "status"), "image_url": p.get("image_url"),
            "attributes": p.get("attributes"), "copy_version": p.get("copy_version"),
            "has_embedding": p.get("embedding").is_some_and(|e| !e.is_null()),
            "experiment": experiment,
            "price_test": price_test,
            "metrics": {
                "total": {
                    "impressions": count(&m, "impressions"), "views": count(&m, "views"), "clicks": count(&m, "clicks"),
                    "carts": count(&m, "carts"), "purchases": count(&m, "purchases"), "bounces": count(&m, "bounces"),
                    "revenue": n(&m, "revenue_e4") / 10_000.0, "dwell_ms": count(&m, "dwell_ms"),
                },
                "last_signal_at": m.get("last_signal_at"),
            },
            "listed_position": p.get("listed_position"), "updated_position": p.get("updated_position"),
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankQuery {
    shopper: Option<String>,
    page: Option<usize>,
    limit: Option<usize>,
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

fn paging(page: Option<usize>, limit: Option<usize>) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(20);
    if page == 0 {
        return Err(ApiError::invalid("page", "pages start at 1"));
    }
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    Ok((page, limit))
}

/// The rankings at `min` or later (waiting up to a bound), else the latest.
pub(super) async fn rankings(state: &AppState, min: Option<Position>) -> Arc<Rankings> {
    match min {
        Some(m) => state.ranker.at_least(m, MAX_WAIT).await,
        None => state.ranker.current(),
    }
}

/// A shopper's ranking, best first (ties by product id), down to `top` products; pinned
/// products at their pins' positions.
fn personal_order<'a>(
    scored: Vec<(f64, &'a Ranked)>,
    top: usize,
    weights: Option<&super::ranking::Weights>,
) -> Vec<(f64, &'a Ranked)> {
    // Each score once: (score, personalization part, product).
    let order =
        |a: &(f64, f64, &Ranked), b: &(f64, f64, &Ranked)| b.0.total_cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id));
    let mut pinned = Vec::new();
    let mut rest = Vec::with_capacity(scored.len());
    for (pers, r) in scored {
        let x = (weights.unwrap_or(&r.weights).score(r, pers), pers, r);
        if r.pin.is_some() { pinned.push(x) } else { rest.push(x) }
    }
    if top < rest.len() {
        rest.select_nth_unstable_by(top, order);
        rest.truncate(top);
    }
    rest.sort_by(order);
    rest.extend(pinned);
    let mut out: Vec<(f64, &Ranked)> =
        mall_actors::merchandising::place_pins(rest, |x| x.2.pin).into_iter().map(|(_, pers, r)| (pers, r)).collect();
    out.truncate(top.max(1));
    out
}

/// `GET /api/districts/{slug}/products?shopper=&page=&limit=`.
pub async fn district_products(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: super::query::Query<RankQuery>,
) -> Result<HttpResponse, ApiError> {
    let slug = DistrictSlug::parse(path.into_inner()).map_err(|e| ApiError::invalid("slug", e.0))?;
    let shopper = shopper(&q.shopper)?;
    let (page, limit) = paging(q.page, q.limit)?;
    let mut r = rankings(&state, q.min_position).await;
    if !r.ranked.contains_key(slug.as_str()) {
        // Before saying there is no such district, let the ranker catch up with the catalog (a
        // district just opened, a server just started).
        let catalog = state.read.get("catalog").map_or(0, |f| *f.applied.borrow());
        if r.position < catalog {
            r = state.ranker.at_least(catalog, MAX_WAIT).await;
        }
    }
    let Some(base) = r.ranked.get(slug.as_str()) else {
        return Err(ApiError::not_found(format!("no district {slug}")));
    };
    let total = base.len();
    let reply = |at: Position, body: web::Bytes| {
        HttpResponse::Ok().insert_header((POSITION_HEADER, at.to_string())).content_type("application/json").body(body)
    };
    let layout = Policy { name: format!("layout:{slug}"), weights: None };
    let Some(sh) = &shopper else {
        // Anonymous pages are serialized once per ranking (and never under test).
        let key = (slug.as_str().to_string(), page, limit);
        if let Some(body) = r.pages.lock().expect("pages").get(&key).cloned() {
            return Ok(reply(r.position, body));
        }
        let items = base.iter().skip((page - 1) * limit).take(limit).map(|x| (x, None));
        let body = page_body(&slug, (page, limit, total), items, None, &layout);
        r.pages.lock().expect("pages").insert(key, body.clone());
        return Ok(reply(r.position, body));
    };
    // During an ordering test, the shopper's arm decides the weights (the same arm every time).
    let policy = match r.tests.get(slug.as_str()) {
        Some(t) => {
            let arm = experiment::arm(t.test_id, sh);
            let weights = (arm == Arm::Challenger).then_some(&t.challenger);
            Policy { name: mall_actors::merchandising::ordering::policy(t.test_id, arm), weights }
        }
        None => layout,
    };
    let (interests, at) = interests(&state, sh, q.min_position).await?;
    let order = personal_order(personal_parts(&state, sh, &interests, base.iter()), page * limit, policy.weights);
    let items = order.into_iter().skip((page - 1) * limit).take(limit).map(|(pers, x)| (x, Some(pers)));
    Ok(reply(r.position.min(at), page_body(&slug, (page, limit, total), items, Some(sh), &policy)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    q: String,
    shopper: Option<String>,
    limit: Option<usize>,
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 1).map(str::to_lowercase).collect()
}

/// `GET /api/search?q=`: keyword and semantic (embedding) matches together.
pub async fn search(state: web::Data<AppState>, q: super::query::Query<SearchQuery>) -> Result<HttpResponse, ApiError> {
    let query = q.q.trim();
    if query.is_empty() || query.chars().count() > 200 {
        return Err(ApiError::invalid("q", "must be 1 to 200 characters"));
    }
    let shopper = shopper(&q.shopper)?;
    let (_, limit) = paging(None, q.limit)?;
    let r = rankings(&state, q.min_position).await;
    let terms = words(query);
    // Never waits on the model: see `search::QueryEmbedder`.
    let vector = state.search.vector(query).await;
    let hits: Vec<(f64, f64, f64, &Ranked)> = r
        .all()
        .filter_map(|ranked| {
            let p = &ranked.product;
            let title = words(s(p, "title"));
            let tag_list: Vec<String> = p
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
            let tags: Vec<String> = tag_list.iter().flat_map(|t| words(t)).collect();
            let body = words(s(p, "description"));
            let keyword = if terms.is_empty() {
                0.0
            } else {
                terms
                    .iter()
                    .map(|t| {
                        if title.contains(t) || tags.contains(t) {
                            1.0
                        } else if body.contains(t) {
                            0.5
                        } else {
                            0.0
                        }
                    })
                    .sum::<f64>()
                    / terms.len() as f64
            };
            let semantic = match &vector {
                QueryVector::Model(v) => match p.get("embedding").and_then(Value::as_array) {
                    Some(e) if e.len() == v.len() => {
                        let e: Vec<f32> = e.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect();
                        cosine(v, &e).max(0.0) as f64
                    }
                    _ => 0.0,
                },
                QueryVector::Builtin(v) => {
                    let pv = state.search.product_vector(s(p, "title"), s(p, "description"), &tag_list);
                    cosine(v, &pv).max(0.0) as f64
                }
            };
            let relevance = 0.6 * keyword + 0.4 * semantic;
            (relevance > 0.05).then_some((relevance, keyword, semantic, ranked))
        })
        .collect();
    // For a shopper, the same personalization part as their listings: a fifth of the score.
    let personal: Vec<f64> = match &shopper {
        Some(sh) => {
            let (i, _) = interests(&state, sh, q.min_position).await?;
            personal_parts(&state, sh, &i, hits.iter().map(|h| h.3)).into_iter().map(|x| x.0).collect()
        }
        None => Vec::new(),
    };
    let mut hits: Vec<(f64, Value)> = hits
        .into_iter()
        .enumerate()
        .map(|(k, (relevance, keyword, semantic, ranked))| {
            let pers = personal.get(k).copied();
            let score = pers.map_or(relevance, |p| 0.8 * relevance + 0.2 * p);
            let mut v = product_json(ranked, shopper.as_ref(), pers);
            v["score"] = json!(score);
            v["parts"] = json!({"keyword": keyword, "semantic": semantic, "personalization": pers.unwrap_or(0.0)});
            (score, v)
        })
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1["product_id"].as_str().cmp(&b.1["product_id"].as_str())));
    hits.truncate(limit);
    let embedder = match vector {
        QueryVector::Model(_) => "model",
        QueryVector::Builtin(_) => "builtin",
    };
    let results: Vec<Value> = hits.into_iter().map(|h| h.1).collect();
    Ok(answer(r.position, json!({"q": query, "embedder": embedder, "results": results})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PersonalizeQuery {
    user_id: String,
    limit: Option<usize>,
    /// `minPosition` (the seed's spelling) or `min_position`, as on every other read.
    #[serde(alias = "min_position")]
    min_position: Option<Position>,
}

/// A shopper's activity as the profile counts it.
#[derive(Debug, Default, Clone, Copy)]
struct Activity {
    signals: i64,
    views: i64,
    carts: i64,
    purchases: i64,
}

/// The shopper's segment, the pattern detected in what they do, the layout that follows from
/// it, and the predicted next action with its reason. The order is the documented one: the
/// first that holds wins.
///
/// | pattern | when | layout | next action |
/// |---|---|---|---|
/// | `new` | no signal yet | trending, districts | view |
/// | `cart waiting` | more carts than purchases | cart, top picks, districts | purchase |
/// | `browsing heavily` | 8+ views, nothing carted | top picks, districts, trending | add_to_cart |
/// | `loyal` | 3+ purchases | top picks, new arrivals, districts | purchase |
/// | `focused` | 5+ signals, 70%+ of the interest in one district | that district, top picks, districts | view |
/// | `exploring` | otherwise | top picks, districts, trending | view |
fn pattern(
    a: Activity,
    focus: Option<(&str, f64)>,
) -> (&'static str, &'static str, Vec<String>, (&'static str, String)) {
    let segment = match a {
        a if a.purchases >= 3 => "loyal",
        a if a.purchases >= 1 => "buyer",
        a if a.carts >= 1 => "shopper",
        a if a.signals >= 3 => "browser",
        _ => "new",
    };
    let l = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (pattern, layout, next) = if a.signals == 0 {
        ("new", l(&["trending", "districts"]), ("view", "no signal yet: popular products first".to_string()))
    } else if a.carts > a.purchases {
        let waiting = a.carts - a.purchases;
        ("cart waiting", l(&["cart", "top_picks", "districts"]), ("purchase", format!("{waiting} carted, not bought")))
    } else if a.views >= 8 && a.carts == 0 {
        (
            "browsing heavily",
            l(&["top_picks", "districts", "trending"]),
            ("add_to_cart", format!("{} views without a cart: top picks first", a.views)),
        )
    } else if a.purchases >= 3 {
        (
            "loyal",
            l(&["top_picks", "new_arrivals", "districts"]),
            ("purchase", format!("{} purchases so far", a.purchases)),
        )
    } else if let Some((district, share)) = focus.filter(|(_, share)| a.signals >= 5 && *share >= 0.7) {
        (
            "focused",
            vec![format!("district:{district}"), "top_picks".into(), "districts".into()],
            ("view", format!("{:.0}% of their interest is in {district}", share * 100.0)),
        )
    } else {
        (
            "exploring",
            l(&["top_picks", "districts", "trending"]),
            ("view", "interest spread across districts".to_string()),
        )
    };
    (segment, pattern, layout, next)
}

/// `GET /api/autonomous/personalize?userId=`: the shopper's profile (interests, district
/// affinity, segment), their districts in order, top picks with reasons, the predicted next
/// action, the detected pattern with its layout, and their personal ranking.
pub async fn personalize(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    q: super::query::Query<PersonalizeQuery>,
) -> Result<HttpResponse, ApiError> {
    // A shopper's spend, activity and interests are private: ids are guessable.
    state.tokens.check(&req, super::auth::Scope::Profiles)?;
    let shopper = ShopperId::parse(q.user_id.clone()).map_err(|e| ApiError::invalid("userId", e.0))?;
    let (_, limit) = paging(None, q.limit)?;
    let (i, at) = interests(&state, &shopper, q.min_position).await?;
    let r = rankings(&state, q.min_position).await;
    let profile = state
        .read
        .rows("personalization", SHOPPER_PROFILES, Filter::Key(shopper.as_str()))
        .await
        .map_err(sink_error)?;
    let counts = profile.first().map_or_else(Activity::default, |p| Activity {
        signals: count(p, "signals"),
        views: count(p, "views"),
        carts: count(p, "carts"),
        purchases: count(p, "purchases"),
    });
    // One look at the recommender for the ranking and the top picks alike.
    let (ranked, picks) = state.recommender.with(|m| {
        let scores = m.scores(shopper.as_str());
        let ranked = personal_order(parts_from(m, &scores, &i, r.all()), limit, None);
        (ranked, m.picks(&scores, limit, |p| r.index.contains_key(p)))
    });
    let mut affinity: Vec<(&String, &f64)> = i.districts.iter().collect();
    affinity.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut favourites: Vec<(&String, &f64)> = i.products.iter().collect();
    favourites.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    // Their districts first, by affinity; then the others, by name.
    let mut districts: Vec<&str> =
        affinity.iter().map(|(d, _)| d.as_str()).filter(|d| r.ranked.contains_key(*d)).collect();
    let mut rest: Vec<&str> = r.ranked.keys().map(String::as_str).filter(|d| !districts.contains(d)).collect();
    rest.sort();
    districts.extend(rest);
    let focus = affinity.first().map(|(d, _)| (d.as_str(), i.share(d)));
    let (segment, pattern, layout, (action, why)) = pattern(counts, focus);
    // Top picks: in stock (in the rankings), with the recommender's reason.
    let picks: Vec<Value> = picks
        .into_iter()
        .filter_map(|pick| {
            let (d, k) = r.index.get(&pick.product)?;
            let ranked = r.ranked.get(d)?.get(*k)?;
            let mut v = product_json(ranked, Some(&shopper), None);
            v["reason"] = json!(pick.reason.text());
            v["recommendation_score"] = json!(pick.score);
            Some(v)
        })
        .collect();
    let customer = super::plugins::customer(&state, shopper.as_str()).await?;
    Ok(answer(
        at.min(r.position),
        json!({
            "user_id": shopper,
            "profile": {
                "signals": profile.first(),
                "segment": segment,
                "customer": customer,
                "interests": favourites.iter().take(10).map(|(p, v)| json!({"product_id": p, "interest": v})).collect::<Vec<_>>(),
                "district_affinity": affinity.iter().map(|(d, v)| json!({"district": d, "interest": v, "share": i.share(d)})).collect::<Vec<_>>(),
            },
            "districts": districts,
            "top_picks": picks,
            "next_action": {"action": action, "reason": why},
            "pattern": pattern,
            "layout": layout,
            "ranking": ranked.iter().map(|(pers, x)| product_json(x, Some(&shopper), Some(*pers))).collect::<Vec<_>>(),
        }),
    ))
}
