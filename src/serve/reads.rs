//! Reads: a product's copy history (its audit, folded from its stream) and health. Public,
//! except decision internals, which need the admin token; every answer says the log position it
//! reflects.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use mall_events::ids::{Position, ProductId};
use mall_events::{Direction, StoreHealth, StreamId};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;

/// The header naming the log position a response reflects.
pub const POSITION_HEADER: &str = "X-Mall-Position";
/// The longest a read waits for `min_position`.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// The most events a history reads.
const MAX_HISTORY_EVENTS: usize = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionQuery {
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

/// Waits (up to a bound) until the actors have folded `min`; returns the position reached.
async fn reached(state: &AppState, min: Option<Position>) -> Position {
    let mut rx = state.actors.delivered.subscribe();
    if let Some(min) = min {
        let _ = tokio::time::timeout(MAX_WAIT, rx.wait_for(|p| *p >= min)).await;
    }

    *rx.borrow()
}

pub(super) fn parse_product(id: String) -> Result<ProductId, ApiError> {
    ProductId::parse(id).map_err(|e| ApiError::invalid("id", e.0))
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

/// A product's stream and its history folded from it; 404 for a product the log does not know.
pub(super) async fn product_history(
    state: &AppState,
    id: &ProductId,
) -> Result<(Vec<mall_events::RecordedEvent>, mall_actors::audit::History), ApiError> {
    let events = read_stream(&*state.store, &StreamId::product(id), MAX_HISTORY_EVENTS).await?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!("no product {id}")));
    }
    let history = mall_actors::audit::history(&events)
        .map_err(|e| ApiError::unavailable(format!("cannot decode the product's stream: {e}")))?;
    Ok((events, history))
}

/// Whether a read asks for decision internals: with no `Authorization` header, no; with one, it
/// must be the admin token (a wrong token is refused, not silently answered in public).
pub(super) fn internals(state: &AppState, req: &HttpRequest) -> Result<bool, ApiError> {
    if req.headers().contains_key(actix_web::http::header::AUTHORIZATION) {
        state.tokens.check(req, Scope::Admin)?;
        return Ok(true);
    }
    Ok(false)
}

/// `GET /api/products/{id}/history`: every copy version and decision. In public, what changed,
/// when, and the rule in words; with the admin token also the evidence, the prompts, the raw
/// model output, the guardrails' verdicts and the model's errors.
pub async fn get_history(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: super::query::Query<PositionQuery>,
) -> Result<HttpResponse, ApiError> {
    let internals = internals(&state, &req)?;
    let id = parse_product(path.into_inner())?;
    let position = reached(&state, query.min_position).await;
    let (_, history) = product_history(&state, &id).await?;
    let mut answer = HttpResponse::Ok();
    answer.insert_header((POSITION_HEADER, position.max(history.position).to_string()));
    Ok(if internals { answer.json(&history) } else { answer.json(history.public()) })
}

/// `GET /healthz`.
pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.store.stats().await?;
    let delivered = *state.actors.delivered.borrow();
    // Parked events are a person's to look at: the mall serves, but not everything it holds.
    // A health check answers promptly: a read side that does not (a sink waiting on a lock) is
    // reported, not waited for.
    let read_side = tokio::time::timeout(Duration::from_secs(3), state.read.parked()).await;
    let read_side_answers = read_side.is_ok();
    let parked: Vec<_> = read_side
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(name, p)| json!({"projection": name, "events": p.len(), "first": p.first()}))
        .collect();
    let actors_parked = state.actors.rt.parked();
    let store = state.store.health();
    let (status, mut answer) = match (&store, parked.is_empty() && actors_parked.is_empty() && read_side_answers) {
        // Fail-stop: the log takes no appends until the server is restarted.
        (StoreHealth::Failed { .. }, _) => ("failed", HttpResponse::ServiceUnavailable()),
        (StoreHealth::DiskFull { .. }, _) | (_, false) => ("degraded", HttpResponse::Ok()),
        (StoreHealth::Ok, true) => ("ok", HttpResponse::Ok()),
    };
    Ok(answer.insert_header((POSITION_HEADER, delivered.to_string())).json(json!({
        "status": status,
        "store": store,
        "parked": parked,
        "read_side_answers": read_side_answers,
        "actors_parked": {"events": actors_parked.len(), "first": actors_parked.first()},
        "log_position": stats.last_position,
        "actors_position": delivered,
        "generation_budget": {
            "left": state.actors.rt.budget.left(),
            "per_hour": state.actors.rt.budget.per_hour(),
            "per_product": state.actors.rt.budget.per_subject(),
        },
        "search_budget": {
            "left": state.search.budget.left(),
            "per_hour": state.search.budget.per_hour(),
            "mall_per_hour": state.search.budget.mall_per_hour(),
        },
        "resident": {
            "products": state.actors.products.resident(),
            "districts": state.actors.districts.resident(),
            "shoppers": state.actors.shoppers.resident(),
        },
        "node": state.leases.as_ref().map(|l| json!({
            "id": l.config.id,
            "url": l.config.url,
            "holds": l.held(),
            "owns_core": state.core_lease.token().is_some(),
            "nodes_alive": l.alive(),
            "owners": l.owners(),
        })),
    })))
}
