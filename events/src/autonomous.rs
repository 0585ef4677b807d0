//! The events of the autonomous core: the task queue (a task queued with its priority and
//! reason, re-prioritized, started, succeeded, failed or cancelled), systems switched on and
//! off, and the job runner's runs. All live in one stream, `autonomous-core`, written by the
//! core alone, so that the queue's state is one fold in one order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The stream of the autonomous core.
pub const STREAM: &str = "autonomous-core";

/// A task put in the queue: what to do (system, subject, action), how urgent (0–100) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskQueued {
    pub task_id: Uuid,
    /// The system whose work it is (`product_intelligence`, ...).
    pub system: String,
    /// What it concerns (`product:p1`, `district:toys`, `mall`).
    pub subject: String,
    /// What to do (`nudge`, `sweep`, ...).
    pub action: String,
    /// 0 (whenever) to 100 (at once), from the priority formula.
    pub priority: u8,
    /// Why, in words.
    pub reason: String,
    /// The measures behind the priority.
    pub metrics: BTreeMap<String, f64>,
    /// Model calls the task may spend (0: none); the hourly budget must have them.
    pub generations: u32,
    pub at: DateTime<Utc>,
}

/// A queued task asked for again with a higher priority (duplicates merge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReprioritized {
    pub task_id: Uuid,
    pub priority: u8,
    pub reason: String,
    pub metrics: BTreeMap<String, f64>,
    pub at: DateTime<Utc>,
}

/// The scheduler handed a task to its executor (attempt 1, 2, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub task_id: Uuid,
    pub attempt: u32,
    pub at: DateTime<Utc>,
}

/// A task's executor finished it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSucceeded {
    pub task_id: Uuid,
    /// What it did, in words.
    pub summary: String,
    pub at: DateTime<Utc>,
}

/// A task's executor failed; it is tried again at `retry_at`, or never when `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub task_id: Uuid,
    pub attempt: u32,
    pub error: String,
    pub retry_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// A task taken out of the queue without running (its system's work no longer needs it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelled {
    pub task_id: Uuid,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A system started or stopped by a person (a stopped system's tasks wait, its jobs do not run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemSwitched {
    pub system: String,
    pub running: bool,
    /// Who switched it (`admin`, `config`).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// One run of a scheduled job: when, and the tasks it queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRan {
    pub job: String,
    pub system: String,
    /// The tick it ran for (a run missed while the server was down runs once, for the last tick).
    pub due_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub tasks: Vec<Uuid>,
    /// `ok`, or the error.
    pub outcome: String,
}

/// The longest name (system, action, job) and subject the core stores, in bytes.
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_SUBJECT_LEN: usize = 256;
/// The longest reason, summary or error, in bytes.
pub const MAX_TEXT_LEN: usize = 4_000;

/// What the learning cycle found about one kind of work: on which subjects (a district) and for
/// which diagnosis (the rule that fired), how often the action was tried and how often it helped
/// (a rewrite kept by its experiment), with the mean lift it brought and the experiments behind
/// it. Fed back into the priority formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsightRecorded {
    /// `system/action/district/diagnosis`.
    pub key: String,
    pub system: String,
    pub action: String,
    pub district: String,
    pub diagnosis: String,
    pub tried: u64,
    pub helped: u64,
    /// The mean relative lift in conversion of the new copy over the old, over the tries.
    pub lift: f64,
    /// The experiments behind it (the latest, at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<Uuid>,
    pub at: DateTime<Utc>,
}

/// The most experiments an insight names.
pub const MAX_EVIDENCE: usize = 20;
