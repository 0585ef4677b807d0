//! The events of district evolution: a proposed change of a district's voice with its reasons
//! and the figures behind it, the test of the new voice against the old (the district's
//! marketing copy written in each, shoppers split between them), its conclusion — the voice kept
//! or rolled back — and the product categories suggested to the merchant.
//!
//! All live in the district's stream (`district-<slug>`) and carry its tag, so the district's
//! actor folds them with its signals.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decisions::{ArmStats, Outcome, Verdict};
use crate::domain::Personality;
use crate::ids::{DistrictSlug, Position};

/// A district's marketing copy: what its page says, in its voice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistrictCopy {
    pub tagline: String,
    pub description: String,
    pub seo_title: String,
    pub seo_description: String,
}

/// What a proposal saw from outside the district's stream (the shell gathered it; replay
/// decides again with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvolutionInput {
    pub now: DateTime<Utc>,
    /// The other open districts: their voice and their conversion over the same window.
    pub peers: Vec<Peer>,
    /// Why the look happened: `job` or `admin`.
    pub trigger: String,
}

/// Another district as a proposal compares with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub slug: DistrictSlug,
    pub personality: Personality,
    pub views: u64,
    pub conversions: u64,
}

/// `voice_evolution_proposed`: the district's voice should change in one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceEvolutionProposed {
    pub evolution_id: Uuid,
    pub slug: DistrictSlug,
    /// `tone`, `style` or `audience`.
    pub attribute: String,
    pub from: String,
    pub to: String,
    /// The rule that fired.
    pub rule: String,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The window's figures and the thresholds.
    pub metrics: BTreeMap<String, f64>,
    pub input: EvolutionInput,
    /// The last position the district had folded when it decided.
    pub as_of: Position,
    pub at: DateTime<Utc>,
}

/// `voice_test_started`: the district's copy was written in the current voice and in the
/// proposed one; shoppers are split between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceTestStarted {
    pub evolution_id: Uuid,
    pub test_id: Uuid,
    pub slug: DistrictSlug,
    pub control: DistrictCopy,
    pub challenger: DistrictCopy,
    /// The voice under test.
    pub personality: Personality,
    pub generator: String,
    pub verdicts: Vec<Verdict>,
    /// What a model was asked for the new voice's copy, and what it answered (empty for the
    /// built-in writer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub raw_output: String,
    pub at: DateTime<Utc>,
}

/// `voice_evolution_abandoned`: the new voice's copy could not be written (the guardrails
/// refused it, or the generator failed): the voice stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceEvolutionAbandoned {
    pub evolution_id: Uuid,
    pub slug: DistrictSlug,
    pub reason: String,
    pub verdicts: Vec<Verdict>,
    /// The generator, what it was asked and what it answered (empty for the built-in writer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub raw_output: String,
    pub at: DateTime<Utc>,
}

/// `voice_test_concluded`: the test's outcome and the voice in force after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceTestConcluded {
    pub evolution_id: Uuid,
    pub test_id: Uuid,
    pub slug: DistrictSlug,
    pub outcome: Outcome,
    pub control: ArmStats,
    pub challenger: ArmStats,
    pub prob_challenger_better: f64,
    pub likelihood_ratio: f64,
    pub reason: String,
    /// The district's voice from now on (the new one when it won).
    pub personality: Personality,
    /// The district's copy from now on.
    pub copy: DistrictCopy,
    /// The last position the district had folded when it decided.
    pub as_of: Position,
    pub at: DateTime<Utc>,
}

/// A product category the district does not carry that its shoppers want.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorySuggestion {
    /// The category (a tag of products elsewhere in the mall).
    pub category: String,
    /// Shoppers of this district who showed interest in it elsewhere.
    pub shoppers: u64,
    /// Their summed interest (recency-weighted; carts and purchases weigh most).
    pub score: f64,
    /// Products that carry it, for the merchant to look at (or the searches that asked for it).
    pub examples: Vec<String>,
    /// Searches for it that found nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub searches: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `categories_suggested`: suggestions for the merchant (the latest replaces the earlier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoriesSuggested {
    pub slug: DistrictSlug,
    pub suggestions: Vec<CategorySuggestion>,
    pub at: DateTime<Utc>,
}

/// The most reasons, peers and suggestions an event carries.
pub const MAX_ITEMS: usize = 50;
