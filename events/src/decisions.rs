//! The events of mall's own decisions: what an actor decided and why, what a generator wrote
//! and what the guardrails said of it, and the experiments that keep or roll back new copy.
//!
//! These are what make "why did this copy change?" answerable by replay: each carries its
//! evidence (the rule, the metrics, the log range it had folded, the inputs from outside the
//! stream) or its generator's prompt, raw output and verdicts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{Position, ProductId};

/// What a product actor can decide to have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Write new description copy (tested against the current copy when there is one).
    RewriteDescription,
    /// Regenerate the product's tags.
    RegenerateTags,
    /// Write the SEO title and meta description.
    UpdateSeo,
    /// Recompute the search embedding from the current copy.
    RegenerateEmbedding,
}

impl CommandKind {
    /// Every kind, in priority order.
    pub const ALL: [CommandKind; 4] = [
        CommandKind::RewriteDescription,
        CommandKind::RegenerateTags,
        CommandKind::UpdateSeo,
        CommandKind::RegenerateEmbedding,
    ];

    /// The stable name (`rewrite_description`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::RewriteDescription => "rewrite_description",
            CommandKind::RegenerateTags => "regenerate_tags",
            CommandKind::UpdateSeo => "update_seo",
            CommandKind::RegenerateEmbedding => "regenerate_embedding",
        }
    }
}

/// What a decision saw: the metrics, the log range and the inputs from outside its stream, so
/// that replay can re-run `decide` and audit can show why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Named metrics at decision time (window counts, rates, posterior figures, thresholds).
    pub metrics: BTreeMap<String, f64>,
    /// The first global position the metrics' window covers.
    pub from_position: Position,
    /// The last global position the actor had folded.
    pub to_position: Position,
    /// The product stream's version the actor had folded.
    pub stream_version: u64,
    /// The district's conversion prior, Beta(alpha, beta), given to `decide`.
    pub prior_alpha: f64,
    /// See `prior_alpha`.
    pub prior_beta: f64,
    /// Whether the global generation budget had room, given to `decide`.
    pub budget_available: bool,
}

/// Which generator carries out a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorChoice {
    /// The configured generator: a model, or the offline one where no model is configured.
    Configured,
    /// The built-in offline generator, as the fallback that fills missing copy when the
    /// configured one keeps failing.
    Offline,
}

/// `optimization_decided`: a product actor decided a command.
///
/// Schema v2 added `generator`; v1 payloads are upcast with `configured` (there was no fallback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizationDecided {
    pub decision_id: Uuid,
    pub product_id: ProductId,
    pub command: CommandKind,
    /// Who writes the content.
    pub generator: GeneratorChoice,
    /// The rule that fired (`weak_description`, `missing_tags`, ...).
    pub rule: String,
    /// The rule's finding, in a sentence.
    pub reason: String,
    pub evidence: Evidence,
    /// The policy (thresholds) the rule used, as it was configured.
    pub policy: BTreeMap<String, f64>,
    pub at: DateTime<Utc>,
}

/// One guardrail's verdict on a generated output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The check's name (`length`, `plain_text`, `supported_numbers`, `claims`, ...).
    pub check: String,
    pub passed: bool,
    /// What the check found.
    pub detail: String,
}

/// Search-engine copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seo {
    pub title: String,
    pub meta_description: String,
}

/// What a generator produced, by the field it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    /// Description copy.
    Description { text: String },
    /// Tags.
    Tags { tags: Vec<String> },
    /// SEO title and meta description.
    Seo(Seo),
    /// A search embedding of the text it names by hash.
    Embedding { vector: Vec<f32>, text_hash: u64 },
}

impl Content {
    /// The command that produces this kind of content.
    pub fn command(&self) -> CommandKind {
        match self {
            Content::Description { .. } => CommandKind::RewriteDescription,
            Content::Tags { .. } => CommandKind::RegenerateTags,
            Content::Seo(_) => CommandKind::UpdateSeo,
            Content::Embedding { .. } => CommandKind::RegenerateEmbedding,
        }
    }
}

/// How an output was generated: enough to show and to reuse it in replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The model id (`openai:gpt-4o-mini`) or the offline generator's version (`offline/1`).
    pub generator: String,
    /// The prompt sent (empty for the offline generator's templates and the embedder).
    pub prompt: String,
    /// The raw output, before parsing and guardrails.
    pub raw_output: String,
    /// Every guardrail's verdict.
    pub verdicts: Vec<Verdict>,
}

/// `copy_generated`: a generator's output passed the guardrails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyGenerated {
    pub decision_id: Uuid,
    pub product_id: ProductId,
    pub content: Content,
    pub generation: Generation,
    pub at: DateTime<Utc>,
}

/// `generation_rejected`: a generation failed or its output failed a guardrail; the copy is
/// unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRejected {
    pub decision_id: Uuid,
    pub product_id: ProductId,
    pub command: CommandKind,
    pub reason: String,
    pub generation: Generation,
    pub at: DateTime<Utc>,
}

/// `copy_applied`: generated content became the product's copy without an experiment (tags,
/// SEO, embeddings, and a description where there was none to test against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyApplied {
    pub decision_id: Uuid,
    pub product_id: ProductId,
    pub content: Content,
    pub at: DateTime<Utc>,
}

/// `experiment_started`: new description copy is tested against the current copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentStarted {
    pub experiment_id: Uuid,
    pub decision_id: Uuid,
    pub product_id: ProductId,
    pub control: String,
    pub challenger: String,
    pub at: DateTime<Utc>,
}

/// What one arm of an experiment saw.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ArmStats {
    /// Product views attributed to the arm.
    pub views: u64,
    /// Views that led to a cart or purchase, attributed to the arm.
    pub conversions: u64,
}

/// How an experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The challenger converts better: it becomes the copy.
    ChallengerWon,
    /// The control converts better: the challenger is rolled back.
    ControlWon,
    /// The maximum duration passed without a clear winner: the challenger is rolled back.
    Inconclusive,
}

/// `experiment_concluded`: the winner is the copy from here on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConcluded {
    pub experiment_id: Uuid,
    pub product_id: ProductId,
    pub outcome: Outcome,
    pub control: ArmStats,
    pub challenger: ArmStats,
    /// The posterior probability that the challenger converts better (shown to people).
    pub prob_challenger_better: f64,
    /// The always-valid mixture likelihood ratio the stopping rule compared with 1/alpha.
    pub likelihood_ratio: f64,
    /// The rule, in a sentence.
    pub reason: String,
    pub at: DateTime<Utc>,
}
