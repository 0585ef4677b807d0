//! A span for every request, carrying its correlation id: the client's `X-Correlation-Id` when it
//! is a UUID, else a new one (UUIDv7); answered in the same header, so that a client, the logs
//! (`MALL_LOG_FORMAT=json` prints each line with its spans) and an operator speak of one request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;
use uuid::Uuid;

/// The header a request's correlation id travels in.
pub const HEADER: &str = "x-correlation-id";

/// The request's correlation id (in its extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correlation(pub Uuid);

/// The middleware: see the module.
pub async fn span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .unwrap_or_else(Uuid::now_v7);
    req.extensions_mut().insert(Correlation(id));
    let span = tracing::info_span!("request", method = %req.method(), path = %req.path(), correlation_id = %id);
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert(HeaderName::from_static(HEADER), v);
    }
    let route = res.request().match_pattern().unwrap_or_else(|| "UNKNOWN".into());
    span.in_scope(|| {
        tracing::info!(route, status = res.status().as_u16(), ms = started.elapsed().as_millis() as u64, "answered")
    });
    Ok(res)
}
