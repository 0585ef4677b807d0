//! The events of self-healing: each health check with what it found (the decider's input), the
//! issues it opened and closed, the repairs it made to products, and the notifications it
//! delivered to the admin webhook.
//!
//! A check, its issues and their closing live in one stream, [`STREAM`]; a repair lives in the
//! stream of the product it repairs (so a product's audit shows it, and it is appended only on
//! the product's version the repair was computed from). Every one of them carries [`TAG`], so
//! the health decider folds them all in one order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{Currency, DistrictSlug, Price, ProductId};

/// The stream of the health checks and their issues.
pub const STREAM: &str = "health-mall";
/// The tag every self-healing event carries.
pub const TAG: &str = "system:self_healing";

/// The most findings one check records (the rest wait for the next check).
pub const MAX_FINDINGS: usize = 2_000;
/// The most evidence entries a finding carries.
pub const MAX_EVIDENCE: usize = 20;

/// How much an issue matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// How an issue is dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// A task for an existing executor (missing copy → product intelligence).
    Task,
    /// mall repairs it itself: the correct value is known.
    Fix,
    /// No correct value is known: a person must look.
    Person,
    /// Logged for optimization (performance).
    Log,
}

impl Remedy {
    pub fn as_str(self) -> &'static str {
        match self {
            Remedy::Task => "task",
            Remedy::Fix => "fix",
            Remedy::Person => "person",
            Remedy::Log => "log",
        }
    }
}

/// A correction of a product whose correct value is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repair {
    /// The image is broken: shoppers see mall's placeholder instead; the original is kept.
    Placeholder { original: String, placeholder: String },
    /// The original image works again: it is shown again.
    Restore { image_url: String },
    /// The product's read row disagrees with the product's own state: the row is rewritten with
    /// the state's values, as of the product's stream version `as_of` (the repair is appended
    /// only on that version, so no edit slips between).
    Row {
        title: String,
        description: String,
        price: Price,
        currency: Currency,
        stock: u32,
        district: DistrictSlug,
        as_of: u64,
    },
}

/// Something a check found wrong: the health decider's input, recorded with the check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `missing_copy`, `broken_image`, `image_recovered`, `orphan`, `invalid_price`,
    /// `negative_stock`, `row_mismatch`, `duplicate_listing`, `projection_lag`,
    /// `rejection_streak`, `failing_llm`, `slow_read`.
    pub kind: String,
    /// What it concerns: `product:ID`, `projection:NAME`, `mall`.
    pub subject: String,
    pub severity: Severity,
    pub remedy: Remedy,
    /// The facts behind it, as text (structured facts only, never vendor prose).
    pub evidence: BTreeMap<String, String>,
    /// The correction, where the correct value is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

/// `health_checked`: one run of the health check — what it examined and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthChecked {
    pub check_id: Uuid,
    /// `job` or `admin`.
    pub trigger: String,
    /// How many of each scope it examined (`products`, `images`, `performance`): an issue of a
    /// scope not examined stays as it is.
    pub checked: BTreeMap<String, u64>,
    pub findings: Vec<Finding>,
    /// Whether it found more than [`MAX_FINDINGS`] and recorded the most severe: then no issue is
    /// closed for want of a finding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub at: DateTime<Utc>,
}

/// `health_issue_opened`: a finding became an issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthIssueOpened {
    pub issue_id: Uuid,
    pub check_id: Uuid,
    pub kind: String,
    pub subject: String,
    pub severity: Severity,
    pub remedy: Remedy,
    pub evidence: BTreeMap<String, String>,
    /// The task queued for it (remedy `task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// `health_issue_closed`: a check no longer finds the issue (repaired, or gone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthIssueClosed {
    pub issue_id: Uuid,
    pub check_id: Uuid,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// `product_repaired`: self-healing changed what shoppers see of a product, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductRepaired {
    pub product_id: ProductId,
    pub issue_id: Uuid,
    pub check_id: Uuid,
    pub repair: Repair,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// `notification_delivered`: the admin webhook acknowledged a notification (the event whose id
/// it names) after `attempts` tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDelivered {
    pub notification_id: Uuid,
    pub attempts: u32,
    /// The webhook's HTTP status.
    pub status: u16,
    pub at: DateTime<Utc>,
}
