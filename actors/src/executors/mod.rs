//! Executors: they carry out a product's decisions and turn the outcome into an event.
//!
//! A generator (the built-in [`offline`] one, or a model through [`llm`]) writes raw text from
//! the product's facts, the district's voice and the diagnosis; the text is parsed into
//! [`Content`], checked by every [`guardrails`] rule, and becomes `copy_generated` only if all
//! pass. A failed or rejected generation becomes `generation_rejected` with its reason, and
//! never changes the copy. Embeddings come from the built-in [`embedder`] or the model's.

pub mod embedder;
pub mod guardrails;
pub mod llm;
pub mod offline;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mall_events::domain::*;
use serde::Serialize;

use crate::product::{ProductState, embedding_text, text_hash};

/// What a generator is told: the product's facts (vendor data, never instructions), its
/// district's voice and why new copy is wanted.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub product_id: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub price: String,
    pub currency: String,
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
            district: district_name.to_string(),
            personality,
            diagnosis: decision.rule.clone(),
            reason: decision.reason.clone(),
        }
    }

    /// Every piece of vendor text, for the guardrails' "is it supported" checks.
    pub fn corpus(&self) -> String {
        let mut s = format!(
            "{} {} {} {} {} {}",
            self.title,
            self.description,
            self.tags.join(" "),
            self.price,
            self.currency,
            self.district
        );
        for (k, v) in &self.attributes {
            s.push(' ');
            s.push_str(k);
            s.push(' ');
            match v {
                AttributeValue::Text(t) => s.push_str(t),
                AttributeValue::Number(n) => s.push_str(&n.to_string()),
                AttributeValue::Bool(b) => s.push_str(&b.to_string()),
            }
        }
        s
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
}

/// Something that embeds text for search.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    fn id(&self) -> String;
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

/// Carries out one decision: generates, parses, checks, and returns the event that records the
/// outcome (`copy_generated` or `generation_rejected`).
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
            Ok(vector) if !vector.is_empty() && vector.iter().all(|x| x.is_finite()) => {
                DomainEvent::CopyGenerated(CopyGenerated {
                    decision_id: decision.decision_id,
                    product_id: decision.product_id.clone(),
                    content: Content::Embedding { vector, text_hash: text_hash(&text) },
                    generation: generation(vec![Verdict {
                        check: "finite".into(),
                        passed: true,
                        detail: "every component is finite".into(),
                    }]),
                    at: now,
                })
            }
            Ok(_) => rejected("the embedding was empty or not finite".into(), generation(vec![])),
            Err(e) => rejected(e.to_string(), generation(vec![])),
        };
    }
    let (prompt, output) = generator.generate(decision.command, facts).await;
    let raw_output = match output {
        Ok(o) => o,
        Err(e) => {
            return rejected(
                e.to_string(),
                Generation { generator: generator.id(), prompt, raw_output: String::new(), verdicts: vec![] },
            );
        }
    };
    let content = match parse(decision.command, &raw_output) {
        Ok(c) => c,
        Err(e) => {
            let verdicts = vec![Verdict { check: "format".into(), passed: false, detail: e.clone() }];
            return rejected(
                format!("format: {e}"),
                Generation { generator: generator.id(), prompt, raw_output, verdicts },
            );
        }
    };
    let verdicts = guardrails::check(&content, facts);
    let generation = Generation { generator: generator.id(), prompt, raw_output, verdicts };
    if let Some(failed) = generation.verdicts.iter().find(|v| !v.passed) {
        let reason = format!("{}: {}", failed.check, failed.detail);
        return rejected(reason, generation);
    }
    DomainEvent::CopyGenerated(CopyGenerated {
        decision_id: decision.decision_id,
        product_id: decision.product_id.clone(),
        content,
        generation,
        at: now,
    })
}
