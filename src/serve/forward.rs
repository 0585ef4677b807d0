//! Requests for the autonomous core (its API and the dashboard) go to the node that owns it: a
//! node that does not hold the core's lease forwards them there, body and headers, and answers
//! with what the owner answered. Storefront reads, ingest and the read side are every node's own.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;

use super::AppState;
use super::placement::SECRET;
use crate::cluster::AUTONOMOUS;

/// Set on a forwarded request (naming the node that forwarded it): it is never forwarded again,
/// and a node that does not hold the core refuses it (503, retry) rather than answer for the core.
pub const FORWARDED: &str = "x-mall-forwarded-by";
/// The largest body forwarded.
const MAX_BODY: usize = 4 << 20;
/// Headers that belong to one connection, not to the request.
const HOP: &[&str] = &["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te"];
/// The client's address on a request a node forwards (read by the owner only when the request
/// also shows the nodes' secret; a client's own is dropped).
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client requests are forwarded with.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// Whether the node owning the core serves `path`.
pub fn for_core(path: &str) -> bool {
    (path.starts_with("/api/autonomous") && !path.starts_with("/api/autonomous/personalize"))
        || path.starts_with("/admin/autonomous")
}

fn json(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "message": message }))
}

/// An answer that asks the caller to try again in a second (`Retry-After: 1`), as JSON.
pub fn retry_later(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    let mut answer = json(status, message.into());
    answer
        .headers_mut()
        .insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from_static("1"));
    answer
}

/// A request's body, read as it arrives up to `max` bytes and within `timeout`; else the answer
/// to give (413, 400 or 408, as JSON).
pub async fn bounded_body<S>(
    payload: &mut S,
    max: usize,
    timeout: std::time::Duration,
) -> Result<web::Bytes, HttpResponse>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut body = web::BytesMut::new();
    let read = tokio::time::timeout(timeout, async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| json(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")))?;
            if body.len() + chunk.len() > max {
                return Err(json(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(body.freeze()),
        Ok(Err(answer)) => Err(answer),
        Err(_) => Err(json(StatusCode::REQUEST_TIMEOUT, "the body took too long to arrive".into())),
    }
}

/// The middleware.
pub async fn to_owner(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let local = match &state {
        Some(s) => s.leases.is_none() || s.core_lease.token().is_some() || !for_core(req.path()),
        None => true,
    };
    if local {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    // Forwarded here as the core moved on (or the header came from a client): not forwarded
    // again, and not answered by a node that does not hold the core.
    if req.headers().contains_key(FORWARDED) {
        let answer = retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node does not hold the autonomous core (it moved on); retry",
        );
        return Ok(req.into_response(answer));
    }
    let state = state.expect("checked");
    let leases = state.leases.as_ref().expect("checked");
    let Some(owner) = leases.owner_url(AUTONOMOUS) else {
        let answer = retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "no node holds the autonomous core right now (one is taking it over); retry",
        );
        return Ok(req.into_response(answer));
    };
    let target = format!("{owner}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    // The dashboard's live stream lasts: the browser is sent to the owner.
    if req.path() == "/admin/autonomous/live" {
        let answer = HttpResponse::TemporaryRedirect().insert_header(("Location", target)).finish();
        return Ok(req.into_response(answer));
    }
    let (http, mut payload) = req.into_parts();
    let body = match bounded_body(&mut payload, MAX_BODY, state.body_timeout).await {
        Ok(body) => body,
        Err(answer) => return Ok(ServiceResponse::new(http, answer)),
    };
    let method = reqwest::Method::from_bytes(http.method().as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut out = state.forwarder.request(method, &target);
    for (name, value) in http.headers() {
        if !HOP.contains(&name.as_str()) && ![SECRET, FORWARDED_FOR].contains(&name.as_str()) {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    // The owner limits a public request by the client's address, not by this node's: the nodes'
    // secret vouches for the address given.
    out = out.header(FORWARDED, leases.config.id.as_str()).header(SECRET, leases.secret.as_str());
    if let Some(addr) = http.peer_addr() {
        out = out.header(FORWARDED_FOR, addr.ip().to_string());
    }
    // Sent while the owner holds the core: a paused or cut-off owner loses it within its time
    // to live, and the caller is then told to retry (it lands on the new owner) rather than
    // wait out the client's timeout.
    let sent = async {
        let resp = out.body(body).send().await?;
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut answer = HttpResponse::build(status);
        for (name, value) in resp.headers() {
            if !HOP.contains(&name.as_str()) {
                answer.append_header((name.as_str(), value.as_bytes()));
            }
        }
        Ok::<_, reqwest::Error>(answer.body(resp.bytes().await?))
    };
    let answer = match leases.while_held(AUTONOMOUS, &owner, sent).await {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => {
            tracing::warn!(owner = %owner, error = %e, "cannot forward to the core's owner");
            retry_later(StatusCode::BAD_GATEWAY, format!("the node owning the autonomous core did not answer: {e}"))
        }
        None => {
            tracing::warn!(owner = %owner, "the core moved on while a request forwarded to its owner waited");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node owning the autonomous core stopped answering and lost it; retry",
            )
        }
    };
    Ok(ServiceResponse::new(http, answer))
}
