//! Self-healing inside `mall serve`: the health check's shell (it gathers the facts, records the
//! check, asks the pure rules in `mall_actors::health` what to do and does it), its job and
//! task, the outbox's delivery to the admin webhook, and its routes —
//! `GET /api/autonomous/health` (the latest report), `POST /api/autonomous/health` (a check
//! now) and `GET /api/products/{id}/placeholder.svg` (the image shown while a product's is
//! broken).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mall_actors::autonomous::jobs::JobWork;
use mall_actors::autonomous::priority;
use mall_actors::autonomous::queue::{Status, Task};
use mall_actors::autonomous::scheduler::{Executor, Request, Scheduler};
use mall_actors::health::actor::catch_up_health;
use mall_actors::health::fetch::{FetchError, Fetcher};
use mall_actors::health::{self, Decision, Facts, HealthState, ImageCheck, Lag, ProductFacts, ProductView, RowView};
use mall_actors::product::ProductState;
use mall_actors::runtime::entity::{Get, Product};
use mall_actors::runtime::router::Actors;
use mall_events::domain::{DomainEvent, HealthChecked, NotificationDelivered, Repair};
use mall_events::ids::{ProductId, StreamId};
use mall_events::{ExpectedVersion, NewEvent, StoreError};
use mall_projections::catalog::{DISTRICTS, PRODUCTS};
use mall_projections::change::Row;
use mall_projections::health::{HEALTH_CHECKS, HEALTH_ISSUES, HEALTH_NOTIFICATIONS};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::rows::text;
use crate::readside::{Filter, ReadSide};

/// Products whose state is gathered at once, and images fetched at once.
const GATHER_CONCURRENCY: usize = 16;
const FETCH_CONCURRENCY: usize = 8;
/// Times a row repair is tried when signals move the product's version under it.
const REPAIR_ATTEMPTS: usize = 5;
/// The longest wait between two tries of a notification.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Self-healing's shell: one per server.
pub struct SelfHealing {
    pub actors: Arc<Actors>,
    pub read: Arc<ReadSide>,
    pub scheduler: OnceLock<Weak<Scheduler>>,
    pub fetcher: Fetcher,
    /// Where notifications go (none: they are only listed).
    pub webhook: Option<String>,
    /// The decider's state, kept up to date before each use; its lock also keeps checks one at a
    /// time.
    state: tokio::sync::Mutex<HealthState>,
    wake: tokio::sync::Notify,
    client: reqwest::Client,
}

impl SelfHealing {
    pub fn new(actors: Arc<Actors>, read: Arc<ReadSide>, fetcher: Fetcher, webhook: Option<String>) -> Arc<Self> {
        Arc::new(SelfHealing {
            actors,
            read,
            scheduler: OnceLock::new(),
            fetcher,
            webhook,
            state: tokio::sync::Mutex::new(HealthState::default()),
            wake: tokio::sync::Notify::new(),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        })
    }

    fn scheduler(&self) -> Result<Arc<Scheduler>, String> {
        self.scheduler.get().and_then(Weak::upgrade).ok_or_else(|| "the scheduler is gone".to_string())
    }

    /// The decider's state, up to date with the log.
    async fn current(&self) -> Result<tokio::sync::MutexGuard<'_, HealthState>, StoreError> {
        let mut state = self.state.lock().await;
        catch_up_health(&self.actors.rt, &mut state).await?;
        Ok(state)
    }

    /// Gathers what a check looks at: every listed product's own state and read row, whether
    /// its image works, the open districts, the projections' lag, the model calls that failed in
    /// the last hour, a timed storefront read.
    async fn facts(&self) -> Result<Facts, String> {
        let err = |e: mall_projections::runner::SinkError| e.to_string();
        // Rows are compared only with states the read side had caught up with when read.
        let head = self.actors.rt.store.stats().await.map_err(|e| e.to_string())?.last_position;
        // Only the catalog projection writes the rows compared: its position is what counts.
        let rows_position = self.read.wait_for_projection("catalog", head, Duration::from_secs(5)).await;
        let rows = self.read.rows("catalog", PRODUCTS, Filter::All).await.map_err(err)?;
        let rows: HashMap<String, Row> = rows.into_iter().map(|r| (text(&r, "product_id"), r)).collect();
        let (districts, mut ids): (BTreeSet<String>, BTreeSet<String>) = {
            let catalog = self.actors.rt.catalog.read().expect("catalog");
            (
                catalog.districts().map(|(s, _)| s.to_string()).collect(),
                catalog.products().map(|(p, _)| p.to_string()).collect(),
            )
        };
        ids.extend(rows.keys().cloned());
        let actors = &self.actors;
        let states: Vec<ProductState> = futures_util::stream::iter(ids)
            .filter_map(|id| async move { ProductId::parse(id).ok() })
            .map(|id| async move { actors.products.send(&id, Get::<Product>::default()).await.ok().flatten() })
            .buffer_unordered(GATHER_CONCURRENCY)
            .filter_map(|s| async move { s })
            .collect()
            .await;
        let mut products: Vec<ProductFacts> = states
            .iter()
            .filter_map(view)
            .map(|state| {
                let row = rows.get(state.product_id.as_str()).map(row_view);
                ProductFacts { state, row, image: None }
            })
            .collect();
        products.sort_by(|a, b| a.state.product_id.as_str().cmp(b.state.product_id.as_str()));
        let fetcher = &self.fetcher;
        let images: HashMap<String, ImageCheck> = futures_util::stream::iter(
            products.iter().filter_map(|p| p.state.image_url.clone()).collect::<BTreeSet<_>>(),
        )
        .map(|url| async move {
            let check = match fetcher.image(&url).await {
                Ok(_) => ImageCheck::Works,
                Err(FetchError::Refused(why)) => ImageCheck::Refused(why),
                Err(FetchError::Broken(why)) => ImageCheck::Broken(why),
            };
            (url, check)
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .collect()
        .await;
        for p in &mut products {
            p.image = p.state.image_url.as_ref().and_then(|u| images.get(u).cloned());
        }
        let lags = self
            .read
            .status()
            .await
            .into_iter()
            .map(|(projection, _, lag, _, _)| Lag { projection, positions: lag.positions, seconds: lag.seconds })
            .collect();
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let (failed_calls, last_call_error) = self
            .scheduler()?
            .with_queue(|q| {
                let mut failed: Vec<&Task> = q
                    .tasks()
                    .filter(|t| t.action == "generate" && t.updated_at > hour_ago)
                    .filter(|t| t.status == Status::Failed || (t.status == Status::Queued && t.retry_at.is_some()))
                    .collect();
                failed.sort_by_key(|t| t.updated_at);
                (failed.len() as u64, failed.last().and_then(|t| t.outcome.clone()))
            })
            .await;
        let started = Instant::now();
        let probe = districts.iter().next().cloned().unwrap_or_default();
        self.read.rows("catalog", PRODUCTS, Filter::Eq("district", &probe)).await.map_err(err)?;
        let read_ms = started.elapsed().as_secs_f64() * 1_000.0;
        Ok(Facts {
            products,
            districts,
            rows_position,
            images_checked: true,
            lags,
            failed_calls,
            last_call_error,
            read_ms: Some(read_ms),
        })
    }

    /// Runs one check: gathers the facts, records what it found, decides and acts. Returns the
    /// check and its decisions.
    pub async fn check(&self, trigger: &str) -> Result<(HealthChecked, Vec<Decision>), String> {
        let facts = self.facts().await?;
        let (findings, truncated) = health::recorded(health::detect(&facts, &health::Thresholds::default()));
        let mut state = self.state.lock().await;
        catch_up_health(&self.actors.rt, &mut state).await.map_err(|e| e.to_string())?;
        let check = HealthChecked {
            check_id: Uuid::now_v7(),
            trigger: trigger.into(),
            checked: health::checked(&facts),
            findings,
            truncated,
            at: Utc::now(),
        };
        let decisions = health::decide(&state, &check);
        // Missing copy goes to product intelligence's executors as tasks.
        let mut tasks = BTreeMap::new();
        let wants_task: Vec<(Uuid, Request)> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Open { issue_id, finding } if finding.remedy == mall_events::health::Remedy::Task => {
                    let inputs = priority::Inputs { value: 1.0, scale: 1.0, confidence: 1.0, helped: 0, tried: 0 };
                    Some((
                        *issue_id,
                        Request {
                            system: "product_intelligence".into(),
                            subject: finding.subject.clone(),
                            action: "nudge".into(),
                            priority: inputs.priority(),
                            reason: format!(
                                "self-healing: {} ({})",
                                finding.kind,
                                finding.evidence.get("missing").map(String::as_str).unwrap_or("")
                            ),
                            metrics: inputs.metrics(),
                            generations: 1,
                        },
                    ))
                }
                _ => None,
            })
            .collect();
        if !wants_task.is_empty() {
            let ids = self
                .scheduler()?
                .queue(wants_task.iter().map(|(_, r)| r.clone()).collect())
                .await
                .map_err(|e| e.to_string())?;
            tasks.extend(wants_task.iter().map(|(i, _)| *i).zip(ids));
        }
        let check_event = Uuid::now_v7();
        let new = |d: &DomainEvent, id: Uuid| -> Result<NewEvent, String> {
            let mut e = NewEvent::from_domain(d, id, Vec::new()).map_err(|e| e.to_string())?;
            e.correlation_id = Some(check.check_id);
            if id != check_event {
                e.causation_id = Some(check_event);
            }
            Ok(e)
        };
        let mut batch = vec![new(&DomainEvent::HealthChecked(check.clone()), check_event)?];
        let mut repairs = Vec::new();
        for e in health::events(&check, &decisions, &tasks) {
            match e {
                DomainEvent::ProductRepaired(_) => repairs.push(e),
                other => batch.push(new(&other, Uuid::now_v7())?),
            }
        }
        let stream = StreamId::parse(mall_events::health::STREAM).expect("a valid stream id");
        self.actors.rt.store.append(&stream, ExpectedVersion::Any, batch).await.map_err(|e| e.to_string())?;
        for r in repairs {
            self.repair(&r, new(&r, Uuid::now_v7())?).await?;
        }
        catch_up_health(&self.actors.rt, &mut state).await.map_err(|e| e.to_string())?;
        drop(state);
        self.wake.notify_one();
        Ok((check, decisions))
    }

    /// Appends a repair to its product's stream. A row repair goes in only on the version it was
    /// computed from: when signals moved the version meanwhile and the product's facts are still
    /// the repair's, it is tried on the new version; when the facts changed, the repair is left
    /// for the next check (the row follows the change anyway).
    async fn repair(&self, d: &DomainEvent, event: NewEvent) -> Result<(), String> {
        let DomainEvent::ProductRepaired(r) = d else { return Ok(()) };
        let stream = StreamId::product(&r.product_id);
        let Repair::Row { title, description, price, currency, stock, district, as_of } = &r.repair else {
            return self
                .actors
                .rt
                .store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        };
        let mut version = *as_of;
        for _ in 0..REPAIR_ATTEMPTS {
            match self.actors.rt.store.append(&stream, ExpectedVersion::Exact(version), vec![event.clone()]).await {
                Ok(_) => return Ok(()),
                Err(StoreError::WrongExpectedVersion { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            let Some(s) = self.actors.products.send(&r.product_id, Get::<Product>::default()).await.ok().flatten()
            else {
                break;
            };
            let same = s.title == *title
                && s.description == *description
                && s.price.as_ref() == Some(price)
                && s.currency.as_ref() == Some(currency)
                && s.stock == *stock
                && s.district.as_ref() == Some(district);
            if !same {
                break;
            }
            version = s.version;
        }
        tracing::warn!(product = %r.product_id, "the product changed while its row was repaired; the next check looks again");
        Ok(())
    }

    /// Delivers the outbox to the webhook until shutdown: each notification in log order, with
    /// its event id as the idempotency key, tried again with a doubling wait (at most
    /// [`MAX_BACKOFF`]) until the webhook acknowledges it with a 2xx — at least once. While one
    /// waits for its next try the later ones wait behind it: a webhook that is down costs one
    /// attempt per wait, not one per notification.
    pub async fn deliver(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(url) = self.webhook.clone() else { return };
        let mut tries: HashMap<Uuid, (u32, Instant)> = HashMap::new();
        loop {
            let pending: Vec<(Uuid, u64)> = match self.current().await {
                Ok(s) => {
                    let mut p: Vec<(Uuid, u64)> = s.outbox.iter().map(|(k, v)| (*k, *v)).collect();
                    p.sort_by_key(|(_, pos)| *pos);
                    p
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the health outbox");
                    Vec::new()
                }
            };
            let now = Instant::now();
            let mut next_wake = Duration::from_secs(5);
            for (id, position) in pending {
                if *shutdown.borrow() {
                    return;
                }
                let (attempts, not_before) = tries.get(&id).copied().unwrap_or((0, now));
                if not_before > now {
                    // In log order: nothing passes a notification waiting for its next try.
                    next_wake = next_wake.min(not_before - now);
                    break;
                }
                let attempts = attempts + 1;
                match self.send(&url, id, position).await {
                    Ok(status) => {
                        let delivered = DomainEvent::NotificationDelivered(NotificationDelivered {
                            notification_id: id,
                            attempts,
                            status,
                            at: Utc::now(),
                        });
                        let stream = StreamId::parse(mall_events::health::STREAM).expect("a valid stream id");
                        let event = NewEvent::from_domain(&delivered, Uuid::now_v7(), Vec::new())
                            .map(|mut e| {
                                e.causation_id = Some(id);
                                e
                            })
                            .map_err(|e| e.to_string());
                        let appended = match event {
                            Ok(e) => self
                                .actors
                                .rt
                                .store
                                .append(&stream, ExpectedVersion::Any, vec![e])
                                .await
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        };
                        match appended {
                            Ok(_) => {
                                tries.remove(&id);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot record a delivered notification; it is sent again");
                                tries.insert(id, (attempts, Instant::now() + backoff(attempts)));
                            }
                        }
                    }
                    Err(e) => {
                        let wait = backoff(attempts);
                        tracing::warn!(notification = %id, attempts, error = %e, ?wait, "the admin webhook did not take a notification");
                        tries.insert(id, (attempts, Instant::now() + wait));
                        next_wake = next_wake.min(wait);
                        // The webhook is down or refusing: the later notifications wait too (in
                        // order, and without one slow attempt each).
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next_wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Sends one notification; the webhook's 2xx status, or why not.
    async fn send(&self, url: &str, id: Uuid, position: u64) -> Result<u16, String> {
        let events = self.actors.rt.store.read_all(position, 1).await.map_err(|e| e.to_string())?;
        let e = events.first().filter(|e| e.event_id == id).ok_or("the notification's event is not in the log")?;
        let d = e.decode().map_err(|e| e.to_string())?;
        let body = mall_projections::health::notification(e, &d);
        let response = self
            .client
            .post(url)
            .header("Idempotency-Key", id.to_string())
            .header("X-Mall-Event", e.event_type.as_str())
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() { Ok(status.as_u16()) } else { Err(format!("the webhook answered {status}")) }
    }
}

/// The wait before the next try of a notification tried `attempts` times: 1 s, 2 s, 4 s, ...
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// A listed product's state as the rules see it.
fn view(s: &ProductState) -> Option<ProductView> {
    Some(ProductView {
        product_id: s.product_id.clone()?,
        district: s.district.clone()?,
        title: s.title.clone(),
        description: s.description.clone(),
        has_tags: !s.tags.is_empty(),
        has_seo: s.seo.is_some(),
        has_embedding: s.embedding_of.is_some(),
        price: s.price.clone()?,
        currency: s.currency.clone()?,
        stock: s.stock,
        image_url: s.image_url.clone(),
        attributes: s.attributes.clone(),
        version: s.version,
        position: s.position,
        rejections: s
            .failures
            .iter()
            .max_by_key(|(_, f)| f.in_a_row)
            .map(|(c, f)| (c.as_str().to_string(), f.in_a_row)),
    })
}

fn row_view(r: &Row) -> RowView {
    let n = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
    RowView {
        district: text(r, "district"),
        title: text(r, "title"),
        description: text(r, "description"),
        price: match r.get("price") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
        currency: text(r, "currency"),
        stock: n("stock"),
        image_url: r.get("image_url").and_then(Value::as_str).map(str::to_string),
        listed_position: n("listed_position").max(0) as u64,
    }
}

/// The trigger a check task carries in its reason.
fn trigger_of(task: &Task) -> &'static str {
    if task.reason.starts_with(ADMIN_REASON) { "admin" } else { "job" }
}

const ADMIN_REASON: &str = "an admin asked for a health check";

/// `self_healing` `check`: one health check.
pub struct Check(pub Arc<SelfHealing>);

#[async_trait]
impl Executor for Check {
    async fn run(&self, task: &Task) -> Result<String, String> {
        let (check, decisions) = self.0.check(trigger_of(task)).await?;
        let count = |f: fn(&Decision) -> bool| decisions.iter().filter(|d| f(d)).count();
        Ok(format!(
            "{} findings; {} issues opened, {} repairs, {} closed",
            check.findings.len(),
            count(|d| matches!(d, Decision::Open { .. })),
            count(|d| matches!(d, Decision::Repair { .. })),
            count(|d| matches!(d, Decision::Close { .. })),
        ))
    }
}

fn check_request(reason: String, priority: u8) -> Request {
    Request {
        system: "self_healing".into(),
        subject: "mall".into(),
        action: "check".into(),
        priority,
        reason,
        metrics: BTreeMap::new(),
        generations: 0,
    }
}

/// The `health_check` job: queues a check.
pub struct HealthJob;

#[async_trait]
impl JobWork for HealthJob {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        scheduler
            .queue(vec![check_request(format!("the hourly health check (tick {due})"), priority::SWEEP)])
            .await
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `open`, `closed` or `all` (the default).
    status: Option<String>,
    #[serde(alias = "minPosition")]
    min_position: Option<mall_events::ids::Position>,
}

/// The report: the issues (open first, newest first), open ones counted by kind and severity,
/// the repairs made, the notifications and whether each was delivered, the last and next run.
async fn report(state: &AppState, status: Option<&str>) -> Result<Value, ApiError> {
    let rows =
        |t| async move { state.read.rows("health", t, Filter::All).await.map_err(super::storefront::sink_error) };
    let mut issues = rows(HEALTH_ISSUES).await?;
    let n = |r: &Row, k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    issues.sort_by_key(|r| (text(r, "status") != "open", std::cmp::Reverse(n(r, "position"))));
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    for r in issues.iter().filter(|r| text(r, "status") == "open") {
        *by_kind.entry(text(r, "kind")).or_default() += 1;
        *by_severity.entry(text(r, "severity")).or_default() += 1;
    }
    let fixes: Vec<Value> = issues
        .iter()
        .filter(|r| n(r, "repairs") > 0)
        .map(|r| json!({"issue_id": r.get("issue_id"), "kind": r.get("kind"), "subject": r.get("subject"), "repair": r.get("repair"), "status": r.get("status")}))
        .collect();
    let issues: Vec<Row> = match status {
        None | Some("all") => issues,
        Some(s @ ("open" | "closed")) => issues.into_iter().filter(|r| text(r, "status") == s).collect(),
        Some(other) => return Err(ApiError::invalid("status", format!("{other:?} is not one of open, closed, all"))),
    };
    let mut checks = rows(HEALTH_CHECKS).await?;
    checks.sort_by_key(|r| std::cmp::Reverse(n(r, "position")));
    let mut notifications = rows(HEALTH_NOTIFICATIONS).await?;
    notifications.sort_by_key(|r| n(r, "position"));
    let job = state.jobs.status().await.into_iter().find(|j| j.name == "health_check");
    Ok(json!({
        "issues": issues,
        "open": {"total": by_kind.values().sum::<u64>(), "by_kind": by_kind, "by_severity": by_severity},
        "fixes": fixes,
        "notifications": notifications,
        "last_run": checks.first().and_then(|c| c.get("at").cloned()),
        "last_check": checks.first(),
        "checks": checks.len(),
        "next_run": job.as_ref().filter(|j| j.enabled && j.running).map(|j| j.next_run),
        "webhook": state.health.webhook.is_some(),
    }))
}

/// `GET /api/autonomous/health?status=&min_position=` (admin): the latest report.
pub async fn get_report(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let position = super::storefront::position(&state, q.min_position).await;
    let body = report(&state, q.status.as_deref()).await?;
    Ok(HttpResponse::Ok().insert_header((super::reads::POSITION_HEADER, position.to_string())).json(body))
}

/// `POST /api/autonomous/health` (admin): queues a check at an admin's priority and waits for it
/// (up to a minute): 200 with the report once it ran, 202 with the task while it waits (its
/// system stopped, say).
pub async fn run_check(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let id =
        match super::autonomous::run_now(&state, check_request(ADMIN_REASON.into(), priority::ADMIN), "check").await? {
            Ok(id) => id,
            Err(answer) => return Ok(answer),
        };
    let position = state.read.wait_for_head(Duration::from_secs(5)).await?;
    let mut body = report(&state, None).await?;
    body["task"] = json!(id);
    Ok(HttpResponse::Ok().insert_header((super::reads::POSITION_HEADER, position.to_string())).json(body))
}

/// `GET /api/products/{id}/placeholder.svg` (public): the product's title in its district's
/// colours — the same bytes for the same product and district.
pub async fn placeholder(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = ProductId::parse(id.into_inner()).map_err(|e| ApiError::invalid("id", e.0))?;
    let product =
        state.read.rows("catalog", PRODUCTS, Filter::Key(id.as_str())).await.map_err(super::storefront::sink_error)?;
    let product = product.first().ok_or_else(|| ApiError::not_found(format!("no product {id}")))?;
    let slug = text(product, "district");
    let district =
        state.read.rows("catalog", DISTRICTS, Filter::Key(&slug)).await.map_err(super::storefront::sink_error)?;
    let (name, personality) = match district.first() {
        Some(d) => (
            text(d, "name"),
            Some(mall_events::domain::Personality {
                tone: text(d, "tone"),
                style: text(d, "style"),
                audience: text(d, "audience"),
            }),
        ),
        None => (slug.clone(), None),
    };
    let svg = mall_actors::health::placeholder::svg(&text(product, "title"), &name, personality.as_ref());
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"))
        .body(svg))
}
