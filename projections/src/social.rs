//! The `social` projection.
//!
//! - `social_calendars`: every post planned — its calendar, district, week, platform, product,
//!   text or tweets, hashtags, when it goes out, how it was written (generator, verdicts, a
//!   model's refused attempt) and what became of it (`scheduled`, `published` with the platform's
//!   post id, `failed` with the reason, `superseded` by a later calendar of its district);
//! - `campaigns`: the signals that name a campaign (`campaign` on a signal; a post's campaign is
//!   `social:POST_ID`) — views, clicks, carts, purchases and revenue attributed to it.

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use serde_json::{Value, json};

use crate::change::{Change, TableDef};
use crate::row;
use crate::runner::Projection;

pub const SOCIAL_CALENDARS: &str = "social_calendars";
pub const CAMPAIGNS: &str = "campaigns";

/// The campaign a post's links carry.
pub fn campaign_of(post_id: &impl std::fmt::Display) -> String {
    format!("social:{post_id}")
}

const TABLES: &[TableDef] = &[
    TableDef {
        name: SOCIAL_CALENDARS,
        key: "post_id",
        defaults: || {
            row! {
                "calendar_id" => "", "district" => "", "week_of" => Value::Null, "platform" => "", "product_id" => "",
                "text" => Value::Null, "tweets" => json!([]), "hashtags" => json!([]), "scheduled_at" => Value::Null,
                "status" => "scheduled", "platform_post_id" => Value::Null, "failure" => Value::Null,
                "generator" => "", "verdicts" => json!([]), "refused" => Value::Null, "campaign" => "",
                "published_at" => Value::Null, "position" => 0,
            }
        },
    },
    TableDef {
        name: CAMPAIGNS,
        key: "campaign",
        defaults: || {
            row! {
                "views" => 0, "clicks" => 0, "carts" => 0, "purchases" => 0, "revenue_e4" => 0,
                "last_at" => Value::Null,
            }
        },
    },
];

/// Posts and campaigns.
pub struct Social;

impl Projection for Social {
    fn name(&self) -> &'static str {
        "social"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn concerns(&self, e: &RecordedEvent) -> bool {
        matches!(
            e.event_type.as_str(),
            "social_calendar_planned"
                | "social_post_published"
                | "social_post_failed"
                | "product_viewed"
                | "product_clicked"
                | "added_to_cart"
                | "purchased"
        )
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        match d {
            DomainEvent::SocialCalendarPlanned(c) => {
                let mut out: Vec<Change> = c
                    .supersedes
                    .iter()
                    .map(|id| Change::set(SOCIAL_CALENDARS, id.to_string(), row! { "status" => "superseded" }))
                    .collect();
                out.extend(c.posts.iter().map(|p| {
                    Change::set(
                        SOCIAL_CALENDARS,
                        p.post_id.to_string(),
                        row! {
                            "calendar_id" => c.calendar_id.to_string(), "district" => c.district.as_str(),
                            "week_of" => json!(c.week_of), "platform" => p.platform, "product_id" => p.product_id.as_str(),
                            "text" => json!(p.text), "tweets" => json!(p.tweets), "hashtags" => json!(p.hashtags),
                            "scheduled_at" => json!(p.scheduled_at), "status" => "scheduled",
                            "generator" => p.generation.generator, "verdicts" => json!(p.generation.verdicts),
                            "refused" => json!(p.refused), "campaign" => campaign_of(&p.post_id),
                            "position" => e.position,
                        },
                    )
                }));
                out
            }
            DomainEvent::SocialPostPublished(p) => vec![Change::set(
                SOCIAL_CALENDARS,
                p.post_id.to_string(),
                row! { "status" => "published", "platform_post_id" => p.platform_post_id, "published_at" => json!(p.at) },
            )],
            DomainEvent::SocialPostFailed(p) => vec![Change::set(
                SOCIAL_CALENDARS,
                p.post_id.to_string(),
                row! { "status" => "failed", "failure" => p.reason },
            )],
            signal => {
                let Some(campaign) = signal.campaign() else { return Vec::new() };
                let delta: Vec<(&'static str, f64)> = match signal {
                    DomainEvent::ProductViewed(_) => vec![("views", 1.0)],
                    DomainEvent::ProductClicked(_) => vec![("clicks", 1.0)],
                    DomainEvent::AddedToCart(_) => vec![("carts", 1.0)],
                    DomainEvent::Purchased(p) => vec![
                        ("purchases", 1.0),
                        ("revenue_e4", p.unit_price.ten_thousandths() as f64 * p.quantity as f64),
                    ],
                    _ => return Vec::new(),
                };
                vec![Change::upsert(CAMPAIGNS, campaign, row! { "last_at" => json!(signal.signal_at()) }, delta)]
            }
        }
    }
}
