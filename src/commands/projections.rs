//! `mall projections status|rebuild|retry`. On PostgreSQL the command works on the read tables
//! directly: a rebuild fills shadow tables while the live ones keep serving (and keep
//! following the log), shows its progress, can be interrupted and resumed, and swaps in
//! atomically. On the embedded store the read tables live inside the running server, so the
//! command asks it (admin token from `MALL_ADMIN_TOKEN`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mall_projections::postgres::PgSink;
use mall_projections::runner::{self, Projection};
use serde_json::{Value, json};

use crate::cli::Exit;
use crate::readside::{RebuildStep, projections, rebuild_postgres};
use crate::store::{self, Access, StoreArgs, StoreKind};

/// Where the running server is (embedded store).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The running `mall serve` (embedded store: its read tables are in its memory).
    #[arg(long, env = "MALL_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

/// `mall projections ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's name, version, checkpoint and lag.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Apply parked events again (events a projection could not apply; after a fix).
    Retry {
        /// The projection (see `status`).
        name: Option<String>,
        /// Every projection.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Rebuild read tables from the log beside the live ones, then swap them in.
    Rebuild {
        /// The projection (see `status`).
        name: Option<String>,
        /// Every projection.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Compare rebuilt and live tables row by row and report each difference (exit 5 if any).
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs `mall projections ...`.
pub async fn run(store_args: &StoreArgs, cmd: ProjectionsCommand) -> Result<(), Exit> {
    match (store_args.store, cmd) {
        (StoreKind::Postgres, ProjectionsCommand::Status { json, .. }) => pg_status(store_args, json).await,
        (StoreKind::Postgres, ProjectionsCommand::Rebuild { name, all, verify, .. }) => {
            pg_rebuild(store_args, targets(name, all)?, verify).await
        }
        (StoreKind::Postgres, ProjectionsCommand::Retry { name, all, json, .. }) => {
            pg_retry(store_args, targets(name, all)?, json).await
        }
        (_, ProjectionsCommand::Status { json, server }) => server_status(&server.server, json).await,
        (_, ProjectionsCommand::Retry { name, all, json, server }) => {
            targets(name.clone(), all)?;
            server_retry(&server.server, name, json).await
        }
        (_, ProjectionsCommand::Rebuild { name, all, verify, server }) => {
            targets(name.clone(), all)?;
            server_rebuild(&server.server, name, verify).await
        }
    }
}

/// The projections a rebuild names: one, or all (`--all`).
fn targets(name: Option<String>, all: bool) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    let known = projections();
    let names = || known.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
    match (name, all) {
        (None, false) => bail!("name a projection ({}) or pass --all", names()),
        (Some(n), _) => {
            let p = known
                .iter()
                .find(|p| p.name() == n)
                .ok_or_else(|| anyhow!("no projection {n:?}; there are: {}", names()))?;
            Ok(vec![p.clone()])
        }
        (None, true) => Ok(known),
    }
}

fn url(store_args: &StoreArgs) -> anyhow::Result<String> {
    store_args.database_url.clone().context("the postgres store needs --database-url or DATABASE_URL")
}

async fn pg_status(store_args: &StoreArgs, as_json: bool) -> Result<(), Exit> {
    let store = store::open(store_args, Access::ReadOnly).await?;
    let url = url(store_args)?;
    let mut rows = Vec::new();
    for p in projections() {
        let sink = PgSink::open(&url, p.name(), p.version(), p.tables(), false).await?;
        let lag = runner::lag(&*store, &sink).await?;
        let parked = runner::Sink::parked(&sink).await?;
        rows.push(json!({"name": p.name(), "version": p.version(), "recorded_version": sink.recorded_version().await?, "lag": lag, "parked": parked}));
    }
    print_status(&json!({"sink": "postgres", "projections": rows}), as_json);
    Ok(())
}

fn print_status(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    println!(
        "{:<12} {:>7} {:>12} {:>12} {:>10} {:>10}",
        "projection", "version", "checkpoint", "log", "behind", "seconds"
    );
    for p in v["projections"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:>7} {:>12} {:>12} {:>10} {:>10.1}",
            p["name"].as_str().unwrap_or_default(),
            p["version"],
            p["lag"]["checkpoint"],
            p["lag"]["log_position"],
            p["lag"]["positions"],
            p["lag"]["seconds"].as_f64().unwrap_or_default()
        );
        if p["rebuild"]["running"] == true {
            println!("{:<12} rebuilding: {} of {}", "", p["rebuild"]["position"], p["rebuild"]["target"]);
        }
        for e in p["parked"].as_array().into_iter().flatten() {
            println!(
                "{:<12} parked: position {} ({}): {}",
                "",
                e["position"],
                e["event_type"].as_str().unwrap_or_default(),
                e["error"].as_str().unwrap_or_default()
            );
        }
    }
}

/// Prints what a retry did; fails (exit 1) when events are still parked.
fn report_retry(results: &[(String, Value)], as_json: bool) -> Result<(), Exit> {
    let mut still = 0;
    if as_json {
        let list: Vec<Value> = results.iter().map(|(n, r)| json!({"name": n, "result": r})).collect();
        println!("{}", json!({"retried": list}));
    }
    for (name, r) in results {
        let applied = r["applied"].as_array().map_or(0, Vec::len);
        let parked = r["still_parked"].as_array().cloned().unwrap_or_default();
        still += parked.len();
        if !as_json {
            println!("{name}: {applied} parked events applied, {} still parked", parked.len());
            for e in &parked {
                println!("  position {}: {}", e["position"], e["error"].as_str().unwrap_or_default());
            }
        }
    }
    if still > 0 {
        return Err(anyhow!("{still} events are still parked").into());
    }
    Ok(())
}

async fn pg_retry(store_args: &StoreArgs, targets: Vec<Arc<dyn Projection>>, as_json: bool) -> Result<(), Exit> {
    let store = store::open(store_args, Access::ReadOnly).await?;
    let url = url(store_args)?;
    let mut results = Vec::new();
    for p in targets {
        let sink = PgSink::open(&url, p.name(), p.version(), p.tables(), false).await?;
        let r = runner::retry(&*store, &*p, &sink).await?;
        results.push((p.name().to_string(), serde_json::to_value(r)?));
    }
    report_retry(&results, as_json)
}

async fn server_retry(server: &str, name: Option<String>, as_json: bool) -> Result<(), Exit> {
    let v = ask(server, reqwest::Method::POST, "/api/admin/projections/retry", Some(json!({"name": name}))).await?;
    let results: Vec<(String, Value)> = v["retried"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["name"].as_str().unwrap_or_default().to_string(), r.clone()))
        .collect();
    report_retry(&results, as_json)
}

fn bar(len: u64) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} events, {per_sec}, ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    )
}

async fn pg_rebuild(store_args: &StoreArgs, targets: Vec<Arc<dyn Projection>>, verify: bool) -> Result<(), Exit> {
    let store = store::open(store_args, Access::ReadOnly).await?;
    let url = url(store_args)?;
    let names: Vec<&str> = targets.iter().map(|p| p.name()).collect();
    let progress = bar(0);
    progress.set_message(names.join(", "));
    let (mut from, mut started) = (0, Instant::now());
    let rebuilt = rebuild_postgres(store, &url, &targets, verify, |step| match step {
        RebuildStep::Resumed { name, from } => {
            progress.println(format!("{name}: resuming the rebuild from position {from}"))
        }
        RebuildStep::Started { from: f, target } => {
            (from, started) = (f, Instant::now());
            progress.set_length(target);
            progress.set_position(f);
        }
        RebuildStep::At(pos) => {
            progress.set_length(progress.length().unwrap_or(0).max(pos));
            progress.set_position(pos);
        }
        RebuildStep::CaughtUp(at) => {
            progress.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{}: rebuilt to position {at} in {secs:.1} s ({:.0} events/s)",
                names.join(", "),
                at.saturating_sub(from) as f64 / secs.max(1e-6)
            );
        }
    })
    .await
    .inspect_err(|_| progress.finish_and_clear())?;
    let mut differences = 0;
    for r in &rebuilt {
        println!("{}: swapped in at position {}", r.name, r.checkpoint);
        match r.replaced_version {
            Some(old) => {
                println!(
                    "{}: version {old} replaced by version {} (blue/green); servers of version {old} stop writing it",
                    r.name,
                    targets.iter().find(|p| p.name() == r.name).map_or(0, |p| p.version())
                );
                if verify {
                    println!("{}: not compared: the live tables held another version", r.name);
                }
            }
            None => report(&r.name, verify, r.differences.as_deref().unwrap_or_default()),
        }
        differences += r.differences.as_ref().map_or(0, Vec::len);
    }
    if differences > 0 {
        return Err(Exit {
            code: 5,
            error: anyhow!("{differences} differences between the rebuilt and the live tables"),
        });
    }
    Ok(())
}

fn report(name: &str, verify: bool, diffs: &[String]) {
    if !verify {
        return;
    }
    if diffs.is_empty() {
        println!("{name}: verified: the rebuilt tables equal the live ones row by row");
    }
    for d in diffs {
        println!("{name}: difference: {d}");
    }
}

fn admin_token() -> anyhow::Result<String> {
    std::env::var("MALL_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .context("set MALL_ADMIN_TOKEN to the server's admin token")
}

/// A request to the running server with the admin token: its JSON answer, or its refusal as the
/// error (what `mall projections`, `mall tasks` and `mall jobs` send on the embedded store).
pub(crate) async fn ask(server: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Exit> {
    let mut request = reqwest::Client::new().request(method, format!("{server}{path}")).bearer_auth(admin_token()?);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let r = request.send().await.with_context(|| format!("cannot reach {server} (is `mall serve` running?)"))?;
    if !r.status().is_success() {
        return Err(anyhow!("{server}: {}", r.text().await.unwrap_or_default()).into());
    }
    Ok(r.json().await?)
}

async fn server_status(server: &str, as_json: bool) -> Result<(), Exit> {
    print_status(&ask(server, reqwest::Method::GET, "/api/admin/projections", None).await?, as_json);
    Ok(())
}

async fn server_rebuild(server: &str, name: Option<String>, verify: bool) -> Result<(), Exit> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3_600)).build()?;
    let token = admin_token()?;
    let request = client
        .post(format!("{server}/api/admin/projections/rebuild"))
        .bearer_auth(&token)
        .json(&json!({"name": name, "verify": verify}))
        .send();
    tokio::pin!(request);
    let progress = bar(0);
    let started = Instant::now();
    let response = loop {
        tokio::select! {
            r = &mut request => break r.with_context(|| format!("cannot reach {server} (is `mall serve` running?)"))?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Ok(r) = client.get(format!("{server}/api/admin/projections")).bearer_auth(&token).send().await
                    && let Ok(v) = r.json::<Value>().await
                {
                    for p in v["projections"].as_array().into_iter().flatten().filter(|p| p["rebuild"]["running"] == true) {
                        progress.set_message(p["name"].as_str().unwrap_or_default().to_string());
                        progress.set_length(p["rebuild"]["target"].as_u64().unwrap_or(0));
                        progress.set_position(p["rebuild"]["position"].as_u64().unwrap_or(0));
                    }
                }
            }
        }
    };
    progress.finish_and_clear();
    if !response.status().is_success() {
        return Err(anyhow!("{server}: {}", response.text().await.unwrap_or_default()).into());
    }
    let v: Value = response.json().await?;
    let mut total = 0;
    for r in v["rebuilt"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or_default();
        println!(
            "{name}: rebuilt to position {} in {:.1} s and swapped in",
            r["checkpoint"],
            started.elapsed().as_secs_f64()
        );
        let diffs: Vec<String> =
            r["differences"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_string)).collect();
        report(name, verify, &diffs);
        total += diffs.len();
    }
    if total > 0 {
        return Err(Exit { code: 5, error: anyhow!("{total} differences between the rebuilt and the live tables") });
    }
    Ok(())
}
