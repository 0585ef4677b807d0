//! The events of plugins: an admin (or mall's isolation of a failing plugin) enables, disables or
//! configures one; each run is recorded with its outcome; each proposal a plugin returns, once
//! validated, is an event of its own. A plugin never writes anything else.
//!
//! All live in one stream (`plugins-mall`) and carry [`TAG`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The stream of plugins' events.
pub const STREAM: &str = "plugins-mall";
/// The tag every plugin event carries.
pub const TAG: &str = "system:plugins";
/// The most settings a configuration holds, figures a proposal carries.
pub const MAX_ITEMS: usize = 50;

/// `plugin_configured`: a plugin enabled, disabled or configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginConfigured {
    pub plugin_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The plugin's settings after the change, all of them.
    pub config: BTreeMap<String, f64>,
    /// `admin`, or `isolation` when mall disabled it.
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// `plugin_ran`: one run of a plugin on one hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRan {
    pub run_id: Uuid,
    pub plugin_id: String,
    /// `signals`, `catalog` or `schedule`.
    pub hook: String,
    /// `ok`, `failed`, `panicked`, `timed_out` or `refused` (its proposals did not validate).
    pub outcome: String,
    pub detail: String,
    pub proposals: u32,
    pub duration_ms: u64,
    pub at: DateTime<Utc>,
}

/// `plugin_proposed`: a plugin's proposal about a subject (`product:ID`, `shopper:ID`), with its
/// figures and a note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginProposed {
    pub proposal_id: Uuid,
    pub plugin_id: String,
    pub run_id: Uuid,
    pub subject: String,
    /// What it proposes (`reorder`, `segment`, `image`, ...).
    pub kind: String,
    pub figures: BTreeMap<String, f64>,
    pub note: String,
    pub at: DateTime<Utc>,
}
