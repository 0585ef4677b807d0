//! Executors: they carry out a product's decisions and turn the outcome into an event.
//!
//! A generator (the built-in [`offline`] one, or a model through [`llm`]) writes raw text from
//! the product's facts, the district's voice and the diagnosis; the text is parsed into
//! [`Content`], checked by every [`guardrails`](crate::guardrails) check, and becomes
//! `copy_generated` (in its normalized form) only if all pass. A failed or rejected generation
//! becomes `generation_rejected` with its reason, and never changes the copy. A model's answer is
//! capped before it is recorded, and its bytes are made safe before any log line. Embeddings
//! come from the built-in [`embedder`] or the model's.

pub mod embedder;
pub mod llm;
pub mod offline;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_events::domain::*;
use serde::Serialize;

use crate::guardrails;
use crate::product::{ProductState, embedding_text, text_hash};

/// What a generator is told: the product's structured facts, the vendor's free text (data,
/// never instructions, and never evidence), its district's voice and why new copy is wanted.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub product_id: String,
    pub title: String,
    /// Vendor free text: context for the writer, never evidence for the guardrails.
    pub description: String,
    /// Vendor (or earlier generated) tags: context, never evidence.
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub price: String,
    pub currency: String,
    pub stock: u32,
    pub district: String,
    pub personality: Option<Personality>,
    /// The rule that fired.
    pub diagnosis: String,
    /// The rule's finding.
    pub reason: String,
}

impl Facts {
    /// The facts of a product at decision time.
    pub fn of(
        state: &ProductState,
        district_name: &str,
        personality: Option<Personality>,
        decision: &OptimizationDecided,
    ) -> Facts {
        Facts {
            product_id: decision.product_id.as_str().to_string(),
            title: state.title.clone(),
            description: state.description.clone(),
            tags: state.tags.clone(),
            attributes: state.attributes.clone(),
            price: state.price.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
            currency: state.currency.as_ref().map(|c| c.as_str().to_string()).unwrap_or_default(),
            stock: state.stock,
            district: district_name.to_string(),
            personality,
            diagnosis: decision.rule.clone(),
            reason: decision.reason.clone(),
        }
    }

    /// The evidence generated text is checked against: the structured facts only.
    pub fn evidence(&self) -> guardrails::Evidence {
        guardrails::Evidence::of_product(
            &self.title,
            &self.attributes,
            &self.price,
            &self.currency,
            Some(self.stock),
            &self.district,
        )
    }
}

/// A generator's raw answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub prompt: String,
    pub output: String,
}

/// Why a generation produced nothing usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerationError {
    #[error("the model call timed out after {0} attempts")]
    Timeout(u32),
    #[error("the model call failed: {0}")]
    Failed(String),
    #[error("the model's answer was empty or malformed: {0}")]
    Malformed(String),
}

/// Something that writes copy.
#[async_trait]
pub trait Generator: Send + Sync + 'static {
    /// The model id (`openai:gpt-4o-mini`) or the offline generator's version.
    fn id(&self) -> String;
    /// Writes raw text for `command` from `facts`; the prompt is returned with it.
    async fn generate(&self, command: CommandKind, facts: &Facts) -> (String, Result<String, GenerationError>);
    /// Whether it answers tasks given whole ([`complete`](Self::complete)): a model does; the
    /// built-in generator writes product copy only (its callers write the rest themselves).
    fn completes(&self) -> bool {
        false
    }
    /// Answers a task given whole (a district's copy, say), with the prompt as sent.
    async fn complete(&self, _task: String) -> (String, Result<String, GenerationError>) {
        (String::new(), Err(GenerationError::Failed("this generator writes product copy only".into())))
    }
}

/// Something that embeds text for search.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    fn id(&self) -> String;
    /// Whether it is the built-in embedder (local, instant, free).
    fn is_builtin(&self) -> bool {
        false
    }
    async fn embed(&self, text: &str) -> Result<Vec<f32>, GenerationError>;
}

/// Parses a generator's raw text into the content of `command`.
pub fn parse(command: CommandKind, raw: &str) -> Result<Content, String> {
    let raw = raw.trim();
    match command {
        CommandKind::RewriteDescription => {
            if raw.is_empty() {
                return Err("empty description".into());
            }
            Ok(Content::Description { text: raw.to_string() })
        }
        CommandKind::RegenerateTags => {
            let mut tags: Vec<String> = Vec::new();
            for t in raw.split([',', '\n']).map(|t| t.trim().trim_start_matches(['-', '#', '*']).trim().to_lowercase())
            {
                if !t.is_empty() && !tags.contains(&t) {
                    tags.push(t);
                }
            }
            if tags.is_empty() {
                return Err("no tags".into());
            }
            Ok(Content::Tags { tags })
        }
        CommandKind::UpdateSeo => {
            let mut title = None;
            let mut meta = None;
            for line in raw.lines() {
                let line = line.trim();
                if let Some(t) = line.strip_prefix("Title:") {
                    title = Some(t.trim().to_string());
                } else if let Some(m) = line.strip_prefix("Meta:") {
                    meta = Some(m.trim().to_string());
                }
            }
            match (title, meta) {
                (Some(title), Some(meta_description)) => Ok(Content::Seo(Seo { title, meta_description })),
                _ => Err("expected a `Title:` line and a `Meta:` line".into()),
            }
        }
        CommandKind::RegenerateEmbedding => Err("embeddings are not parsed from text".into()),
    }
}

/// The most bytes of a model's answer that are read and recorded; a longer answer is not copy,
/// and recording it whole could make the rejection larger than the log takes.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The longest error text recorded or logged from a model server.
pub const MAX_ERROR_CHARS: usize = 500;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Text from a model server made safe for a log line or an error message: control and
/// invisible characters escaped (no terminal escapes, no forged log lines), cut to `max`
/// characters with the full length noted.
pub fn log_safe(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str(&format!("… ({} characters in all)", s.chars().count()));
            break;
        }
        if c.is_control() || guardrails::is_invisible_or_unprintable(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Carries out one decision: generates, parses, checks, and returns the event that records the
/// outcome (`copy_generated` with the normalized content, or `generation_rejected`).
pub async fn execute(
    generator: &dyn Generator,
    embedder: &dyn Embedder,
    state: &ProductState,
    facts: &Facts,
    decision: &OptimizationDecided,
    now: DateTime<Utc>,
) -> DomainEvent {
    let rejected = |reason: String, generation: Generation| {
        DomainEvent::GenerationRejected(GenerationRejected {
            decision_id: decision.decision_id,
            product_id: decision.product_id.clone(),
            command: decision.command,
            reason,
            generation,
            at: now,
        })
    };
    if decision.command == CommandKind::RegenerateEmbedding {
        let text = embedding_text(&state.title, &state.description, &state.tags);
        let generation = |verdicts| Generation {
            generator: embedder.id(),
            prompt: String::new(),
            raw_output: String::new(),
            verdicts,
        };
        return match embedder.embed(&text).await {
            Ok(vector) => {
                let content = Content::Embedding { vector, text_hash: text_hash(&text) };
                checked(content, &facts.evidence(), decision, now, generation)
            }
            Err(e) => rejected(log_safe(&e.to_string(), MAX_ERROR_CHARS), generation(vec![])),
        };
    }
    let (prompt, output) = generator.generate(decision.command, facts).await;
    let generation = |raw_output: String, verdicts| Generation {
        generator: generator.id(),
        prompt: prompt.clone(),
        raw_output,
        verdicts,
    };
    let raw_output = match output {
        Ok(o) => o,
        Err(e) => return rejected(log_safe(&e.to_string(), MAX_ERROR_CHARS), generation(String::new(), vec![])),
    };
    if raw_output.len() > MAX_ANSWER_BYTES {
        let detail = format!("the answer is {} bytes; at most {MAX_ANSWER_BYTES} are read", raw_output.len());
        let kept = format!(
            "{}\n[… cut at {MAX_ANSWER_BYTES} of {} bytes]",
            truncate_bytes(&raw_output, MAX_ANSWER_BYTES),
            raw_output.len()
        );
        let verdicts = vec![Verdict { check: "shape".into(), passed: false, detail: detail.clone() }];
        return rejected(format!("shape: {detail}"), generation(kept, verdicts));
    }
    let content = match parse(decision.command, &raw_output) {
        Ok(c) => c,
        Err(e) => {
            let verdicts = vec![Verdict { check: "format".into(), passed: false, detail: e.clone() }];
            return rejected(format!("format: {e}"), generation(raw_output, verdicts));
        }
    };
    checked(content, &facts.evidence(), decision, now, |verdicts| generation(raw_output, verdicts))
}

/// The guardrails' outcome as an event: `copy_generated` with the normalized content, or
/// `generation_rejected` naming the first check that failed.
fn checked(
    content: Content,
    evidence: &guardrails::Evidence,
    decision: &OptimizationDecided,
    now: DateTime<Utc>,
    generation: impl FnOnce(Vec<Verdict>) -> Generation,
) -> DomainEvent {
    let (verdicts, published) = guardrails::check_content(&content, evidence);
    match published {
        Some(content) => DomainEvent::CopyGenerated(CopyGenerated {
            decision_id: decision.decision_id,
            product_id: decision.product_id.clone(),
            content,
            generation: generation(verdicts),
            at: now,
        }),
        None => {
            let failed = verdicts.iter().find(|v| !v.passed).expect("a failed verdict");
            DomainEvent::GenerationRejected(GenerationRejected {
                decision_id: decision.decision_id,
                product_id: decision.product_id.clone(),
                command: decision.command,
                reason: format!("{}: {}", failed.check, failed.detail),
                generation: generation(verdicts),
                at: now,
            })
        }
    }
}
