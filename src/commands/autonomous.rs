//! `mall tasks` and `mall jobs`: the autonomous core's queue and jobs, as the running server
//! has them (`MALL_SERVER`, `MALL_ADMIN_TOKEN`).

use clap::Args;
use serde_json::Value;

use super::projections::{ServerArgs, ask};
use crate::cli::Exit;

/// `mall tasks` / `mall jobs`.
#[derive(Debug, Args)]
pub struct CoreArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

async fn status(server: &str) -> Result<Value, Exit> {
    ask(server, reqwest::Method::GET, "/api/autonomous", None).await
}

fn line(t: &Value) -> String {
    let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
    format!(
        "  {:<9} p{:<3} {:<22} {:<10} {:<28} {}",
        s("status"),
        t["priority"],
        s("system"),
        s("action"),
        s("subject"),
        t["outcome"].as_str().unwrap_or(t["reason"].as_str().unwrap_or(""))
    )
}

/// `mall tasks [--json]`: the queue by priority band, the next tasks, running and recent ones.
pub async fn tasks(args: &CoreArgs) -> Result<(), Exit> {
    let v = status(&args.server.server).await?;
    let q = &v["queue"];
    if args.json {
        println!("{}", serde_json::to_string_pretty(q)?);
        return Ok(());
    }
    println!("queued {}  running {}  by priority {}", q["queued"], q["running"], q["by_priority"]);
    for (title, key) in [("next", "next"), ("running", "running_tasks"), ("recent", "recent")] {
        let list = q[key].as_array().cloned().unwrap_or_default();
        if !list.is_empty() {
            println!("{title}:");
            list.iter().for_each(|t| println!("{}", line(t)));
        }
    }
    Ok(())
}

/// `mall jobs [--json]`: every job, its cadence, last and next run.
pub async fn jobs(args: &CoreArgs) -> Result<(), Exit> {
    let v = status(&args.server.server).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v["jobs"])?);
        return Ok(());
    }
    for j in v["jobs"].as_array().into_iter().flatten() {
        let state = match (j["available"].as_bool(), j["enabled"].as_bool()) {
            (Some(false), _) => "not yet available",
            (_, Some(false)) => "off",
            _ => "on",
        };
        let last = j["last_run"]["due_at"].as_str().unwrap_or("never");
        println!(
            "  {:<22} every {:>7}s  {:<17} last {:<26} next {}",
            j["name"].as_str().unwrap_or("?"),
            j["every_seconds"],
            state,
            last,
            j["next_run"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
