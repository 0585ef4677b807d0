//! `mall serve`: the HTTP API over the log, with the actors running beside it.
//!
//! Wiring: open the store; load the catalog maps; start the actor registries on their own
//! arbiters and the router that feeds them from the log; serve HTTP (actix-web). On SIGINT or
//! SIGTERM the server drains its requests, the router stops, every resident actor saves its
//! snapshot and the store is closed.
//!
//! Modules: [`auth`] (scoped bearer tokens), [`error`] (JSON errors), [`ingest`] (catalog and
//! signal writes), [`storefront`] (product, districts, rankings, search, personalization, from
//! the read tables), [`intelligence`] (product intelligence's tables and actors), [`reads`]
//! (history, health), [`admin`] (projections).

pub mod admin;
pub mod auth;
pub mod error;
pub mod ingest;
pub mod intelligence;
pub mod ranking;
pub mod reads;
pub mod storefront;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use clap::{Args, ValueEnum};
use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::executors::llm::{Backend, LlmConfig, LlmGenerator};
use mall_actors::executors::offline::OfflineGenerator;
use mall_actors::executors::{Embedder, Generator};
use mall_actors::runtime::router::Actors;
use mall_actors::runtime::snapshot::{FsSnapshots, SnapshotStore};
use mall_actors::runtime::{Runtime, RuntimeConfig};
use mall_events::EventStore;

use crate::cli::Exit;
use crate::store::{Access, StoreArgs};
use auth::Tokens;
use error::ApiError;

/// Which generator writes copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratorKind {
    /// The built-in offline generator and hashing embedder (deterministic, no network).
    Offline,
    /// An OpenAI-compatible server (Responses API and embeddings) through the `llm` crate.
    Openai,
    /// An Ollama server through the `llm` crate.
    Ollama,
}

/// The model settings (`--llm openai|ollama` with a base URL and model; the key only from env).
#[derive(Debug, Clone, Args)]
pub struct LlmArgs {
    /// Who writes copy.
    #[arg(long, env = "MALL_LLM", value_enum, default_value_t = GeneratorKind::Offline)]
    pub llm: GeneratorKind,
    /// The model server's base URL, ending with a slash (`http://127.0.0.1:11434/`, `https://api.openai.com/v1/`).
    #[arg(long, env = "MALL_LLM_URL")]
    pub llm_url: Option<String>,
    /// The chat model.
    #[arg(long, env = "MALL_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// The embedding model (default: the chat model).
    #[arg(long, env = "MALL_LLM_EMBEDDING_MODEL")]
    pub llm_embedding_model: Option<String>,
    /// Seconds a model call may take.
    #[arg(long, env = "MALL_LLM_TIMEOUT", default_value_t = 30)]
    pub llm_timeout: u64,
    /// Retries after a failed or timed-out model call.
    #[arg(long, env = "MALL_LLM_RETRIES", default_value_t = 2)]
    pub llm_retries: u32,
}

/// `mall serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, env = "MALL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Where actor snapshots are kept (default: `snapshots` in the data directory).
    #[arg(long, env = "MALL_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Generation calls allowed per hour, across all products.
    #[arg(long, env = "MALL_GENERATIONS_PER_HOUR", default_value_t = 1_000)]
    pub generations_per_hour: u32,
    /// The most actors of each kind kept resident.
    #[arg(long, env = "MALL_MAX_RESIDENT", default_value_t = 100_000)]
    pub max_resident: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MALL_WORKERS")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub actors: Arc<Actors>,
    pub read: Arc<crate::readside::ReadSide>,
    pub ranker: Arc<ranking::Ranker>,
    pub tokens: Tokens,
}

/// The generator and embedder the configuration asks for.
pub fn executors(args: &LlmArgs) -> anyhow::Result<(Arc<dyn Generator>, Arc<dyn Embedder>)> {
    let backend = match args.llm {
        GeneratorKind::Offline => return Ok((Arc::new(OfflineGenerator), Arc::new(HashEmbedder))),
        GeneratorKind::Openai => Backend::OpenAi,
        GeneratorKind::Ollama => Backend::Ollama,
    };
    let base_url = args.llm_url.clone().context("--llm-url (or MALL_LLM_URL) is required with --llm openai|ollama")?;
    let model =
        args.llm_model.clone().context("--llm-model (or MALL_LLM_MODEL) is required with --llm openai|ollama")?;
    let generator = Arc::new(LlmGenerator::new(LlmConfig {
        backend,
        base_url,
        model,
        embedding_model: args.llm_embedding_model.clone(),
        // The key is read from the environment only, so that it never shows in a process list.
        api_key: std::env::var("MALL_LLM_API_KEY").ok().filter(|k| !k.is_empty()),
        timeout: Duration::from_secs(args.llm_timeout.max(1)),
        retries: args.llm_retries.min(10),
    })?);
    Ok((generator.clone(), generator))
}

/// The routes, shared by `mall serve` and the tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/districts", web::post().to(ingest::open_district))
            .route("/products", web::post().to(ingest::list_product))
            .route("/products/{id}", web::put().to(ingest::edit_product))
            .route("/products/{id}", web::get().to(storefront::product))
            .route("/products/{id}/history", web::get().to(reads::get_history))
            .route("/signals", web::post().to(ingest::post_signals))
            .route("/autonomous/products", web::post().to(ingest::nudge_product))
            .route("/autonomous/products", web::get().to(intelligence::products))
            .route("/districts", web::get().to(storefront::districts))
            .route("/districts/{slug}", web::get().to(storefront::district))
            .route("/districts/{slug}/products", web::get().to(storefront::district_products))
            .route("/search", web::get().to(storefront::search))
            .route("/autonomous/personalize", web::get().to(storefront::personalize))
            .route("/admin/projections", web::get().to(admin::projections))
            .route("/admin/projections/rebuild", web::post().to(admin::rebuild)),
    )
    .route("/healthz", web::get().to(reads::health));
}

/// Answers a malformed query string or path as JSON, naming what was wrong.
fn query_error(e: actix_web::error::QueryPayloadError, _: &actix_web::HttpRequest) -> actix_web::Error {
    let msg = e.to_string();
    let field = msg.split('`').nth(1).unwrap_or("query").to_string();
    ApiError::invalid(field, msg).into()
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
    pub handle: actix_web::dev::ServerHandle,
    server: actix_web::dev::Server,
    shutdown: tokio::sync::watch::Sender<bool>,
    router: actix_web::rt::task::JoinHandle<()>,
    actors: Arc<Actors>,
    read: Arc<crate::readside::ReadSide>,
    snapshots: Arc<FsSnapshots>,
    store: Arc<dyn EventStore>,
}

/// Opens the store, starts the actors and the router, and binds the HTTP server (inside an actix
/// system). Nothing is served until [`Started::finish`] is awaited.
pub async fn start(store_args: &StoreArgs, args: &ServeArgs) -> Result<Started, Exit> {
    let store = crate::store::open(store_args, Access::ReadWrite).await?;
    let snapshot_dir = args.snapshot_dir.clone().unwrap_or_else(|| store_args.data_dir.join("snapshots"));
    let snapshots =
        Arc::new(FsSnapshots::open(&snapshot_dir).with_context(|| format!("cannot open {}", snapshot_dir.display()))?);
    let (generator, embedder) = executors(&args.llm)?;
    let config = RuntimeConfig {
        generations_per_hour: args.generations_per_hour,
        max_resident: args.max_resident.max(1),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(store.clone(), snapshots.clone(), generator, embedder, config);
    let arbiters = (0..2).map(|_| actix::Arbiter::new().handle()).collect();
    let actors = Actors::new(rt, arbiters);
    actors.load_catalog().await.context("cannot load the catalog from the log")?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let router = actix_web::rt::spawn(actors.clone().run(shutdown_rx.clone()));
    let read_url =
        (store_args.store == crate::store::StoreKind::Postgres).then(|| store_args.database_url.clone()).flatten();
    let read = crate::readside::ReadSide::start(store.clone(), read_url).await.context("cannot start the read side")?;

    let admin = std::env::var("MALL_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    let generated_token = admin.is_none();
    let admin = admin.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let tokens = Tokens::new(admin.clone(), std::env::var("MALL_INGEST_TOKEN").ok());
    let state = web::Data::new(AppState {
        store: store.clone(),
        actors: actors.clone(),
        read: read.clone(),
        ranker: ranking::Ranker::start(read.clone(), shutdown_rx.clone()),
        tokens,
    });

    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .client_request_timeout(Duration::from_secs(30))
    .shutdown_timeout(10);
    if let Some(w) = args.workers {
        server = server.workers(w.max(1));
    }
    let server = server.bind(&args.bind).with_context(|| format!("cannot listen on {}", args.bind))?;
    let base = server.addrs().first().map(|a| format!("http://{a}")).context("bound to no address")?;
    // Signals are handled by the caller, not by actix-server, which would stop the whole actix
    // system (and the actors' arbiters with it) before the actors could save their snapshots.
    let server = server.disable_signals().run();
    let handle = server.handle();
    Ok(Started { base, admin, generated_token, handle, server, shutdown, router, actors, read, snapshots, store })
}

impl Started {
    /// Serves until the handle stops the server, then stops the router, passivates every actor
    /// (saving its snapshot) and closes the store.
    pub async fn finish(self) -> Result<(), Exit> {
        let result = self.server.await;
        tracing::info!("the HTTP server stopped; saving actor snapshots");
        let _ = self.shutdown.send(true);
        self.read.stop();
        let _ = self.router.await;
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

    /// Stops the server (gracefully) on SIGINT or SIGTERM.
    pub fn stop_on_signal(&self) {
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stopping: draining requests");
            handle.stop(true).await;
        });
    }
}

/// Runs the server until SIGINT or SIGTERM (inside an actix system).
pub async fn run(store_args: &StoreArgs, args: &ServeArgs) -> Result<(), Exit> {
    let started = start(store_args, args).await?;
    println!("mall: serving on {}", started.base);
    if started.generated_token {
        println!("mall: no MALL_ADMIN_TOKEN set; this run's admin token is {}", started.admin);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    started.stop_on_signal();
    started.finish().await
}
