//! `mall serve`: the HTTP API over the log, with the actors running beside it.
//!
//! Wiring: open the store; load the catalog maps; start the actor registries on their own
//! arbiters and the router that feeds them from the log; serve HTTP (actix-web). On SIGINT or
//! SIGTERM the server drains its requests, the router stops, every resident actor saves its
//! snapshot and the store is closed.
//!
//! Modules: [`auth`] (scoped bearer tokens), [`error`] (JSON errors), [`ingest`] (catalog and
//! signal writes), [`storefront`] (product, districts, rankings, search, personalization, from
//! the read tables), [`search`] (query vectors that never wait on the model), [`intelligence`]
//! (product intelligence's tables and actors), [`reads`] (history, health), [`admin`] (projections).

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod autonomous;
pub mod dashboard;
pub mod error;
pub mod evolution;
pub mod forward;
pub mod health;
pub mod ingest;
pub mod intelligence;
pub mod limits;
pub mod merchandising;
pub mod metrics;
pub mod openapi;
pub mod placement;
pub mod plugins;
pub mod query;
pub mod ranking;
pub mod reads;
pub mod recommend;
pub mod rows;
pub mod search;
pub mod social;
pub mod storefront;
pub mod trace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use clap::Args;
use mall_actors::runtime::router::Actors;
use mall_actors::runtime::snapshot::{FsSnapshots, SnapshotStore};
use mall_actors::runtime::{Runtime, RuntimeConfig};
use mall_events::EventStore;

use crate::cli::Exit;
use crate::store::{Access, StoreArgs};
use auth::Tokens;
use error::ApiError;

/// `mall serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, env = "MALL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Where actor snapshots are kept (default: `snapshots` in the data directory).
    #[arg(long, env = "MALL_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Generation calls allowed per rolling hour, across all products.
    #[arg(long, env = "MALL_GENERATIONS_PER_HOUR", default_value_t = 1_000)]
    pub generations_per_hour: u32,
    /// Generation calls one product may spend per rolling hour (default: 1% of the budget, at least 3).
    #[arg(long, env = "MALL_GENERATIONS_PER_PRODUCT")]
    pub generations_per_product: Option<u32>,
    /// Seconds a product waits after a failed or rejected generation before the same command is
    /// tried again; the wait doubles with each failure in a row.
    #[arg(long, env = "MALL_RETRY_BACKOFF", default_value_t = 300)]
    pub retry_backoff: u64,
    /// The longest such wait, in seconds.
    #[arg(long, env = "MALL_MAX_BACKOFF", default_value_t = 86_400)]
    pub max_backoff: u64,
    /// Query embeddings a search may ask the model for per rolling hour (each query once; cached).
    #[arg(long, env = "MALL_SEARCH_EMBEDDINGS_PER_HOUR", default_value_t = 3_600)]
    pub search_embeddings_per_hour: u32,
    /// The most actors of each kind kept resident.
    #[arg(long, env = "MALL_MAX_RESIDENT", default_value_t = 100_000)]
    pub max_resident: usize,
    /// Signal posts (`POST /api/signals`) a second each token may make, steadily (0: no limit);
    /// beyond it 429 with `Retry-After`.
    #[arg(long, env = "MALL_INGEST_RATE", default_value_t = 1_000)]
    pub ingest_rate: u32,
    /// The burst of signal posts a token may make above its steady rate.
    #[arg(long, env = "MALL_INGEST_BURST", default_value_t = 10_000)]
    pub ingest_burst: u32,
    /// Requests without a token (storefront reads, voice) a second from one client address,
    /// steadily (0: no limit); beyond it 429 with `Retry-After`.
    #[arg(long, env = "MALL_READ_RATE", default_value_t = 1_000)]
    pub read_rate: u32,
    /// The burst of requests one address may make above its steady rate.
    #[arg(long, env = "MALL_READ_BURST", default_value_t = 10_000)]
    pub read_burst: u32,
    /// Seconds a client may take to send a request body (a slower one is answered 408).
    #[arg(long, env = "MALL_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MALL_WORKERS")]
    pub workers: Option<usize>,
    /// Tasks of the autonomous systems running at once (at most half of them of one system).
    #[arg(long, env = "MALL_TASK_CONCURRENCY", default_value_t = 4)]
    pub task_concurrency: usize,
    /// A job's cadence in seconds, `NAME=SECONDS` (repeatable; 0 switches the job off), e.g.
    /// `--job product_intelligence=600`.
    #[arg(long = "job", env = "MALL_JOBS", value_delimiter = ',', value_parser = parse_job)]
    pub jobs: Vec<(String, i64)>,
    /// Where self-healing's notifications are sent (an admin's webhook; each POSTed as JSON with
    /// an `Idempotency-Key` header, retried until it answers 2xx). Without one they are only
    /// listed in `GET /api/autonomous/health`.
    #[arg(long, env = "MALL_HEALTH_WEBHOOK")]
    pub health_webhook: Option<String>,
    /// Where social posts go when they are due (a publisher's webhook; each POSTed as JSON with
    /// an `Idempotency-Key` header; a 2xx answer's `id` is the platform's post id). Without one,
    /// publishers take them from `GET /api/autonomous/social/ready`.
    #[arg(long, env = "MALL_SOCIAL_WEBHOOK")]
    pub social_webhook: Option<String>,
    /// How far ahead of their time posts go to the social webhook, in seconds (a platform that
    /// schedules posts itself takes them early, each with its `scheduled_at`). Default 0: when due.
    #[arg(long, env = "MALL_SOCIAL_AHEAD", default_value_t = 0)]
    pub social_ahead: u64,
    /// Addresses (`IP:PORT`) the image checker may fetch from although they are private or
    /// loopback — an intranet image host, or a test's server. Every other private address is
    /// refused.
    #[arg(long = "fetch-allow", env = "MALL_FETCH_ALLOW", value_delimiter = ',')]
    pub fetch_allow: Vec<std::net::SocketAddr>,
    /// The score's weights, `[DISTRICT=]PERFORMANCE,RULES,PERSONALIZATION,RECENCY` (repeatable;
    /// without a district, every district's; scaled to sum 1). Default 0.4,0.3,0.2,0.1.
    #[arg(long = "score-weights", env = "MALL_SCORE_WEIGHTS", value_delimiter = ';', value_parser = parse_weights)]
    pub score_weights: Vec<(Option<String>, ranking::Weights)>,
    /// This node's name among the nodes sharing one PostgreSQL (default: one kept in the data
    /// directory, so that a restarted node takes its own leases back at once).
    #[arg(long, env = "MALL_NODE_ID")]
    pub node_id: Option<String>,
    /// The URL other nodes forward requests for the autonomous core to when this node owns it
    /// (default: `http://` and the address bound; this host's name when bound to every address).
    #[arg(long, env = "MALL_ADVERTISE")]
    pub advertise: Option<String>,
    /// Seconds a lease lasts unless renewed (renewed every fifth of it): a node that dies has its
    /// share taken over within 1.2 times this.
    #[arg(long, env = "MALL_LEASE_TTL", default_value_t = 5.0, value_parser = parse_ttl)]
    pub lease_ttl: f64,
    #[command(flatten)]
    pub llm: crate::model::LlmArgs,
}

fn parse_ttl(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.5..=300.0).contains(&v) {
        return Err("a lease lasts 0.5 to 300 seconds".into());
    }
    Ok(v)
}

fn parse_weights(s: &str) -> Result<(Option<String>, ranking::Weights), String> {
    match s.split_once('=') {
        Some((district, w)) => {
            let slug = mall_events::ids::DistrictSlug::parse(district.to_string()).map_err(|e| e.0)?;
            Ok((Some(slug.as_str().to_string()), ranking::Weights::parse(w)?))
        }
        None => Ok((None, ranking::Weights::parse(s)?)),
    }
}

/// The score's weights as configured.
fn score_config(given: &[(Option<String>, ranking::Weights)]) -> ranking::ScoreConfig {
    let mut config = ranking::ScoreConfig::default();
    for (district, w) in given {
        match district {
            Some(d) => {
                config.districts.insert(d.clone(), *w);
            }
            None => config.default = *w,
        }
    }
    config
}

fn parse_job(s: &str) -> Result<(String, i64), String> {
    let (name, seconds) = s.split_once('=').ok_or("expected NAME=SECONDS")?;
    if !mall_actors::autonomous::jobs::JOBS.iter().any(|j| j.name == name) {
        let names: Vec<&str> = mall_actors::autonomous::jobs::JOBS.iter().map(|j| j.name).collect();
        return Err(format!("no job {name:?}; the jobs are {}", names.join(", ")));
    }
    let seconds: i64 = seconds.parse().map_err(|_| format!("{seconds:?} is not a number of seconds"))?;
    if !(0..=31_622_400).contains(&seconds) {
        return Err("seconds must be 0 (off) to 31622400 (a year)".into());
    }
    Ok((name.to_string(), seconds))
}

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub actors: Arc<Actors>,
    pub read: Arc<crate::readside::ReadSide>,
    pub ranker: Arc<ranking::Ranker>,
    pub tokens: Tokens,
    /// Query vectors for search (never waiting on the model).
    pub search: Arc<search::QueryEmbedder>,
    /// The longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// The autonomous core's task queue and job runner.
    pub core: Arc<mall_actors::autonomous::scheduler::Scheduler>,
    pub jobs: Arc<mall_actors::autonomous::jobs::Runner>,
    /// Self-healing's shell.
    pub health: Arc<health::SelfHealing>,
    /// District evolution's shell.
    pub evolution: Arc<evolution::Evolution>,
    /// The live recommender (personalization).
    pub recommender: Arc<recommend::Recommender>,
    /// Merchandising's shell.
    pub merchandising: Arc<merchandising::Merchandising>,
    /// Analytics' shell.
    pub analytics: Arc<analytics::Analytics>,
    /// The social media engine's shell.
    pub social: Arc<social::SocialMedia>,
    /// The plugins' shell.
    pub plugins: Arc<plugins::Plugins>,
    /// What `/metrics` answers.
    pub metrics: Arc<metrics::Metrics>,
    /// Rate limits per token and per client address.
    pub limits: Arc<limits::Limits>,
    /// The dashboard's signed-in sessions.
    pub sessions: dashboard::Sessions,
    /// Turns true when the server begins to stop (long-lived streams end then).
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// This node's leases (on PostgreSQL; none on the embedded store, whose process owns all).
    pub leases: Option<Arc<crate::cluster::Leases>>,
    /// The autonomous core's lease: requests for the core go to the node holding it.
    pub core_lease: Arc<crate::cluster::Lease>,
    /// Where an actor's work and a product's decisions go (the nodes running them).
    pub placement: Arc<placement::Placement>,
    /// Forwards requests for the core to its owner.
    pub forwarder: reqwest::Client,
}

/// Every route: its path and methods (what `routes` serves; the API tests walk this list).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/api/districts", &["GET", "POST"]),
    ("/api/products", &["POST"]),
    ("/api/products/{id}", &["GET", "PUT"]),
    ("/api/products/{id}/history", &["GET"]),
    ("/api/signals", &["POST"]),
    ("/api/autonomous", &["GET", "POST"]),
    ("/api/autonomous/products", &["GET", "POST"]),
    ("/api/autonomous/health", &["GET", "POST"]),
    ("/api/autonomous/districts/{slug}", &["GET"]),
    ("/api/autonomous/districts/{slug}/evolve", &["POST"]),
    ("/api/products/{id}/placeholder.svg", &["GET"]),
    ("/api/districts/{slug}", &["GET"]),
    ("/api/districts/{slug}/products", &["GET"]),
    ("/api/search", &["GET"]),
    ("/api/autonomous/personalize", &["GET"]),
    ("/api/autonomous/merchandising", &["GET"]),
    ("/api/autonomous/merchandising/rules", &["POST"]),
    ("/api/autonomous/merchandising/rules/{id}", &["DELETE"]),
    ("/api/autonomous/analytics", &["GET"]),
    ("/api/autonomous/social/calendar", &["GET", "POST"]),
    ("/api/autonomous/social/ready", &["GET"]),
    ("/api/autonomous/social/posts/{id}", &["POST"]),
    ("/api/autonomous/plugins", &["GET", "POST"]),
    ("/api/autonomous/voice", &["POST"]),
    ("/api/autonomous/segments", &["GET"]),
    ("/api/admin/projections", &["GET"]),
    ("/api/admin/projections/rebuild", &["POST"]),
    ("/api/admin/projections/retry", &["POST"]),
    ("/api/openapi.json", &["GET"]),
    ("/api/docs", &["GET"]),
    ("/healthz", &["GET"]),
    ("/metrics", &["GET"]),
];

/// The routes, shared by `mall serve` and the tests. Each path is one resource: a method it does
/// not serve answers 405 with `Allow`, not 404.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use actix_web::http::Method;
    fn resource(path: &str, routes: Vec<(Method, actix_web::Route)>) -> actix_web::Resource {
        let allow: Vec<String> = routes.iter().map(|(m, _)| m.to_string()).collect();
        let allow = allow.join(", ");
        let mut r = web::resource(path);
        for (_, route) in routes {
            r = r.route(route);
        }
        r.default_service(web::to(move || {
            let allow = allow.clone();
            async move {
                HttpResponse::MethodNotAllowed()
                    .insert_header((actix_web::http::header::ALLOW, allow.clone()))
                    .json(serde_json::json!({"message": format!("this path answers {allow} only")}))
            }
        }))
    }
    let get = |r: actix_web::Route| (Method::GET, r);
    let post = |r: actix_web::Route| (Method::POST, r);
    let put = |r: actix_web::Route| (Method::PUT, r);
    cfg.service(
        web::scope("/api")
            .service(resource(
                "/districts",
                vec![post(web::post().to(ingest::open_district)), get(web::get().to(storefront::districts))],
            ))
            .service(resource("/products", vec![post(web::post().to(ingest::list_product))]))
            .service(resource(
                "/products/{id}",
                vec![put(web::put().to(ingest::edit_product)), get(web::get().to(storefront::product))],
            ))
            .service(resource("/products/{id}/history", vec![get(web::get().to(reads::get_history))]))
            .service(resource("/signals", vec![post(web::post().to(ingest::post_signals))]))
            .service(resource(
                "/autonomous",
                vec![get(web::get().to(autonomous::status)), post(web::post().to(autonomous::control))],
            ))
            .service(resource(
                "/autonomous/products",
                vec![post(web::post().to(ingest::nudge_product)), get(web::get().to(intelligence::products))],
            ))
            .service(resource(
                "/autonomous/health",
                vec![get(web::get().to(health::get_report)), post(web::post().to(health::run_check))],
            ))
            .service(resource("/products/{id}/placeholder.svg", vec![get(web::get().to(health::placeholder))]))
            .service(resource("/autonomous/districts/{slug}", vec![get(web::get().to(evolution::show))]))
            .service(resource("/autonomous/districts/{slug}/evolve", vec![post(web::post().to(evolution::evolve))]))
            .service(resource("/districts/{slug}", vec![get(web::get().to(storefront::district))]))
            .service(resource("/districts/{slug}/products", vec![get(web::get().to(storefront::district_products))]))
            .service(resource("/search", vec![get(web::get().to(storefront::search))]))
            .service(resource("/autonomous/personalize", vec![get(web::get().to(storefront::personalize))]))
            .service(resource("/autonomous/merchandising", vec![get(web::get().to(merchandising::overview))]))
            .service(resource(
                "/autonomous/merchandising/rules",
                vec![post(web::post().to(merchandising::create_rule))],
            ))
            .service(resource(
                "/autonomous/merchandising/rules/{id}",
                vec![(Method::DELETE, web::delete().to(merchandising::end_rule))],
            ))
            .service(resource("/autonomous/analytics", vec![get(web::get().to(analytics::get))]))
            .service(resource(
                "/autonomous/social/calendar",
                vec![get(web::get().to(social::calendar)), post(web::post().to(social::plan))],
            ))
            .service(resource("/autonomous/social/ready", vec![get(web::get().to(social::ready))]))
            .service(resource("/autonomous/social/posts/{id}", vec![post(web::post().to(social::mark))]))
            .service(resource(
                "/autonomous/plugins",
                vec![get(web::get().to(plugins::list)), post(web::post().to(plugins::configure))],
            ))
            .service(resource("/autonomous/voice", vec![post(web::post().to(plugins::voice))]))
            .service(resource("/autonomous/segments", vec![get(web::get().to(plugins::segments_list))]))
            .service(resource("/admin/projections", vec![get(web::get().to(admin::projections))]))
            .service(resource("/admin/projections/rebuild", vec![post(web::post().to(admin::rebuild))]))
            .service(resource("/admin/projections/retry", vec![post(web::post().to(admin::retry))]))
            .service(resource("/openapi.json", vec![get(web::get().to(openapi::json))]))
            .service(resource("/docs", vec![get(web::get().to(openapi::docs))])),
    )
    .service(resource("/healthz", vec![get(web::get().to(reads::health))]))
    .service(resource("/metrics", vec![get(web::get().to(metrics::get))]))
    // The dashboard (HTML, not the API: not in `ROUTES`).
    .service(resource("/admin/autonomous", vec![get(web::get().to(dashboard::home))]))
    .service(resource(
        "/admin/autonomous/login",
        vec![get(web::get().to(dashboard::login_form)), post(web::post().to(dashboard::login))],
    ))
    .service(resource("/admin/autonomous/control", vec![post(web::post().to(dashboard::control))]))
    .service(resource("/admin/autonomous/live", vec![get(web::get().to(dashboard::live))]))
    .service(resource("/admin/autonomous/live.js", vec![get(web::get().to(dashboard::script))]))
    .service(resource(
        "/admin/autonomous/decisions/{product}/{decision}",
        vec![get(web::get().to(dashboard::decision))],
    ))
    .service(resource(
        "/admin/autonomous/experiments/{product}/{experiment}",
        vec![get(web::get().to(dashboard::experiment))],
    ))
    .service(resource("/admin/autonomous/{panel}", vec![get(web::get().to(dashboard::panel))]))
    // Between nodes sharing a database (their shared secret, never a client's token).
    .service(resource("/internal/products/{id}", vec![post(web::post().to(placement::product_work))]))
    .service(resource("/internal/queue", vec![post(web::post().to(placement::queue))]));
}

/// SIGINT or SIGTERM.
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}

/// A started server: listening, its actors running, not yet awaited.
pub struct Started {
    /// `http://ADDR` of the first address bound.
    pub base: String,
    /// The admin token (configured or generated).
    pub admin: String,
    /// Whether the admin token was generated for this run.
    pub generated_token: bool,
    handle: actix_web::dev::ServerHandle,
    server: actix_web::dev::Server,
    shutdown: tokio::sync::watch::Sender<bool>,
    draining: Arc<tokio::sync::watch::Sender<bool>>,
    router: actix_web::rt::task::JoinHandle<()>,
    core_tasks: Vec<actix_web::rt::task::JoinHandle<()>>,
    actors: Arc<Actors>,
    read: Arc<crate::readside::ReadSide>,
    snapshots: Arc<FsSnapshots>,
    store: Arc<dyn EventStore>,
    /// Held while the node runs (one process per data directory).
    _node_lock: Option<std::fs::File>,
}

/// Opens the store, starts the actors and the router, and binds the HTTP server (inside an actix
/// system). Nothing is served until [`Started::finish`] is awaited.
pub async fn start(store_args: &StoreArgs, args: &ServeArgs) -> Result<Started, Exit> {
    let metrics = metrics::Metrics::new();
    if let (crate::store::StoreKind::Postgres, Some(url)) = (&store_args.store, &store_args.database_url) {
        crate::store::warn_on_connection_room(url, usize::from(store_args.pg_writers)).await;
    }
    let store: Arc<dyn EventStore> = Arc::new(metrics::MeteredStore {
        inner: crate::store::open(store_args, Access::ReadWrite).await?,
        metrics: metrics.clone(),
    });
    let snapshot_dir = args.snapshot_dir.clone().unwrap_or_else(|| store_args.data_dir.join("snapshots"));
    let snapshots =
        Arc::new(FsSnapshots::open(&snapshot_dir).with_context(|| format!("cannot open {}", snapshot_dir.display()))?);
    // Bound first: the address is this node's among the nodes sharing the database.
    let listener =
        std::net::TcpListener::bind(&args.bind).with_context(|| format!("cannot listen on {}", args.bind))?;
    let local = listener.local_addr().context("bound to no address")?;
    let base = format!("http://{local}");
    // On PostgreSQL, what this node owns is leased (several nodes may share the database); the
    // embedded store is one process's, which owns everything.
    let (leases, node_lock) = match (&store_args.store, &store_args.database_url) {
        (crate::store::StoreKind::Postgres, Some(url)) => {
            let (id, lock) = node_identity(args, &store_args.data_dir)?;
            let names =
                crate::cluster::lease_names(crate::readside::projections().iter().map(|p| p.name().to_string()));
            let config = crate::cluster::NodeConfig {
                id,
                url: args.advertise.clone().unwrap_or_else(|| advertised(local)),
                ttl: Duration::from_secs_f64(args.lease_ttl),
            };
            let leases = crate::cluster::Leases::join(url, config, names).await.context("cannot join the nodes")?;
            (Some(leases), Some(lock))
        }
        _ => (None, None),
    };
    let core_lease = match &leases {
        Some(l) => l.lease(crate::cluster::AUTONOMOUS),
        None => crate::cluster::Lease::always(crate::cluster::AUTONOMOUS),
    };
    // What the autonomous core writes carries its lease's token.
    let write_store: Arc<dyn EventStore> = match &leases {
        Some(_) => Arc::new(crate::cluster::FencedStore { inner: store.clone(), lease: core_lease.clone() }),
        None => store.clone(),
    };
    let (generator, embedder) = args.llm.executors()?;
    let generator: Arc<dyn mall_actors::executors::Generator> =
        Arc::new(metrics::MeteredGenerator { inner: generator, metrics: metrics.clone() });
    let embedder: Arc<dyn mall_actors::executors::Embedder> =
        Arc::new(metrics::MeteredEmbedder { inner: embedder, metrics: metrics.clone() });
    let policy = mall_actors::product::Policy {
        retry_backoff: chrono::Duration::seconds(args.retry_backoff.min(86_400 * 30) as i64),
        max_backoff: chrono::Duration::seconds(args.max_backoff.clamp(args.retry_backoff, 86_400 * 30) as i64),
        ..mall_actors::product::Policy::default()
    };
    let config = RuntimeConfig {
        policy,
        generations_per_hour: args.generations_per_hour,
        generations_per_product: args.generations_per_product,
        max_resident: args.max_resident.max(1),
        ..RuntimeConfig::default()
    };
    let search = search::QueryEmbedder::new(embedder.clone(), args.search_embeddings_per_hour);
    if let Some(config) = args.llm.config()? {
        // Say at once, and plainly, whether the configured model answers.
        actix_web::rt::spawn(async move {
            for f in mall_actors::executors::llm::check(&config).await {
                eprintln!("mall: model check: {} {}", if f.ok { "ok" } else { "FAILED:" }, f.message);
            }
        });
    }
    let rt = Runtime::new(write_store.clone(), snapshots.clone(), generator, embedder, config);
    let arbiters = (0..2).map(|_| actix::Arbiter::new().handle()).collect();
    if let Some(l) = &leases {
        // The actors of the shards this node holds run here; their appends carry the shard's token.
        rt.set_shards(mall_actors::runtime::shards::Shards::leased(l.shards()));
    }
    let actors = Actors::new(rt, arbiters);
    if let Some(l) = &leases {
        l.follow(actors.progress.subscribe());
        // Query embeddings are paid where the search is served: each node spends its part of
        // the mall's hourly budget for them. (Generations are paid from the core's budget, on
        // the one node running it, whichever node makes the call.)
        let (mut nodes, search) = (l.nodes(), search.clone());
        actix_web::rt::spawn(async move {
            loop {
                let (alive, rank) = *nodes.borrow_and_update();
                search.budget.split(alive, rank);
                if nodes.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let placement =
        Arc::new(placement::Placement { actors: actors.clone(), leases: leases.clone(), client: forward::client() });
    actors.load_catalog().await.context("cannot load the catalog from the log")?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let read_url =
        (store_args.store == crate::store::StoreKind::Postgres).then(|| store_args.database_url.clone()).flatten();
    let read =
        crate::readside::ReadSide::start(store.clone(), read_url, Some(snapshot_dir.join("readside")), leases.clone())
            .await
            .context("cannot start the read side")?;

    // The autonomous core: the task queue (folded from the log) and the job runner.
    use mall_actors::autonomous::{jobs, scheduler};
    let clock: Arc<dyn scheduler::Clock> = Arc::new(scheduler::SystemClock);
    let concurrency = args.task_concurrency.clamp(1, 1_024);
    let core_config =
        scheduler::Config { concurrency, per_system: concurrency.div_ceil(2), ..scheduler::Config::default() };
    let core = scheduler::Scheduler::open(
        write_store.clone(),
        clock.clone(),
        Arc::new(autonomous::RuntimeBudget(actors.rt.clone())),
        core_config,
        Some(snapshots.clone()),
    )
    .await
    .context("cannot load the task queue from the log")?;
    core.register("product_intelligence", "nudge", Arc::new(autonomous::NudgeProduct(placement.clone())));
    let sweep = Arc::new(autonomous::Sweep { read: read.clone(), scheduler: std::sync::OnceLock::new() });
    let _ = sweep.scheduler.set(Arc::downgrade(&core));
    core.register("product_intelligence", "sweep", sweep);
    core.register("product_intelligence", "generate", Arc::new(autonomous::GenerateCopy(placement.clone())));
    actors.rt.set_dispatch(Arc::new(autonomous::QueueGenerations(Arc::downgrade(&core), placement.clone())));
    let fetcher =
        args.fetch_allow.iter().fold(mall_actors::health::fetch::Fetcher::default(), |f, addr| f.allowing(*addr));
    let healing = health::SelfHealing::new(actors.clone(), read.clone(), fetcher, args.health_webhook.clone());
    let _ = healing.scheduler.set(Arc::downgrade(&core));
    core.register("self_healing", "check", Arc::new(health::Check(healing.clone())));
    let evolving = evolution::Evolution::new(actors.clone(), read.clone());
    let _ = evolving.scheduler.set(Arc::downgrade(&core));
    core.register("district_evolution", "evolve", Arc::new(evolution::Evolve(evolving.clone())));
    core.register("district_evolution", "write_voice", Arc::new(evolution::WriteVoice(evolving.clone())));
    core.register("district_evolution", "sweep", Arc::new(evolution::Sweep(evolving.clone())));
    core.register("self_healing", "sweep", Arc::new(health::Check(healing.clone())));
    let merchandise =
        merchandising::Merchandising::new(write_store.clone(), read.clone(), score_config(&args.score_weights));
    core.register("merchandising", "sweep", Arc::new(merchandising::Sweep(merchandise.clone())));
    let analysing = analytics::Analytics::new(actors.clone(), read.clone());
    let _ = analysing.scheduler.set(Arc::downgrade(&core));
    core.register("analytics", "detect", Arc::new(analytics::Detect(analysing.clone())));
    core.register("analytics", "report", Arc::new(analytics::WriteReport(analysing.clone())));
    core.register("analytics", "sweep", Arc::new(analytics::Sweep(analysing.clone())));
    let posting = social::SocialMedia::new(
        actors.clone(),
        read.clone(),
        args.social_webhook.clone(),
        Duration::from_secs(args.social_ahead.min(86_400 * 30)),
    );
    let _ = posting.scheduler.set(Arc::downgrade(&core));
    core.register("social_media", "plan", Arc::new(social::Plan(posting.clone())));
    core.register("social_media", "sweep", Arc::new(social::Plan(posting.clone())));
    let extensions = plugins::Plugins::new(
        actors.clone(),
        placement.clone(),
        read.clone(),
        mall_actors::plugins::builtin(),
        mall_actors::plugins::TIMEOUT,
    );
    let _ = extensions.scheduler.set(Arc::downgrade(&core));
    core.register("plugins", "sweep", Arc::new(plugins::Sweep(extensions.clone())));
    // The actors start once their decisions have somewhere to go; they run on the node holding
    // their shard (the catalog follows the log on every node).
    let router = actix_web::rt::spawn(actors.clone().run(shutdown_rx.clone()));
    let every: std::collections::BTreeMap<String, i64> = args.jobs.iter().filter(|(_, s)| *s > 0).cloned().collect();
    let off: Vec<String> = args.jobs.iter().filter(|(_, s)| *s == 0).map(|(n, _)| n.clone()).collect();
    let mut work = autonomous::job_work(&read);
    work.insert("health_check", Arc::new(health::HealthJob));
    work.insert("merchandising", Arc::new(merchandising::MerchandisingJob));
    work.insert("district_evolution", Arc::new(evolution::EvolutionJob(evolving.clone())));
    work.insert("anomaly_detection", Arc::new(analytics::AnomalyJob));
    work.insert("social_calendar", Arc::new(social::CalendarJob));
    work.insert("plugin_hooks", Arc::new(plugins::HooksJob));
    work.insert("analytics_narratives", Arc::new(analytics::NarrativesJob(analysing.clone())));
    let runner = Arc::new(jobs::Runner::new(core.clone(), clock, &every, &off, work));
    // The core's loops run while this node holds its lease.
    let loops = {
        let (core, runner, healing, evolving) = (core.clone(), runner.clone(), healing.clone(), evolving.clone());
        let (merchandise, posting, extensions) = (merchandise.clone(), posting.clone(), extensions.clone());
        move |term: tokio::sync::watch::Receiver<bool>| {
            vec![
                actix_web::rt::spawn(core.clone().run(term.clone())),
                actix_web::rt::spawn(runner.clone().run(term.clone())),
                actix_web::rt::spawn(healing.clone().deliver(term.clone())),
                actix_web::rt::spawn(evolving.clone().watch_tests(term.clone())),
                actix_web::rt::spawn(merchandise.clone().watch_tests(term.clone())),
                actix_web::rt::spawn(posting.clone().publish(term.clone())),
                actix_web::rt::spawn(extensions.clone().watch(term)),
            ]
        }
    };
    let take_over = {
        let core = core.clone();
        move || -> futures_util::future::BoxFuture<'static, Result<(), String>> {
            let core = core.clone();
            Box::pin(async move { core.take_over().await.map_err(|e| e.to_string()) })
        }
    };
    let mut core_tasks = vec![
        actix_web::rt::spawn(crate::cluster::own(core_lease.clone(), take_over, loops, shutdown_rx.clone())),
        actix_web::rt::spawn(metrics.clone().follow(
            store.clone(),
            store.stats().await?.last_position + 1,
            shutdown_rx.clone(),
        )),
    ];

    let limits = limits::Limits::new(
        limits::Limit { per_second: args.ingest_rate, burst: args.ingest_burst },
        limits::Limit { per_second: args.read_rate, burst: args.read_burst },
    );
    core_tasks.push(actix_web::rt::spawn(limits.clone().tidy(shutdown_rx.clone())));
    if let Some(l) = &leases {
        core_tasks.push(actix_web::rt::spawn(l.clone().run(shutdown_rx.clone())));
    }
    let admin = std::env::var("MALL_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    let generated_token = admin.is_none();
    let admin = admin.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let tokens =
        Tokens::new(admin.clone(), std::env::var("MALL_INGEST_TOKEN").ok(), std::env::var("MALL_SHOPPER_TOKEN").ok());
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    let draining = Arc::new(draining);
    let state = web::Data::new(AppState {
        store: store.clone(),
        actors: actors.clone(),
        read: read.clone(),
        ranker: ranking::Ranker::start(read.clone(), score_config(&args.score_weights), shutdown_rx.clone()),
        tokens,
        search,
        body_timeout: Duration::from_secs(args.body_timeout.clamp(1, 3_600)),
        core,
        jobs: runner,
        health: healing,
        evolution: evolving,
        recommender: recommend::Recommender::start(store.clone(), shutdown_rx.clone()),
        merchandising: merchandise,
        analytics: analysing,
        social: posting,
        plugins: extensions,
        metrics: metrics.clone(),
        limits: limits.clone(),
        sessions: dashboard::Sessions::default(),
        draining: draining_rx,
        leases: leases.clone(),
        core_lease,
        forwarder: forward::client(),
        placement,
    });
    // Requests by route pattern, method and status (a path no route matches is `UNKNOWN`).
    let requests = actix_web_prom::PrometheusMetricsBuilder::new("mall")
        .registry(metrics.registry.clone())
        .mask_unmatched_patterns("UNKNOWN")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the request metrics: {e}"))?;

    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(forward::to_owner))
            .wrap(actix_web::middleware::from_fn(limits::limit))
            .wrap(requests.clone())
            .wrap(actix_web::middleware::from_fn(trace::span))
            .app_data(state.clone())
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .client_request_timeout(Duration::from_secs(30))
    .shutdown_timeout(10);
    if let Some(w) = args.workers {
        server = server.workers(w.max(1));
    }
    let server = server.listen(listener).with_context(|| format!("cannot listen on {}", args.bind))?;
    // Signals are handled by the caller, not by actix-server, which would stop the whole actix
    // system (and the actors' arbiters with it) before the actors could save their snapshots.
    let server = server.disable_signals().run();
    let handle = server.handle();
    Ok(Started {
        base,
        admin,
        generated_token,
        handle,
        server,
        shutdown,
        draining,
        router,
        core_tasks,
        actors,
        read,
        snapshots,
        store,
        _node_lock: node_lock,
    })
}

/// Where other nodes reach this one by default: the address bound, or this host's name and the
/// port when bound to every address (`0.0.0.0:8080` in a container).
fn advertised(local: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string());
    match host {
        Some(h) if local.ip().is_unspecified() && !h.is_empty() => format!("http://{h}:{}", local.port()),
        _ => format!("http://{local}"),
    }
}

/// This node's name and the lock that keeps one process per data directory: the name given, or
/// the one kept in the data directory (made on the first start). One process at a time holds a
/// name, so a restarted node may take its own leases back from the process it replaces.
fn node_identity(args: &ServeArgs, data_dir: &std::path::Path) -> anyhow::Result<(String, std::fs::File)> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let lock_path = data_dir.join("node.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!("{} is in use by another mall node (one node per data directory)", data_dir.display());
    }
    let id = match &args.node_id {
        Some(id) => id.clone(),
        None => {
            let path = data_dir.join("node-id");
            match std::fs::read_to_string(&path) {
                Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
                _ => {
                    let id = format!("node-{}", uuid::Uuid::new_v4().simple());
                    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
                    id
                }
            }
        }
    };
    if id.is_empty() || id.len() > 100 || id.chars().any(char::is_control) {
        anyhow::bail!("--node-id must be 1-100 characters without control characters");
    }
    Ok((id, lock))
}

/// Stops a started server: long-lived streams end, then requests drain.
#[derive(Clone)]
pub struct Stopper {
    handle: actix_web::dev::ServerHandle,
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Stopper {
    pub async fn stop(&self) {
        let _ = self.draining.send(true);
        self.handle.stop(true).await;
    }
}

impl Started {
    /// What stops the server from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper { handle: self.handle.clone(), draining: self.draining.clone() }
    }

    /// Serves until the handle stops the server, then stops the router, passivates every actor
    /// (saving its snapshot) and closes the store.
    pub async fn finish(self) -> Result<(), Exit> {
        let result = self.server.await;
        tracing::info!("the HTTP server stopped; saving actor snapshots");
        let _ = self.shutdown.send(true);
        self.read.stop();
        self.read.save_images().await;
        let _ = self.router.await;
        for t in self.core_tasks {
            let _ = t.await;
        }
        futures_util::future::join3(
            self.actors.products.passivate_all(),
            self.actors.districts.passivate_all(),
            self.actors.shoppers.passivate_all(),
        )
        .await;
        self.snapshots.flush();
        self.store.close().await;
        result.context("the HTTP server failed")?;
        Ok(())
    }

    /// Stops the server (gracefully) on SIGINT or SIGTERM. The handlers are in place when this
    /// returns: a signal that arrives right after the server says it serves is not lost to the
    /// default action (which would end the process without saving anything).
    pub fn stop_on_signal(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let stopper = self.stopper();
        let (int, term) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        actix_web::rt::spawn(async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => stop_signal().await,
            }
            tracing::info!("stopping: draining requests");
            stopper.stop().await;
        });
    }
}

/// Runs the server until SIGINT or SIGTERM (inside an actix system).
pub async fn run(store_args: &StoreArgs, args: &ServeArgs) -> Result<(), Exit> {
    let started = start(store_args, args).await?;
    started.stop_on_signal();
    println!("mall: serving on {}", started.base);
    if started.generated_token {
        println!("mall: no MALL_ADMIN_TOKEN set; this run's admin token is {}", started.admin);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    started.finish().await
}
