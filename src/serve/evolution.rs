//! District evolution inside `mall serve`: the shell that gathers a district's state and its
//! peers' figures, asks the district's pure `decide` and records what it decides; the task that
//! writes the district's copy in the proposed voice and starts its test; a look every few
//! seconds at the tests running; the categories suggested to merchants; the job; and the routes
//! `POST /api/autonomous/districts/{slug}/evolve` and `GET /api/autonomous/districts/{slug}`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_actors::autonomous::jobs::JobWork;
use mall_actors::autonomous::priority;
use mall_actors::autonomous::queue::Task;
use mall_actors::autonomous::scheduler::{Executor, Request, Scheduler};
use mall_actors::district::evolution::{self, Decision};
use mall_actors::district::{DistrictState, copy};
use mall_actors::runtime::entity::{District, Get, Kind};
use mall_actors::runtime::router::Actors;
use mall_events::domain::{
    CategoriesSuggested, CategorySuggestion, DomainEvent, EvolutionInput, Peer, VoiceEvolutionAbandoned,
    VoiceTestStarted,
};
use mall_events::ids::DistrictSlug;
use mall_events::{ExpectedVersion, NewEvent};
use mall_projections::catalog::PRODUCTS;
use mall_projections::change::Row;
use mall_projections::evolution::{DISTRICT_PERSONALITIES, SEARCH_TERMS};
use mall_projections::personalization::{SHOPPER_INTERESTS, interest_at};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::rows::text;
use crate::readside::{Filter, ReadSide};

/// How often the running voice tests are looked at.
const TEST_LOOK_EVERY: Duration = Duration::from_secs(5);
/// The most categories suggested to a district at once.
const MAX_SUGGESTIONS: usize = 5;

/// District evolution's shell: one per server.
pub struct Evolution {
    pub actors: Arc<Actors>,
    pub read: Arc<ReadSide>,
    pub scheduler: OnceLock<Weak<Scheduler>>,
    /// One look at a time.
    looks: tokio::sync::Mutex<()>,
    /// The last decision for each district, as the API shows it.
    last: std::sync::Mutex<HashMap<String, Value>>,
    /// Each district's last window report and when it was read.
    windows: std::sync::Mutex<HashMap<String, (Instant, Value)>>,
}

impl Evolution {
    pub fn new(actors: Arc<Actors>, read: Arc<ReadSide>) -> Arc<Self> {
        Arc::new(Evolution {
            actors,
            read,
            scheduler: OnceLock::new(),
            looks: tokio::sync::Mutex::new(()),
            last: std::sync::Mutex::new(HashMap::new()),
            windows: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn scheduler(&self) -> Result<Arc<Scheduler>, String> {
        self.scheduler.get().and_then(Weak::upgrade).ok_or_else(|| "the scheduler is gone".to_string())
    }

    /// The open districts.
    fn open(&self) -> Vec<DistrictSlug> {
        let catalog = self.actors.rt.catalog.read().expect("catalog");
        let mut all: Vec<DistrictSlug> = catalog.districts().filter_map(|(s, _)| DistrictSlug::parse(s).ok()).collect();
        all.sort();
        all
    }

    /// The district's state as its actor folded it.
    pub async fn state(&self, slug: &DistrictSlug) -> Result<DistrictState, String> {
        self.actors
            .districts
            .send(slug, Get::<District>::default())
            .await
            .map_err(|e| format!("the district's actor did not answer: {e}"))?
            .filter(|s| s.slug.is_some())
            .ok_or_else(|| format!("no district {slug}"))
    }

    /// The other open districts' voices and their last 30 days' conversion.
    async fn peers(&self, slug: &DistrictSlug, now: DateTime<Utc>) -> Vec<Peer> {
        let mut peers = Vec::new();
        for other in self.open().into_iter().filter(|o| o != slug) {
            let Ok(s) = self.state(&other).await else { continue };
            let Some(personality) = s.personality.clone() else { continue };
            let a = evolution::analyse(&s.evolution, now);
            peers.push(Peer { slug: other, personality, views: a.views, conversions: a.conversions });
        }
        peers
    }

    async fn append(&self, d: DomainEvent, id: Uuid) -> Result<(), String> {
        let e = NewEvent::from_domain(&d, id, Vec::new()).map_err(|e| e.to_string())?;
        self.actors.rt.store.append(&d.stream_id(), ExpectedVersion::Any, vec![e]).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Looks at a district now: decides with its state and its peers' figures, records a
    /// proposal (and queues the writing of its copy) or a test's conclusion. Returns the decision.
    pub async fn look(&self, slug: &DistrictSlug, trigger: &str) -> Result<Decision, String> {
        let _one = self.looks.lock().await;
        let state = self.state(slug).await?;
        let now = Utc::now();
        let peers = if state.evolution.test.is_some() { Vec::new() } else { self.peers(slug, now).await };
        let input = EvolutionInput { now, peers, trigger: trigger.into() };
        let decision = District::decide(&state, &input).pop().ok_or_else(|| format!("{slug} is not open"))?;
        let write = |reason: String, metrics: BTreeMap<String, f64>| Request {
            system: "district_evolution".into(),
            subject: format!("district:{slug}"),
            action: "write_voice".into(),
            priority: priority::ADMIN,
            reason,
            metrics,
            generations: 0,
        };
        match &decision {
            Decision::Propose(p) => {
                self.append(DomainEvent::VoiceEvolutionProposed(p.clone()), p.evolution_id).await?;
                let reason = format!("{} ({}): {}", p.attribute, p.rule, p.reasons.join("; "));
                self.scheduler()?.queue(vec![write(reason, p.metrics.clone())]).await.map_err(|e| e.to_string())?;
            }
            // A proposal still waiting for its copy (its task lost in a crash, say) is written
            // again: asking twice merges in the queue.
            Decision::Hold { .. } if state.evolution.proposed.is_some() && state.evolution.test.is_none() => {
                let reason = "a proposed voice is still waiting for its copy".to_string();
                self.scheduler()?.queue(vec![write(reason, BTreeMap::new())]).await.map_err(|e| e.to_string())?;
            }
            Decision::Conclude(c) => {
                self.append(DomainEvent::VoiceTestConcluded(c.clone()), Uuid::new_v5(&c.test_id, b"concluded")).await?;
            }
            Decision::Hold { .. } => {}
        }
        let mut shown = serde_json::to_value(&decision).unwrap_or(Value::Null);
        shown["at"] = json!(now);
        shown["trigger"] = json!(trigger);
        self.last.lock().expect("last").insert(slug.to_string(), shown);
        Ok(decision)
    }

    /// The district's commonest product tags (its categories), at most `n`.
    async fn categories(&self, slug: &DistrictSlug, n: usize) -> Result<Vec<String>, String> {
        let rows = self
            .read
            .rows("catalog", PRODUCTS, Filter::Eq("district", slug.as_str()))
            .await
            .map_err(|e| e.to_string())?;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in &rows {
            for t in r.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                *counts.entry(t.to_string()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(ranked.into_iter().take(n).map(|(t, _)| t).collect())
    }

    /// Writes the district's copy in its current voice and in the proposed one, checks both with
    /// the guardrails, and starts the test — or abandons the proposal when the copy is refused.
    pub async fn write_voice(&self, slug: &DistrictSlug) -> Result<String, String> {
        // The proposal was just appended: wait (a little) for the district's actor to fold it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = loop {
            let s = self.state(slug).await?;
            if s.evolution.proposed.is_some() || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(p) = state.evolution.proposed.clone() else { return Ok("no proposal waits for its copy".into()) };
        if state.evolution.test.is_some() {
            return Ok("the new voice is already under test".into());
        }
        let current = state.personality.clone().ok_or("the district has no voice")?;
        let categories = self.categories(slug, 3).await?;
        let now = Utc::now();
        let abandon = |reason: String, verdicts: Vec<mall_events::domain::Verdict>, w: Option<Written>| {
            let w = w.unwrap_or_default();
            VoiceEvolutionAbandoned {
                evolution_id: p.evolution_id,
                slug: slug.clone(),
                reason,
                verdicts,
                generator: w.generator,
                prompt: w.prompt,
                raw_output: w.raw_output,
                at: now,
            }
        };
        let abandoned = |e: VoiceEvolutionAbandoned| async move {
            let why = e.reason.clone();
            self.append(DomainEvent::VoiceEvolutionAbandoned(e), Uuid::new_v5(&p.evolution_id, b"abandoned")).await?;
            Ok::<String, String>(format!("abandoned: {why}"))
        };
        // The copy in force is the control; a district without any gets it written now, by the
        // same writer as the new voice's, so that the test compares voices and not writers.
        let control = match state.evolution.copy.clone() {
            Some(c) => Ok(Written { copy: Some(c), ..Written::default() }),
            None => self.written(slug, &state.name, &current, &categories).await,
        };
        let challenger = self.written(slug, &state.name, &p.personality, &categories).await;
        let (control, challenger) = match (control, challenger) {
            (Ok(c), Ok(n)) => (c, n),
            (Err(e), _) | (_, Err(e)) => return abandoned(abandon(e, Vec::new(), None)).await,
        };
        let (Some(control_copy), Some(challenger_copy)) = (control.copy.clone(), challenger.copy.clone()) else {
            let w = if challenger.copy.is_none() { challenger } else { control };
            return abandoned(abandon(w.error.clone().unwrap_or_default(), Vec::new(), Some(w))).await;
        };
        let (control_verdicts, control_checked) = copy::check(&control_copy, &state.name, &categories);
        let (verdicts, challenger_checked) = copy::check(&challenger_copy, &state.name, &categories);
        match (control_checked, challenger_checked) {
            (Some(control_copy), Some(challenger_copy)) => {
                let test_id = evolution::test_id(p.evolution_id);
                let started = VoiceTestStarted {
                    evolution_id: p.evolution_id,
                    test_id,
                    slug: slug.clone(),
                    control: control_copy,
                    challenger: challenger_copy,
                    personality: p.personality.clone(),
                    generator: challenger.generator,
                    verdicts,
                    prompt: challenger.prompt,
                    raw_output: challenger.raw_output,
                    at: now,
                };
                self.append(DomainEvent::VoiceTestStarted(started), Uuid::new_v5(&test_id, b"started")).await?;
                Ok(format!("the {} {:?} is under test against {:?}", p.attribute, p.to, p.from))
            }
            (control_checked, _) => {
                let refused = if control_checked.is_none() { control_verdicts } else { verdicts };
                let failed: Vec<String> =
                    refused.iter().filter(|v| !v.passed).map(|v| format!("{}: {}", v.check, v.detail)).collect();
                let reason = format!("the guardrails refused the copy: {}", failed.join("; "));
                let w = if control_checked.is_none() { control } else { challenger };
                abandoned(abandon(reason, refused, Some(w))).await
            }
        }
    }

    /// The district's copy in `voice`: by the configured model when there is one and the hourly
    /// budget has a call for the district (one call, never retried here: a model that fails or
    /// answers something else abandons the proposal), else by the built-in writer.
    async fn written(
        &self,
        slug: &DistrictSlug,
        name: &str,
        voice: &mall_events::domain::Personality,
        categories: &[String],
    ) -> Result<Written, String> {
        let rt = &self.actors.rt;
        let subject = format!("district:{slug}");
        if !rt.generator.completes() || !rt.budget.take(&subject) {
            return Ok(Written {
                copy: Some(copy::write(name, voice, categories)),
                generator: copy::WRITER.into(),
                ..Written::default()
            });
        }
        let (prompt, answer) = rt.generator.complete(copy::prompt(name, voice, categories)).await;
        let generator = rt.generator.id();
        Ok(match answer {
            Ok(raw) => match copy::parse(&raw) {
                Ok(c) => Written { copy: Some(c), generator, prompt, raw_output: raw, error: None },
                Err(e) => Written { copy: None, generator, prompt, raw_output: raw, error: Some(e) },
            },
            Err(e) => Written {
                copy: None,
                generator,
                prompt,
                raw_output: String::new(),
                error: Some(format!("the model failed: {e}")),
            },
        })
    }

    /// What converted in the district's last 30 days: its products (the best, and the weakest
    /// with enough views), its categories (tags), read from the log from the window's first
    /// day (at most [`MAX_WINDOW_EVENTS`] events; kept for a minute unless `fresh`); and how its
    /// copy changes fared (the learning cycle's insights for the district).
    pub async fn window(&self, slug: &DistrictSlug, state: &DistrictState, fresh: bool) -> Result<Value, String> {
        if let Some((at, v)) = self.windows.lock().expect("windows").get(slug.as_str())
            && at.elapsed() < WINDOW_KEPT
            && !fresh
        {
            return Ok(v.clone());
        }
        let now = Utc::now();
        let start = now - chrono::Duration::days(evolution::WINDOW_DAYS);
        let tag = mall_events::ids::tag::district(slug);
        let mut per_product: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let (mut from, mut read) = (state.evolution.window_start(now).unwrap_or(u64::MAX), 0usize);
        while read < MAX_WINDOW_EVENTS {
            let batch = self.actors.rt.store.read_by_tag(&tag, from, 1_000).await.map_err(|e| e.to_string())?;
            let Some(last) = batch.last() else { break };
            from = last.position + 1;
            read += batch.len();
            for e in batch
                .iter()
                .filter(|e| matches!(e.event_type.as_str(), "product_viewed" | "added_to_cart" | "purchased"))
            {
                let Ok(d) = e.decode() else { continue };
                let (Some(at), Some(p)) = (d.signal_at(), d.product_id()) else { continue };
                if at < start || at > now {
                    continue;
                }
                let c = per_product.entry(p.as_str().to_string()).or_default();
                match &d {
                    DomainEvent::ProductViewed(_) => c.0 += 1,
                    DomainEvent::AddedToCart(_) => c.1 += 1,
                    DomainEvent::Purchased(x) => {
                        c.2 += x.unit_price.ten_thousandths().saturating_mul(x.quantity as u64)
                    }
                    _ => {}
                }
            }
        }
        let conversions = |(views, carts, _): (u64, u64, u64)| carts.min(views);
        let rate = |v: u64, c: u64| if v == 0 { 0.0 } else { (c as f64 / v as f64 * 10_000.0).round() / 10_000.0 };
        let shown = |id: &String, c: (u64, u64, u64)| json!({"product_id": id, "views": c.0, "conversions": conversions(c), "conversion_rate": rate(c.0, conversions(c)), "revenue": c.2 as f64 / 10_000.0});
        let mut best: Vec<(&String, (u64, u64, u64))> = per_product.iter().map(|(k, v)| (k, *v)).collect();
        best.sort_by(|a, b| conversions(b.1).cmp(&conversions(a.1)).then(a.0.cmp(b.0)));
        let mut weakest: Vec<(&String, (u64, u64, u64))> =
            best.iter().filter(|(_, c)| c.0 >= MIN_PRODUCT_VIEWS).copied().collect();
        weakest
            .sort_by(|a, b| rate(a.1.0, conversions(a.1)).total_cmp(&rate(b.1.0, conversions(b.1))).then(a.0.cmp(b.0)));
        let mut by_tag: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        {
            let catalog = self.actors.rt.catalog.read().expect("catalog");
            for (id, c) in &per_product {
                for t in catalog.product(id).map(|p| p.tags()).unwrap_or_default() {
                    let e = by_tag.entry(t.clone()).or_default();
                    e.0 += c.0;
                    e.1 += conversions(*c);
                }
            }
        }
        let mut tags: Vec<(String, (u64, u64))> = by_tag.into_iter().collect();
        tags.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
        let copy: Vec<Value> = match self.scheduler() {
            Ok(s) => {
                s.with_queue(|q| {
                    q.insights()
                        .values()
                        .filter(|i| i.district == slug.as_str())
                        .map(|i| json!({"action": i.action, "diagnosis": i.diagnosis, "tried": i.tried, "kept": i.helped, "mean_lift": i.lift}))
                        .collect()
                })
                .await
            }
            Err(_) => Vec::new(),
        };
        let report = json!({
            "products": best.iter().take(5).map(|(k, c)| shown(k, *c)).collect::<Vec<_>>(),
            "weakest_products": weakest.iter().take(5).map(|(k, c)| shown(k, *c)).collect::<Vec<_>>(),
            "categories": tags.iter().take(5).map(|(t, (v, c))| json!({"category": t, "views": v, "conversions": c, "conversion_rate": rate(*v, *c)})).collect::<Vec<_>>(),
            "copy": copy,
            "events_read": read,
        });
        self.windows.lock().expect("windows").insert(slug.to_string(), (Instant::now(), report.clone()));
        Ok(report)
    }

    /// The words a district is about: its name's, its products' titles' and tags'.
    async fn vocabulary(&self, slug: &DistrictSlug, name: &str) -> Result<HashSet<String>, String> {
        let rows = self
            .read
            .rows("catalog", PRODUCTS, Filter::Eq("district", slug.as_str()))
            .await
            .map_err(|e| e.to_string())?;
        let mut words: HashSet<String> = words_of(name).collect();
        for r in &rows {
            words.extend(words_of(&text(r, "title")));
            for t in r.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                words.extend(words_of(t));
            }
        }
        Ok(words)
    }

    /// Searches that found nothing and that are about the district (a word of the query is one
    /// of its words): each query with its searches and those that found nothing, most first.
    pub async fn unmet_searches(&self, slug: &DistrictSlug, name: &str) -> Result<Vec<UnmetSearch>, String> {
        let vocabulary = self.vocabulary(slug, name).await?;
        let terms = self.read.rows("evolution", SEARCH_TERMS, Filter::All).await.map_err(|e| e.to_string())?;
        let n = |r: &Row, k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
        let mut unmet: Vec<UnmetSearch> = terms
            .iter()
            .filter(|r| n(r, "zero_results") >= MIN_UNMET)
            .filter_map(|r| {
                let query = text(r, "query");
                let words: Vec<String> = words_of(&query).collect();
                if !words.iter().any(|w| vocabulary.contains(w)) {
                    return None;
                }
                let lacking: Vec<String> = words.into_iter().filter(|w| !vocabulary.contains(w)).collect();
                Some(UnmetSearch {
                    searches: n(r, "searches"),
                    zero_results: n(r, "zero_results"),
                    lacking: lacking.join(" "),
                    query,
                })
            })
            .collect();
        unmet.sort_by(|a, b| b.zero_results.cmp(&a.zero_results).then(a.query.cmp(&b.query)));
        unmet.truncate(MAX_UNMET);
        Ok(unmet)
    }

    /// Categories the district does not carry that its shoppers show interest in elsewhere
    /// (carts and purchases weigh most) or search for in vain, recorded when they changed.
    pub async fn suggest(&self, slug: &DistrictSlug) -> Result<Vec<CategorySuggestion>, String> {
        let err = |e: mall_projections::runner::SinkError| e.to_string();
        // The read tables as of now (waiting a little for them to catch up with the log).
        self.read.wait_for_head(Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        let products = self.read.rows("catalog", PRODUCTS, Filter::All).await.map_err(err)?;
        let tags_of = |r: &Row| -> Vec<String> {
            r.get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        let carried: HashSet<String> =
            products.iter().filter(|r| text(r, "district") == slug.as_str()).flat_map(tags_of).collect();
        let elsewhere: HashMap<String, Vec<String>> = products
            .iter()
            .filter(|r| text(r, "district") != slug.as_str())
            .map(|r| (text(r, "product_id"), tags_of(r).into_iter().filter(|t| !carried.contains(t)).collect()))
            .collect();
        let interests = self.read.rows("personalization", SHOPPER_INTERESTS, Filter::All).await.map_err(err)?;
        let now = Utc::now();
        let score = |r: &Row| {
            let last = r.get("last_at").and_then(Value::as_str).and_then(|t| t.parse::<DateTime<Utc>>().ok());
            let raw = r.get("score").and_then(Value::as_f64).unwrap_or(0.0);
            last.map_or(0.0, |t| interest_at(raw, t, now))
        };
        let facet = format!("district:{slug}");
        let shoppers: HashSet<String> = interests
            .iter()
            .filter(|r| text(r, "facet") == facet && score(r) > 0.0)
            .map(|r| text(r, "shopper_id"))
            .collect();
        let mut by_tag: BTreeMap<String, (BTreeSet<String>, f64, BTreeSet<String>)> = BTreeMap::new();
        for r in interests.iter().filter(|r| shoppers.contains(&text(r, "shopper_id"))) {
            let Some(product) = text(r, "facet").strip_prefix("product:").map(str::to_string) else { continue };
            let s = score(r);
            if s <= 0.0 {
                continue;
            }
            for tag in elsewhere.get(&product).into_iter().flatten() {
                let e = by_tag.entry(tag.clone()).or_default();
                e.0.insert(text(r, "shopper_id"));
                e.1 += s;
                e.2.insert(product.clone());
            }
        }
        let mut suggestions: Vec<CategorySuggestion> = by_tag
            .into_iter()
            .filter(|(_, (who, _, _))| who.len() >= 2)
            .map(|(category, (who, score, examples))| CategorySuggestion {
                category,
                shoppers: who.len() as u64,
                score: (score * 100.0).round() / 100.0,
                examples: examples.into_iter().take(3).collect(),
                searches: 0,
            })
            .collect();
        let state = self.state(slug).await?;
        // What its shoppers looked for here and found nothing of.
        let mut asked: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
        for u in self.unmet_searches(slug, &state.name).await? {
            if u.lacking.is_empty() {
                continue;
            }
            let e = asked.entry(u.lacking.clone()).or_default();
            e.0 += u.zero_results;
            e.1.push(u.query.clone());
        }
        for (category, (searches, queries)) in asked {
            match suggestions.iter_mut().find(|s| s.category == category) {
                Some(s) => s.searches += searches,
                None => suggestions.push(CategorySuggestion {
                    category,
                    shoppers: 0,
                    score: 0.0,
                    examples: queries.into_iter().take(3).collect(),
                    searches,
                }),
            }
        }
        suggestions.sort_by(|a, b| {
            (b.shoppers + b.searches)
                .cmp(&(a.shoppers + a.searches))
                .then(b.score.total_cmp(&a.score))
                .then(a.category.cmp(&b.category))
        });
        suggestions.truncate(MAX_SUGGESTIONS);
        let known: Vec<(&str, u64, u64)> =
            state.suggestions.iter().map(|s| (s.category.as_str(), s.shoppers, s.searches)).collect();
        let now_seen: Vec<(&str, u64, u64)> =
            suggestions.iter().map(|s| (s.category.as_str(), s.shoppers, s.searches)).collect();
        if known != now_seen {
            let e = CategoriesSuggested { slug: slug.clone(), suggestions: suggestions.clone(), at: now };
            self.append(DomainEvent::CategoriesSuggested(e), Uuid::now_v7()).await?;
        }
        Ok(suggestions)
    }

    /// Looks at every running voice test every few seconds, until shutdown.
    pub async fn watch_tests(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TEST_LOOK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            let stopped = match self.scheduler() {
                Ok(s) => s.with_queue(|q| q.is_stopped("district_evolution")).await,
                Err(_) => return,
            };
            if stopped {
                continue;
            }
            for slug in self.open() {
                let running = self.state(&slug).await.is_ok_and(|s| s.evolution.test.is_some());
                if running && let Err(e) = self.look(&slug, "test").await {
                    tracing::warn!(district = %slug, error = %e, "cannot look at a voice test");
                }
            }
        }
    }
}

/// Copy as a writer wrote it, or why not.
#[derive(Debug, Default)]
struct Written {
    copy: Option<mall_events::domain::DistrictCopy>,
    generator: String,
    prompt: String,
    raw_output: String,
    error: Option<String>,
}

/// A search about a district that found nothing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnmetSearch {
    pub query: String,
    pub searches: u64,
    pub zero_results: u64,
    /// Its words the district has nothing about.
    pub lacking: String,
}

/// The most events a window report reads.
const MAX_WINDOW_EVENTS: usize = 500_000;
/// How long a window report is kept.
const WINDOW_KEPT: Duration = Duration::from_secs(60);
/// Views a product needs to be called weak.
const MIN_PRODUCT_VIEWS: u64 = 30;

/// Searches that found nothing at least this often count.
const MIN_UNMET: u64 = 2;
/// The most unmet searches shown.
const MAX_UNMET: usize = 10;

/// A text's words as the vocabulary compares them: lowercase letters and digits, at least three
/// characters, a plural's `s` left off.
fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3).map(|w| {
        let w = w.to_lowercase();
        match w.strip_suffix('s') {
            Some(stem) if stem.chars().count() >= 3 && !stem.ends_with('s') => stem.to_string(),
            _ => w,
        }
    })
}

fn district_of(task: &Task) -> Result<DistrictSlug, String> {
    let slug = task.subject.strip_prefix("district:").unwrap_or(&task.subject);
    DistrictSlug::parse(slug).map_err(|e| e.0)
}

const ADMIN_REASON: &str = "an admin asked the district to evolve";

/// `district_evolution` `evolve`: a look at one district, and its category suggestions.
pub struct Evolve(pub Arc<Evolution>);

#[async_trait]
impl Executor for Evolve {
    async fn run(&self, task: &Task) -> Result<String, String> {
        let slug = district_of(task)?;
        let trigger = if task.reason.starts_with(ADMIN_REASON) { "admin" } else { "job" };
        let decision = self.0.look(&slug, trigger).await?;
        let suggestions = self.0.suggest(&slug).await?;
        // The analysis a look shows is read afresh (a read between looks reuses it for a minute).
        let state = self.0.state(&slug).await?;
        self.0.window(&slug, &state, true).await?;
        let said = match &decision {
            Decision::Propose(p) => format!("proposed the {} {:?} (was {:?})", p.attribute, p.to, p.from),
            Decision::Conclude(c) => format!("concluded its voice test: {:?}", c.outcome),
            Decision::Hold { reason } => format!("held: {reason}"),
        };
        Ok(format!("{said}; {} categories suggested", suggestions.len()))
    }
}

/// `district_evolution` `write_voice`: the copy in the proposed voice, and its test.
pub struct WriteVoice(pub Arc<Evolution>);

#[async_trait]
impl Executor for WriteVoice {
    async fn run(&self, task: &Task) -> Result<String, String> {
        self.0.write_voice(&district_of(task)?).await
    }
}

fn evolve_request(slug: &DistrictSlug, reason: String, priority: u8) -> Request {
    Request {
        system: "district_evolution".into(),
        subject: format!("district:{slug}"),
        action: "evolve".into(),
        priority,
        reason,
        metrics: BTreeMap::new(),
        generations: 0,
    }
}

/// `district_evolution` `sweep` (an admin's "optimize"): a look at every open district, queued.
pub struct Sweep(pub Arc<Evolution>);

#[async_trait]
impl Executor for Sweep {
    async fn run(&self, task: &Task) -> Result<String, String> {
        let open = self.0.open();
        let requests =
            open.iter().map(|s| evolve_request(s, format!("a sweep: {}", task.reason), task.priority)).collect();
        self.0.scheduler()?.queue(requests).await.map_err(|e| e.to_string())?;
        Ok(format!("{} districts queued for a look", open.len()))
    }
}

/// The `district_evolution` job: a look at every open district.
pub struct EvolutionJob(pub Arc<Evolution>);

#[async_trait]
impl JobWork for EvolutionJob {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        let requests = self
            .0
            .open()
            .iter()
            .map(|s| evolve_request(s, format!("the district evolution job (tick {due})"), priority::SWEEP))
            .collect();
        scheduler.queue(requests).await.map_err(|e| e.to_string())
    }
}

fn open_slug(state: &AppState, slug: String) -> Result<DistrictSlug, ApiError> {
    let slug = DistrictSlug::parse(slug).map_err(|e| ApiError::invalid("slug", e.0))?;
    if state.actors.rt.catalog.read().expect("catalog").district(slug.as_str()).is_none() {
        return Err(ApiError::not_found(format!("no district {slug}")));
    }
    Ok(slug)
}

/// `POST /api/autonomous/districts/{slug}/evolve` (admin): a look now, through the task queue
/// at an admin's priority; answers with the decision and its reason once the task ran (202 with
/// the task while it waits: its system stopped, say).
pub async fn evolve(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let slug = open_slug(&state, path.into_inner())?;
    let id =
        match super::autonomous::run_now(&state, evolve_request(&slug, ADMIN_REASON.into(), priority::ADMIN), "look")
            .await?
        {
            Ok(id) => id,
            Err(answer) => return Ok(answer),
        };
    let mut body = state.evolution.last.lock().expect("last").get(slug.as_str()).cloned().unwrap_or(json!({}));
    body["slug"] = json!(slug);
    body["task"] = json!(id);
    // Every decision says why in one `reason`: a proposal's reasons, a conclusion's, a hold's.
    if body.get("reason").is_none()
        && let Some(reasons) = body.get("reasons").and_then(Value::as_array)
    {
        let words: Vec<&str> = reasons.iter().filter_map(Value::as_str).collect();
        body["reason"] = json!(words.join("; "));
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/autonomous/districts/{slug}`: the current voice and copy, the last 30 days, the
/// running test with its arms so far, every evolution with its reasons and outcome, the open
/// category suggestions, the last decision and the next run.
pub async fn show(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let slug = open_slug(&state, path.into_inner())?;
    let now = Utc::now();
    let mut evolutions = state
        .read
        .rows("evolution", DISTRICT_PERSONALITIES, Filter::Eq("slug", slug.as_str()))
        .await
        .map_err(super::storefront::sink_error)?;
    evolutions.sort_by_key(|r| r.get("position").and_then(Value::as_u64).unwrap_or(0));
    // One answer, one moment: the district's actor is asked again (for a little while) until it
    // has folded as far as the history table shows.
    let shown = evolutions.last().and_then(|r| r.get("position")).and_then(Value::as_u64).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    let s = loop {
        let s = state.evolution.state(&slug).await.map_err(ApiError::unavailable)?;
        if s.position >= shown || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let test = s.evolution.test.as_ref().map(|t| {
        json!({
            "evolution_id": t.evolution_id, "test_id": t.test_id, "started_at": t.started_at,
            "personality": t.personality, "control_copy": t.control, "challenger_copy": t.challenger,
            "arms": {"control": t.arms[0], "challenger": t.arms[1]},
        })
    });
    let job = state.jobs.status().await.into_iter().find(|j| j.name == "district_evolution");
    let unmet = state.evolution.unmet_searches(&slug, &s.name).await.map_err(ApiError::unavailable)?;
    let mut analysis = serde_json::to_value(evolution::analyse(&s.evolution, now)).unwrap_or(Value::Null);
    analysis["searches_without_results"] = json!(unmet);
    let window = state.evolution.window(&slug, &s, false).await.map_err(ApiError::unavailable)?;
    for k in ["products", "weakest_products", "categories", "copy"] {
        analysis[k] = window[k].clone();
    }
    Ok(HttpResponse::Ok().json(json!({
        "slug": slug,
        "name": s.name,
        "personality": s.personality,
        "copy": s.evolution.copy,
        "analysis": analysis,
        "proposed": s.evolution.proposed,
        "test": test,
        "evolutions": evolutions,
        "history": s.evolution.history,
        "suggestions": s.suggestions,
        "last_decision": state.evolution.last.lock().expect("last").get(slug.as_str()),
        "next_run": job.as_ref().filter(|j| j.enabled && j.running).map(|j| j.next_run),
        "position": s.position,
    })))
}
