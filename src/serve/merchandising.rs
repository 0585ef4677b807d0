//! Merchandising's shell: the engine's sweep (the `merchandising` job every 15 minutes, an
//! admin's "optimize"), admins' rules, and the overview.
//!
//! A sweep reads every product's facts from the catalog tables and every rule from the
//! `merchandising-mall` stream, asks the pure engine (`mall_actors::merchandising::generate`)
//! what to set and expire, and appends its decisions in one append on the stream version it
//! read (two sweeps racing cannot both decide from the same rules). The ranker applies the
//! active rules to every listing.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_actors::autonomous::jobs::JobWork;
use mall_actors::autonomous::priority;
use mall_actors::autonomous::queue::Task;
use mall_actors::autonomous::scheduler::{Executor, Request, Scheduler};
use mall_actors::merchandising::ordering::{self, Tally, Tests};
use mall_actors::merchandising::{self, Change, Facts, Rules};
use mall_actors::product::experiment::ExperimentPolicy;
use mall_events::domain::{Condition, DomainEvent, MerchandisingRuleSet, RuleAction};
use mall_events::ids::{DistrictSlug, Position, ProductId, StreamId};
use mall_events::{Direction, EventStore, ExpectedVersion, NewEvent};
use mall_projections::catalog::{DISTRICTS, PRODUCT_METRICS, PRODUCTS};
use mall_projections::merchandising::{AB_TESTS, MERCHANDISING_RULES};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::ingest::{MAX_CATALOG_BODY, body};
use super::ranking::{n, s};
use crate::readside::{Filter, ReadSide};

/// An admin's rule's priority when the request names none: above the engine's boosts and
/// buries (10), below its featured pins (50) and out-of-stock hides (100).
pub const ADMIN_PRIORITY: i32 = 30;

fn stream() -> StreamId {
    StreamId::parse(mall_events::merchandising::STREAM).expect("a valid stream id")
}

/// Every rule and ordering test, folded from the stream, and the stream's version.
pub async fn rules(store: &dyn EventStore) -> Result<(Rules, Tests, u64), String> {
    let (mut rules, mut tests) = (Rules::default(), Tests::default());
    let (mut from, mut version) = (1, 0);
    loop {
        let batch = store.read_stream(&stream(), from, Direction::Forward, 1_000).await.map_err(|e| e.to_string())?;
        let Some(last) = batch.last() else { break };
        from = last.stream_version + 1;
        version = last.stream_version;
        for e in &batch {
            if let Ok(d) = e.decode() {
                rules.apply(&d);
                tests.apply(&d, e.position);
            }
        }
    }
    Ok((rules, tests, version))
}

/// The rule a `merchandising_rules` row holds (as the ranker applies it).
pub fn rule_of_row(r: &mall_projections::change::Row) -> Option<MerchandisingRuleSet> {
    let v = json!({
        "rule_id": r.get("rule_id"), "action": r.get("action"), "condition": r.get("condition"),
        "strength": r.get("strength"), "position": r.get("pin_position"), "priority": r.get("priority"),
        "valid_from": r.get("valid_from"), "valid_until": r.get("valid_until"), "auto": r.get("auto"),
        "rule": r.get("rule"), "reason": r.get("reason"), "evidence": {}, "at": r.get("updated_at"),
    });
    serde_json::from_value(v).ok()
}

/// Every product's facts, from the catalog tables.
pub async fn facts(read: &ReadSide) -> Result<Vec<Facts>, String> {
    let (mut tables, _) = read.snapshot("catalog", &[PRODUCTS, PRODUCT_METRICS]).await.map_err(|e| e.to_string())?;
    let metrics: std::collections::HashMap<String, mall_projections::change::Row> =
        tables.pop().unwrap_or_default().into_iter().map(|m| (s(&m, "product_id").to_string(), m)).collect();
    Ok(tables.pop().unwrap_or_default().iter().map(|p| facts_of(p, metrics.get(s(p, "product_id")))).collect())
}

/// A product row (and its metrics) as the rules see it.
pub fn facts_of(p: &mall_projections::change::Row, m: Option<&mall_projections::change::Row>) -> Facts {
    let c = |k: &str| m.map_or(0, |m| n(m, k).max(0.0) as u64);
    Facts {
        product_id: s(p, "product_id").to_string(),
        district: s(p, "district").to_string(),
        tags: p
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        price: match p.get("price") {
            Some(Value::String(x)) => x.parse().unwrap_or(0.0),
            Some(x) => x.as_f64().unwrap_or(0.0),
            None => 0.0,
        },
        stock: n(p, "stock").clamp(0.0, f64::from(u32::MAX)) as u32,
        views: c("views"),
        conversions: mall_events::measures::conversions(c("views"), c("carts"), c("purchases")),
    }
}

/// The shell.
pub struct Merchandising {
    pub store: Arc<dyn EventStore>,
    pub read: Arc<ReadSide>,
    /// The configured weights (a district's layout, once a test adopted one, is used instead).
    pub config: super::ranking::ScoreConfig,
    /// The stopping rule of ordering tests.
    pub policy: ExperimentPolicy,
    sweeps: tokio::sync::Mutex<()>,
    /// Each running ordering test's tally, kept between looks.
    tallies: tokio::sync::Mutex<std::collections::HashMap<Uuid, Tally>>,
}

impl Merchandising {
    pub fn new(store: Arc<dyn EventStore>, read: Arc<ReadSide>, config: super::ranking::ScoreConfig) -> Arc<Self> {
        Arc::new(Merchandising {
            store,
            read,
            config,
            policy: ExperimentPolicy::default(),
            sweeps: tokio::sync::Mutex::new(()),
            tallies: tokio::sync::Mutex::default(),
        })
    }

    /// The ordering tests the engine starts now: one per busy district without one.
    async fn proposals(&self, tests: &Tests, now: DateTime<Utc>) -> Result<Vec<DomainEvent>, String> {
        let districts = self.read.rows("catalog", DISTRICTS, Filter::All).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for d in &districts {
            let Ok(slug) = DistrictSlug::parse(s(d, "slug").to_string()) else { continue };
            let current = tests.layout(slug.as_str()).unwrap_or_else(|| self.config.of(slug.as_str()).into());
            let views = n(d, "views").max(0.0) as u64;
            if let Some(t) = ordering::propose(&slug, views, current, tests, now) {
                out.push(DomainEvent::OrderingTestStarted(t));
            }
        }
        Ok(out)
    }

    /// One sweep: the engine's decisions, appended. Returns them.
    pub async fn sweep(&self) -> Result<Vec<Change>, String> {
        let _one = self.sweeps.lock().await;
        // The read tables as of now (waiting a little for them to catch up with the log), as the
        // other systems' sweeps read them: signals taken just before are looked at.
        self.read.wait_for_head(std::time::Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        let facts = facts(&self.read).await?;
        let (rules, tests, version) = rules(self.store.as_ref()).await?;
        let now = Utc::now();
        let changes = merchandising::generate(&facts, &rules, now);
        let mut decided: Vec<DomainEvent> = changes
            .iter()
            .map(|c| match c {
                Change::Set(s) => DomainEvent::MerchandisingRuleSet(s.clone()),
                Change::Expire(x) => DomainEvent::MerchandisingRuleExpired(x.clone()),
            })
            .collect();
        decided.extend(self.proposals(&tests, now).await?);
        if decided.is_empty() {
            return Ok(changes);
        }
        let events = decided
            .iter()
            .map(|d| NewEvent::from_domain(d, Uuid::now_v7(), Vec::new()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // A long sweep's decisions go in batches; each on the version the previous one left.
        let mut expected = version;
        for chunk in events.chunks(500) {
            let r = self
                .store
                .append(&stream(), ExpectedVersion::Exact(expected), chunk.to_vec())
                .await
                .map_err(|e| e.to_string())?;
            expected = r.stream_version;
        }
        Ok(changes)
    }

    /// Looks at every ordering test under way: folds the district's signals since the last look
    /// and concludes the tests that are done. Returns the conclusions.
    pub async fn look_at_tests(&self) -> Result<Vec<mall_events::domain::OrderingTestConcluded>, String> {
        let _one = self.sweeps.lock().await;
        let (_, tests, version) = rules(self.store.as_ref()).await?;
        let mut tallies = self.tallies.lock().await;
        tallies.retain(|id, _| tests.0.get(id).is_some_and(|t| t.concluded.is_none()));
        let now = Utc::now();
        let mut done = Vec::new();
        for test in tests.all_running() {
            let id = test.started.test_id;
            let tally = tallies.entry(id).or_insert_with(|| Tally::from(test.position));
            let tag = mall_events::ids::tag::district(&test.started.district);
            loop {
                let batch = self.store.read_by_tag(&tag, tally.position + 1, 1_000).await.map_err(|e| e.to_string())?;
                let Some(last) = batch.last().map(|e| e.position) else { break };
                for e in &batch {
                    if matches!(
                        e.event_type.as_str(),
                        "impression_served" | "product_clicked" | "added_to_cart" | "purchased"
                    ) && let Ok(d) = e.decode()
                    {
                        tally.observe(id, &d, e.position);
                    }
                }
                tally.position = last;
            }
            if let Some(c) = ordering::decide(&test.started, tally, now, &self.policy) {
                done.push(c);
            }
        }
        if !done.is_empty() {
            let events = done
                .iter()
                .map(|c| {
                    NewEvent::from_domain(&DomainEvent::OrderingTestConcluded(c.clone()), Uuid::now_v7(), Vec::new())
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.store.append(&stream(), ExpectedVersion::Exact(version), events).await.map_err(|e| e.to_string())?;
        }
        Ok(done)
    }

    /// Looks at the ordering tests every two seconds until `shutdown`.
    pub async fn watch_tests(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.look_at_tests().await {
                tracing::warn!(error = %e, "ordering tests not looked at; trying again");
            }
        }
    }

    /// Appends an admin's rule; returns its position.
    pub async fn set(&self, rule: MerchandisingRuleSet) -> Result<Position, ApiError> {
        let d = DomainEvent::MerchandisingRuleSet(rule);
        d.validate().map_err(|(field, e)| ApiError::invalid(&field, e.0))?;
        let e = NewEvent::from_domain(&d, Uuid::now_v7(), Vec::new())
            .map_err(|e| ApiError::invalid("rule", e.to_string()))?;
        Ok(self.store.append(&stream(), ExpectedVersion::Any, vec![e]).await?.last_position)
    }
}

/// `merchandising` `sweep`: the engine looks at every product.
pub struct Sweep(pub Arc<Merchandising>);

#[async_trait]
impl Executor for Sweep {
    async fn run(&self, _task: &Task) -> Result<String, String> {
        let changes = self.0.sweep().await?;
        let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
        let mut expired = 0;
        for c in &changes {
            match c {
                Change::Set(s) => *by_rule.entry(s.rule.clone()).or_default() += 1,
                Change::Expire(_) => expired += 1,
            }
        }
        let set: Vec<String> = by_rule.iter().map(|(r, n)| format!("{n} {r}")).collect();
        Ok(format!(
            "{} rules set{}; {expired} expired",
            by_rule.values().sum::<u64>(),
            if set.is_empty() { String::new() } else { format!(" ({})", set.join(", ")) }
        ))
    }
}

/// The `merchandising` job: queues a sweep.
pub struct MerchandisingJob;

#[async_trait]
impl JobWork for MerchandisingJob {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        let request = Request {
            system: "merchandising".into(),
            subject: "mall".into(),
            action: "sweep".into(),
            priority: priority::SWEEP,
            reason: format!("the merchandising job (tick {due})"),
            metrics: BTreeMap::new(),
            generations: 0,
        };
        scheduler.queue(vec![request]).await.map_err(|e| e.to_string())
    }
}

/// `POST /api/autonomous/merchandising/rules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    action: RuleAction,
    product_id: Option<ProductId>,
    #[serde(default)]
    tags: Vec<String>,
    district: Option<DistrictSlug>,
    price_min: Option<f64>,
    price_max: Option<f64>,
    stock_min: Option<u32>,
    stock_max: Option<u32>,
    percentile_min: Option<f64>,
    percentile_max: Option<f64>,
    position: Option<u32>,
    strength: Option<f64>,
    priority: Option<i32>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    reason: Option<String>,
}

/// `POST /api/autonomous/merchandising/rules` (admin): a rule → 201 `{"id", "position"}`.
pub async fn create_rule(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let b: RuleBody = mall_events::records::from_json(&body(&state, payload, MAX_CATALOG_BODY).await?)?;
    let condition = Condition {
        product_id: b.product_id,
        tags: b.tags,
        district: b.district,
        price_min: b.price_min,
        price_max: b.price_max,
        stock_min: b.stock_min,
        stock_max: b.stock_max,
        percentile_min: b.percentile_min,
        percentile_max: b.percentile_max,
    };
    if condition == Condition::default() {
        return Err(ApiError::invalid(
            "product_id",
            "a rule needs a condition: product_id, tags, district, or a price, stock or percentile bound",
        ));
    }
    let now = Utc::now();
    let from = b.from.unwrap_or(now);
    if b.until.is_some_and(|u| u <= now) {
        return Err(ApiError::invalid("until", "the rule's window must end in the future"));
    }
    let strength = b.strength.unwrap_or(match b.action {
        RuleAction::Boost | RuleAction::Bury => 0.5,
        _ => 0.0,
    });
    let id = Uuid::now_v7();
    let reason = b.reason.unwrap_or_else(|| format!("an admin's {}", b.action.as_str()));
    let rule = MerchandisingRuleSet {
        rule_id: id,
        action: b.action,
        condition,
        strength,
        position: b.position,
        priority: b.priority.unwrap_or(ADMIN_PRIORITY),
        valid_from: from,
        valid_until: b.until,
        auto: false,
        rule: "admin".into(),
        reason,
        evidence: BTreeMap::new(),
        at: now,
    };
    let position = state.merchandising.set(rule).await?;
    Ok(HttpResponse::Created().json(json!({"id": id, "position": position})))
}

/// `DELETE /api/autonomous/merchandising/rules/{id}` (admin): the rule stops acting now → 200
/// `{"id", "position"}` (404 for a rule that does not exist, 409 for one already expired).
pub async fn end_rule(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let id: Uuid = path.into_inner().parse().map_err(|_| ApiError::invalid("id", "a rule id (a UUID)"))?;
    let _one = state.merchandising.sweeps.lock().await;
    let (rules, _, version) = rules(state.merchandising.store.as_ref()).await.map_err(ApiError::unavailable)?;
    match rules.0.get(&id) {
        None => return Err(ApiError::not_found(format!("no rule {id}"))),
        Some(r) if r.expired => {
            return Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, format!("rule {id} has expired already")));
        }
        Some(_) => {}
    }
    let d = DomainEvent::MerchandisingRuleExpired(mall_events::domain::MerchandisingRuleExpired {
        rule_id: id,
        reason: "an admin ended it".into(),
        at: Utc::now(),
    });
    let e =
        NewEvent::from_domain(&d, Uuid::now_v7(), Vec::new()).map_err(|e| ApiError::invalid("id", e.to_string()))?;
    let position =
        state.merchandising.store.append(&stream(), ExpectedVersion::Exact(version), vec![e]).await?.last_position;
    Ok(HttpResponse::Ok().json(json!({"id": id, "position": position})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
    /// Only tests of a kind: `copy`, `voice` or `ordering`.
    kind: Option<String>,
}

/// `GET /api/autonomous/merchandising` (admin): every rule (active first, by priority), the
/// tests of orderings, the job's last and next run.
pub async fn overview(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<OverviewQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let position = super::storefront::position(&state, q.min_position).await;
    let mut rules = state
        .read
        .rows("merchandising", MERCHANDISING_RULES, Filter::All)
        .await
        .map_err(super::storefront::sink_error)?;
    rules.sort_by(|a, b| {
        (s(a, "status") != "active")
            .cmp(&(s(b, "status") != "active"))
            .then(n(b, "priority").total_cmp(&n(a, "priority")))
            .then(s(a, "rule_id").cmp(s(b, "rule_id")))
    });
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|mut r| {
            let id = r.remove("rule_id").unwrap_or(Value::Null);
            r.insert("id".into(), id);
            Value::Object(r)
        })
        .collect();
    let mut tests =
        state.read.rows("merchandising", AB_TESTS, Filter::All).await.map_err(super::storefront::sink_error)?;
    tests.sort_by(|a, b| {
        (s(a, "status") != "running")
            .cmp(&(s(b, "status") != "running"))
            .then(n(b, "position").total_cmp(&n(a, "position")))
    });
    let kind = q.kind.as_deref();
    if let Some(k) = kind.filter(|k| !matches!(*k, "copy" | "voice" | "ordering")) {
        return Err(ApiError::invalid("kind", format!("{k:?} is not one of copy, voice, ordering")));
    }
    let tests: Vec<mall_projections::change::Row> =
        tests.into_iter().filter(|t| kind.is_none_or(|k| s(t, "kind") == k)).collect();
    let job = state.jobs.status().await.into_iter().find(|j| j.name == "merchandising");
    Ok(HttpResponse::Ok().insert_header((super::reads::POSITION_HEADER, position.to_string())).json(json!({
        "rules": rules,
        "tests": tests,
        "last_run": job.as_ref().and_then(|j| j.last_run.clone()),
        "next_run": job.as_ref().filter(|j| j.enabled && j.running).map(|j| j.next_run),
    })))
}
