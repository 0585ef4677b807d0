//! Who writes copy: the built-in offline generator, or a model server through the `llm` crate
//! (`--llm openai|openai-compatible|ollama`, a base URL, a model, an embedding model; the key only
//! from the environment), and the check that calls the configured model once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::executors::llm::{self, Backend, Finding, LlmConfig};
use mall_actors::executors::offline::OfflineGenerator;

/// Which generator writes copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratorKind {
    /// The built-in offline generator and hashing embedder (deterministic, no network).
    Offline,
    /// OpenAI's Responses API (`{url}responses`, `{url}embeddings`).
    Openai,
    /// Chat completions on any OpenAI-compatible server: llama.cpp's server, vLLM, LM Studio,
    /// gateways (`{url}chat/completions`, `{url}embeddings`).
    OpenaiCompatible,
    /// Ollama's native API (`/api/chat`, `/api/embed`).
    Ollama,
}

/// The model settings.
#[derive(Debug, Clone, Args)]
pub struct LlmArgs {
    /// Who writes copy.
    #[arg(long, env = "MALL_LLM", value_enum, default_value_t = GeneratorKind::Offline)]
    pub llm: GeneratorKind,
    /// The model server's base URL: `https://api.openai.com/v1/`, `http://127.0.0.1:8080/v1/`
    /// (llama.cpp, vLLM, LM Studio), `http://127.0.0.1:11434` (Ollama).
    #[arg(long, env = "MALL_LLM_URL")]
    pub llm_url: Option<String>,
    /// The chat model.
    #[arg(long, env = "MALL_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// The embedding model (default: text-embedding-3-small for openai, nomic-embed-text for
    /// ollama, the built-in embedder for openai-compatible; `builtin` always picks the built-in one).
    #[arg(long, env = "MALL_LLM_EMBEDDING_MODEL")]
    pub llm_embedding_model: Option<String>,
    /// Seconds a model call may take.
    #[arg(long, env = "MALL_LLM_TIMEOUT", default_value_t = 30)]
    pub llm_timeout: u64,
    /// Retries after a failed or timed-out model call.
    #[arg(long, env = "MALL_LLM_RETRIES", default_value_t = 2)]
    pub llm_retries: u32,
}

impl LlmArgs {
    /// The model configuration; `None` for the offline generator.
    pub fn config(&self) -> anyhow::Result<Option<LlmConfig>> {
        let backend = match self.llm {
            GeneratorKind::Offline => return Ok(None),
            GeneratorKind::Openai => Backend::OpenAi,
            GeneratorKind::OpenaiCompatible => Backend::OpenAiCompatible,
            GeneratorKind::Ollama => Backend::Ollama,
        };
        let name = backend.name();
        let base_url =
            self.llm_url.clone().with_context(|| format!("--llm {name} needs --llm-url (or MALL_LLM_URL)"))?;
        let scheme_ok = base_url.starts_with("http://") || base_url.starts_with("https://");
        let host = base_url.split("://").nth(1).and_then(|rest| rest.split(['/', ':']).next()).unwrap_or("");
        if !scheme_ok || host.is_empty() {
            bail!("--llm-url must be an http:// or https:// URL with a host, not {base_url:?}");
        }
        let model =
            self.llm_model.clone().with_context(|| format!("--llm {name} needs --llm-model (or MALL_LLM_MODEL)"))?;
        Ok(Some(LlmConfig {
            backend,
            base_url,
            model,
            embedding_model: self.llm_embedding_model.clone().filter(|m| !m.trim().is_empty()),
            // The key is read from the environment only, so that it never shows in a process list.
            api_key: std::env::var("MALL_LLM_API_KEY").ok().filter(|k| !k.is_empty()),
            timeout: Duration::from_secs(self.llm_timeout.clamp(1, 600)),
            retries: self.llm_retries.min(10),
        }))
    }

    /// The generator and embedder the configuration asks for.
    pub fn executors(&self) -> anyhow::Result<llm::Executors> {
        match self.config()? {
            None => Ok((Arc::new(OfflineGenerator), Arc::new(HashEmbedder))),
            Some(config) => Ok(llm::executors(&config)?),
        }
    }
}

/// Calls the configured model once; the offline generator needs no check.
pub async fn check(args: &LlmArgs) -> anyhow::Result<Vec<Finding>> {
    Ok(match args.config()? {
        None => {
            vec![Finding { ok: true, message: "the offline generator and built-in embedder need no server".into() }]
        }
        Some(config) => llm::check(&config).await,
    })
}
