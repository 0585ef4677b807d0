//! The events of the social media engine: a district's week of posts (each with its text, its
//! hashtags, when it goes out, and how it was written and checked), and what the publisher did
//! with each post.
//!
//! All live in one stream (`social-mall`) and carry [`TAG`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decisions::Generation;
use crate::ids::{DistrictSlug, ProductId};

/// The stream of the social media engine's events.
pub const STREAM: &str = "social-mall";
/// The tag every social event carries.
pub const TAG: &str = "system:social_media";
/// The most posts a calendar holds, tweets a thread and hashtags a post.
pub const MAX_POSTS: usize = 50;
pub const MAX_TWEETS: usize = 10;
pub const MAX_HASHTAGS: usize = 30;
/// Campaigns a signal names: at most this long.
pub const MAX_CAMPAIGN_LEN: usize = 100;

/// One post of a calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialPost {
    pub post_id: Uuid,
    /// `tiktok`, `instagram` or `twitter`.
    pub platform: String,
    pub product_id: ProductId,
    /// The hook or caption (none for a thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A thread's tweets, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tweets: Vec<String>,
    /// Without `#`.
    pub hashtags: Vec<String>,
    pub scheduled_at: DateTime<Utc>,
    /// How it was written: generator, prompt, raw answer, verdicts (of the text published).
    pub generation: Generation,
    /// A model's attempt that the guardrails refused, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Generation>,
}

/// `social_calendar_planned`: a district's posts for a week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialCalendarPlanned {
    pub calendar_id: Uuid,
    pub district: DistrictSlug,
    /// The Monday (00:00 UTC) of the week.
    pub week_of: DateTime<Utc>,
    /// The hours (UTC) posts go out at, and whether they were learned from the district's
    /// signals (else the defaults).
    pub hours: Vec<u32>,
    pub learned: bool,
    /// The products picked, best first.
    pub products: Vec<ProductId>,
    pub posts: Vec<SocialPost>,
    /// Posts of the district's earlier calendars not yet out, which this one replaces.
    pub supersedes: Vec<Uuid>,
    pub at: DateTime<Utc>,
}

/// `social_post_published`: the publisher posted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialPostPublished {
    pub post_id: Uuid,
    /// The platform's id of the post.
    pub platform_post_id: String,
    /// `api` (a publisher said so) or `webhook`.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// `social_post_failed`: the publisher could not post it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialPostFailed {
    pub post_id: Uuid,
    pub reason: String,
    pub by: String,
    pub at: DateTime<Utc>,
}
