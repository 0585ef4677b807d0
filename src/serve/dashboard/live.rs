//! The dashboard, live: `GET /admin/autonomous/live?since=` is a stream of server-sent events
//! for a signed-in session — every second `counts` (log position and rate, queue, budget, model
//! calls and rejections, resident actors, parked events) and a `decision` for each row of product
//! intelligence's log past `since` — and `live.js`, served from the binary, puts them on the page.
//! The stream ends when the session does or the server begins to stop.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use mall_projections::optimization::{OPTIMIZATION_LOG, pos_key};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, HOME, text};
use crate::readside::Filter;

/// The page's script: no framework, no build step.
const SCRIPT: &str = include_str!("live.js");
const TICK: Duration = Duration::from_secs(1);
/// The most decisions one tick sends.
const MAX_A_TICK: usize = 200;

/// `GET /admin/autonomous/live.js`.
pub async fn script(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if state.sessions.of(&req).is_none() {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(SCRIPT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// Decisions past this position of the log (what the page already shows).
    since: Option<u64>,
}

struct Cursor {
    state: web::Data<AppState>,
    session: String,
    since: u64,
    last: Option<(u64, Instant)>,
    draining: tokio::sync::watch::Receiver<bool>,
    first: bool,
}

/// The counts the page shows, by the `data-count` names of its elements.
async fn counts(state: &AppState, last: &mut Option<(u64, Instant)>) -> Value {
    let position = state.store.stats().await.map(|s| s.last_position).unwrap_or(0);
    let now = Instant::now();
    let rate = match *last {
        Some((p, at)) if now > at => (position.saturating_sub(p)) as f64 / (now - at).as_secs_f64(),
        _ => 0.0,
    };
    *last = Some((position, now));
    let (queued, running) = state.core.with_queue(|q| (q.queued(), q.running())).await;
    let (calls, failed) = state.metrics.model_call_counts();
    let a = &state.actors;
    json!({
        "position": position,
        "rate": format!("{rate:.1}"),
        "queued": queued,
        "running": running,
        "budget_left": a.rt.budget.left(),
        "model_calls": calls,
        "model_failures": failed,
        "rejections": state.metrics.events_of("generation_rejected"),
        "resident_products": a.products.resident(),
        "resident_districts": a.districts.resident(),
        "resident_shoppers": a.shoppers.resident(),
        "parked": a.rt.parked().len(),
    })
}

/// A row of product intelligence's log as the page shows it.
pub fn decision_json(r: &mall_projections::change::Row) -> Value {
    let get = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let href = match (get("product_id").as_str(), get("decision_id").as_str()) {
        (Some(p), Some(d)) => json!(format!("{HOME}/decisions/{p}/{d}")),
        _ => Value::Null,
    };
    json!({
        "position": get("position"),
        "at": text(&get("at")),
        "product_id": text(&get("product_id")),
        "kind": text(&get("kind")),
        "summary": text(&get("summary")),
        "href": href,
    })
}

async fn frame(c: &mut Cursor) -> String {
    let mut out = String::new();
    if c.first {
        out.push_str("retry: 2000\n\n");
    }
    let counts = counts(&c.state, &mut c.last).await;
    out.push_str(&format!("event: counts\ndata: {counts}\n\n"));
    // Every row past the cursor, a page a tick (what does not fit comes the next second).
    let after = pos_key(c.since);
    match c.state.read.rows("optimization", OPTIMIZATION_LOG, Filter::After(&after, MAX_A_TICK)).await {
        Ok(rows) => {
            for r in &rows {
                c.since = c.since.max(r.get("position").and_then(Value::as_u64).unwrap_or(0));
                out.push_str(&format!("event: decision\ndata: {}\n\n", decision_json(r)));
            }
        }
        Err(e) => tracing::warn!(error = %e, "the live dashboard cannot read the optimization log"),
    }
    out
}

/// `GET /admin/autonomous/live?since=`: the stream.
pub async fn live(req: HttpRequest, state: web::Data<AppState>, q: web::Query<LiveQuery>) -> HttpResponse {
    let Some((session, _)) = state.sessions.of(&req) else { return HttpResponse::Unauthorized().finish() };
    let cursor = Cursor {
        draining: state.draining.clone(),
        state: state.clone(),
        session,
        since: q.since.unwrap_or(0),
        last: None,
        first: true,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        if !c.first {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = c.draining.wait_for(|d| *d) => return None,
            }
        }
        if *c.draining.borrow() || !c.state.sessions.alive(&c.session) {
            return None;
        }
        let f = frame(&mut c).await;
        c.first = false;
        Some((Ok::<_, std::convert::Infallible>(web::Bytes::from(f)), c))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}
