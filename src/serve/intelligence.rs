//! `GET /api/autonomous/products`: what product intelligence is doing, from the `optimization`
//! tables (the log of decisions, experiments, copy history), and for one product also its
//! actor's live state — the window of signals its next decision will look at, the command in
//! flight, each experiment arm's figures so far.

use actix_web::{HttpResponse, web};
use mall_actors::product::ProductState;
use mall_actors::runtime::entity::{Get, Product};
use mall_events::ids::{Position, ProductId};
use mall_projections::change::Row;
use mall_projections::optimization::{COPY_HISTORY, EXPERIMENTS, OPTIMIZATION_LOG};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::reads::POSITION_HEADER;
use super::storefront::{position, sink_error};
use crate::readside::Filter;

/// The most log rows one answer carries.
const MAX_LIMIT: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelligenceQuery {
    /// Also spelled `productId` (the seed's spelling).
    #[serde(alias = "productId")]
    product_id: Option<String>,
    limit: Option<usize>,
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

fn by_position(rows: &mut [Row]) {
    let p = |r: &Row| r.get("position").and_then(Value::as_u64).unwrap_or(0);
    rows.sort_by_key(|r| std::cmp::Reverse(p(r)));
}

/// A log row without decision internals: no `detail`, and a rejection said in public words.
fn public_row(mut row: Row) -> Row {
    row.remove("detail");
    if row.get("kind").and_then(Value::as_str) == Some("rejected") {
        let summary = row.get("summary").and_then(Value::as_str).unwrap_or("").to_string();
        row.insert("summary".into(), Value::String(mall_actors::audit::public_rejection(&summary)));
    }
    row
}

/// `GET /api/autonomous/products?product_id=&limit=&min_position=`. The log's `detail` (the
/// prompt, raw output, verdicts and model errors) only with the admin token.
pub async fn products(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    q: super::query::Query<IntelligenceQuery>,
) -> Result<HttpResponse, ApiError> {
    let internals = super::reads::internals(&state, &req)?;
    let redact =
        |rows: Vec<Row>| -> Vec<Row> { if internals { rows } else { rows.into_iter().map(public_row).collect() } };
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let at = position(&state, q.min_position).await;
    let read = &state.read;
    let body = match &q.product_id {
        None => {
            let log =
                redact(read.rows("optimization", OPTIMIZATION_LOG, Filter::Last(limit)).await.map_err(sink_error)?);
            let running =
                read.rows("optimization", EXPERIMENTS, Filter::Eq("status", "running")).await.map_err(sink_error)?;
            json!({"running_experiments": running, "log": log})
        }
        Some(id) => {
            let id = ProductId::parse(id.clone()).map_err(|e| ApiError::invalid("product_id", e.0))?;
            if !state.actors.rt.listed(id.as_str()) {
                return Err(ApiError::not_found(format!("no product {id}")));
            }
            let eq = || Filter::Eq("product_id", id.as_str());
            let mut log = read.rows("optimization", OPTIMIZATION_LOG, eq()).await.map_err(sink_error)?;
            by_position(&mut log);
            log.truncate(limit);
            let log = redact(log);
            let mut experiments = read.rows("optimization", EXPERIMENTS, eq()).await.map_err(sink_error)?;
            let started = |r: &Row| r.get("started_position").and_then(Value::as_u64).unwrap_or(0);
            experiments.sort_by_key(|r| std::cmp::Reverse(started(r)));
            let prefix = format!("{id}/");
            let group = Filter::Group { column: "product_id", value: id.as_str(), prefix: &prefix };
            let mut copy = read.rows("optimization", COPY_HISTORY, group).await.map_err(sink_error)?;
            by_position(&mut copy);
            let actor = actor_state(&state, &id).await?;
            json!({"product_id": id, "actor": actor, "experiments": experiments, "copy_history": copy, "log": log})
        }
    };
    Ok(HttpResponse::Ok().insert_header((POSITION_HEADER, at.to_string())).json(body))
}

/// The product actor's live state (activated if needed).
async fn actor_state(state: &AppState, id: &ProductId) -> Result<Value, ApiError> {
    let s: ProductState = state
        .actors
        .products
        .get(id)
        .send(Get::<Product>::default())
        .await
        .map_err(|e| ApiError::unavailable(format!("the product's actor did not answer: {e}")))?
        .filter(ProductState::is_listed)
        .ok_or_else(|| ApiError::unavailable(format!("product {id} could not be loaded")))?;
    Ok(json!({
        "copy_version": s.copy_version,
        "embedding_current": s.embedding_of == Some(s.copy_hash()),
        "in_flight": s.in_flight,
        "experiment": s.experiment.as_ref().map(|x| json!({
            "experiment_id": x.experiment_id,
            "started_at": x.started_at,
            "arms": {"control": x.arms[0], "challenger": x.arms[1]},
        })),
        "metrics": {"total": s.total, "window": s.window, "window_from": s.window_from},
        "last_decided": s.last_decided,
        "failures": s.failures.iter().map(|(c, f)| (c.as_str().to_string(), json!({
            "in_a_row": f.in_a_row,
            "last_at": f.last_at,
            "needs_a_person": mall_actors::product::needs_a_person(&state.actors.rt.config.policy, f),
        }))).collect::<serde_json::Map<_, _>>(),
        "stream_version": s.version,
        "position": s.position,
    }))
}
