//! Work for an actor goes where the actor runs. With several nodes on one database the products'
//! actors are shared out in shards (each a lease, [`mall_actors::runtime::shards`]) and the task
//! queue is the core's: a task the core runs for a product (a nudge, a generation, a price test)
//! is sent to the node running the product's shard, and a generation a product decides is sent to
//! the node running the queue. Those calls are internal (`/internal/...`): they carry the secret
//! the nodes share in the database ([`SECRET`]) and are answered only by a node that holds what
//! they are for (503 otherwise: the caller's task fails and is tried again once leases settle).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use mall_actors::autonomous::scheduler::{Request, Scheduler};
use mall_actors::product::PriceProposal;
use mall_actors::product::actor::StartPriceTest;
use mall_actors::runtime::entity::{Execute, Nudge, Product};
use mall_actors::runtime::router::Actors;
use mall_actors::runtime::shards::{self, shard_of_actor};
use mall_events::ids::ProductId;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use crate::cluster::{AUTONOMOUS, Leases};

/// The header an internal call carries the nodes' shared secret in.
pub const SECRET: &str = "x-mall-cluster-secret";
/// The largest internal call's body.
const MAX_BODY: usize = 1 << 20;

/// Work for a product's actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum ProductWork {
    /// Look at the state and decide now.
    Nudge,
    /// Carry out the decision in flight for task `task`.
    Execute { task: Uuid },
    /// Put a proposed price to a test.
    PriceTest { proposal: PriceProposal },
}

/// Sends work to where the actors and the queue run.
pub struct Placement {
    pub actors: Arc<Actors>,
    pub leases: Option<Arc<Leases>>,
    pub client: reqwest::Client,
}

impl Placement {
    /// Whether the product's actor runs on this node.
    pub fn runs_here(&self, id: &ProductId) -> bool {
        self.leases.is_none() || self.actors.rt.shards().holds::<Product>(id)
    }

    /// Has the product's actor do `work`, here when this node runs its shard, else on the node
    /// that does; what it answered.
    pub async fn product(&self, id: &ProductId, work: ProductWork) -> Result<String, String> {
        let shard = shard_of_actor::<Product>(id);
        let leases = match &self.leases {
            Some(l) if !self.runs_here(id) => l,
            _ => return self.here(id, work).await,
        };
        let lease = shards::lease(shard);
        let owner = leases
            .owner_url(&lease)
            .ok_or_else(|| format!("no node runs product {id}'s shard right now (one is taking it over)"))?;
        self.call(leases, &lease, &owner, &format!("/internal/products/{id}"), &work).await
    }

    /// Has the product's actor do `work` here.
    pub async fn here(&self, id: &ProductId, work: ProductWork) -> Result<String, String> {
        let no_answer = |e: actix::MailboxError| format!("the product's actor did not answer: {e}");
        let products = &self.actors.products;
        match work {
            ProductWork::Nudge => {
                products.send(id, Nudge).await.map_err(no_answer)?;
                Ok(format!("product {id} looked at its state"))
            }
            ProductWork::Execute { task } => products.send(id, Execute { task }).await.map_err(no_answer)?,
            ProductWork::PriceTest { proposal } => products
                .send(id, StartPriceTest(proposal))
                .await
                .map_err(no_answer)?
                .map(|test| format!("price test {test} started")),
        }
    }

    /// Queues `requests` on the node running the task queue (this one, or the one holding the
    /// core's lease); the tasks' ids.
    pub async fn queue(&self, scheduler: &Scheduler, requests: Vec<Request>) -> Result<Vec<Uuid>, String> {
        let leases = match &self.leases {
            Some(l) if l.lease(AUTONOMOUS).token().is_none() => l,
            _ => return scheduler.queue(requests).await.map_err(|e| e.to_string()),
        };
        let owner = leases
            .owner_url(AUTONOMOUS)
            .ok_or_else(|| "no node runs the task queue right now (one is taking it over)".to_string())?;
        let answer = self.call(leases, AUTONOMOUS, &owner, "/internal/queue", &requests).await?;
        serde_json::from_str(&answer).map_err(|e| format!("the queue's node answered what is not task ids: {e}"))
    }

    /// Posts `body` to `path` on `owner`, the node holding `lease`, while it holds it (a paused
    /// or cut-off holder loses it within its time to live; the caller's task is then tried again
    /// where the lease went).
    async fn call<B: Serialize>(
        &self,
        leases: &Leases,
        lease: &str,
        owner: &str,
        path: &str,
        body: &B,
    ) -> Result<String, String> {
        let url = format!("{owner}{path}");
        let sent = async {
            let resp = self
                .client
                .post(&url)
                .header(SECRET, leases.secret.as_str())
                .header(super::forward::FORWARDED, leases.config.id.as_str())
                .json(body)
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {e}"))?;
            let status = resp.status();
            let answer: serde_json::Value = resp.json().await.map_err(|e| format!("{url} answered {status}: {e}"))?;
            Ok::<_, String>((status, answer))
        };
        let (status, answer) = leases
            .while_held(lease, owner, sent)
            .await
            .ok_or_else(|| format!("{url} stopped answering and lost lease {lease}"))??;
        match (answer.get("ok"), answer.get("error"), answer.get("message")) {
            (Some(ok), _, _) if status.is_success() => {
                Ok(ok.as_str().map(str::to_string).unwrap_or_else(|| ok.to_string()))
            }
            (_, Some(error), _) if status.is_success() => Err(error.as_str().unwrap_or_default().to_string()),
            (_, _, Some(m)) => Err(format!("{url} answered {status}: {}", m.as_str().unwrap_or_default())),
            _ => Err(format!("{url} answered {status}")),
        }
    }
}

/// Whether a request carries the nodes' secret (compared in constant time).
pub(crate) fn from_a_node(req: &HttpRequest, state: &AppState) -> bool {
    let (Some(leases), Some(given)) = (&state.leases, req.headers().get(SECRET)) else { return false };
    let (a, b) = (leases.secret.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer<T: Serialize>(r: Result<T, String>) -> HttpResponse {
    match r {
        Ok(ok) => HttpResponse::Ok().json(json!({ "ok": ok })),
        Err(error) => HttpResponse::Ok().json(json!({ "error": error })),
    }
}

/// The body of an internal call, once it is known to come from a node (before it is read) and to
/// be within bounds; else the answer to give.
async fn internal_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    state: &AppState,
    payload: &mut web::Payload,
    field: &str,
) -> Result<T, HttpResponse> {
    if !from_a_node(req, state) {
        return Err(HttpResponse::Unauthorized().json(json!({"message": "an internal call between nodes"})));
    }
    let body = super::forward::bounded_body(payload, MAX_BODY, state.body_timeout).await?;
    serde_json::from_slice(&body)
        .map_err(|e| HttpResponse::BadRequest().json(json!({"message": format!("{field}: {e}"), "field": field})))
}

/// `POST /internal/products/{id}`: work for a product's actor, from another node.
pub async fn product_work(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut body: web::Payload,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let work: ProductWork = match internal_body(&req, &state, &mut body, "work").await {
        Ok(w) => w,
        Err(answer) => return answer,
    };
    let Ok(id) = ProductId::parse(path.into_inner()) else {
        return HttpResponse::BadRequest().json(json!({"message": "id: not a product id", "field": "id"}));
    };
    if !state.actors.rt.shards().holds::<Product>(&id) {
        return super::forward::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node does not run product {id}'s shard"),
        );
    }
    answer(state.placement.here(&id, work).await)
}

/// `POST /internal/queue`: tasks for the queue, from another node's actors.
pub async fn queue(req: HttpRequest, state: web::Data<AppState>, mut body: web::Payload) -> HttpResponse {
    use actix_web::http::StatusCode;
    let requests: Vec<Request> = match internal_body(&req, &state, &mut body, "requests").await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if state.core_lease.token().is_none() {
        return super::forward::retry_later(StatusCode::SERVICE_UNAVAILABLE, "this node does not run the task queue");
    }
    answer(state.core.queue(requests).await.map_err(|e| e.to_string()))
}
