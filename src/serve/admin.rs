//! Administration: the projections' status, their rebuild (in memory, or PostgreSQL tables beside
//! the live ones, as `mall projections rebuild` does against the database) and parked events.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::ingest::{MAX_CATALOG_BODY, body};
use crate::readside::RebuildError;

/// `GET /api/admin/projections`: name, version, checkpoint, lag, any rebuild's progress, parked
/// events, and the image (in memory) the projection started from.
pub async fn projections(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let parked: std::collections::HashMap<String, _> = state.read.parked().await.into_iter().collect();
    let rows: Vec<_> = state
        .read
        .status_everywhere()
        .await
        .into_iter()
        .map(|(name, version, lag, rebuild, image)| {
            let parked = parked.get(&name).cloned().unwrap_or_default();
            let image = image.map(|checkpoint| json!({"checkpoint": checkpoint}));
            json!({"name": name, "version": version, "lag": lag, "rebuild": rebuild, "parked": parked, "image": image})
        })
        .collect();
    Ok(HttpResponse::Ok().json(
        json!({"sink": if state.read.database_url.is_some() { "postgres" } else { "memory" }, "projections": rows}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    /// One projection; all when left out.
    name: Option<String>,
    #[serde(default)]
    verify: bool,
    /// Whether to answer when the rebuild has ended (the default) or at once (202), its progress
    /// and outcome then in `GET /api/admin/projections`.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/admin/projections/rebuild` `{"name"?, "verify"?, "wait"?}`: rebuilds beside the
/// live projection (in memory, or shadow tables in PostgreSQL) and swaps it in; answers with the
/// position swapped in at and the differences found when `verify`, or with 202 at once when
/// `wait` is false. A projection being rebuilt already, here or (on PostgreSQL) by another
/// process, is refused with 409. The rebuild runs on its own: a client that goes away (a proxy's
/// timeout, say) does not stop it half-way.
pub async fn rebuild(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let b: RebuildBody = mall_events::records::from_json(&body(&state, payload, MAX_CATALOG_BODY).await?)?;
    let targets = match &b.name {
        Some(n) => vec![state.read.get(n).ok_or_else(|| ApiError::invalid("name", format!("no projection {n}")))?],
        None => state.read.followed.clone(),
    };
    let names: Vec<String> = targets.iter().map(|f| f.projection.name().to_string()).collect();
    // Refused at once, whether or not the caller waits (a rebuild starting in between is still
    // refused by the rebuild itself; without waiting, its error shows in the status).
    if let Some(name) = state.read.rebuilding().await.into_iter().find(|n| names.contains(n)) {
        return Err(running(RebuildError::Running(name).to_string()));
    }
    let verify = b.verify;
    let read = state.read.clone();
    let work = async move {
        let refused = |e: RebuildError| match e {
            RebuildError::Running(_) => running(e.to_string()),
            RebuildError::Sink(e) => ApiError::unavailable(e.to_string()),
        };
        if read.database_url.is_some() {
            let rebuilt = read.rebuild_postgres(&targets, verify).await.map_err(refused)?;
            return Ok(json!({"rebuilt": rebuilt}));
        }
        let mut results = Vec::new();
        for f in targets {
            let differences = read.rebuild_memory(&f, verify).await.map_err(refused)?;
            let checkpoint = *f.applied.borrow();
            results.push(json!({"name": f.projection.name(), "checkpoint": checkpoint, "differences": differences}));
        }
        Ok::<_, ApiError>(json!({"rebuilt": results}))
    };
    let task = actix_web::rt::spawn(work);
    if !b.wait {
        return Ok(HttpResponse::Accepted().json(json!({"rebuilding": names, "status": "/api/admin/projections"})));
    }
    let rebuilt = task.await.map_err(|e| ApiError::unavailable(format!("the rebuild stopped: {e}")))??;
    Ok(HttpResponse::Ok().json(rebuilt))
}

/// 409 naming the projection asked for.
fn running(message: String) -> ApiError {
    ApiError::invalid("name", message).with_status(actix_web::http::StatusCode::CONFLICT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// One projection; all when left out.
    name: Option<String>,
}

/// `POST /api/admin/projections/retry` `{"name"?}`: applies the parked events again (after a
/// fix); answers with those applied and those still parked.
pub async fn retry(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let b: RetryBody = mall_events::records::from_json(&body(&state, payload, MAX_CATALOG_BODY).await?)?;
    let targets = match &b.name {
        Some(n) => vec![state.read.get(n).ok_or_else(|| ApiError::invalid("name", format!("no projection {n}")))?],
        None => state.read.followed.clone(),
    };
    let mut results = Vec::new();
    for f in targets {
        let r = state.read.retry(&f).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
        results.push(json!({"name": f.projection.name(), "applied": r.applied, "still_parked": r.still_parked}));
    }
    Ok(HttpResponse::Ok().json(json!({"retried": results})))
}
