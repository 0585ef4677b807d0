//! Rate limits: signals per token (`POST /api/signals`), and requests per client address on
//! everything public (a request without a token). A request over its limit is answered 429 with
//! `Retry-After` (whole seconds) and a JSON `message`, before any of it is read. Limits are
//! GCRA buckets (the `governor` crate): a steady rate a second and a burst; 0 turns one off.
//! Idle keys are forgotten every minute.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use super::AppState;

/// One limit: a steady rate a second and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_second: u32,
    pub burst: u32,
}

/// The server's limiters.
pub struct Limits {
    ingest: Option<DefaultKeyedRateLimiter<&'static str>>,
    reads: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(l: Limit) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(l.per_second)?;
    let burst = NonZeroU32::new(l.burst.max(l.per_second)).unwrap_or(rate);
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

impl Limits {
    pub fn new(ingest: Limit, reads: Limit) -> Arc<Self> {
        Arc::new(Limits { ingest: limiter(ingest), reads: limiter(reads) })
    }

    /// Forgets idle keys every minute until shutdown.
    pub async fn tidy(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    if let Some(l) = &self.ingest { l.retain_recent(); }
                    if let Some(l) = &self.reads { l.retain_recent(); }
                }
            }
        }
    }
}

impl Limits {
    /// How long a holder of the `holder` token waits before its next signal post (`None`: now);
    /// the post is counted when it may go.
    pub fn ingest_wait(&self, holder: &'static str) -> Option<Duration> {
        wait(&self.ingest, &holder)
    }

    /// How long a request without a token from `addr` waits (`None`: it may go now, and is
    /// counted).
    pub fn read_wait(&self, addr: IpAddr) -> Option<Duration> {
        wait(&self.reads, &addr)
    }
}

/// How long until `key` may go on, `None` when it may now.
fn wait<K: std::hash::Hash + Eq + Clone>(l: &Option<DefaultKeyedRateLimiter<K>>, key: &K) -> Option<Duration> {
    l.as_ref()?.check_key(key).err().map(|n| n.wait_time_from(DefaultClock::default().now()))
}

/// The middleware: see the module.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let over = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let limits = &state.limits;
        match state.tokens.holder(req.request()) {
            // Calls between nodes (checked by their secret) are the cluster's own traffic.
            _ if req.path().starts_with("/internal/") => None,
            Some(holder) if req.path() == "/api/signals" => {
                limits.ingest_wait(holder).map(|w| (w, format!("the {holder} token's signal posts")))
            }
            Some(_) => None,
            // No token: a public request, limited by where it comes from — for one forwarded
            // by another node, the client's address that node gives.
            None => {
                let given = req.headers().get(super::forward::FORWARDED_FOR).and_then(|v| v.to_str().ok());
                let vouched = given
                    .and_then(|v| v.trim().parse::<IpAddr>().ok())
                    .filter(|_| super::placement::from_a_node(req.request(), state));
                let addr = vouched.or_else(|| req.peer_addr().map(|a| a.ip()))?;
                limits.read_wait(addr).map(|w| (w, format!("requests from {addr}")))
            }
        }
    });
    match over {
        Some((wait, what)) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let res = HttpResponse::TooManyRequests().insert_header(("Retry-After", secs.to_string())).json(
                json!({"message": format!("too many requests: {what} are over their limit; try again in {secs} s")}),
            );
            Ok(req.into_response(res).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}
