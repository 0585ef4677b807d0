//! The command line: `mall <command>`, errors printed once as `mall: <message>`.
//!
//! Exit codes: 0 success; 1 failure (the message says why); 2 bad usage; 3 `events verify`
//! found corruption; 4 `replay --verify` found recorded decisions it does not reproduce; 5
//! `projections rebuild --verify` found differences.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::store::StoreArgs;

/// mall: an event-sourced, self-optimizing commerce backend.
#[derive(Debug, Parser)]
#[command(name = "mall", version, about, propagate_version = true)]
pub struct Cli {
    /// A configuration file (TOML) with any setting; environment variables and flags go over it.
    #[arg(long, global = true, env = "MALL_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API with the actors running (prints the address and, if none is set, the admin token).
    Serve(crate::serve::ServeArgs),
    /// The server, a seeded catalog and simulated shoppers: watch the mall improve itself.
    Demo(commands::demo::DemoArgs),
    /// Append NDJSON records (catalog and learning signals) to the log; `-` reads standard input.
    Import(ImportArgs),
    /// Inspect the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Explain how a product's copy changed: every version, decision, generation and experiment.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Fold a stream as it was at a position or time; `--verify` re-runs every recorded decision.
    Replay(commands::audit::ReplayArgs),
    /// Read tables: their status, and rebuilds beside the live ones.
    #[command(subcommand)]
    Projections(commands::projections::ProjectionsCommand),
    /// The autonomous core's task queue, as the running server has it.
    Tasks(commands::autonomous::CoreArgs),
    /// The autonomous core's jobs: cadence, last and next run.
    Jobs(commands::autonomous::CoreArgs),
    /// Offline evaluation: `mall eval recommendations` on the log or an NDJSON file.
    #[command(subcommand)]
    Eval(commands::eval::EvalCommand),
    /// The model that writes copy: `mall llm check` calls it once and says what is wrong.
    #[command(subcommand)]
    Llm(commands::llm::LlmCommand),
    /// The configuration: `mall config check` validates the file and prints the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Development and test helpers.
    #[command(subcommand, hide = true)]
    Debug(commands::debug::DebugCommand),
}

/// `mall config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (`--config FILE` or `MALL_CONFIG`, the environment, the
    /// defaults) as `mall serve` would take it, and print every setting with where it comes from,
    /// secrets hidden. Settings: store, data_dir, database_url, pg_writers, bind, workers,
    /// snapshot_dir, body_timeout, max_resident, task_concurrency, score_weights, fetch_allow, server,
    /// tokens.{admin,ingest,shopper}, llm.{backend,url,model,embedding_model,api_key,timeout,retries},
    /// budget.{generations_per_hour,generations_per_product,search_embeddings_per_hour,retry_backoff,max_backoff},
    /// limits.{ingest_rate,ingest_burst,read_rate,read_burst}, [jobs] NAME = SECONDS,
    /// webhooks.{health,social}, social.ahead, log.{level,format}.
    Check,
}

/// `mall import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The NDJSON file, one record per line; `-` for standard input.
    pub file: PathBuf,
    /// Events per append round.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub batch: u32,
}

/// `mall events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Counts: events, streams, last position, bytes.
    Stats {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print events in global order, decoded.
    Tail {
        /// The first position to print (default: the last 20 events).
        #[arg(long)]
        from: Option<u64>,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
        /// One JSON envelope per line, with the data decoded.
        #[arg(long)]
        json: bool,
    },
    /// Check every record: framing, checksums, order, and that every payload decodes.
    Verify {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// An error that carries its own exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Self {
        Exit { code: 1, error: e.into() }
    }
}

/// Parses the command line, runs the command and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    // The configuration file's settings become environment variables (those not set already)
    // before the command line is read: flags > environment > file > defaults.
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let sources = match crate::config::path_in(&argv).map(|p| crate::config::apply(&p)) {
        None => crate::config::apply_none(),
        Some(Ok(sources)) => sources,
        Some(Err(e)) => {
            eprintln!("mall: {e}");
            return ExitCode::from(2);
        }
    };
    // A flag's error is one line, as every other error of `mall` is; help and version as clap
    // prints them.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            e.exit()
        }
        Err(e) => {
            eprintln!("mall: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    if let Command::Config(ConfigCommand::Check) = &cli.command {
        return config_check(&cli, &sources);
    }
    // `mall llm check` reports every failure itself; its model calls' warnings would say it twice.
    let default_level = if matches!(cli.command, Command::Llm(_)) { "error" } else { "warn" };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("MALL_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
    };
    // Logs go to stderr as text, or as one JSON object a line (`MALL_LOG_FORMAT=json`) with the
    // spans they were written in (a request's or a task's, with its correlation id).
    match std::env::var("MALL_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).init(),
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => {
            eprintln!("mall: MALL_LOG_FORMAT: {other:?} is not one of text, json");
            return ExitCode::from(2);
        }
    }
    // The server and its actors run in an actix system (actix-web's workers, the actors'
    // arbiters); everything else runs on a plain tokio runtime.
    match &cli.command {
        Command::Serve(args) => {
            return finish(actix_web::rt::System::new().block_on(crate::serve::run(&cli.store, args)));
        }
        Command::Demo(args) => {
            return finish(actix_web::rt::System::new().block_on(commands::demo::run(&cli.store, args)));
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mall: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    finish(runtime.block_on(run(cli)))
}

/// `mall config check`: the settings as `mall serve` would take them.
fn config_check(cli: &Cli, sources: &std::collections::BTreeMap<&'static str, crate::config::Source>) -> ExitCode {
    if let Err(e) = Cli::try_parse_from(["mall", "serve"]) {
        eprintln!("mall: {}", one_line(&e));
        return ExitCode::from(2);
    }
    for line in crate::config::effective(sources) {
        println!("{line}");
    }
    match &cli.config {
        Some(p) => println!("# ok: {} and the environment", p.display()),
        None => println!("# ok: the environment (no configuration file)"),
    }
    ExitCode::SUCCESS
}

/// A command-line error's first line, without clap's `error: `.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("the command line is not valid");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn finish(outcome: Result<(), Exit>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit { code, error }) => {
            eprintln!("mall: {}", chain(&error));
            ExitCode::from(code)
        }
    }
}

/// The whole cause chain on one line.
fn chain(e: &anyhow::Error) -> String {
    e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

async fn run(cli: Cli) -> Result<(), Exit> {
    match cli.command {
        Command::Import(args) => commands::import::run(&cli.store, &args).await,
        Command::Events(cmd) => commands::events::run(&cli.store, cmd).await,
        Command::Audit(cmd) => commands::audit::audit(&cli.store, cmd).await,
        Command::Replay(args) => commands::audit::replay(&cli.store, &args).await,
        Command::Projections(cmd) => commands::projections::run(&cli.store, cmd).await,
        Command::Llm(cmd) => commands::llm::run(cmd).await,
        Command::Eval(cmd) => commands::eval::run(&cli.store, cmd).await,
        Command::Tasks(args) => commands::autonomous::tasks(&args).await,
        Command::Jobs(args) => commands::autonomous::jobs(&args).await,
        Command::Serve(_) | Command::Demo(_) => unreachable!("run in an actix system"),
        Command::Config(_) => unreachable!("answered before the runtime starts"),
        Command::Debug(cmd) => commands::debug::run(&cli.store, cmd).await,
    }
}
