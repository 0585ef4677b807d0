//! The social media engine inside `mall serve`: the shell that gathers a district's last two
//! weeks (from the analytics tables) and its products' facts (from their actors), asks the pure
//! rules in `mall_actors::social` what to post and when, writes each post (the model when one is
//! configured and the budget has a call, checked by the guardrails; else, or when refused, the
//! built-in writer) and records the week as one event; the `social_calendar` job (Mondays 09:00
//! UTC); a webhook publisher when configured; and the routes —
//! `POST|GET /api/autonomous/social/calendar`, `GET /api/autonomous/social/ready` and
//! `POST /api/autonomous/social/posts/{id}`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use chrono::{DateTime, Timelike, Utc};
use mall_actors::autonomous::jobs::JobWork;
use mall_actors::autonomous::priority;
use mall_actors::autonomous::queue::Task;
use mall_actors::autonomous::scheduler::{Executor, Request, Scheduler};
use mall_actors::executors::Facts;
use mall_actors::runtime::entity::{Get, Product};
use mall_actors::runtime::router::Actors;
use mall_actors::social::{self, Candidate, Draft};
use mall_events::domain::{
    DomainEvent, Generation, SocialCalendarPlanned, SocialPost, SocialPostFailed, SocialPostPublished,
};
use mall_events::ids::{DistrictSlug, ProductId, StreamId};
use mall_events::{ExpectedVersion, NewEvent};
use mall_projections::analytics::{DISTRICT_HOURS, PRODUCT_DAYS};
use mall_projections::change::Row;
use mall_projections::social::{CAMPAIGNS, SOCIAL_CALENDARS};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;
use super::rows::{int, text, time};
use crate::readside::{Filter, ReadSide};

/// Tries a webhook delivery gets before the post is marked failed.
const WEBHOOK_ATTEMPTS: u32 = 5;

/// The social media engine's shell: one per server.
pub struct SocialMedia {
    pub actors: Arc<Actors>,
    pub read: Arc<ReadSide>,
    pub scheduler: OnceLock<Weak<Scheduler>>,
    /// Where due posts go (none: publishers take them from `/social/ready`).
    pub webhook: Option<String>,
    /// How far ahead of their time posts go to the webhook.
    pub ahead: Duration,
    /// Plans one at a time (two would supersede each other's posts).
    planning: tokio::sync::Mutex<()>,
    client: reqwest::Client,
}

impl SocialMedia {
    pub fn new(actors: Arc<Actors>, read: Arc<ReadSide>, webhook: Option<String>, ahead: Duration) -> Arc<Self> {
        Arc::new(SocialMedia {
            actors,
            read,
            scheduler: OnceLock::new(),
            webhook,
            ahead,
            planning: tokio::sync::Mutex::new(()),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        })
    }

    /// The open districts, with their names and voices.
    fn districts(&self) -> Vec<(String, String, mall_events::domain::Personality)> {
        let catalog = self.actors.rt.catalog.read().expect("catalog");
        let mut out: Vec<_> =
            catalog.districts().map(|(s, d)| (s.to_string(), d.name.clone(), d.personality.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Plans a week of posts for each district named (every open district when none), and
    /// records each calendar. Districts with nothing to post about get none.
    pub async fn plan(&self, only: Option<&str>, now: DateTime<Utc>) -> Result<Vec<SocialCalendarPlanned>, String> {
        let _one = self.planning.lock().await;
        self.read.wait_for_head(Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (slug, name, voice) in self.districts().into_iter().filter(|(s, ..)| only.is_none_or(|o| o == s)) {
            if let Some(c) = self.plan_district(&slug, &name, &voice, now).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn plan_district(
        &self,
        slug: &str,
        name: &str,
        voice: &mall_events::domain::Personality,
        now: DateTime<Utc>,
    ) -> Result<Option<SocialCalendarPlanned>, String> {
        let err = |e: mall_projections::runner::SinkError| e.to_string();
        // Last week's and the week before's figures per product, from the analytics tables.
        let today = now.date_naive();
        let mut figures: BTreeMap<String, (u64, u64, u64, i64, u64)> = BTreeMap::new();
        for back in 0..14 {
            let day = (today - chrono::Duration::days(back)).format("%Y-%m-%d").to_string();
            let prefix = format!("{day}|");
            let rows = self
                .read
                .rows("analytics", PRODUCT_DAYS, Filter::Group { column: "day", value: &day, prefix: &prefix })
                .await
                .map_err(err)?;
            for r in rows.iter().filter(|r| text(r, "district") == slug) {
                let f = figures.entry(text(r, "product_id")).or_default();
                let views = int(r, "views").max(0) as u64;
                if back < 7 {
                    f.0 += views;
                    f.1 += int(r, "carts").max(0) as u64;
                    f.2 += int(r, "purchases").max(0) as u64;
                    f.3 = f.3.saturating_add(int(r, "revenue_e4"));
                } else {
                    f.4 += views;
                }
            }
        }
        // Each product's facts from its own state (the district it is in now).
        let mut candidates = Vec::new();
        for (id, (views, carts, purchases, revenue_e4, views_before)) in figures {
            let Ok(pid) = ProductId::parse(id) else { continue };
            let Some(s) = self.actors.products.send(&pid, Get::<Product>::default()).await.ok().flatten() else {
                continue;
            };
            if s.district.as_ref().map(|d| d.as_str()) != Some(slug) {
                continue;
            }
            let facts = Facts {
                product_id: pid.as_str().to_string(),
                title: s.title.clone(),
                description: String::new(),
                tags: s.tags.clone(),
                attributes: s.attributes.clone(),
                price: s.price.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
                currency: s.currency.as_ref().map(|c| c.as_str().to_string()).unwrap_or_default(),
                stock: s.stock,
                district: name.to_string(),
                personality: Some(voice.clone()),
                diagnosis: "social_post".into(),
                reason: "the week's social posts".into(),
            };
            candidates.push(Candidate { facts, views, carts, purchases, revenue_e4, views_before });
        }
        let picked = social::pick(&candidates, social::PRODUCTS);
        if picked.is_empty() {
            return Ok(None);
        }
        // The district's busiest hours over four weeks.
        let prefix = format!("{slug}|");
        let since = now - chrono::Duration::days(28);
        let mut activity = [0u64; 24];
        for r in self
            .read
            .rows("analytics", DISTRICT_HOURS, Filter::Group { column: "district", value: slug, prefix: &prefix })
            .await
            .map_err(err)?
        {
            if let Some(h) = time(&r, "hour").filter(|h| *h >= since) {
                activity[h.hour() as usize] +=
                    (int(&r, "views") + int(&r, "carts") + int(&r, "purchases")).max(0) as u64;
            }
        }
        let (hours, learned) = social::posting_hours(&activity);
        // The seven days from today; a slot already past goes a week later.
        let base = today.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let mut slots = social::slots(base, &hours);
        for s in &mut slots {
            if s.at <= now {
                s.at += chrono::Duration::days(7);
            }
        }
        slots.sort_by_key(|s| s.at);
        let mut posts = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let c = &candidates[picked[i % picked.len()]];
            if let Some(p) = self.post(slug, slot, &c.facts).await {
                posts.push(p);
            }
        }
        let supersedes: Vec<Uuid> = self
            .read
            .rows("social", SOCIAL_CALENDARS, Filter::Eq("status", "scheduled"))
            .await
            .map_err(err)?
            .iter()
            .filter(|r| text(r, "district") == slug)
            .filter_map(|r| Uuid::parse_str(&text(r, "post_id")).ok())
            .collect();
        let planned = SocialCalendarPlanned {
            calendar_id: Uuid::now_v7(),
            district: DistrictSlug::parse(slug).map_err(|e| e.0)?,
            week_of: base,
            hours,
            learned,
            products: picked
                .iter()
                .filter_map(|i| ProductId::parse(candidates[*i].facts.product_id.clone()).ok())
                .collect(),
            posts,
            supersedes,
            at: now,
        };
        let event =
            NewEvent::from_domain(&DomainEvent::SocialCalendarPlanned(planned.clone()), Uuid::now_v7(), Vec::new())
                .map_err(|e| e.to_string())?;
        self.append(vec![event]).await?;
        Ok(Some(planned))
    }

    /// One post: the model's when there is one, the budget has a call and its post passes every
    /// check; else the built-in writer's (which passes the same checks).
    async fn post(&self, slug: &str, slot: &social::Slot, f: &Facts) -> Option<SocialPost> {
        let rt = &self.actors.rt;
        let mut refused = None;
        if rt.generator.completes() && rt.budget.take(&format!("social:{slug}")) {
            let (prompt, answer) = rt.generator.complete(social::prompt(slot.platform, f)).await;
            let generator = rt.generator.id();
            match answer.map_err(|e| format!("the model failed: {e}")).and_then(|raw| {
                let raw = mall_actors::executors::truncate_bytes(raw.trim(), 8_000).to_string();
                social::parse(slot.platform, &raw).map(|d| (raw.clone(), d)).map_err(|e| format!("{e}\u{0}{raw}"))
            }) {
                Ok((raw, d)) => {
                    let (verdicts, published) = social::check(&d, f);
                    let g = Generation { generator, prompt, raw_output: raw, verdicts };
                    match published {
                        Some(p) => return Some(post_of(slot, f, p, g, None)),
                        None => refused = Some(g),
                    }
                }
                Err(e) => {
                    let (reason, raw) = e.split_once('\u{0}').unwrap_or((&e, ""));
                    let verdicts = vec![mall_events::domain::Verdict {
                        check: "generation".into(),
                        passed: false,
                        detail: reason.to_string(),
                    }];
                    refused = Some(Generation { generator, prompt, raw_output: raw.to_string(), verdicts });
                }
            }
        }
        let draft = social::write(slot.platform, f);
        let (verdicts, published) = social::check(&draft, f);
        let g =
            Generation { generator: social::WRITER.into(), prompt: String::new(), raw_output: String::new(), verdicts };
        match published {
            Some(p) => Some(post_of(slot, f, p, g, refused)),
            None => {
                tracing::warn!(product = %f.product_id, platform = slot.platform.as_str(), verdicts = ?g.verdicts, "the built-in post did not pass; left out");
                None
            }
        }
    }

    async fn append(&self, events: Vec<NewEvent>) -> Result<(), String> {
        let stream = StreamId::parse(mall_events::social::STREAM).expect("a valid stream id");
        self.actors.rt.store.append(&stream, ExpectedVersion::Any, events).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn posts(&self, filter: Filter<'_>) -> Result<Vec<Row>, ApiError> {
        self.read.rows("social", SOCIAL_CALENDARS, filter).await.map_err(super::storefront::sink_error)
    }

    /// Posts scheduled and due at `now`, earliest first.
    async fn due(&self, now: DateTime<Utc>) -> Result<Vec<Row>, ApiError> {
        let mut due: Vec<Row> = self
            .posts(Filter::Eq("status", "scheduled"))
            .await?
            .into_iter()
            .filter(|r| time(r, "scheduled_at").is_some_and(|t| t <= now))
            .collect();
        due.sort_by_key(|r| (time(r, "scheduled_at"), text(r, "post_id")));
        Ok(due)
    }

    /// Records what a publisher did with a post.
    async fn mark(&self, post_id: Uuid, outcome: Result<String, String>, by: &str) -> Result<(), String> {
        let at = Utc::now();
        let d = match outcome {
            Ok(platform_post_id) => {
                DomainEvent::SocialPostPublished(SocialPostPublished { post_id, platform_post_id, by: by.into(), at })
            }
            Err(reason) => DomainEvent::SocialPostFailed(SocialPostFailed { post_id, reason, by: by.into(), at }),
        };
        d.validate().map_err(|(f, e)| format!("{f}: {}", e.0))?;
        let event = NewEvent::from_domain(&d, Uuid::now_v7(), Vec::new()).map_err(|e| e.to_string())?;
        self.append(vec![event]).await
    }

    /// Sends due posts (or due within [`Self::ahead`]) to the webhook until shutdown: each once
    /// acknowledged with a 2xx (its `id` in the answer is the platform's post id), tried again
    /// with a doubling wait, failed after [`WEBHOOK_ATTEMPTS`] tries.
    pub async fn publish(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(url) = self.webhook.clone() else { return };
        let mut tries: HashMap<String, (u32, Instant)> = HashMap::new();
        // Posts this publisher settled, until the read side shows them settled (it follows the
        // log a moment behind): none is sent twice.
        let mut settled: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            let until = Utc::now() + chrono::Duration::from_std(self.ahead).unwrap_or_default();
            if let Ok(due) = self.due(until).await {
                let scheduled: std::collections::HashSet<String> = due.iter().map(|r| text(r, "post_id")).collect();
                settled.retain(|id| scheduled.contains(id));
                for r in due {
                    let id = text(&r, "post_id");
                    if settled.contains(&id) {
                        continue;
                    }
                    let Ok(post_id) = Uuid::parse_str(&id) else { continue };
                    let (attempts, not_before) = tries.get(&id).copied().unwrap_or((0, Instant::now()));
                    if not_before > Instant::now() {
                        continue;
                    }
                    let sent = self
                        .client
                        .post(&url)
                        .header("Idempotency-Key", id.clone())
                        .json(&post_json(&r, None))
                        .send()
                        .await;
                    let outcome = match sent {
                        Ok(resp) if resp.status().is_success() => {
                            let body: Value = resp.json().await.unwrap_or(Value::Null);
                            Ok(body
                                .get("id")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("webhook:{id}")))
                        }
                        Ok(resp) => Err(format!("the webhook answered {}", resp.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    match outcome {
                        Ok(platform_id) => {
                            match self.mark(post_id, Ok(platform_id), "webhook").await {
                                Ok(()) => {
                                    settled.insert(id.clone());
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot record a published post"),
                            }
                            tries.remove(&id);
                        }
                        Err(e) if attempts + 1 >= WEBHOOK_ATTEMPTS => {
                            if self
                                .mark(post_id, Err(format!("{e} ({WEBHOOK_ATTEMPTS} tries)")), "webhook")
                                .await
                                .is_ok()
                            {
                                settled.insert(id.clone());
                            }
                            tries.remove(&id);
                        }
                        Err(e) => {
                            tracing::warn!(post = %id, error = %e, "the social webhook did not take a post");
                            tries
                                .insert(id, (attempts + 1, Instant::now() + Duration::from_secs(1 << attempts.min(8))));
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn post_of(
    slot: &social::Slot,
    f: &Facts,
    d: Draft,
    generation: Generation,
    refused: Option<Generation>,
) -> SocialPost {
    SocialPost {
        post_id: Uuid::now_v7(),
        platform: slot.platform.as_str().into(),
        product_id: ProductId::parse(f.product_id.clone()).expect("a product id from the log"),
        text: d.text,
        tweets: d.tweets,
        hashtags: d.hashtags,
        scheduled_at: slot.at,
        generation,
        refused,
    }
}

/// A post as the API shows it, with what its campaign brought.
fn post_json(r: &Row, campaign: Option<&Row>) -> Value {
    let mut v = json!({
        "id": r.get("post_id"), "calendar_id": r.get("calendar_id"), "district": r.get("district"),
        "platform": r.get("platform"), "product_id": r.get("product_id"), "hashtags": r.get("hashtags"),
        "scheduled_at": r.get("scheduled_at"), "status": r.get("status"), "campaign": r.get("campaign"),
        "platform_post_id": r.get("platform_post_id"), "failure": r.get("failure"), "generator": r.get("generator"),
        "verdicts": r.get("verdicts"), "refused": r.get("refused"),
    });
    if text(r, "platform") == "twitter" {
        v["tweets"] = r.get("tweets").cloned().unwrap_or(json!([]));
    } else {
        v["text"] = r.get("text").cloned().unwrap_or(Value::Null);
    }
    if let Some(c) = campaign {
        v["performance"] = json!({
            "views": int(c, "views"), "clicks": int(c, "clicks"), "carts": int(c, "carts"),
            "purchases": int(c, "purchases"), "revenue": int(c, "revenue_e4") as f64 / 10_000.0,
        });
    }
    v
}

const ADMIN_REASON: &str = "an admin asked for a social calendar";

fn plan_request(subject: &str, reason: String, priority: u8) -> Request {
    Request {
        system: "social_media".into(),
        subject: subject.into(),
        action: "plan".into(),
        priority,
        reason,
        metrics: BTreeMap::new(),
        generations: 0,
    }
}

/// `social_media` `plan` (subject a district's slug, or `all`).
pub struct Plan(pub Arc<SocialMedia>);

#[async_trait]
impl Executor for Plan {
    async fn run(&self, task: &Task) -> Result<String, String> {
        let only = (task.subject != "all" && task.subject != "mall").then_some(task.subject.as_str());
        let planned = self.0.plan(only, Utc::now()).await?;
        Ok(format!("{} calendars, {} posts", planned.len(), planned.iter().map(|c| c.posts.len()).sum::<usize>()))
    }
}

/// The `social_calendar` job: plans every district's week.
pub struct CalendarJob;

#[async_trait]
impl JobWork for CalendarJob {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
        scheduler
            .queue(vec![plan_request("all", format!("the weekly social calendar (tick {due})"), priority::SWEEP)])
            .await
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    district: Option<String>,
}

/// `POST /api/autonomous/social/calendar` (admin) `{"district"?}`: plans the week now (through
/// the task queue at an admin's priority) → 201 `{"posts": [...], "calendars": [...]}`.
pub async fn plan(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let bytes = super::ingest::body(&state, payload, 4_096).await?;
    let b: PlanBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        PlanBody { district: None }
    } else {
        mall_events::records::from_json(&bytes)?
    };
    let subject = match &b.district {
        Some(d) => {
            let slug = DistrictSlug::parse(d.clone()).map_err(|e| ApiError::invalid("district", e.0))?;
            if state.actors.rt.catalog.read().expect("catalog").district(slug.as_str()).is_none() {
                return Err(ApiError::not_found(format!("no district {slug}")));
            }
            slug.as_str().to_string()
        }
        None => "all".into(),
    };
    let before = state.store.stats().await?.last_position;
    match super::autonomous::run_now(&state, plan_request(&subject, ADMIN_REASON.into(), priority::ADMIN), "calendar")
        .await?
    {
        Ok(_) => {}
        Err(answer) => return Ok(answer),
    }
    let position = state.read.wait_for_head(Duration::from_secs(5)).await?;
    let mut rows: Vec<Row> =
        state.social.posts(Filter::All).await?.into_iter().filter(|r| int(r, "position") as u64 > before).collect();
    rows.sort_by_key(|r| (time(r, "scheduled_at"), text(r, "post_id")));
    let mut calendars: Vec<String> = rows.iter().map(|r| text(r, "calendar_id")).collect();
    calendars.dedup();
    calendars.sort();
    calendars.dedup();
    let posts: Vec<Value> = rows.iter().map(|r| post_json(r, None)).collect();
    Ok(HttpResponse::Created()
        .insert_header((super::reads::POSITION_HEADER, position.to_string()))
        .json(json!({"calendars": calendars, "posts": posts})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    district: Option<String>,
    status: Option<String>,
    #[serde(alias = "minPosition")]
    min_position: Option<mall_events::ids::Position>,
}

/// `GET /api/autonomous/social/calendar?district=&status=` (admin): every post, with what its
/// campaign brought (views, clicks, carts, purchases, revenue), and content ideas — the rising
/// search terms — for the next.
pub async fn calendar(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<CalendarQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    if let Some(s) = q.status.as_deref()
        && !matches!(s, "scheduled" | "published" | "failed" | "superseded")
    {
        return Err(ApiError::invalid(
            "status",
            format!("{s:?} is not one of scheduled, published, failed, superseded"),
        ));
    }
    let position = super::storefront::position(&state, q.min_position).await;
    let filter = match (q.district.as_deref(), q.status.as_deref()) {
        (Some(d), _) => Filter::Eq("district", d),
        (None, Some(s)) => Filter::Eq("status", s),
        (None, None) => Filter::All,
    };
    let mut rows: Vec<Row> = state
        .social
        .posts(filter)
        .await?
        .into_iter()
        .filter(|r| q.district.as_deref().is_none_or(|d| text(r, "district") == d))
        .filter(|r| q.status.as_deref().is_none_or(|s| text(r, "status") == s))
        .collect();
    rows.sort_by_key(|r| (time(r, "scheduled_at"), text(r, "post_id")));
    let names: Vec<String> = rows.iter().map(|r| text(r, "campaign")).collect::<BTreeSet<_>>().into_iter().collect();
    let campaigns: HashMap<String, Row> = state
        .read
        .rows("social", CAMPAIGNS, Filter::Keys(&names))
        .await
        .map_err(super::storefront::sink_error)?
        .into_iter()
        .map(|r| (text(&r, "campaign"), r))
        .collect();
    let posts: Vec<Value> = rows.iter().map(|r| post_json(r, campaigns.get(&text(r, "campaign")))).collect();
    let ideas = super::analytics::rising_terms(&state.read, Utc::now()).await.map_err(|e| {
        tracing::error!(error = %e, "analytics tables unavailable");
        ApiError::unavailable("the read tables are unavailable")
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((super::reads::POSITION_HEADER, position.to_string()))
        .json(json!({"posts": posts, "content_ideas": ideas})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyQuery {
    /// Posts due by then (a publisher that works ahead); default now.
    until: Option<String>,
}

/// `GET /api/autonomous/social/ready?until=` (admin): the posts due now (or by `until`, RFC
/// 3339), earliest first.
pub async fn ready(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: super::query::Query<ReadyQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let until = match q.until.as_deref() {
        None => Utc::now(),
        Some(u) => DateTime::parse_from_rfc3339(u)
            .map_err(|e| ApiError::invalid("until", format!("an RFC 3339 time: {e}")))?
            .with_timezone(&Utc),
    };
    let posts: Vec<Value> = state.social.due(until).await?.iter().map(|r| post_json(r, None)).collect();
    Ok(HttpResponse::Ok().json(json!({"posts": posts})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkBody {
    status: String,
    platform_post_id: Option<String>,
    reason: Option<String>,
}

/// `POST /api/autonomous/social/posts/{id}` (admin) `{"status": "published", "platform_post_id"}`
/// or `{"status": "failed", "reason"}`: a publisher says what became of a post → 200; 404
/// unknown, 409 no longer scheduled.
pub async fn mark(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let post_id = Uuid::parse_str(&id).map_err(|_| ApiError::invalid("id", "a post id is a UUID"))?;
    let b: MarkBody = mall_events::records::from_json(&super::ingest::body(&state, payload, 4_096).await?)?;
    let outcome = match (b.status.as_str(), b.platform_post_id, b.reason) {
        ("published", Some(p), None) => Ok(p),
        ("published", None, _) => {
            return Err(ApiError::invalid("platform_post_id", "a published post has the platform's id"));
        }
        ("failed", None, Some(r)) => Err(r),
        ("failed", _, None) => return Err(ApiError::invalid("reason", "a failed post says why")),
        ("published", _, Some(_)) => return Err(ApiError::invalid("reason", "a published post has no reason")),
        ("failed", Some(_), _) => {
            return Err(ApiError::invalid("platform_post_id", "a failed post has no platform id"));
        }
        (other, ..) => return Err(ApiError::invalid("status", format!("{other:?} is not one of published, failed"))),
    };
    state.read.wait_for_head(Duration::from_secs(5)).await?;
    let rows = state
        .read
        .rows("social", SOCIAL_CALENDARS, Filter::Key(&post_id.to_string()))
        .await
        .map_err(super::storefront::sink_error)?;
    let row = rows.first().ok_or_else(|| ApiError::not_found(format!("no post {post_id}")))?;
    if text(row, "status") != "scheduled" {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            format!("the post is {}, not scheduled", text(row, "status")),
        ));
    }
    let status = b.status.clone();
    state
        .social
        .mark(post_id, outcome, "api")
        .await
        .map_err(|e| ApiError::invalid(if status == "published" { "platform_post_id" } else { "reason" }, e))?;
    Ok(HttpResponse::Ok().json(json!({"id": post_id, "status": status})))
}
