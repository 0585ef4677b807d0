//! `mall llm check`: calls the configured model (and embedding model) once and says plainly
//! what works and what is wrong; exit 1 if anything is.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::json;

use crate::cli::Exit;
use crate::model::LlmArgs;

/// `mall llm ...`.
#[derive(Debug, Subcommand)]
pub enum LlmCommand {
    /// Call the configured chat and embedding models once and report what is wrong.
    Check {
        #[command(flatten)]
        llm: LlmArgs,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: LlmCommand) -> Result<(), Exit> {
    let LlmCommand::Check { llm, json } = cmd;
    let findings = crate::model::check(&llm).await?;
    let failed = findings.iter().filter(|f| !f.ok).count();
    if json {
        let list: Vec<_> = findings.iter().map(|f| json!({"ok": f.ok, "message": f.message})).collect();
        println!("{}", json!({"ok": failed == 0, "findings": list}));
    } else {
        for f in &findings {
            println!("{} {}", if f.ok { "ok  " } else { "FAIL" }, f.message);
        }
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} model checks failed", findings.len()).into());
    }
    Ok(())
}
