//! Plugins inside `mall serve`: the registry's shell (settings folded from the `plugins-mall`
//! stream), the runs of every enabled plugin on its hooks — the `plugin_hooks` job and an admin's
//! optimize (`schedule`), a watcher of the log (`catalog` after a catalog change, `signals` after
//! signals) — each isolated (`mall_actors::plugins::run_isolated`), recorded, and its proposals
//! validated into events; and the routes `GET|POST /api/autonomous/plugins` and
//! `POST /api/autonomous/voice`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_actors::analytics::segments;
use mall_actors::analytics::sentiment;
use mall_actors::autonomous::jobs::JobWork;
use mall_actors::autonomous::priority;
use mall_actors::autonomous::queue::Task;
use mall_actors::autonomous::scheduler::{Executor, Request, Scheduler};
use mall_actors::plugins::{self, Context, Hook, Outcome, Plugin, ProductFacts, Registry};
use mall_actors::product::PriceProposal;
use mall_actors::runtime::router::Actors;
use mall_actors::voice;
use mall_events::domain::{DomainEvent, PluginConfigured, PluginProposed, PluginRan};
use mall_events::ids::StreamId;
use mall_events::ids::{Price, ProductId};
use mall_events::{ExpectedVersion, NewEvent, Position};
use mall_projections::analytics::PRODUCT_DAYS;
use mall_projections::catalog::PRODUCTS;
use mall_projections::change::Row;
use mall_projections::customers::{REVIEWS, SHOPPER_DAYS};
use mall_projections::personalization::SHOPPER_PROFILES;
use mall_projections::plugins::{AI_PLUGINS, PLUGIN_PROPOSALS, PRICE_TESTS};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::rows::{int, price, text};
use crate::readside::{Filter, ReadSide};

/// How often the watcher looks at the log for catalog changes and signals.
const WATCH_EVERY: Duration = Duration::from_secs(5);
/// The least time between two runs of the `catalog` (or `signals`) hook.
const HOOK_EVERY: Duration = Duration::from_secs(30);
/// Review texts the model scores in one call, calls in one run.
const SCORED_PER_CALL: usize = 20;
const CALLS_PER_RUN: usize = 3;
/// The model's review scores kept (the least recently used are asked again).
const SCORES_KEPT: usize = 100_000;
/// Shoppers whose last voice results are remembered (the oldest are forgotten).
const VOICE_MEMORY: usize = 10_000;

/// The plugins' shell: one per server.
pub struct Plugins {
    pub actors: Arc<Actors>,
    /// Where a product's price test is started (the node running its actor).
    pub placement: Arc<super::placement::Placement>,
    pub read: Arc<ReadSide>,
    pub scheduler: OnceLock<Weak<Scheduler>>,
    pub plugins: Vec<Arc<dyn Plugin>>,
    /// The settings and the stream version folded.
    registry: tokio::sync::Mutex<(Registry, u64)>,
    /// Runs one hook at a time.
    running: tokio::sync::Mutex<()>,
    pub timeout: Duration,
    /// Each shopper's last voice results (product ids), for "add two of those".
    voice: Mutex<VoiceMemory>,
    /// The model's sentiment scores of review texts, by review id.
    scores: Mutex<lru::LruCache<String, f64>>,
    /// What voice searches match against: the in-stock products of the rankings at a position.
    voice_items: Mutex<(Option<mall_events::Position>, Arc<Vec<voice::Item>>)>,
}

/// Each shopper's last voice results, and the shoppers in the order they were first seen.
type VoiceMemory = (HashMap<String, Vec<String>>, std::collections::VecDeque<String>);

impl Plugins {
    pub fn new(
        actors: Arc<Actors>,
        placement: Arc<super::placement::Placement>,
        read: Arc<ReadSide>,
        plugins: Vec<Arc<dyn Plugin>>,
        timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Plugins {
            actors,
            placement,
            read,
            scheduler: OnceLock::new(),
            plugins,
            registry: tokio::sync::Mutex::new((Registry::default(), 0)),
            running: tokio::sync::Mutex::new(()),
            timeout,
            voice: Mutex::new((HashMap::new(), std::collections::VecDeque::new())),
            voice_items: Mutex::new((None, Arc::new(Vec::new()))),
            scores: Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(SCORES_KEPT).expect("non-zero"))),
        })
    }

    fn stream() -> StreamId {
        StreamId::parse(mall_events::plugins::STREAM).expect("a valid stream id")
    }

    /// The registry, up to date with the log.
    async fn registry(&self) -> Result<tokio::sync::MutexGuard<'_, (Registry, u64)>, String> {
        let mut g = self.registry.lock().await;
        loop {
            let from = g.1 + 1;
            let events = self
                .actors
                .rt
                .store
                .read_stream(&Self::stream(), from, mall_events::Direction::Forward, 1_000)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = events.last() else { break };
            let version = last.stream_version;
            for e in &events {
                if let Ok(d) = e.decode() {
                    g.0.evolve(&d);
                }
            }
            g.1 = version;
        }
        Ok(g)
    }

    async fn append(&self, events: Vec<DomainEvent>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let batch = events
            .iter()
            .map(|d| NewEvent::from_domain(d, Uuid::now_v7(), Vec::new()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        self.actors
            .rt
            .store
            .append(&Self::stream(), ExpectedVersion::Any, batch)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The facts plugins are given: every listed product with its daily units sold.
    async fn facts(&self, now: DateTime<Utc>) -> Result<Vec<ProductFacts>, String> {
        let err = |e: mall_projections::runner::SinkError| e.to_string();
        let today = now.date_naive();
        let mut units: HashMap<String, Vec<f64>> = HashMap::new();
        let mut views: HashMap<String, Vec<f64>> = HashMap::new();
        for back in 0..plugins::DAYS {
            let day = (today - chrono::Duration::days(back as i64)).format("%Y-%m-%d").to_string();
            let prefix = format!("{day}|");
            for r in self
                .read
                .rows("analytics", PRODUCT_DAYS, Filter::Group { column: "day", value: &day, prefix: &prefix })
                .await
                .map_err(err)?
            {
                let v = units.entry(text(&r, "product_id")).or_insert_with(|| vec![0.0; plugins::DAYS]);
                v[plugins::DAYS - 1 - back] += int(&r, "units").max(0) as f64;
                let v = views.entry(text(&r, "product_id")).or_insert_with(|| vec![0.0; plugins::DAYS]);
                v[plugins::DAYS - 1 - back] += int(&r, "views").max(0) as f64;
            }
        }
        let mut out: Vec<ProductFacts> = self
            .read
            .rows("catalog", PRODUCTS, Filter::All)
            .await
            .map_err(err)?
            .iter()
            .map(|r| {
                let id = text(r, "product_id");
                ProductFacts {
                    units_by_day: units.remove(&id).unwrap_or_else(|| vec![0.0; plugins::DAYS]),
                    views_by_day: views.remove(&id).unwrap_or_else(|| vec![0.0; plugins::DAYS]),
                    numbers: r
                        .get("attributes")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (k.clone(), x)))
                        .collect(),
                    title: text(r, "title"),
                    district: text(r, "district"),
                    price: price(r),
                    currency: text(r, "currency"),
                    stock: int(r, "stock").clamp(0, u32::MAX as i64) as u32,
                    image_url: r.get("image_url").and_then(Value::as_str).map(str::to_string),
                    product_id: id,
                }
            })
            .collect();
        out.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        Ok(out)
    }

    /// Reviews of the last [`plugins::REVIEW_DAYS`] days, oldest first.
    async fn reviews(&self, now: DateTime<Utc>) -> Result<Vec<(String, plugins::Review)>, String> {
        let since = now - chrono::Duration::days(plugins::REVIEW_DAYS);
        let mut out: Vec<(String, plugins::Review)> = self
            .read
            .rows("customers", REVIEWS, Filter::All)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|r| {
                let at = r.get("at").and_then(Value::as_str).and_then(|t| DateTime::parse_from_rfc3339(t).ok())?;
                Some((
                    text(r, "review_id"),
                    plugins::Review {
                        product_id: text(r, "product_id"),
                        rating: int(r, "rating").clamp(1, 5) as u8,
                        text: text(r, "text"),
                        at: at.with_timezone(&Utc),
                        model_score: None,
                    },
                ))
            })
            .filter(|(_, r)| r.at >= since)
            .collect();
        out.sort_by_key(|(_, r)| r.at);
        Ok(out)
    }

    /// Has the configured model score the review texts it has not scored (within the budget,
    /// [`SCORED_PER_CALL`] a call, [`CALLS_PER_RUN`] calls a run); a score is kept only when
    /// the answer passes [`sentiment::parse_scores`], else the lexicon scores those reviews.
    async fn model_scores(&self, reviews: &mut [(String, plugins::Review)]) {
        let rt = &self.actors.rt;
        if !rt.generator.completes() {
            return;
        }
        let todo: Vec<usize> = {
            let mut known = self.scores.lock().expect("scores");
            for (id, r) in reviews.iter_mut() {
                r.model_score = known.get(id.as_str()).copied();
            }
            (0..reviews.len())
                .filter(|i| reviews[*i].1.model_score.is_none() && !reviews[*i].1.text.trim().is_empty())
                .collect()
        };
        // The scoring has the plugins' own time limit, all calls together: a model that stalls
        // never holds up the run (the lexicon scores what it did not).
        let deadline = tokio::time::Instant::now() + self.timeout;
        for chunk in todo.chunks(SCORED_PER_CALL).take(CALLS_PER_RUN) {
            if !rt.budget.take("plugins:sentiment") {
                break;
            }
            let texts: Vec<&str> = chunk.iter().map(|i| reviews[*i].1.text.as_str()).collect();
            let raw = match tokio::time::timeout_at(deadline, rt.generator.complete(sentiment::prompt(&texts))).await {
                Ok((_, Ok(raw))) => raw,
                // A model that fails or stalls is not asked again this run (nor charged again).
                Ok((_, Err(e))) => {
                    tracing::warn!(error = %e, "the model did not score the reviews; the lexicon does");
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        "the model did not score the reviews within {} ms; the lexicon does",
                        self.timeout.as_millis()
                    );
                    break;
                }
            };
            match sentiment::parse_scores(&raw, texts.len()) {
                Some(scores) => {
                    let mut known = self.scores.lock().expect("scores");
                    for (i, x) in chunk.iter().zip(scores) {
                        reviews[*i].1.model_score = Some(x);
                        known.put(reviews[*i].0.clone(), x);
                    }
                }
                None => tracing::warn!("the model's sentiment scores were refused; the lexicon scores those reviews"),
            }
        }
    }

    /// Runs every enabled plugin that has `hook`, each isolated; records each run, its new
    /// proposals (validated like every event), and the isolation of a plugin that failed
    /// [`plugins::MAX_FAILURES`] times in a row. Returns (plugin, outcome) per run.
    pub async fn run(&self, hook: Hook) -> Result<Vec<(String, String)>, String> {
        let _one = self.running.lock().await;
        self.read.wait_for_head(Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        let now = Utc::now();
        let products = self.facts(now).await?;
        let mut reviews = self.reviews(now).await?;
        let known: std::collections::HashSet<String> =
            products.iter().map(|p| format!("product:{}", p.product_id)).collect();
        let todo: Vec<(Arc<dyn Plugin>, BTreeMap<String, f64>)> = {
            let g = self.registry().await?;
            self.plugins
                .iter()
                .filter(|p| {
                    let info = p.info();
                    info.hooks.contains(&hook) && g.0.enabled(&info)
                })
                .map(|p| (p.clone(), g.0.config(&p.info())))
                .collect()
        };
        if todo.iter().any(|(p, _)| p.info().id == plugins::Sentiment.info().id) {
            self.model_scores(&mut reviews).await;
        }
        let reviews: Vec<plugins::Review> = reviews.into_iter().map(|(_, r)| r).collect();
        // All run at once, each apart.
        let runs = futures_util::future::join_all(todo.iter().map(|(p, config)| {
            let ctx =
                Arc::new(Context { now, config: config.clone(), products: products.clone(), reviews: reviews.clone() });
            plugins::run_isolated(p.clone(), hook, ctx, self.timeout)
        }))
        .await;
        let mut summary = Vec::new();
        for ((p, _), (outcome, took)) in todo.iter().zip(runs) {
            let info = p.info();
            let run_id = Uuid::now_v7();
            let at = Utc::now();
            let g = self.registry().await?;
            // Proposals become events only when each validates and names something that exists.
            let (outcome, proposals): (Outcome, Vec<DomainEvent>) = match outcome {
                Outcome::Ok(list) => {
                    let mut events = Vec::new();
                    let mut refused = None;
                    for x in list.iter().filter(|x| !g.0.repeats(info.id, x)) {
                        let d = DomainEvent::PluginProposed(PluginProposed {
                            proposal_id: Uuid::now_v7(),
                            plugin_id: info.id.into(),
                            run_id,
                            subject: x.subject.clone(),
                            kind: x.kind.clone(),
                            figures: x.figures.clone(),
                            note: x.note.clone(),
                            at,
                        });
                        if let Err((field, e)) = d.validate() {
                            refused = Some(format!("a proposal's {field}: {}", e.0));
                            break;
                        }
                        if x.subject.starts_with("product:") && !known.contains(&x.subject) {
                            refused = Some(format!("a proposal about {}, which is not listed", x.subject));
                            break;
                        }
                        events.push(d);
                    }
                    match refused {
                        Some(why) => (Outcome::Failed(why), Vec::new()),
                        None => (Outcome::Ok(list), events),
                    }
                }
                other => (other, Vec::new()),
            };
            let detail = match &outcome {
                Outcome::Ok(list) => format!("{} proposals, {} new", list.len(), proposals.len()),
                Outcome::Failed(e) => e.clone(),
                Outcome::Panicked(e) => format!("panicked: {e}"),
                Outcome::TimedOut => format!("no answer within {} ms", self.timeout.as_millis()),
            };
            let disable = g.0.disables(info.id, &outcome).then(|| g.0.config(&info));
            drop(g);
            let mut events = vec![DomainEvent::PluginRan(PluginRan {
                run_id,
                plugin_id: info.id.into(),
                hook: hook.as_str().into(),
                outcome: outcome.as_str().into(),
                detail: mall_actors::executors::log_safe(&detail, 500),
                proposals: proposals.len() as u32,
                duration_ms: took.as_millis() as u64,
                at,
            })];
            // Dynamic pricing's proposals are put to price tests by their products.
            let prices: Vec<(ProductId, PriceProposal)> = proposals.iter().filter_map(price_proposal).collect();
            events.extend(proposals);
            if let Some(config) = disable {
                tracing::warn!(
                    plugin = info.id,
                    outcome = outcome.as_str(),
                    "a plugin failed {} times in a row; disabled",
                    plugins::MAX_FAILURES
                );
                events.push(DomainEvent::PluginConfigured(PluginConfigured {
                    plugin_id: info.id.into(),
                    enabled: Some(false),
                    config,
                    by: "isolation".into(),
                    reason: format!(
                        "{} failures in a row, the last: {}",
                        plugins::MAX_FAILURES,
                        mall_actors::executors::log_safe(&detail, 300)
                    ),
                    at,
                }));
            }
            self.append(events).await?;
            for (id, p) in prices {
                let work = super::placement::ProductWork::PriceTest { proposal: p };
                match self.placement.product(&id, work).await {
                    Ok(started) => tracing::info!(product = %id, %started, "a price test"),
                    Err(why) => tracing::info!(product = %id, %why, "no price test"),
                }
            }
            summary.push((info.id.to_string(), outcome.as_str().to_string()));
        }
        Ok(summary)
    }

    /// Watches the log until shutdown: a catalog change runs the `catalog` hook, signals the
    /// `signals` hook (each at most once per [`HOOK_EVERY`]).
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut seen: Position = match self.actors.rt.store.stats().await {
            Ok(s) => s.last_position,
            Err(_) => 0,
        };
        // What happened since each hook last ran, and when that was: a hook runs at most once
        // per HOOK_EVERY, so a burst of listings or signals costs one run, not one per batch.
        let mut pending = [false, false];
        let mut last_run = [tokio::time::Instant::now() - HOOK_EVERY; 2];
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            if let Ok(events) = self.actors.rt.store.read_all(seen + 1, 10_000).await
                && let Some(last) = events.last()
            {
                seen = last.position;
                pending[0] |= events.iter().any(|e| {
                    matches!(
                        e.event_type.as_str(),
                        "product_listed" | "product_edited" | "stock_changed" | "price_changed"
                    )
                });
                pending[1] |=
                    events.iter().any(|e| mall_events::domain::RECORD_TYPES[5..].contains(&e.event_type.as_str()));
            }
            for (i, hook) in [Hook::Catalog, Hook::Signals].into_iter().enumerate() {
                if pending[i] && last_run[i].elapsed() >= HOOK_EVERY {
                    (pending[i], last_run[i]) = (false, tokio::time::Instant::now());
                    if let Err(e) = self.run(hook).await {
                        tracing::warn!(error = %e, hook = hook.as_str(), "plugins did not run");
                    }
                }
            }
        }
    }

    /// The items voice searches match, made once per rankings (in memory: a voice request reads
    /// no table).
    fn voice_items(&self, r: &super::ranking::Rankings) -> Arc<Vec<voice::Item>> {
        let mut g = self.voice_items.lock().expect("voice items");
        if g.0 != Some(r.position) {
            let items = r
                .all()
                .map(|ranked| {
                    let row = &ranked.product;
                    let mut t = text(row, "title");
                    for tag in row.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
                    {
                        t.push(' ');
                        t.push_str(tag);
                    }
                    for v in row.get("attributes").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
                        if let Some(s) = v.as_str().filter(|s| s.len() <= 80) {
                            t.push(' ');
                            t.push_str(s);
                        }
                    }
                    voice::Item {
                        product_id: ranked.id.clone(),
                        title: text(row, "title"),
                        text: t.to_lowercase(),
                        price: price(row),
                        currency: text(row, "currency"),
                        // The rankings hold only what is in stock.
                        in_stock: true,
                    }
                })
                .collect();
            *g = (Some(r.position), Arc::new(items));
        }
        g.1.clone()
    }

    /// Every plugin: its id, name, whether it is enabled now and its settings.
    pub async fn switches(&self) -> Result<Vec<(&'static str, &'static str, bool, BTreeMap<String, f64>)>, String> {
        let g = self.registry().await?;
        Ok(self.plugins.iter().map(|p| p.info()).map(|i| (i.id, i.name, g.0.enabled(&i), g.0.config(&i))).collect())
    }

    /// Turns a plugin on or off, its settings as they are.
    pub async fn switch(&self, id: &str, enabled: bool, by: &str) -> Result<(), ApiError> {
        let reason = format!("{by} turned it {}", if enabled { "on" } else { "off" });
        self.configure(id, Some(enabled), BTreeMap::new(), by, reason).await
    }

    /// A `plugin_configured` event by `by`: enabled or not (`None`: as it is), and the settings
    /// given over the current ones — each one the plugin has, a finite number.
    pub async fn configure(
        &self,
        id: &str,
        enabled: Option<bool>,
        settings: BTreeMap<String, Value>,
        by: &str,
        reason: String,
    ) -> Result<(), ApiError> {
        let info = self
            .plugins
            .iter()
            .map(|p| p.info())
            .find(|i| i.id == id)
            .ok_or_else(|| ApiError::not_found(format!("no plugin {id:?}")))?;
        let mut config = self.registry().await.map_err(ApiError::unavailable)?.0.config(&info);
        for (k, v) in settings {
            if !info.defaults.iter().any(|(d, _)| *d == k) {
                let known: Vec<&str> = info.defaults.iter().map(|(d, _)| *d).collect();
                return Err(ApiError::invalid(
                    format!("config.{k}"),
                    format!("{} has no setting {k:?}; it has {}", info.id, known.join(", ")),
                ));
            }
            let n = v
                .as_f64()
                .filter(|n| n.is_finite() && n.abs() <= 1e9)
                .ok_or_else(|| ApiError::invalid(format!("config.{k}"), "a setting is a finite number"))?;
            config.insert(k, n);
        }
        let event = DomainEvent::PluginConfigured(PluginConfigured {
            plugin_id: info.id.into(),
            enabled,
            config,
            by: by.into(),
            reason,
            at: Utc::now(),
        });
        event.validate().map_err(|(f, e)| ApiError::invalid(f, e.0))?;
        self.append(vec![event]).await.map_err(ApiError::unavailable)
    }

    fn remember(&self, shopper: &str, ids: Vec<String>) {
        let mut g = self.voice.lock().expect("voice");
        let (map, order) = &mut *g;
        if map.insert(shopper.to_string(), ids).is_none() {
            order.push_back(shopper.to_string());
            while order.len() > VOICE_MEMORY {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    fn recall(&self, shopper: &str) -> Vec<String> {
        self.voice.lock().expect("voice").0.get(shopper).cloned().unwrap_or_default()
    }
}

/// A `price` proposal of dynamic pricing as the proposal its product puts to a test.
fn price_proposal(d: &DomainEvent) -> Option<(ProductId, PriceProposal)> {
    let DomainEvent::PluginProposed(p) = d else { return None };
    if p.plugin_id != plugins::DynamicPricing.info().id || p.kind != "price" {
        return None;
    }
    // `from` is today's price to the ten-thousandth; `to` is in cents.
    let price = |k: &str, digits: usize| p.figures.get(k).and_then(|x| Price::parse(format!("{x:.digits$}")).ok());
    let id = ProductId::parse(p.subject.strip_prefix("product:")?).ok()?;
    let (from, to) = (price("from", 4)?, price("to", 2)?);
    Some((id, PriceProposal { proposal_id: p.proposal_id, from, to, reason: p.note.clone() }))
}

fn run_request(reason: String, priority: u8) -> Request {
    Request {
        system: "plugins".into(),
        subject: "mall".into(),
        action: "sweep".into(),
        priority,
        reason,
        metrics: BTreeMap::new(),
        generations: 0,
    }
}

/// `plugins` `sweep`: every enabled plugin on its schedule.
pub struct Sweep(pub Arc<Plugins>);

#[async_trait]
impl Executor for Sweep {
    async fn run(&self, _task: &Task) -> Result<String, String> {
        let runs = self.0.run(Hook::Schedule).await?;
        Ok(runs.iter().map(|(p, o)| format!("{p}: {o}")).collect::<Vec<_>>().join(", "))
    }
}

/// The `plugin_hooks` job: queues a run of every plugin on its schedule.
pub struct HooksJob;

#[async_trait]
impl JobWork for HooksJob {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        scheduler
            .queue(vec![run_request(format!("the plugin hooks (tick {due})"), priority::SWEEP)])
            .await
            .map_err(|e| e.to_string())
    }
}

/// Every plugin with its declaration, switch, settings and record.
async fn listing(state: &AppState) -> Result<Value, ApiError> {
    let p = &state.plugins;
    let rows: HashMap<String, Row> = state
        .read
        .rows("plugins", AI_PLUGINS, Filter::All)
        .await
        .map_err(super::storefront::sink_error)?
        .into_iter()
        .map(|r| (text(&r, "plugin_id"), r))
        .collect();
    let g = p.registry().await.map_err(ApiError::unavailable)?;
    let plugins: Vec<Value> = p
        .plugins
        .iter()
        .map(|x| {
            let info = x.info();
            let row = rows.get(info.id);
            let n = |k: &str| row.map_or(0, |r| int(r, k));
            json!({
                "id": info.id, "name": info.name, "description": info.description,
                "capabilities": info.capabilities, "hooks": info.hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
                "enabled": g.0.enabled(&info), "config": g.0.config(&info),
                "defaults": info.defaults.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<String, f64>>(),
                "runs": n("runs"), "failures": n("failures"), "failures_in_a_row": n("failures_in_a_row"),
                "proposals": n("proposals"),
                "last_outcome": row.and_then(|r| r.get("last_outcome").cloned()),
                "last_detail": row.and_then(|r| r.get("last_detail").cloned()),
                "last_run_at": row.and_then(|r| r.get("last_run_at").cloned()),
                "disabled_by": row.and_then(|r| r.get("disabled_by").cloned()),
                "disabled_reason": row.and_then(|r| r.get("disabled_reason").cloned()),
            })
        })
        .collect();
    drop(g);
    // Ids are UUIDv7: the greatest keys are the latest.
    let latest = |table| state.read.rows("plugins", table, Filter::Last(100));
    let err = super::storefront::sink_error;
    let mut proposals = latest(PLUGIN_PROPOSALS).await.map_err(err)?;
    proposals.sort_by_key(|r| std::cmp::Reverse(int(r, "position")));
    let price_tests = latest(PRICE_TESTS).await.map_err(err)?;
    Ok(json!({"plugins": plugins, "proposals": proposals, "price_tests": price_tests}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

/// `GET /api/autonomous/plugins` (admin): every plugin (declaration, `enabled`, `config`, runs,
/// failures, last outcome, who disabled it and why) and the latest proposals.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let position = super::storefront::position(&state, q.min_position).await;
    let body = listing(&state).await?;
    Ok(HttpResponse::Ok().insert_header((super::reads::POSITION_HEADER, position.to_string())).json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigureBody {
    id: String,
    enabled: Option<bool>,
    config: Option<BTreeMap<String, Value>>,
    reason: Option<String>,
}

/// `POST /api/autonomous/plugins` (admin) `{"id", "enabled"?, "config"?: {SETTING: NUMBER},
/// "reason"?}`: enables, disables or configures a plugin (a `plugin_configured` event) → 200
/// with the listing; unknown plugin 404; an unknown setting or a value that is not a finite
/// number 400 naming `config.SETTING`.
pub async fn configure(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let b: ConfigureBody = mall_events::records::from_json(&super::ingest::body(&state, payload, 16_384).await?)?;
    if b.enabled.is_none() && b.config.is_none() {
        return Err(ApiError::invalid("enabled", "say enabled, config or both"));
    }
    state
        .plugins
        .configure(&b.id, b.enabled, b.config.unwrap_or_default(), "admin", b.reason.unwrap_or_default())
        .await?;
    let position = state.read.wait_for_head(Duration::from_secs(5)).await?;
    let body = listing(&state).await?;
    Ok(HttpResponse::Ok().insert_header((super::reads::POSITION_HEADER, position.to_string())).json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoiceBody {
    text: String,
    shopper_id: Option<String>,
    /// As on every read: the products as of this log position or later.
    #[serde(alias = "minPosition")]
    min_position: Option<mall_events::Position>,
}

/// `POST /api/autonomous/voice` (public, like search) `{"text", "shopper_id"?}` → `{"intent",
/// "products", "reply", ...}`: a transcript read as an intent, the products that match, and a
/// reply to speak. "Add two of those" refers to the shopper's last results (the client adds to
/// its cart; nothing is written here). 409 while the `voice_commerce` plugin is disabled.
pub async fn voice(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let b: VoiceBody = mall_events::records::from_json(&super::ingest::body(&state, payload, 4_096).await?)?;
    if b.text.trim().is_empty() || b.text.chars().count() > 500 {
        return Err(ApiError::invalid("text", "a transcript of 1 to 500 characters"));
    }
    let shopper = match b.shopper_id {
        Some(s) => Some(mall_events::ids::ShopperId::parse(s).map_err(|e| ApiError::invalid("shopper_id", e.0))?),
        None => None,
    };
    let p = &state.plugins;
    let info = plugins::VoiceCommerce.info();
    let (enabled, limit) = {
        let g = p.registry().await.map_err(ApiError::unavailable)?;
        (g.0.enabled(&info), g.0.config(&info).get("max_results").copied().unwrap_or(5.0).clamp(1.0, 50.0) as usize)
    };
    if !enabled {
        return Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, "voice commerce is disabled"));
    }
    let items = p.voice_items(&*super::storefront::rankings(&state, b.min_position).await);
    let intent = voice::intent(&b.text);
    let found: Vec<&voice::Item> = match &intent {
        voice::Intent::Search { words, max_price, min_price } => {
            let found = voice::search(&items, words, *max_price, *min_price, limit);
            if let Some(s) = &shopper {
                p.remember(s.as_str(), found.iter().map(|i| i.product_id.clone()).collect());
            }
            found
        }
        voice::Intent::AddToCart { .. } => {
            let last = shopper.as_ref().map(|s| p.recall(s.as_str())).unwrap_or_default();
            last.first().and_then(|id| items.iter().find(|i| &i.product_id == id)).into_iter().collect()
        }
        voice::Intent::Unknown => Vec::new(),
    };
    let reply = voice::reply(&intent, &found);
    let mut body = json!({
        "intent": intent.name(),
        "products": found.iter().map(|i| json!({"product_id": i.product_id, "title": i.title, "price": i.price, "currency": i.currency})).collect::<Vec<_>>(),
        "reply": reply,
    });
    match intent {
        voice::Intent::Search { words, max_price, min_price } => {
            body["query"] = json!(words.join(" "));
            body["max_price"] = json!(max_price);
            body["min_price"] = json!(min_price);
        }
        voice::Intent::AddToCart { quantity } => body["quantity"] = json!(quantity),
        voice::Intent::Unknown => {}
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The lifecycle segments, in order.
const SEGMENTS: [&str; 5] = ["prospect", "new", "active", "at_risk", "lost"];

/// Every shopper's purchase history (a shopper with a profile and no purchase has an empty one).
async fn histories(state: &AppState) -> Result<BTreeMap<String, segments::Purchases>, ApiError> {
    let err = super::storefront::sink_error;
    let mut histories = purchases_of(&state.read.rows("customers", SHOPPER_DAYS, Filter::All).await.map_err(err)?);
    for r in state.read.rows("personalization", SHOPPER_PROFILES, Filter::All).await.map_err(err)? {
        histories.entry(text(&r, "shopper_id")).or_default();
    }
    Ok(histories)
}

fn segment_name(f: Option<&segments::Figures>) -> String {
    serde_json::to_value(segments::lifecycle(f)).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// How many shoppers each segment holds.
fn counts<'a>(figures: impl Iterator<Item = Option<&'a segments::Figures>>) -> BTreeMap<&'static str, u64> {
    let mut counts: BTreeMap<&str, u64> = SEGMENTS.iter().map(|s| (*s, 0)).collect();
    for f in figures {
        if let Some(c) = SEGMENTS.iter().find(|s| **s == segment_name(f)).and_then(|s| counts.get_mut(s)) {
            *c += 1;
        }
    }
    counts
}

/// The count of each segment as of `as_of` (for analytics); `None` while segmentation is off.
pub async fn segment_counts(
    state: &AppState,
    as_of: chrono::NaiveDate,
) -> Result<Option<BTreeMap<&'static str, u64>>, ApiError> {
    let info = plugins::Segmentation.info();
    if !state.plugins.registry().await.map_err(ApiError::unavailable)?.0.enabled(&info) {
        return Ok(None);
    }
    let histories = histories(state).await?;
    let figures: Vec<Option<segments::Figures>> = histories.values().map(|p| segments::figures(p, as_of)).collect();
    Ok(Some(counts(figures.iter().map(Option::as_ref))))
}

/// A shopper's purchase history from `shopper_days` rows.
fn purchases_of<'a>(rows: impl IntoIterator<Item = &'a Row>) -> BTreeMap<String, segments::Purchases> {
    let mut out: BTreeMap<String, segments::Purchases> = BTreeMap::new();
    for r in rows {
        let Ok(day) = chrono::NaiveDate::parse_from_str(&text(r, "day"), "%Y-%m-%d") else { continue };
        out.entry(text(r, "shopper_id")).or_default().observe(day, int(r, "spend_e4").max(0) as u64);
    }
    out
}

/// A shopper's figures as lifetime models read them, as of a date.
pub fn customer_json(p: &segments::Purchases, as_of: chrono::NaiveDate) -> Value {
    let f = segments::figures(p, as_of);
    let days: Vec<&chrono::NaiveDate> = p.0.range(..=as_of).map(|(d, _)| d).collect();
    json!({
        "as_of": as_of,
        "segment": segments::lifecycle(f.as_ref()),
        "first_purchase": days.first(),
        "last_purchase": days.last(),
        "purchase_days": days.len(),
        "frequency": f.map(|f| f.frequency),
        "recency": f.map(|f| f.recency),
        "age": f.map(|f| f.age),
        "monetary_value": f.map(|f| f.monetary_e4 / 10_000.0),
    })
}

/// The customer block of a shopper's profile: their figures as of today (`None` while the
/// segmentation plugin is disabled).
pub async fn customer(state: &AppState, shopper: &str) -> Result<Option<Value>, ApiError> {
    let info = plugins::Segmentation.info();
    if !state.plugins.registry().await.map_err(ApiError::unavailable)?.0.enabled(&info) {
        return Ok(None);
    }
    let prefix = format!("{shopper}|");
    let rows = state
        .read
        .rows("customers", SHOPPER_DAYS, Filter::Group { column: "shopper_id", value: shopper, prefix: &prefix })
        .await
        .map_err(super::storefront::sink_error)?;
    let p = purchases_of(&rows).remove(shopper).unwrap_or_default();
    Ok(Some(customer_json(&p, Utc::now().date_naive())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsQuery {
    segment: Option<String>,
    as_of: Option<String>,
    limit: Option<usize>,
    #[serde(alias = "minPosition")]
    min_position: Option<Position>,
}

/// `GET /api/autonomous/segments?segment=&as_of=&limit=` (admin): shoppers by lifecycle segment
/// (`prospect`, `new`, `active`, `at_risk`, `lost`) as of a business date (default today), with
/// their purchase figures and RFM scores (quintiles within the shoppers who bought), and the
/// count of each segment. 409 while the segmentation plugin is disabled.
pub async fn segments_list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<SegmentsQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let info = plugins::Segmentation.info();
    if !state.plugins.registry().await.map_err(ApiError::unavailable)?.0.enabled(&info) {
        return Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, "customer segmentation is disabled"));
    }
    let as_of = match q.as_of.as_deref() {
        None => Utc::now().date_naive(),
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid("as_of", format!("{d:?} is not a date (YYYY-MM-DD)")))?,
    };
    if let Some(s) = q.segment.as_deref()
        && !SEGMENTS.contains(&s)
    {
        return Err(ApiError::invalid("segment", format!("{s:?} is not one of {}", SEGMENTS.join(", "))));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 10000"));
    }
    let position = super::storefront::position(&state, q.min_position).await;
    let histories = histories(&state).await?;
    let figures: Vec<(String, Option<segments::Figures>)> =
        histories.iter().map(|(s, p)| (s.clone(), segments::figures(p, as_of))).collect();
    let bought: Vec<segments::Figures> = figures.iter().filter_map(|(_, f)| *f).collect();
    let scores = segments::rfm(&bought);
    let mut rfm_of: HashMap<&str, (u8, u8, u8)> = HashMap::new();
    let mut k = 0;
    for (s, f) in &figures {
        if f.is_some() {
            rfm_of.insert(s.as_str(), scores[k]);
            k += 1;
        }
    }
    let counts = counts(figures.iter().map(|(_, f)| f.as_ref()));
    let mut listed: Vec<(u16, String, Value)> = Vec::new();
    for (s, f) in &figures {
        let name = segment_name(f.as_ref());
        if q.segment.as_deref().is_some_and(|x| x != name) {
            continue;
        }
        let mut v = customer_json(&histories[s], as_of);
        v["shopper_id"] = json!(s);
        let total = rfm_of.get(s.as_str()).map_or(0, |(r, f, m)| u16::from(*r) + u16::from(*f) + u16::from(*m));
        if let Some((r, f, m)) = rfm_of.get(s.as_str()) {
            v["rfm"] = json!({"recency": r, "frequency": f, "monetary": m, "code": format!("{r}{f}{m}")});
        }
        listed.push((total, s.clone(), v));
    }
    listed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let total = listed.len();
    let shoppers: Vec<Value> = listed.into_iter().take(limit).map(|(_, _, v)| v).collect();
    Ok(HttpResponse::Ok().insert_header((super::reads::POSITION_HEADER, position.to_string())).json(json!({
        "as_of": as_of, "counts": counts, "segment": q.segment, "total": total, "shoppers": shoppers,
    })))
}
