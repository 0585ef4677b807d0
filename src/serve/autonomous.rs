//! The autonomous core inside `mall serve`: the task queue's scheduler and the job runner, the
//! executors of the systems that exist (product intelligence), and the control API —
//! `GET /api/autonomous` (systems, jobs, queue) and `POST /api/autonomous` (start, stop,
//! optimize).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_actors::autonomous::jobs::{JobWork, SYSTEMS};
use mall_actors::autonomous::priority;
use mall_actors::autonomous::queue::{Status, Task};
use mall_actors::autonomous::scheduler::{BudgetView, Executor, Request, Scheduler};
use mall_actors::runtime::Runtime;
use mall_actors::runtime::router::Actors;
use mall_events::ids::ProductId;
use mall_projections::catalog::PRODUCTS;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::ingest::{MAX_CATALOG_BODY, body};
use super::placement::{Placement, ProductWork};
use crate::readside::{Filter, ReadSide};

/// The systems whose work exists in this build (the others are listed as not yet available).
pub const AVAILABLE: &[&str] = &[
    "product_intelligence",
    "merchandising",
    "self_healing",
    "district_evolution",
    "analytics",
    "social_media",
    "plugins",
];

/// The runtime's hourly generation budget, as the scheduler sees it.
pub struct RuntimeBudget(pub Arc<Runtime>);

impl BudgetView for RuntimeBudget {
    fn left(&self) -> u64 {
        u64::from(self.0.budget.left())
    }
}

/// The listed product a product-intelligence task is about (`product:ID`).
fn product_of(actors: &Actors, task: &Task) -> Result<ProductId, String> {
    let id = task.subject.strip_prefix("product:").unwrap_or(&task.subject);
    let id = ProductId::parse(id).map_err(|e| e.0)?;
    if !actors.rt.listed(id.as_str()) {
        return Err(format!("no product {id}"));
    }
    Ok(id)
}

/// `product_intelligence` `nudge`: the product's actor looks at its state and decides now. A
/// second run (after a crash) decides from the same state: nothing new happens.
pub struct NudgeProduct(pub Arc<Placement>);

#[async_trait]
impl Executor for NudgeProduct {
    async fn run(&self, task: &Task) -> Result<String, String> {
        let id = product_of(&self.0.actors, task)?;
        self.0.product(&id, ProductWork::Nudge).await
    }
}

/// The learning cycle's record per district for product intelligence: (helped, tried).
async fn track_records(scheduler: &Scheduler) -> HashMap<String, (u64, u64)> {
    scheduler
        .with_queue(|q| {
            let mut by_district: HashMap<String, (u64, u64)> = HashMap::new();
            for i in q.insights().values().filter(|i| i.system == "product_intelligence") {
                let e = by_district.entry(i.district.clone()).or_default();
                *e = (e.0 + i.helped, e.1 + i.tried);
            }
            by_district
        })
        .await
}

/// Product intelligence's decided generations go through the task queue: each becomes a
/// `generate` task for its product, at the priority its own evidence gives it
/// ([`priority::of_decision`]). A generation by the configured model asks the queue for one call
/// of the hourly budget, taken when the task runs: a decision waiting in the queue (its system
/// stopped, say) spends nothing.
///
/// The product's actor may run on another node than the queue: the request goes there.
pub struct QueueGenerations(pub std::sync::Weak<Scheduler>, pub Arc<Placement>);

#[async_trait]
impl mall_actors::runtime::Dispatch for QueueGenerations {
    async fn dispatch(&self, d: &mall_events::domain::OptimizationDecided, district: &str) -> bool {
        let Some(scheduler) = self.0.upgrade() else { return false };
        let (helped, tried) = track_records(&scheduler).await.get(district).copied().unwrap_or_default();
        let inputs = priority::of_decision(d, helped, tried);
        let mut metrics = inputs.metrics();
        metrics.extend(d.evidence.metrics.iter().map(|(k, v)| (k.clone(), *v)));
        let request = Request {
            system: "product_intelligence".into(),
            subject: format!("product:{}", d.product_id),
            action: "generate".into(),
            priority: inputs.priority(),
            reason: format!("{} ({}): {}", d.command.as_str(), d.rule, d.reason),
            metrics,
            generations: u32::from(d.generator == mall_events::domain::GeneratorChoice::Configured),
        };
        match self.1.queue(&scheduler, vec![request]).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(product = %d.product_id, error = %e, "cannot queue a generation; running it now");
                false
            }
        }
    }
}

/// `product_intelligence` `generate`: the product's actor carries out its decision in flight,
/// and the outcome's events carry the task's id as their cause. A second run of the task (after
/// a crash) finds the outcome recorded and does nothing.
pub struct GenerateCopy(pub Arc<Placement>);

#[async_trait]
impl Executor for GenerateCopy {
    async fn run(&self, task: &Task) -> Result<String, String> {
        let id = product_of(&self.0.actors, task)?;
        // A call of the model made on another node is paid from this node's budget too, so
        // that the queue's budget bounds the calls of every node.
        let budget = &self.0.actors.rt.budget;
        let charged = task.generations > 0 && !self.0.runs_here(&id);
        if charged && !budget.take(id.as_str()) {
            return Err(format!("the generation budget has no call left for product {id} this hour"));
        }
        let done = self.0.product(&id, ProductWork::Execute { task: task.id }).await;
        if charged && done.is_err() {
            budget.refund(id.as_str());
        }
        done
    }
}

/// `product_intelligence` `sweep`: queues a nudge for each product with work to do — copy
/// missing (description, SEO, embedding) or an experiment running (which may have passed its
/// longest duration while the product slept).
pub struct Sweep {
    pub read: Arc<ReadSide>,
    pub scheduler: std::sync::OnceLock<std::sync::Weak<Scheduler>>,
}

impl Sweep {
    /// The nudges a sweep queues now, with their reasons; how often product intelligence's
    /// rewrites helped in each product's district (the learning cycle's insights) weighs them.
    async fn work(&self, scheduler: &Scheduler) -> Result<Vec<Request>, String> {
        let rows = self.read.rows("catalog", PRODUCTS, Filter::All).await.map_err(|e| e.to_string())?;
        let records = track_records(scheduler).await;
        let text =
            |r: &mall_projections::change::Row, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut out = Vec::new();
        for r in rows {
            let missing: Vec<&str> = [
                ("description", text(&r, "description").trim().is_empty()),
                ("seo", r.get("seo_title").is_none_or(Value::is_null)),
                ("embedding", r.get("embedding").is_none_or(Value::is_null)),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| k)
            .collect();
            let experiment = r.get("experiment_id").is_some_and(|e| !e.is_null());
            if missing.is_empty() && !experiment {
                continue;
            }
            let reason = if experiment && missing.is_empty() {
                "an experiment is running: its stopping rule is looked at".to_string()
            } else {
                format!("missing: {}", missing.join(", "))
            };
            let confidence = if missing.is_empty() { 0.5 } else { 1.0 };
            let (helped, tried) = records.get(&text(&r, "district")).copied().unwrap_or_default();
            let inputs = priority::Inputs { value: 1.0, scale: 1.0, confidence, helped, tried };
            out.push(Request {
                system: "product_intelligence".into(),
                subject: format!("product:{}", text(&r, "product_id")),
                action: "nudge".into(),
                priority: inputs.priority(),
                reason,
                metrics: inputs.metrics(),
                generations: missing.len() as u32,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Executor for Sweep {
    async fn run(&self, _task: &Task) -> Result<String, String> {
        let scheduler = self.scheduler.get().and_then(|w| w.upgrade()).ok_or("the scheduler is gone")?;
        let work = self.work(&scheduler).await?;
        let n = work.len();
        scheduler.queue(work).await.map_err(|e| e.to_string())?;
        Ok(format!("{n} products queued for a look"))
    }
}

/// The learning cycle's job: reads the concluded experiments, the decisions' rules and the
/// products' districts from the read tables, and records each insight that changed.
pub struct LearningCycle {
    pub read: Arc<ReadSide>,
}

#[async_trait]
impl JobWork for LearningCycle {
    async fn run(&self, scheduler: &Scheduler, _due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        use mall_actors::autonomous::learning::{Concluded, learn};
        use mall_projections::optimization::{EXPERIMENTS, OPTIMIZATION_LOG};
        let err = |e: mall_projections::runner::SinkError| e.to_string();
        let s = |r: &mall_projections::change::Row, k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let n = |r: &mall_projections::change::Row, k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
        let experiments = self.read.rows("optimization", EXPERIMENTS, Filter::All).await.map_err(err)?;
        let concluded: Vec<Concluded> = experiments
            .iter()
            .filter(|r| s(r, "status") != "running")
            .filter_map(|r| {
                Some(Concluded {
                    experiment_id: s(r, "experiment_id").parse().ok()?,
                    decision_id: r.get("decision_id").and_then(Value::as_str).map(str::to_string),
                    product_id: s(r, "product_id"),
                    kept: s(r, "status") == "challenger_won",
                    control: (n(r, "control_views"), n(r, "control_conversions")),
                    challenger: (n(r, "challenger_views"), n(r, "challenger_conversions")),
                })
            })
            .collect();
        if concluded.is_empty() {
            return Ok(Vec::new());
        }
        // A decision's log row holds the whole decision, its rule included.
        let decided =
            self.read.rows("optimization", OPTIMIZATION_LOG, Filter::Eq("kind", "decided")).await.map_err(err)?;
        let rule_of: HashMap<String, String> = decided
            .iter()
            .filter_map(|r| Some((s(r, "decision_id"), r.get("detail")?.get("rule")?.as_str()?.to_string())))
            .collect();
        let products = self.read.rows("catalog", PRODUCTS, Filter::All).await.map_err(err)?;
        let district_of: HashMap<String, String> =
            products.iter().map(|r| (s(r, "product_id"), s(r, "district"))).collect();
        let (system, action) = ("product_intelligence", "rewrite_description");
        let learned = learn(system, action, &concluded, &rule_of, &district_of, mall_events::autonomous::MAX_EVIDENCE);
        let known = scheduler.with_queue(|q| q.insights().clone()).await;
        let now = Utc::now();
        for (key, l) in learned {
            if known.get(&key).is_some_and(|k| (k.tried, k.helped) == (l.tried, l.helped)) {
                continue;
            }
            let e = mall_events::domain::InsightRecorded {
                key,
                system: system.into(),
                action: action.into(),
                district: l.district,
                diagnosis: l.diagnosis,
                tried: l.tried,
                helped: l.helped,
                lift: l.lift,
                evidence: l.evidence,
                at: now,
            };
            scheduler.record(mall_events::domain::DomainEvent::InsightRecorded(e)).await.map_err(|e| e.to_string())?;
        }
        Ok(Vec::new())
    }
}

/// A job that queues one sweep task of its system.
pub struct QueueSweep {
    pub system: &'static str,
    pub reason: &'static str,
}

#[async_trait]
impl JobWork for QueueSweep {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        scheduler
            .queue(vec![sweep_request(self.system, &format!("{} (tick {due})", self.reason))])
            .await
            .map_err(|e| e.to_string())
    }
}

fn sweep_request(system: &str, reason: &str) -> Request {
    Request {
        system: system.into(),
        subject: "mall".into(),
        action: "sweep".into(),
        priority: priority::SWEEP,
        reason: reason.into(),
        metrics: BTreeMap::new(),
        generations: 0,
    }
}

/// The jobs' work in this build.
pub fn job_work(read: &Arc<ReadSide>) -> BTreeMap<&'static str, Arc<dyn JobWork>> {
    BTreeMap::from([
        ("learning_cycle", Arc::new(LearningCycle { read: read.clone() }) as Arc<dyn JobWork>),
        (
            "product_intelligence",
            Arc::new(QueueSweep { system: "product_intelligence", reason: "the scheduled sweep" }) as Arc<dyn JobWork>,
        ),
        (
            "ab_test_analysis",
            Arc::new(QueueSweep { system: "product_intelligence", reason: "the scheduled look at experiments" }),
        ),
    ])
}

/// The queue as an operator reads it (the API and the dashboard): the queued tasks by priority
/// band; the next 20 by standing (not those waiting to retry); the running ones, oldest first;
/// the 20 that ended last, newest first.
pub struct QueueView {
    pub bands: Value,
    pub next: Vec<(Task, f64)>,
    pub running: Vec<Task>,
    pub recent: Vec<Task>,
}

impl QueueView {
    pub fn of(q: &mall_actors::autonomous::queue::Queue, now: DateTime<Utc>) -> QueueView {
        let mut b = [0usize; 4];
        for t in q.tasks().filter(|t| t.status == Status::Queued) {
            b[(t.priority as usize / 25).min(3)] += 1;
        }
        let mut next: Vec<(Task, f64)> = q
            .tasks()
            .filter(|t| t.status == Status::Queued && t.retry_at.is_none())
            .map(|t| (t.clone(), q.standing(t, now)))
            .collect();
        next.sort_by(|a, b| b.1.total_cmp(&a.1));
        next.truncate(20);
        let mut running: Vec<Task> = q.tasks().filter(|t| t.status == Status::Running).cloned().collect();
        running.sort_by_key(|t| t.updated_at);
        running.truncate(20);
        let mut recent: Vec<&Task> =
            q.tasks().filter(|t| !matches!(t.status, Status::Queued | Status::Running)).collect();
        recent.sort_by_key(|t| std::cmp::Reverse(t.updated_at));
        let recent = recent.into_iter().take(20).cloned().collect();
        QueueView { bands: json!({"0-24": b[0], "25-49": b[1], "50-74": b[2], "75-100": b[3]}), next, running, recent }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// `min_position` or `minPosition`: answer once the read side has reached it.
    #[serde(alias = "minPosition")]
    min_position: Option<mall_events::ids::Position>,
}

/// `GET /api/autonomous?min_position=` (admin): every system and job, the queue, the budget,
/// the log.
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    super::storefront::position(&state, q.min_position).await;
    let now = Utc::now();
    let (systems, queue, insights) = state
        .core
        .with_queue(|q| {
            let systems: Vec<Value> = SYSTEMS
                .iter()
                .map(|s| json!({"name": s, "running": !q.is_stopped(s), "available": AVAILABLE.contains(s)}))
                .collect();
            let v = QueueView::of(q, now);
            let queue = json!({
                "queued": q.queued(),
                "running": q.running(),
                "by_priority": v.bands,
                "next": v.next.iter().map(|(t, standing)| task_json(t, Some(*standing))).collect::<Vec<_>>(),
                "running_tasks": v.running.iter().map(|t| task_json(t, None)).collect::<Vec<_>>(),
                "recent": v.recent.iter().map(|t| task_json(t, None)).collect::<Vec<_>>(),
            });
            let insights: Vec<Value> = q.insights().values().map(|i| json!(i)).collect();
            (systems, queue, insights)
        })
        .await;
    let stats = state.store.stats().await?;
    let lag: Vec<Value> = state
        .read
        .status()
        .await
        .into_iter()
        .map(|(name, _, lag, _, _)| json!({"name": name, "positions": lag.positions, "seconds": lag.seconds}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "systems": systems,
        "jobs": state.jobs.status().await,
        "queue": queue,
        "insights": insights,
        "generation_budget": {"left": state.actors.rt.budget.left(), "per_hour": state.actors.rt.budget.per_hour()},
        "log_position": stats.last_position,
        "projection_lag": lag,
    })))
}

/// A task as the API shows it.
pub fn task_json(t: &Task, standing: Option<f64>) -> Value {
    json!({
        "id": t.id, "system": t.system, "subject": t.subject, "action": t.action, "priority": t.priority,
        "standing": standing.map(|s| (s * 10.0).round() / 10.0), "reason": t.reason, "metrics": t.metrics,
        "status": t.status, "attempt": t.attempt, "retry_at": t.retry_at, "outcome": t.outcome,
        "queued_at": t.queued_at, "updated_at": t.updated_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlBody {
    action: String,
    system: Option<String>,
}

/// `POST /api/autonomous` (admin) `{"action": "start" | "stop" | "optimize", "system"?}`: start
/// and stop are events (a stopped system stays stopped after a restart); `optimize` queues a
/// sweep of each running system now and answers with the task ids.
pub async fn control(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let b: ControlBody = mall_events::records::from_json(&body(&state, payload, MAX_CATALOG_BODY).await?)?;
    let systems: Vec<&str> = match &b.system {
        Some(s) => vec![SYSTEMS.iter().copied().find(|x| x == s).ok_or_else(|| {
            ApiError::invalid("system", format!("no system {s:?}; the systems are {}", SYSTEMS.join(", ")))
        })?],
        None => SYSTEMS.to_vec(),
    };
    match b.action.as_str() {
        "start" | "stop" => {
            let running = b.action == "start";
            for s in &systems {
                state.core.switch(s, running, "admin").await?;
            }
            Ok(HttpResponse::Ok().json(json!({"action": b.action, "systems": systems})))
        }
        "optimize" => {
            let (running, tasks) = optimize(&state, &systems).await?;
            Ok(HttpResponse::Accepted().json(json!({"action": "optimize", "systems": running, "tasks": tasks})))
        }
        other => Err(ApiError::invalid("action", format!("{other:?} is not one of start, stop, optimize"))),
    }
}

/// Queues a sweep of each of `systems` that runs and has work in this build, at an admin's
/// priority: the systems swept and their tasks.
pub async fn optimize<'a>(state: &AppState, systems: &[&'a str]) -> Result<(Vec<&'a str>, Vec<Uuid>), ApiError> {
    let running: Vec<&str> = state
        .core
        .with_queue(|q| systems.iter().copied().filter(|s| AVAILABLE.contains(s) && !q.is_stopped(s)).collect())
        .await;
    let requests: Vec<Request> = running
        .iter()
        .map(|s| Request { priority: priority::ADMIN, ..sweep_request(s, "an admin asked to optimize now") })
        .collect();
    let tasks = state.core.queue(requests).await?;
    Ok((running, tasks))
}

/// Queues an admin's `request` and waits (up to a minute) for its task: `Ok(id)` once it
/// succeeded; otherwise the answer to give — 202 with the task while it waits (its system
/// stopped, say), 500 with its error when it failed. `what` names it in the error.
pub async fn run_now(state: &AppState, request: Request, what: &str) -> Result<Result<Uuid, HttpResponse>, ApiError> {
    let ids = state.core.queue(vec![request]).await?;
    let id = ids.first().copied().ok_or_else(|| ApiError::unavailable(format!("the {what} was not queued")))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let task = state.core.with_queue(|q| q.task(&id).cloned()).await;
        match task {
            Some(t) if t.status == Status::Succeeded => return Ok(Ok(id)),
            Some(t) if t.status == Status::Failed || t.status == Status::Cancelled => {
                let message = format!("the {what} failed: {}", t.outcome.unwrap_or_default());
                return Ok(Err(HttpResponse::InternalServerError().json(json!({"message": message, "task": id}))));
            }
            _ if std::time::Instant::now() > deadline => {
                return Ok(Err(HttpResponse::Accepted().json(json!({"task": id, "status": "queued"}))));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
