//! The event types: catalog records and learning signals, each with its stream and tags.
//!
//! A record's JSON shape (HTTP, `mall import`) and its stored payload are the same struct, so
//! there is one shape per record. The `type` of a record is the event's stable type string.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::analytics::{AnalyticsReported, AnomalyDetected, ProductFigures};
pub use crate::autonomous::{
    InsightRecorded, JobRan, SystemSwitched, TaskCancelled, TaskFailed, TaskQueued, TaskReprioritized, TaskStarted,
    TaskSucceeded,
};
pub use crate::decisions::{
    ArmStats, CommandKind, Content, CopyApplied, CopyGenerated, Evidence, ExperimentConcluded, ExperimentStarted,
    Generation, GenerationRejected, GeneratorChoice, OptimizationDecided, Outcome, Seo, Verdict,
};
pub use crate::evolution::{
    CategoriesSuggested, CategorySuggestion, DistrictCopy, EvolutionInput, Peer, VoiceEvolutionAbandoned,
    VoiceEvolutionProposed, VoiceTestConcluded, VoiceTestStarted,
};
pub use crate::health::{
    Finding, HealthChecked, HealthIssueClosed, HealthIssueOpened, NotificationDelivered, ProductRepaired, Remedy,
    Repair, Severity,
};
use crate::ids::{
    Currency, DistrictSlug, InvalidValue, ListName, OrderId, Price, ProductId, SessionId, ShopperId, StreamId, tag,
};
pub use crate::merchandising::{
    Condition, MerchandisingRuleExpired, MerchandisingRuleSet, OrderingTestConcluded, OrderingTestStarted,
    OrderingWeights, RuleAction,
};
pub use crate::plugins::{PluginConfigured, PluginProposed, PluginRan};
pub use crate::pricing::{PriceArm, PriceTestConcluded, PriceTestStarted};
pub use crate::social::{SocialCalendarPlanned, SocialPost, SocialPostFailed, SocialPostPublished};

/// The bounds every accepted value keeps, chosen so that every backend and read side can store it
/// and no sum of accepted values can wrap: money up to 999,999,999.9999 (see
/// [`Price`](crate::ids::Price)) times a quantity of at most 100,000 stays below 2^63
/// ten-thousandths, and counters add with saturation beyond that.
pub mod bounds {
    use chrono::{DateTime, Utc};

    /// The earliest and latest time a signal may carry (PostgreSQL, chrono and RFC 3339 all
    /// hold every time between).
    pub const EARLIEST: &str = "1970-01-01T00:00:00Z";
    pub const LATEST: &str = "9999-12-31T23:59:59Z";
    /// The longest dwell a view may report: a day.
    pub const MAX_DWELL_MS: u64 = 86_400_000;
    /// The most units in one cart change or order line.
    pub const MAX_QUANTITY: u32 = 100_000;
    /// The most units in stock.
    pub const MAX_STOCK: u32 = 1_000_000_000;
    /// The furthest position in a list.
    pub const MAX_LIST_POSITION: u32 = 1_000_000;
    /// The largest attribute number, in size.
    pub const MAX_ATTRIBUTE_NUMBER: f64 = 1e15;

    /// [`EARLIEST`] as a time.
    pub fn earliest() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    /// [`LATEST`] as a time.
    pub fn latest() -> DateTime<Utc> {
        DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31T23:59:59Z is a valid time")
    }

    #[test]
    fn the_bounds_are_the_times_they_name() {
        assert_eq!(earliest(), EARLIEST.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(latest(), LATEST.parse::<DateTime<Utc>>().unwrap());
    }
}

/// The longest product title, in bytes.
pub const MAX_TITLE_LEN: usize = 300;
/// The longest review text (bytes).
pub const MAX_REVIEW_LEN: usize = 5_000;
/// The longest description, in bytes (Google Merchant Center's cap is 5,000 characters).
pub const MAX_DESCRIPTION_LEN: usize = 5_000;
/// The most tags a product may carry.
pub const MAX_TAGS: usize = 50;

/// A district's brand voice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Personality {
    /// How it speaks: `playful`, `warm`, `technical`, ...
    pub tone: String,
    /// How it writes: `short sentences`, `storytelling`, ...
    pub style: String,
    /// Whom it speaks to.
    pub audience: String,
}

/// A product attribute value: text, a finite number or a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A flag.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// Text.
    Text(String),
}

/// `district_opened`: a new themed section of the mall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistrictOpened {
    pub slug: DistrictSlug,
    pub name: String,
    pub personality: Personality,
}

/// `product_listed`: a vendor lists a product in a district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductListed {
    pub product_id: ProductId,
    pub district: DistrictSlug,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub price: Price,
    pub currency: Currency,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    pub stock: u32,
}

/// `product_edited`: a vendor changes any of a product's listed fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEdited {
    pub product_id: ProductId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<DistrictSlug>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, AttributeValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<u32>,
}

/// `stock_changed`: the units a vendor has on hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockChanged {
    pub product_id: ProductId,
    pub stock: u32,
}

/// `price_changed`: a new price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceChanged {
    pub product_id: ProductId,
    pub price: Price,
    pub currency: Currency,
}

/// Declares a learning-signal struct: the common fields (`id`, `shopper_id`, `session_id`, `at`)
/// followed by its own.
macro_rules! signal {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The client-chosen signal id: retries with the same id are stored once.
            pub id: Uuid,
            pub shopper_id: ShopperId,
            pub session_id: SessionId,
            pub at: DateTime<Utc>,
            $($(#[$fdoc])* pub $field: $ty,)*
            /// The campaign the shopper came from (`social:POST_ID` for a social post's link,
            /// or the client's own), for attribution.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub campaign: Option<String>,
        }
    };
}

signal!(
    /// `product_viewed`: a shopper looked at a product page.
    ProductViewed { product_id: ProductId, dwell_ms: u64 }
);
signal!(
    /// `product_clicked`: a shopper clicked a product in a list.
    ProductClicked { product_id: ProductId, list: ListName, position: u32 }
);
signal!(
    /// `impression_served`: a product was shown to a shopper in a list, at a position (from 1),
    /// under a ranking policy (the listing's `policy`: its layout or an ordering test's arm).
    ImpressionServed {
        product_id: ProductId,
        list: ListName,
        position: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<ListName>,
    }
);
signal!(
    /// `added_to_cart`.
    AddedToCart { product_id: ProductId, quantity: u32 }
);
signal!(
    /// `removed_from_cart`.
    RemovedFromCart { product_id: ProductId, quantity: u32 }
);
signal!(
    /// `purchased`: one order line.
    Purchased { product_id: ProductId, order_id: OrderId, quantity: u32, unit_price: Price, currency: Currency }
);
signal!(
    /// `searched`: a shopper searched; it concerns no single product.
    Searched { query: String, #[serde(default)] result_ids: Vec<ProductId> }
);
signal!(
    /// `bounced`: a shopper left from a product page at once.
    Bounced { product_id: ProductId }
);
signal!(
    /// `review_submitted`: a shopper rated a product (1 to 5) and may have written about it. The
    /// text is data: it is scored, never followed, and never evidence for copy.
    ReviewSubmitted { product_id: ProductId, rating: u8, #[serde(default)] text: String }
);

/// Declares every event type once — its variant, payload type and stable type string — and
/// derives from that one list the enum, [`EVENT_TYPES`], [`DomainEvent::event_type`] and the
/// encoder and decoder of current payloads. (Its schema version is 1 plus its upcasters, in `codec`.)
macro_rules! domain_events {
    ($($variant:ident => $name:literal,)*) => {
        /// Every event mall stores, as a record: `{"type": "...", ...fields}` in JSON.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum DomainEvent {
            $(#[serde(rename = $name)] $variant($variant),)*
        }

        /// Every event type string, in declaration order.
        pub const EVENT_TYPES: &[&str] = &[$($name,)*];

        impl DomainEvent {
            /// The stable type string stored in the envelope.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(DomainEvent::$variant(_) => $name,)*
                }
            }

            /// Encodes the payload (named fields, without the `type`, which the envelope carries).
            pub(crate) fn encode_current(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
                match self {
                    $(DomainEvent::$variant(e) => rmp_serde::to_vec_named(e),)*
                }
            }

            /// Decodes a payload of `event_type` written at its current version; `None` for a
            /// type this build does not know.
            pub(crate) fn decode_current(
                event_type: &str,
                payload: &[u8],
            ) -> Option<Result<DomainEvent, rmp_serde::decode::Error>> {
                Some(match event_type {
                    $($name => rmp_serde::from_slice(payload).map(DomainEvent::$variant),)*
                    _ => return None,
                })
            }
        }
    };
}

domain_events! {
    DistrictOpened => "district_opened",
    ProductListed => "product_listed",
    ProductEdited => "product_edited",
    StockChanged => "stock_changed",
    PriceChanged => "price_changed",
    ProductViewed => "product_viewed",
    ProductClicked => "product_clicked",
    ImpressionServed => "impression_served",
    AddedToCart => "added_to_cart",
    RemovedFromCart => "removed_from_cart",
    Purchased => "purchased",
    Searched => "searched",
    Bounced => "bounced",
    ReviewSubmitted => "review_submitted",
    OptimizationDecided => "optimization_decided",
    CopyGenerated => "copy_generated",
    GenerationRejected => "generation_rejected",
    CopyApplied => "copy_applied",
    ExperimentStarted => "experiment_started",
    ExperimentConcluded => "experiment_concluded",
    TaskQueued => "task_queued",
    TaskReprioritized => "task_reprioritized",
    TaskStarted => "task_started",
    TaskSucceeded => "task_succeeded",
    TaskFailed => "task_failed",
    TaskCancelled => "task_cancelled",
    SystemSwitched => "system_switched",
    JobRan => "job_ran",
    InsightRecorded => "insight_recorded",
    HealthChecked => "health_checked",
    HealthIssueOpened => "health_issue_opened",
    HealthIssueClosed => "health_issue_closed",
    ProductRepaired => "product_repaired",
    NotificationDelivered => "notification_delivered",
    VoiceEvolutionProposed => "voice_evolution_proposed",
    VoiceTestStarted => "voice_test_started",
    VoiceEvolutionAbandoned => "voice_evolution_abandoned",
    VoiceTestConcluded => "voice_test_concluded",
    CategoriesSuggested => "categories_suggested",
    MerchandisingRuleSet => "merchandising_rule_set",
    MerchandisingRuleExpired => "merchandising_rule_expired",
    OrderingTestStarted => "ordering_test_started",
    OrderingTestConcluded => "ordering_test_concluded",
    AnomalyDetected => "anomaly_detected",
    AnalyticsReported => "analytics_reported",
    SocialCalendarPlanned => "social_calendar_planned",
    SocialPostPublished => "social_post_published",
    SocialPostFailed => "social_post_failed",
    PluginConfigured => "plugin_configured",
    PluginRan => "plugin_ran",
    PluginProposed => "plugin_proposed",
    PriceTestStarted => "price_test_started",
    PriceTestConcluded => "price_test_concluded",
}

/// The record types users send (HTTP, `mall import`): the catalog and the learning signals.
/// The other event types are mall's own and are only ever written by its actors.
pub const RECORD_TYPES: &[&str] = EVENT_TYPES.split_at(14).0;

impl DomainEvent {
    /// The schema version this build writes for the event's type.
    pub fn schema_version(&self) -> u16 {
        crate::codec::current_version(self.event_type()).expect("every event type has a version")
    }

    /// The product the event concerns, if it concerns exactly one.
    pub fn product_id(&self) -> Option<&ProductId> {
        use DomainEvent::*;
        Some(match self {
            DistrictOpened(_) | Searched(_) => return None,
            TaskQueued(_) | TaskReprioritized(_) | TaskStarted(_) | TaskSucceeded(_) | TaskFailed(_)
            | TaskCancelled(_) | SystemSwitched(_) | JobRan(_) | InsightRecorded(_) => return None,
            HealthChecked(_) | HealthIssueOpened(_) | HealthIssueClosed(_) | NotificationDelivered(_) => return None,
            VoiceEvolutionProposed(_)
            | VoiceTestStarted(_)
            | VoiceEvolutionAbandoned(_)
            | VoiceTestConcluded(_)
            | CategoriesSuggested(_) => return None,
            MerchandisingRuleSet(_) | MerchandisingRuleExpired(_) => return None,
            OrderingTestStarted(_) | OrderingTestConcluded(_) => return None,
            AnomalyDetected(_) | AnalyticsReported(_) => return None,
            SocialCalendarPlanned(_) | SocialPostPublished(_) | SocialPostFailed(_) => return None,
            PluginConfigured(_) | PluginRan(_) | PluginProposed(_) => return None,
            ProductRepaired(e) => &e.product_id,
            ProductListed(e) => &e.product_id,
            ProductEdited(e) => &e.product_id,
            StockChanged(e) => &e.product_id,
            PriceChanged(e) => &e.product_id,
            ProductViewed(e) => &e.product_id,
            ProductClicked(e) => &e.product_id,
            ImpressionServed(e) => &e.product_id,
            AddedToCart(e) => &e.product_id,
            RemovedFromCart(e) => &e.product_id,
            Purchased(e) => &e.product_id,
            Bounced(e) => &e.product_id,
            ReviewSubmitted(e) => &e.product_id,
            OptimizationDecided(e) => &e.product_id,
            CopyGenerated(e) => &e.product_id,
            GenerationRejected(e) => &e.product_id,
            CopyApplied(e) => &e.product_id,
            ExperimentStarted(e) => &e.product_id,
            ExperimentConcluded(e) => &e.product_id,
            PriceTestStarted(e) => &e.product_id,
            PriceTestConcluded(e) => &e.product_id,
        })
    }

    /// The shopper of a learning signal; `None` for catalog events.
    pub fn shopper_id(&self) -> Option<&ShopperId> {
        self.signal_meta().map(|(_, s, _)| s)
    }

    /// The id a client chose for a learning signal; `None` for catalog events.
    pub fn signal_id(&self) -> Option<Uuid> {
        self.signal_meta().map(|(id, _, _)| id)
    }

    /// The campaign a learning signal names, if any.
    pub fn campaign(&self) -> Option<&str> {
        use DomainEvent::*;
        match self {
            ProductViewed(e) => e.campaign.as_deref(),
            ProductClicked(e) => e.campaign.as_deref(),
            ImpressionServed(e) => e.campaign.as_deref(),
            AddedToCart(e) => e.campaign.as_deref(),
            RemovedFromCart(e) => e.campaign.as_deref(),
            Purchased(e) => e.campaign.as_deref(),
            Searched(e) => e.campaign.as_deref(),
            Bounced(e) => e.campaign.as_deref(),
            ReviewSubmitted(e) => e.campaign.as_deref(),
            _ => None,
        }
    }

    /// When a learning signal happened; `None` for catalog events.
    pub fn signal_at(&self) -> Option<DateTime<Utc>> {
        self.signal_meta().map(|(_, _, at)| at)
    }

    fn signal_meta(&self) -> Option<(Uuid, &ShopperId, DateTime<Utc>)> {
        use DomainEvent::*;
        macro_rules! meta {
            ($e:expr) => {
                Some(($e.id, &$e.shopper_id, $e.at))
            };
        }
        match self {
            DistrictOpened(_) | ProductListed(_) | ProductEdited(_) | StockChanged(_) | PriceChanged(_) => None,
            OptimizationDecided(_)
            | CopyGenerated(_)
            | GenerationRejected(_)
            | CopyApplied(_)
            | ExperimentStarted(_)
            | ExperimentConcluded(_)
            | PriceTestStarted(_)
            | PriceTestConcluded(_) => None,
            TaskQueued(_) | TaskReprioritized(_) | TaskStarted(_) | TaskSucceeded(_) | TaskFailed(_)
            | TaskCancelled(_) | SystemSwitched(_) | JobRan(_) | InsightRecorded(_) => None,
            HealthChecked(_)
            | HealthIssueOpened(_)
            | HealthIssueClosed(_)
            | ProductRepaired(_)
            | NotificationDelivered(_) => None,
            VoiceEvolutionProposed(_)
            | VoiceTestStarted(_)
            | VoiceEvolutionAbandoned(_)
            | VoiceTestConcluded(_)
            | CategoriesSuggested(_) => None,
            MerchandisingRuleSet(_) | MerchandisingRuleExpired(_) => None,
            OrderingTestStarted(_) | OrderingTestConcluded(_) => None,
            AnomalyDetected(_) | AnalyticsReported(_) => None,
            SocialCalendarPlanned(_) | SocialPostPublished(_) | SocialPostFailed(_) => None,
            PluginConfigured(_) | PluginRan(_) | PluginProposed(_) => None,
            ProductViewed(e) => meta!(e),
            ProductClicked(e) => meta!(e),
            ImpressionServed(e) => meta!(e),
            AddedToCart(e) => meta!(e),
            RemovedFromCart(e) => meta!(e),
            Purchased(e) => meta!(e),
            Searched(e) => meta!(e),
            Bounced(e) => meta!(e),
            ReviewSubmitted(e) => meta!(e),
        }
    }

    /// How much a signal says about its shopper's interest in what it concerns: the one scale
    /// the shopper profiles (actors) and the personalization read table (projections) share.
    /// Zero for anything else.
    pub fn interest_weight(&self) -> f64 {
        match self {
            DomainEvent::ProductViewed(v) => 1.0 + (v.dwell_ms as f64 / 30_000.0).min(1.0),
            DomainEvent::ProductClicked(_) => 1.5,
            DomainEvent::AddedToCart(_) => 4.0,
            DomainEvent::Purchased(_) => 6.0,
            DomainEvent::Searched(_) => 2.0,
            DomainEvent::Bounced(_) => -0.5,
            DomainEvent::RemovedFromCart(_) => -1.0,
            _ => 0.0,
        }
    }

    /// Whether this is an event of the autonomous core (its task queue, systems and jobs).
    pub fn is_core(&self) -> bool {
        use DomainEvent::*;
        matches!(
            self,
            TaskQueued(_)
                | TaskReprioritized(_)
                | TaskStarted(_)
                | TaskSucceeded(_)
                | TaskFailed(_)
                | TaskCancelled(_)
                | SystemSwitched(_)
                | JobRan(_)
                | InsightRecorded(_)
        )
    }

    /// Whether this is an event of self-healing (every one carries [`crate::health::TAG`]).
    pub fn is_health(&self) -> bool {
        use DomainEvent::*;
        matches!(
            self,
            HealthChecked(_)
                | HealthIssueOpened(_)
                | HealthIssueClosed(_)
                | ProductRepaired(_)
                | NotificationDelivered(_)
        )
    }

    /// Whether this is an event of merchandising (every one carries
    /// [`crate::merchandising::TAG`]).
    pub fn is_merchandising(&self) -> bool {
        matches!(
            self,
            DomainEvent::MerchandisingRuleSet(_)
                | DomainEvent::MerchandisingRuleExpired(_)
                | DomainEvent::OrderingTestStarted(_)
                | DomainEvent::OrderingTestConcluded(_)
        )
    }

    /// Whether this is an event of analytics (every one carries [`crate::analytics::TAG`]).
    pub fn is_analytics(&self) -> bool {
        matches!(self, DomainEvent::AnomalyDetected(_) | DomainEvent::AnalyticsReported(_))
    }

    /// Whether this is an event of the social media engine (every one carries
    /// [`crate::social::TAG`]).
    pub fn is_social(&self) -> bool {
        matches!(
            self,
            DomainEvent::SocialCalendarPlanned(_)
                | DomainEvent::SocialPostPublished(_)
                | DomainEvent::SocialPostFailed(_)
        )
    }

    /// Whether this is an event of plugins (every one carries [`crate::plugins::TAG`]).
    pub fn is_plugin(&self) -> bool {
        matches!(self, DomainEvent::PluginConfigured(_) | DomainEvent::PluginRan(_) | DomainEvent::PluginProposed(_))
    }

    /// The district of an event of district evolution.
    pub fn evolution_district(&self) -> Option<&DistrictSlug> {
        use DomainEvent::*;
        Some(match self {
            VoiceEvolutionProposed(e) => &e.slug,
            VoiceTestStarted(e) => &e.slug,
            VoiceEvolutionAbandoned(e) => &e.slug,
            VoiceTestConcluded(e) => &e.slug,
            CategoriesSuggested(e) => &e.slug,
            _ => return None,
        })
    }

    /// Whether this is a learning signal (as opposed to a catalog event).
    pub fn is_signal(&self) -> bool {
        self.signal_meta().is_some()
    }

    /// The stream the event is stored in: a product's, a district's, or (for `searched`) the
    /// shopper's.
    pub fn stream_id(&self) -> StreamId {
        match self {
            DomainEvent::DistrictOpened(e) => StreamId::district(&e.slug),
            evolution if evolution.evolution_district().is_some() => {
                StreamId::district(evolution.evolution_district().expect("an evolution event"))
            }
            DomainEvent::Searched(e) => StreamId::shopper(&e.shopper_id),
            core if core.is_core() => StreamId::parse(crate::autonomous::STREAM).expect("a valid stream id"),
            DomainEvent::ProductRepaired(e) => StreamId::product(&e.product_id),
            health if health.is_health() => StreamId::parse(crate::health::STREAM).expect("a valid stream id"),
            merch if merch.is_merchandising() => {
                StreamId::parse(crate::merchandising::STREAM).expect("a valid stream id")
            }
            analytics if analytics.is_analytics() => {
                StreamId::parse(crate::analytics::STREAM).expect("a valid stream id")
            }
            social if social.is_social() => StreamId::parse(crate::social::STREAM).expect("a valid stream id"),
            plugin if plugin.is_plugin() => StreamId::parse(crate::plugins::STREAM).expect("a valid stream id"),
            other => StreamId::product(other.product_id().expect("every other event concerns one product")),
        }
    }

    /// The tags the event carries by itself: its shopper for a signal, its district for catalog
    /// events that name one. The district of a signal is added by whoever knows the catalog.
    pub fn intrinsic_tags(&self) -> Vec<String> {
        match self {
            DomainEvent::DistrictOpened(e) => vec![tag::district(&e.slug)],
            DomainEvent::ProductListed(e) => vec![tag::district(&e.district)],
            DomainEvent::ProductEdited(e) => e.district.iter().map(tag::district).collect(),
            health if health.is_health() => vec![crate::health::TAG.to_string()],
            merch if merch.is_merchandising() => vec![crate::merchandising::TAG.to_string()],
            analytics if analytics.is_analytics() => vec![crate::analytics::TAG.to_string()],
            social if social.is_social() => vec![crate::social::TAG.to_string()],
            plugin if plugin.is_plugin() => vec![crate::plugins::TAG.to_string()],
            evolution if evolution.evolution_district().is_some() => {
                evolution.evolution_district().map(tag::district).into_iter().collect()
            }
            other => other.shopper_id().map(tag::shopper).into_iter().collect(),
        }
    }

    /// Checks the rules serde's types cannot, so that every value accepted can be stored by every
    /// backend and read side ([`bounds`]): text without control characters (a NUL stops a
    /// PostgreSQL write), not empty once invisible characters are left out, within its length;
    /// times within the stated range; counts and amounts within bounds whose sums cannot wrap.
    /// Returns the offending field's name with the reason.
    pub fn validate(&self) -> Result<(), (String, InvalidValue)> {
        let err = |field: &str, msg: String| Err((field.to_string(), InvalidValue(msg)));
        let check_text = |field: &str, s: &str, min: usize, max: usize, multiline: bool| {
            if let Some(c) = crate::text::forbidden_control(s, multiline) {
                return err(field, format!("{field} contains the control character U+{:04X}", c as u32));
            }
            if crate::text::visible_len(s) < min {
                return err(field, format!("{field} must not be empty (invisible characters do not count)"));
            }
            if s.len() > max {
                return err(field, format!("{field} is longer than {max} bytes"));
            }
            Ok(())
        };
        let text = |field: &str, s: &str, min: usize, max: usize| check_text(field, s, min, max, false);
        let prose = |field: &str, s: &str, min: usize, max: usize| check_text(field, s, min, max, true);
        let tags = |t: &[String]| -> Result<(), (String, InvalidValue)> {
            if t.len() > MAX_TAGS {
                return err("tags", format!("at most {MAX_TAGS} tags"));
            }
            for (i, tag) in t.iter().enumerate() {
                text(&format!("tags[{i}]"), tag, 1, 64)?;
            }
            Ok(())
        };
        let attrs = |a: &BTreeMap<String, AttributeValue>| -> Result<(), (String, InvalidValue)> {
            if a.len() > 100 {
                return err("attributes", "at most 100 attributes".into());
            }
            for (k, v) in a {
                text("attributes", k, 1, 64)?;
                match v {
                    AttributeValue::Number(n) if !n.is_finite() || n.abs() > bounds::MAX_ATTRIBUTE_NUMBER => {
                        return err(
                            &format!("attributes.{k}"),
                            format!("numbers must be finite and at most {:e} in size", bounds::MAX_ATTRIBUTE_NUMBER),
                        );
                    }
                    AttributeValue::Text(s) => text(&format!("attributes.{k}"), s, 0, 1_000)?,
                    _ => {}
                }
            }
            Ok(())
        };
        let url = |u: &Option<String>| -> Result<(), (String, InvalidValue)> {
            match u {
                Some(u)
                    if !(u.starts_with("https://") || u.starts_with("http://"))
                        || u.len() > 2_000
                        || u.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                {
                    err("image_url", "image_url must be an http(s) URL of at most 2000 bytes, without spaces".into())
                }
                _ => Ok(()),
            }
        };
        let quantity = |q: u32| {
            if q == 0 || q > bounds::MAX_QUANTITY {
                err("quantity", format!("quantity must be 1 to {}", bounds::MAX_QUANTITY))
            } else {
                Ok(())
            }
        };
        let stock = |n: u32| {
            if n > bounds::MAX_STOCK {
                err("stock", format!("stock must be at most {}", bounds::MAX_STOCK))
            } else {
                Ok(())
            }
        };
        let list_position = |p: u32| {
            if p > bounds::MAX_LIST_POSITION {
                err("position", format!("position must be at most {}", bounds::MAX_LIST_POSITION))
            } else {
                Ok(())
            }
        };
        let priority = |p: u8| if p > 100 { err("priority", "priority must be 0 to 100".into()) } else { Ok(()) };
        let metrics = |m: &BTreeMap<String, f64>| -> Result<(), (String, InvalidValue)> {
            if m.len() > 100 {
                return err("metrics", "at most 100 metrics".into());
            }
            for (k, v) in m {
                text("metrics", k, 1, 64)?;
                if !v.is_finite() {
                    return err(&format!("metrics.{k}"), "metrics must be finite numbers".into());
                }
            }
            Ok(())
        };
        let finding = |i: usize, kind: &str, subject: &str, evidence: &BTreeMap<String, String>| {
            use crate::autonomous::{MAX_NAME_LEN, MAX_SUBJECT_LEN, MAX_TEXT_LEN};
            text(&format!("findings[{i}].kind"), kind, 1, MAX_NAME_LEN)?;
            text(&format!("findings[{i}].subject"), subject, 1, MAX_SUBJECT_LEN)?;
            if evidence.len() > crate::health::MAX_EVIDENCE {
                return err(
                    &format!("findings[{i}].evidence"),
                    format!("at most {} entries", crate::health::MAX_EVIDENCE),
                );
            }
            for (k, v) in evidence {
                text(&format!("findings[{i}].evidence"), k, 1, MAX_NAME_LEN)?;
                prose(&format!("findings[{i}].evidence.{k}"), v, 0, MAX_TEXT_LEN)?;
            }
            Ok(())
        };
        let copy = |field: &str, c: &crate::evolution::DistrictCopy| -> Result<(), (String, InvalidValue)> {
            text(&format!("{field}.tagline"), &c.tagline, 1, 300)?;
            prose(&format!("{field}.description"), &c.description, 1, MAX_DESCRIPTION_LEN)?;
            text(&format!("{field}.seo_title"), &c.seo_title, 1, 300)?;
            text(&format!("{field}.seo_description"), &c.seo_description, 1, 1_000)
        };
        if self.signal_id().is_some_and(|id| id.is_nil()) {
            return err("id", "id must be a UUID other than the nil UUID".into());
        }
        if let Some(c) = self.campaign() {
            text("campaign", c, 1, crate::social::MAX_CAMPAIGN_LEN)?;
        }
        if let Some(at) = self.signal_at()
            && (at < bounds::earliest() || at > bounds::latest())
        {
            return err("at", format!("at must be between {} and {}", bounds::EARLIEST, bounds::LATEST));
        }
        match self {
            DomainEvent::DistrictOpened(e) => {
                text("name", &e.name, 1, 200)?;
                text("personality.tone", &e.personality.tone, 1, 200)?;
                text("personality.style", &e.personality.style, 1, 200)?;
                text("personality.audience", &e.personality.audience, 1, 200)
            }
            DomainEvent::ProductListed(e) => {
                stock(e.stock)?;
                text("title", &e.title, 1, MAX_TITLE_LEN)?;
                prose("description", &e.description, 0, MAX_DESCRIPTION_LEN)?;
                tags(&e.tags)?;
                attrs(&e.attributes)?;
                url(&e.image_url)
            }
            DomainEvent::ProductEdited(e) => {
                if let Some(n) = e.stock {
                    stock(n)?;
                }
                if let Some(t) = &e.title {
                    text("title", t, 1, MAX_TITLE_LEN)?;
                }
                if let Some(d) = &e.description {
                    prose("description", d, 0, MAX_DESCRIPTION_LEN)?;
                }
                if let Some(t) = &e.tags {
                    tags(t)?;
                }
                if let Some(a) = &e.attributes {
                    attrs(a)?;
                }
                if e.price.is_some() != e.currency.is_some() {
                    return err("currency", "price and currency change together".into());
                }
                url(&e.image_url)
            }
            DomainEvent::StockChanged(e) => stock(e.stock),
            DomainEvent::ProductViewed(e) if e.dwell_ms > bounds::MAX_DWELL_MS => {
                err("dwell_ms", format!("dwell_ms must be at most {} (a day)", bounds::MAX_DWELL_MS))
            }
            DomainEvent::ProductClicked(e) => list_position(e.position),
            DomainEvent::ImpressionServed(e) => list_position(e.position),
            DomainEvent::AddedToCart(e) => quantity(e.quantity),
            DomainEvent::RemovedFromCart(e) => quantity(e.quantity),
            DomainEvent::Purchased(e) => quantity(e.quantity),
            DomainEvent::ReviewSubmitted(e) => {
                if !(1..=5).contains(&e.rating) {
                    return err("rating", "rating must be 1 to 5".into());
                }
                prose("text", &e.text, 0, MAX_REVIEW_LEN)
            }
            DomainEvent::Searched(e) => {
                text("query", &e.query, 1, 500)?;
                if e.result_ids.len() > 1_000 {
                    return err("result_ids", "at most 1000 result ids".into());
                }
                Ok(())
            }
            DomainEvent::TaskQueued(e) => {
                use crate::autonomous::{MAX_NAME_LEN, MAX_SUBJECT_LEN, MAX_TEXT_LEN};
                text("system", &e.system, 1, MAX_NAME_LEN)?;
                text("subject", &e.subject, 1, MAX_SUBJECT_LEN)?;
                text("action", &e.action, 1, MAX_NAME_LEN)?;
                prose("reason", &e.reason, 0, MAX_TEXT_LEN)?;
                priority(e.priority)?;
                metrics(&e.metrics)
            }
            DomainEvent::TaskReprioritized(e) => {
                prose("reason", &e.reason, 0, crate::autonomous::MAX_TEXT_LEN)?;
                priority(e.priority)?;
                metrics(&e.metrics)
            }
            DomainEvent::TaskSucceeded(e) => prose("summary", &e.summary, 0, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::TaskFailed(e) => prose("error", &e.error, 0, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::TaskCancelled(e) => prose("reason", &e.reason, 0, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::SystemSwitched(e) => {
                text("system", &e.system, 1, crate::autonomous::MAX_NAME_LEN)?;
                text("by", &e.by, 1, crate::autonomous::MAX_NAME_LEN)
            }
            DomainEvent::InsightRecorded(e) => {
                use crate::autonomous::{MAX_EVIDENCE, MAX_NAME_LEN, MAX_SUBJECT_LEN};
                text("key", &e.key, 1, MAX_SUBJECT_LEN)?;
                text("system", &e.system, 1, MAX_NAME_LEN)?;
                text("action", &e.action, 1, MAX_NAME_LEN)?;
                text("district", &e.district, 1, MAX_NAME_LEN)?;
                text("diagnosis", &e.diagnosis, 1, MAX_NAME_LEN)?;
                if e.helped > e.tried {
                    return err("helped", "helped must be at most tried".into());
                }
                if !e.lift.is_finite() {
                    return err("lift", "lift must be a finite number".into());
                }
                if e.evidence.len() > MAX_EVIDENCE {
                    return err("evidence", format!("at most {MAX_EVIDENCE} experiments"));
                }
                Ok(())
            }
            DomainEvent::HealthChecked(e) => {
                text("trigger", &e.trigger, 1, crate::autonomous::MAX_NAME_LEN)?;
                if e.findings.len() > crate::health::MAX_FINDINGS {
                    return err("findings", format!("at most {} findings", crate::health::MAX_FINDINGS));
                }
                for (i, f) in e.findings.iter().enumerate() {
                    finding(i, &f.kind, &f.subject, &f.evidence)?;
                }
                Ok(())
            }
            DomainEvent::HealthIssueOpened(e) => finding(0, &e.kind, &e.subject, &e.evidence),
            DomainEvent::HealthIssueClosed(e) => prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::ProductRepaired(e) => prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::VoiceEvolutionProposed(e) => {
                use crate::autonomous::MAX_NAME_LEN;
                text("attribute", &e.attribute, 1, MAX_NAME_LEN)?;
                text("rule", &e.rule, 1, MAX_NAME_LEN)?;
                text("from", &e.from, 1, 200)?;
                text("to", &e.to, 1, 200)?;
                if e.reasons.len() > crate::evolution::MAX_ITEMS || e.input.peers.len() > crate::evolution::MAX_ITEMS {
                    return err("reasons", format!("at most {} reasons and peers", crate::evolution::MAX_ITEMS));
                }
                for r in &e.reasons {
                    prose("reasons", r, 1, crate::autonomous::MAX_TEXT_LEN)?;
                }
                metrics(&e.metrics)
            }
            DomainEvent::VoiceTestStarted(e) => {
                copy("control", &e.control).and_then(|_| copy("challenger", &e.challenger))
            }
            DomainEvent::VoiceTestConcluded(e) => {
                prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN)?;
                copy("copy", &e.copy)
            }
            DomainEvent::VoiceEvolutionAbandoned(e) => prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::CategoriesSuggested(e) => {
                if e.suggestions.len() > crate::evolution::MAX_ITEMS {
                    return err("suggestions", format!("at most {} suggestions", crate::evolution::MAX_ITEMS));
                }
                for s in &e.suggestions {
                    text("suggestions.category", &s.category, 1, 64)?;
                    if !s.score.is_finite() || s.examples.len() > crate::evolution::MAX_ITEMS {
                        return err("suggestions.score", "a finite score and at most 50 examples".into());
                    }
                }
                Ok(())
            }
            DomainEvent::MerchandisingRuleSet(e) => {
                use crate::merchandising::MAX_ITEMS;
                if !(e.strength.is_finite() && (0.0..=1.0).contains(&e.strength)) {
                    return err("strength", "a number from 0 to 1".into());
                }
                if e.priority.abs() > 1_000 {
                    return err("priority", "from -1000 to 1000".into());
                }
                match (e.action, e.position) {
                    (RuleAction::Pin, Some(1..=1_000)) => {}
                    (RuleAction::Pin, _) => return err("position", "a pin needs a position from 1 to 1000".into()),
                    (_, Some(_)) => return err("position", "only a pin has a position".into()),
                    _ => {}
                }
                if e.valid_until.is_some_and(|u| u <= e.valid_from) {
                    return err("until", "the end of a rule's window must come after its start".into());
                }
                let c = &e.condition;
                if c.tags.len() > MAX_ITEMS {
                    return err("tags", format!("at most {MAX_ITEMS} tags"));
                }
                for (i, t) in c.tags.iter().enumerate() {
                    text(&format!("tags[{i}]"), t, 1, 64)?;
                }
                for (field, v) in [("price_min", c.price_min), ("price_max", c.price_max)] {
                    if v.is_some_and(|v| !(v.is_finite() && (0.0..=1e12).contains(&v))) {
                        return err(field, "a price from 0".into());
                    }
                }
                for (field, v) in [("percentile_min", c.percentile_min), ("percentile_max", c.percentile_max)] {
                    if v.is_some_and(|v| !(v.is_finite() && (0.0..=100.0).contains(&v))) {
                        return err(field, "a percentile from 0 to 100".into());
                    }
                }
                if matches!((c.price_min, c.price_max), (Some(a), Some(b)) if a > b)
                    || matches!((c.stock_min, c.stock_max), (Some(a), Some(b)) if a > b)
                    || matches!((c.percentile_min, c.percentile_max), (Some(a), Some(b)) if a > b)
                {
                    return err("condition", "a lower bound above its upper bound".into());
                }
                text("rule", &e.rule, 1, crate::autonomous::MAX_NAME_LEN)?;
                prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN)?;
                metrics(&e.evidence)
            }
            DomainEvent::MerchandisingRuleExpired(e) => prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN),
            DomainEvent::OrderingTestStarted(e) => {
                for (field, w) in [("control", &e.control), ("challenger", &e.challenger)] {
                    if !w.valid() {
                        return err(field, "weights are finite, non-negative and not all zero".into());
                    }
                }
                text("name", &e.name, 1, crate::autonomous::MAX_NAME_LEN)?;
                prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN)
            }
            DomainEvent::OrderingTestConcluded(e) => {
                if !e.layout.valid() {
                    return err("layout", "weights are finite, non-negative and not all zero".into());
                }
                prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN)
            }
            DomainEvent::AnomalyDetected(e) => {
                use crate::autonomous::MAX_NAME_LEN;
                text("microstore", &e.microstore, 1, MAX_NAME_LEN)?;
                text("metric", &e.metric, 1, MAX_NAME_LEN)?;
                text("kind", &e.kind, 1, MAX_NAME_LEN)?;
                if e.end <= e.start {
                    return err("end", "an anomaly ends after it starts".into());
                }
                for (field, v) in [("expected", e.expected), ("observed", e.observed), ("score", e.score)] {
                    if !v.is_finite() {
                        return err(field, format!("{field} must be a finite number"));
                    }
                }
                Ok(())
            }
            DomainEvent::AnalyticsReported(e) => {
                use crate::analytics::{MAX_ITEMS, MAX_NARRATIVE};
                use crate::autonomous::{MAX_NAME_LEN, MAX_TEXT_LEN};
                text("microstore", &e.microstore, 1, MAX_NAME_LEN)?;
                text("period", &e.period, 1, MAX_NAME_LEN)?;
                text("written_by", &e.written_by, 1, MAX_NAME_LEN)?;
                if e.to <= e.from {
                    return err("to", "a period ends after it starts".into());
                }
                if e.facts.len() > MAX_ITEMS {
                    return err("facts", format!("at most {MAX_ITEMS} facts"));
                }
                for (k, v) in &e.facts {
                    text("facts", k, 1, 64)?;
                    if !v.is_finite() {
                        return err(&format!("facts.{k}"), "facts must be finite numbers".into());
                    }
                }
                let lists = [
                    ("top_products", e.top_products.len()),
                    ("bottom_products", e.bottom_products.len()),
                    ("search_terms", e.search_terms.len()),
                    ("anomalies", e.anomalies.len()),
                    ("suggestions", e.suggestions.len()),
                ];
                for (field, n) in lists {
                    if n > MAX_ITEMS {
                        return err(field, format!("at most {MAX_ITEMS} {field}"));
                    }
                }
                for p in e.top_products.iter().chain(&e.bottom_products) {
                    text("products.product_id", &p.product_id, 1, MAX_NAME_LEN)?;
                    text("products.title", &p.title, 1, MAX_TITLE_LEN)?;
                }
                for (t, _) in &e.search_terms {
                    text("search_terms", t, 1, 500)?;
                }
                for s in &e.suggestions {
                    prose("suggestions", s, 1, MAX_TEXT_LEN)?;
                }
                prose("narrative", &e.narrative, 1, MAX_NARRATIVE)
            }
            DomainEvent::SocialCalendarPlanned(e) => {
                use crate::social::{MAX_HASHTAGS, MAX_POSTS, MAX_TWEETS};
                if e.posts.len() > MAX_POSTS || e.products.len() > MAX_POSTS || e.hours.len() > 24 {
                    return err("posts", format!("at most {MAX_POSTS} posts and products, 24 hours"));
                }
                if e.hours.iter().any(|h| *h > 23) {
                    return err("hours", "hours are 0 to 23".into());
                }
                for (i, p) in e.posts.iter().enumerate() {
                    text(&format!("posts[{i}].platform"), &p.platform, 1, crate::autonomous::MAX_NAME_LEN)?;
                    if let Some(t) = &p.text {
                        prose(&format!("posts[{i}].text"), t, 1, 2_200)?;
                    }
                    if p.tweets.len() > MAX_TWEETS || p.hashtags.len() > MAX_HASHTAGS {
                        return err(
                            &format!("posts[{i}]"),
                            format!("at most {MAX_TWEETS} tweets, {MAX_HASHTAGS} hashtags"),
                        );
                    }
                    for t in &p.tweets {
                        prose(&format!("posts[{i}].tweets"), t, 1, 280 * 4)?;
                    }
                    for h in &p.hashtags {
                        text(&format!("posts[{i}].hashtags"), h, 1, 100)?;
                    }
                }
                Ok(())
            }
            DomainEvent::SocialPostPublished(e) => {
                text("platform_post_id", &e.platform_post_id, 1, 200)?;
                text("by", &e.by, 1, crate::autonomous::MAX_NAME_LEN)
            }
            DomainEvent::SocialPostFailed(e) => {
                prose("reason", &e.reason, 1, crate::autonomous::MAX_TEXT_LEN)?;
                text("by", &e.by, 1, crate::autonomous::MAX_NAME_LEN)
            }
            DomainEvent::PluginConfigured(e) => {
                use crate::autonomous::{MAX_NAME_LEN, MAX_TEXT_LEN};
                text("id", &e.plugin_id, 1, MAX_NAME_LEN)?;
                text("by", &e.by, 1, MAX_NAME_LEN)?;
                prose("reason", &e.reason, 0, MAX_TEXT_LEN)?;
                if e.config.len() > crate::plugins::MAX_ITEMS {
                    return err("config", format!("at most {} settings", crate::plugins::MAX_ITEMS));
                }
                for (k, v) in &e.config {
                    text("config", k, 1, 64)?;
                    if !v.is_finite() {
                        return err(&format!("config.{k}"), "settings are finite numbers".into());
                    }
                }
                Ok(())
            }
            DomainEvent::PluginRan(e) => {
                use crate::autonomous::{MAX_NAME_LEN, MAX_TEXT_LEN};
                text("plugin_id", &e.plugin_id, 1, MAX_NAME_LEN)?;
                text("hook", &e.hook, 1, MAX_NAME_LEN)?;
                text("outcome", &e.outcome, 1, MAX_NAME_LEN)?;
                prose("detail", &e.detail, 0, MAX_TEXT_LEN)
            }
            DomainEvent::PluginProposed(e) => {
                use crate::autonomous::{MAX_NAME_LEN, MAX_SUBJECT_LEN, MAX_TEXT_LEN};
                text("plugin_id", &e.plugin_id, 1, MAX_NAME_LEN)?;
                text("subject", &e.subject, 1, MAX_SUBJECT_LEN)?;
                text("kind", &e.kind, 1, MAX_NAME_LEN)?;
                prose("note", &e.note, 0, MAX_TEXT_LEN)?;
                if e.figures.len() > crate::plugins::MAX_ITEMS {
                    return err("figures", format!("at most {} figures", crate::plugins::MAX_ITEMS));
                }
                for (k, v) in &e.figures {
                    text("figures", k, 1, 64)?;
                    if !v.is_finite() {
                        return err(&format!("figures.{k}"), "figures are finite numbers".into());
                    }
                }
                Ok(())
            }
            DomainEvent::PriceTestStarted(e) => {
                if e.challenger == e.control {
                    return err("challenger", "the challenger price equals the control".into());
                }
                prose("reason", &e.reason, 0, crate::autonomous::MAX_TEXT_LEN)
            }
            DomainEvent::PriceTestConcluded(e) => {
                for (field, x) in [
                    ("prob_challenger_better", e.prob_challenger_better),
                    ("likelihood_ratio", e.likelihood_ratio),
                    ("control.revenue_sq", e.control.revenue_sq),
                    ("challenger.revenue_sq", e.challenger.revenue_sq),
                ] {
                    if !x.is_finite() {
                        return err(field, "a finite number".into());
                    }
                }
                prose("reason", &e.reason, 0, crate::autonomous::MAX_TEXT_LEN)
            }
            DomainEvent::JobRan(e) => {
                text("job", &e.job, 1, crate::autonomous::MAX_NAME_LEN)?;
                text("system", &e.system, 1, crate::autonomous::MAX_NAME_LEN)?;
                prose("outcome", &e.outcome, 1, crate::autonomous::MAX_TEXT_LEN)
            }
            _ => Ok(()),
        }
    }
}
