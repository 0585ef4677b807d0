//! `GET /metrics` (admin) in the Prometheus text format: what an operator graphs and alerts on.
//!
//! - Requests by route pattern, method and status, with latency histograms
//!   (`mall_http_requests_total`, `mall_http_requests_duration_seconds`; the `actix-web-prom`
//!   middleware, unmatched paths masked so that no client can grow the label set).
//! - Every event the log takes, by type (`mall_events_total`): signals ingested, task outcomes
//!   (`task_succeeded`, `task_failed`, ...), job runs (`job_ran`), generations rejected by the
//!   guardrails (`generation_rejected`), counted by a follower of the log from the position the
//!   server started at.
//! - Appends: their latency and outcome (`mall_append_seconds`), events appended.
//! - Model calls by kind (`generate`, `complete`, `embed`) and outcome, with latency.
//! - Read at each scrape: the log position, each projection's lag in positions and seconds,
//!   resident actors by kind, the task queue by status, the generation budget left, events parked.
//! - Several nodes on one PostgreSQL: the nodes alive and every lease by kind and holder (this
//!   node, another, nobody) as of this node's last lease round — what to alert on when a share
//!   stays unheld past the takeover bound (`mall_cluster_leases{held_by="nobody"}`).

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use mall_actors::executors::{Embedder, Facts, GenerationError, Generator};
use mall_events::domain::CommandKind;
use mall_events::{AppendResult, EventStore, ExpectedVersion, NewEvent, Position, StoreError, StreamId};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;

/// Latency buckets for appends and model calls, in seconds.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The server's metrics and the registry they are gathered from.
pub struct Metrics {
    pub registry: Registry,
    events: IntCounterVec,
    append_seconds: HistogramVec,
    appended: IntCounter,
    model_calls: IntCounterVec,
    model_seconds: HistogramVec,
    log_position: IntGauge,
    lag_positions: IntGaugeVec,
    lag_seconds: GaugeVec,
    resident: IntGaugeVec,
    queue: IntGaugeVec,
    budget_left: IntGauge,
    budget_per_hour: IntGauge,
    parked: IntGauge,
    nodes: IntGaugeVec,
    leases: IntGaugeVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("every metric is registered once");
    c
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&r, IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric"))
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&r, IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric"))
        };
        let gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help).expect("a valid metric"));
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()), labels)
                    .expect("a valid metric"),
            )
        };
        Arc::new(Metrics {
            events: counter_vec(
                "mall_events_total",
                "Events the log took since the server started, by type.",
                &["type"],
            ),
            append_seconds: histogram_vec("mall_append_seconds", "Append latency by outcome.", &["outcome"]),
            appended: register(
                &r,
                IntCounter::new("mall_appended_events_total", "Events appended by this server.")
                    .expect("a valid metric"),
            ),
            model_calls: counter_vec(
                "mall_model_calls_total",
                "Calls to the generator and embedder by kind, generator and outcome.",
                &["kind", "generator", "outcome"],
            ),
            model_seconds: histogram_vec("mall_model_call_seconds", "Model call latency by kind.", &["kind"]),
            log_position: gauge("mall_log_position", "The log's last position."),
            lag_positions: gauge_vec(
                "mall_projection_lag_positions",
                "Positions of the log a projection has not applied yet.",
                &["projection"],
            ),
            lag_seconds: register(
                &r,
                GaugeVec::new(
                    Opts::new("mall_projection_lag_seconds", "How far behind the log a projection is, in seconds."),
                    &["projection"],
                )
                .expect("a valid metric"),
            ),
            resident: gauge_vec("mall_resident_actors", "Actors in memory by kind.", &["kind"]),
            queue: gauge_vec("mall_task_queue", "Tasks in the queue by status.", &["status"]),
            budget_left: gauge("mall_generation_budget_left", "Model calls left in the rolling hour."),
            budget_per_hour: gauge("mall_generation_budget_per_hour", "Model calls allowed per rolling hour."),
            parked: gauge("mall_parked_events", "Events an actor could not fold, set aside for a person."),
            nodes: gauge_vec(
                "mall_cluster_nodes",
                "Nodes sharing the database, as of this node's last lease round (several nodes only).",
                &["state"],
            ),
            leases: gauge_vec(
                "mall_cluster_leases",
                "Leases by kind (core, actor_shard, projection) and holder (this_node, other_node, nobody), \
                 as of this node's last lease round (several nodes only).",
                &["kind", "held_by"],
            ),
            registry: r,
        })
    }

    /// Counts the log's events from `from` until shutdown.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn EventStore>,
        from: Position,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut sub = mall_events::store::subscribe_all(store, from);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                next = sub.next() => match next {
                    Some(Ok(e)) => self.saw(&e.event_type),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the metrics follower lost the log; it picks up again");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    None => return,
                },
            }
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }

    /// Counts one event of the log (what the follower does for each).
    pub fn saw(&self, event_type: &str) {
        self.events.with_label_values(&[event_type]).inc();
    }

    /// Events of a type the log took since the server started.
    pub fn events_of(&self, event_type: &str) -> u64 {
        self.events.with_label_values(&[event_type]).get()
    }

    /// Model calls since the server started: (answered, failed).
    pub fn model_call_counts(&self) -> (u64, u64) {
        use prometheus::core::Collector;
        let (mut ok, mut failed) = (0, 0);
        for family in self.model_calls.collect() {
            for m in family.get_metric() {
                let n = m.get_counter().get_value() as u64;
                if m.get_label().iter().any(|l| l.name() == "outcome" && l.value() == "ok") {
                    ok += n;
                } else {
                    failed += n;
                }
            }
        }
        (ok, failed)
    }

    fn model_call(&self, kind: &str, generator: &str, ok: bool, started: Instant) {
        self.model_calls.with_label_values(&[kind, generator, if ok { "ok" } else { "error" }]).inc();
        self.model_seconds.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
    }
}

/// The store, its appends timed.
pub struct MeteredStore {
    pub inner: Arc<dyn EventStore>,
    pub metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Counts and times an append of `n` events by its outcome.
    fn timed(&self, n: u64, started: Instant, r: Result<AppendResult, StoreError>) -> Result<AppendResult, StoreError> {
        let outcome = match &r {
            Ok(_) => {
                self.metrics.appended.inc_by(n);
                "ok"
            }
            Err(StoreError::WrongExpectedVersion { .. }) => "conflict",
            Err(StoreError::Fenced { .. }) => "fenced",
            Err(e) if e.is_rejection() => "rejected",
            Err(_) => "error",
        };
        self.metrics.append_seconds.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
        r
    }
}

crate::store::wrapping_store!(MeteredStore, inner, {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let (n, started) = (events.len() as u64, Instant::now());
        let r = self.inner.append(stream, expected, events).await;
        self.timed(n, started, r)
    }

    async fn append_fenced(
        &self,
        fence: &mall_events::Fence,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let (n, started) = (events.len() as u64, Instant::now());
        let r = self.inner.append_fenced(fence, stream, expected, events).await;
        self.timed(n, started, r)
    }

    async fn close(&self) {
        self.inner.close().await
    }
});

/// The generator, its calls counted and timed.
pub struct MeteredGenerator {
    pub inner: Arc<dyn Generator>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Generator for MeteredGenerator {
    fn id(&self) -> String {
        self.inner.id()
    }

    async fn generate(&self, command: CommandKind, facts: &Facts) -> (String, Result<String, GenerationError>) {
        let started = Instant::now();
        let r = self.inner.generate(command, facts).await;
        self.metrics.model_call("generate", &self.inner.id(), r.1.is_ok(), started);
        r
    }

    fn completes(&self) -> bool {
        self.inner.completes()
    }

    async fn complete(&self, task: String) -> (String, Result<String, GenerationError>) {
        let started = Instant::now();
        let r = self.inner.complete(task).await;
        self.metrics.model_call("complete", &self.inner.id(), r.1.is_ok(), started);
        r
    }
}

/// The embedder, its calls counted and timed.
pub struct MeteredEmbedder {
    pub inner: Arc<dyn Embedder>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Embedder for MeteredEmbedder {
    fn id(&self) -> String {
        self.inner.id()
    }

    fn is_builtin(&self) -> bool {
        self.inner.is_builtin()
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, GenerationError> {
        let started = Instant::now();
        let r = self.inner.embed(text).await;
        self.metrics.model_call("embed", &self.inner.id(), r.is_ok(), started);
        r
    }
}

/// `GET /metrics` (admin): every metric, the gauges read now.
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let m = &state.metrics;
    m.log_position.set(state.store.stats().await?.last_position as i64);
    for (name, _, lag, _, _) in state.read.status().await {
        m.lag_positions.with_label_values(&[name.as_str()]).set(lag.positions as i64);
        m.lag_seconds.with_label_values(&[name.as_str()]).set(lag.seconds);
    }
    let a = &state.actors;
    for (kind, n) in
        [("product", a.products.resident()), ("district", a.districts.resident()), ("shopper", a.shoppers.resident())]
    {
        m.resident.with_label_values(&[kind]).set(n as i64);
    }
    let (queued, running) = state.core.with_queue(|q| (q.queued(), q.running())).await;
    m.queue.with_label_values(&["queued"]).set(queued as i64);
    m.queue.with_label_values(&["running"]).set(running as i64);
    m.budget_left.set(i64::from(a.rt.budget.left()));
    m.budget_per_hour.set(i64::from(a.rt.budget.per_hour()));
    m.parked.set(a.rt.parked().len() as i64);
    if let Some(l) = &state.leases {
        m.nodes.with_label_values(&["alive"]).set(l.alive() as i64);
        let (held, owners) = (l.held(), l.owners());
        let mut counts: std::collections::BTreeMap<(&str, &str), i64> = std::collections::BTreeMap::new();
        for kind in ["core", "actor_shard", "projection"] {
            for by in ["this_node", "other_node", "nobody"] {
                counts.insert((kind, by), 0);
            }
        }
        for name in l.names() {
            let by = if held.contains(&name) {
                "this_node"
            } else if owners.contains_key(&name) {
                "other_node"
            } else {
                "nobody"
            };
            *counts.entry((crate::cluster::lease_kind(&name), by)).or_default() += 1;
        }
        for ((kind, by), n) in counts {
            m.leases.with_label_values(&[kind, by]).set(n);
        }
    }
    let out = m.encode().map_err(|e| ApiError::unavailable(format!("cannot encode the metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(out))
}
