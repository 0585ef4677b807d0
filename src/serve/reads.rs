//! Reads: a product as its actor holds it (with the copy the shopper's experiment arm gets),
//! its copy history, and health. Public; every answer says the log position it reflects.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use mall_actors::experiment;
use mall_actors::product::ProductState;
use mall_actors::runtime::entity::{Get, Product};
use mall_events::ids::{Position, ProductId, ShopperId};
use mall_events::{Direction, StreamId};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// The header naming the log position a response reflects.
pub const POSITION_HEADER: &str = "X-Mall-Position";
/// The longest a read waits for `min_position`.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// The most events a history reads.
const MAX_HISTORY_EVENTS: usize = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductQuery {
    shopper: Option<String>,
    min_position: Option<Position>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionQuery {
    min_position: Option<Position>,
}

/// Waits (up to a bound) until the actors have folded `min`; returns the position reached.
async fn reached(state: &AppState, min: Option<Position>) -> Position {
    let mut rx = state.actors.delivered.subscribe();
    if let Some(min) = min {
        let _ = tokio::time::timeout(MAX_WAIT, rx.wait_for(|p| *p >= min)).await;
    }
    let p = *rx.borrow();
    p
}

fn parse_product(id: String) -> Result<ProductId, ApiError> {
    ProductId::parse(id).map_err(|e| ApiError::invalid("id", e.0))
}

/// The product's state from its actor (activated if needed); 404 when it is not listed.
async fn product_state(state: &AppState, id: &ProductId) -> Result<ProductState, ApiError> {
    if !state.actors.rt.catalog.read().expect("catalog").contains_key(id.as_str()) {
        return Err(ApiError::not_found(format!("no product {id}")));
    }
    state
        .actors
        .products
        .get(id)
        .send(Get::<Product>::default())
        .await
        .map_err(|e| ApiError::unavailable(format!("the product's actor did not answer: {e}")))?
        .filter(ProductState::is_listed)
        .ok_or_else(|| ApiError::unavailable(format!("product {id} could not be loaded")))
}

/// `GET /api/products/{id}?shopper=&min_position=`.
pub async fn get_product(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ProductQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_product(path.into_inner())?;
    let shopper =
        query.shopper.clone().map(ShopperId::parse).transpose().map_err(|e| ApiError::invalid("shopper", e.0))?;
    let position = reached(&state, query.min_position).await;
    let s = product_state(&state, &id).await?;
    let (description, experiment) = match &s.experiment {
        Some(x) => {
            let arm = shopper.as_ref().map(|sh| experiment::arm(x.experiment_id, sh));
            let description = arm.map_or(x.control.as_str(), |a| x.copy(a)).to_string();
            let exp = json!({
                "experiment_id": x.experiment_id,
                "started_at": x.started_at,
                "arm": arm.map(|a| if a == experiment::Arm::Control { "control" } else { "challenger" }),
                "arms": {"control": x.arms[0], "challenger": x.arms[1]},
            });
            (description, Some(exp))
        }
        None => (s.description.clone(), None),
    };
    let body = json!({
        "product_id": id,
        "district": s.district,
        "title": s.title,
        "description": description,
        "tags": s.tags,
        "seo": s.seo,
        "price": s.price,
        "currency": s.currency,
        "stock": s.stock,
        "image_url": s.image_url,
        "attributes": s.attributes,
        "copy_version": s.copy_version,
        "has_embedding": s.embedding_of.is_some(),
        "embedding_current": s.embedding_of == Some(s.copy_hash()),
        "in_flight": s.in_flight,
        "experiment": experiment,
        "metrics": {"total": s.total, "window": s.window, "window_from": s.window_from},
        "stream_version": s.version,
        "position": s.position,
    });
    Ok(HttpResponse::Ok().insert_header((POSITION_HEADER, position.max(s.position).to_string())).json(body))
}

/// Reads a whole stream in order (bounded).
pub async fn read_stream(
    store: &dyn mall_events::EventStore,
    stream: &StreamId,
    limit: usize,
) -> Result<Vec<mall_events::RecordedEvent>, mall_events::StoreError> {
    let mut out = Vec::new();
    loop {
        let from = out.last().map_or(1, |e: &mall_events::RecordedEvent| e.stream_version + 1);
        let batch = store.read_stream(stream, from, Direction::Forward, 5_000).await?;
        if batch.is_empty() || out.len() >= limit {
            return Ok(out);
        }
        out.extend(batch);
    }
}

/// `GET /api/products/{id}/history`: every copy version and decision, with its evidence.
pub async fn get_history(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PositionQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_product(path.into_inner())?;
    let position = reached(&state, query.min_position).await;
    let events = read_stream(&*state.store, &StreamId::product(&id), MAX_HISTORY_EVENTS).await?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!("no product {id}")));
    }
    let history = mall_actors::audit::history(&events)
        .map_err(|e| ApiError::unavailable(format!("cannot decode the product's stream: {e}")))?;
    Ok(HttpResponse::Ok().insert_header((POSITION_HEADER, position.max(history.position).to_string())).json(history))
}

/// `GET /healthz`.
pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.store.stats().await?;
    let delivered = *state.actors.delivered.borrow();
    Ok(HttpResponse::Ok().insert_header((POSITION_HEADER, delivered.to_string())).json(json!({
        "status": "ok",
        "log_position": stats.last_position,
        "actors_position": delivered,
        "resident": {
            "products": state.actors.products.resident(),
            "districts": state.actors.districts.resident(),
            "shoppers": state.actors.shoppers.resident(),
        },
    })))
}
