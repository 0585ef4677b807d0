//! Product intelligence: a product's folded state, its windowed metrics and diagnosis, and the
//! pure `decide` that turns them into optimization commands with their evidence.
//!
//! `evolve` folds every event of the product's stream (catalog, learning signals, mall's own
//! decisions and results) and holds no rules. `decide` holds them all; what it needs from
//! outside the stream — the district's conversion prior, whether the global generation budget
//! has room, the policy, the time — comes in as [`DecideInput`] and is recorded in the
//! decision's evidence, so that replay re-runs `decide` with exactly what it saw.

pub mod actor;
pub mod experiment;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use mall_events::domain::*;
use mall_events::ids::{Currency, DistrictSlug, Position, Price, ProductId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::stats::Prior;
use experiment::{Arm, ExperimentPolicy};

/// Counts of learning signals over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub impressions: u64,
    pub views: u64,
    pub clicks: u64,
    pub carts: u64,
    pub purchases: u64,
    pub bounces: u64,
    /// Revenue in ten-thousandths of the currency unit.
    pub revenue: u64,
    /// Reviews, the sum of their ratings and of their sentiment scores (see
    /// [`crate::analytics::sentiment::review_score`]).
    #[serde(default)]
    pub reviews: u64,
    #[serde(default)]
    pub rating_sum: u64,
    #[serde(default)]
    pub sentiment_sum: f64,
}

impl Counts {
    /// Counts one signal. Counters saturate rather than wrap: a sum of accepted values may
    /// exceed any bound, a counter must never go down.
    pub(crate) fn add(&mut self, e: &DomainEvent) {
        let one = |n: &mut u64| *n = n.saturating_add(1);
        match e {
            DomainEvent::ImpressionServed(_) => one(&mut self.impressions),
            DomainEvent::ProductViewed(_) => one(&mut self.views),
            DomainEvent::ProductClicked(_) => one(&mut self.clicks),
            DomainEvent::AddedToCart(_) => one(&mut self.carts),
            DomainEvent::Purchased(p) => {
                one(&mut self.purchases);
                let amount = p.unit_price.ten_thousandths().saturating_mul(p.quantity as u64);
                self.revenue = self.revenue.saturating_add(amount);
            }
            DomainEvent::Bounced(_) => one(&mut self.bounces),
            DomainEvent::ReviewSubmitted(r) => {
                use crate::analytics::sentiment;
                one(&mut self.reviews);
                self.rating_sum = self.rating_sum.saturating_add(u64::from(r.rating));
                self.sentiment_sum += sentiment::review_score(r.rating, &r.text, sentiment::TEXT_WEIGHT);
            }
            _ => {}
        }
    }

    /// Adds another window's counts (saturating).
    pub fn merge(&mut self, o: &Counts) {
        for (a, b) in [
            (&mut self.impressions, o.impressions),
            (&mut self.views, o.views),
            (&mut self.clicks, o.clicks),
            (&mut self.carts, o.carts),
            (&mut self.purchases, o.purchases),
            (&mut self.bounces, o.bounces),
            (&mut self.revenue, o.revenue),
        ] {
            *a = a.saturating_add(b);
        }
        self.reviews = self.reviews.saturating_add(o.reviews);
        self.rating_sum = self.rating_sum.saturating_add(o.rating_sum);
        self.sentiment_sum += o.sentiment_sum;
    }

    /// The reviews' mean sentiment in [-1, 1] (0 without reviews).
    pub fn sentiment(&self) -> f64 {
        if self.reviews == 0 { 0.0 } else { self.sentiment_sum / self.reviews as f64 }
    }

    /// Views that converted (a cart or a purchase), at most one per view.
    pub fn conversions(&self) -> u64 {
        mall_events::measures::conversions(self.views, self.carts, self.purchases)
    }
}

/// A decision waiting for its generator's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    pub decision_id: Uuid,
    pub command: CommandKind,
    pub at: DateTime<Utc>,
}

/// Generations of one command that failed or were rejected in a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    pub in_a_row: u32,
    pub last_at: DateTime<Utc>,
}

/// A running copy experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningExperiment {
    pub experiment_id: Uuid,
    pub decision_id: Uuid,
    pub control: String,
    pub challenger: String,
    pub started_at: DateTime<Utc>,
    pub arms: [ArmStats; 2],
}

impl RunningExperiment {
    /// The copy a shopper in `arm` sees.
    pub fn copy(&self, arm: Arm) -> &str {
        match arm {
            Arm::Control => &self.control,
            Arm::Challenger => &self.challenger,
        }
    }
}

/// A running price test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningPriceTest {
    pub test_id: Uuid,
    pub proposal_id: Uuid,
    pub control: Price,
    pub challenger: Price,
    pub started_at: DateTime<Utc>,
    pub arms: [PriceArm; 2],
}

impl RunningPriceTest {
    /// The price a shopper in `arm` sees.
    pub fn price(&self, arm: Arm) -> &Price {
        match arm {
            Arm::Control => &self.control,
            Arm::Challenger => &self.challenger,
        }
    }
}

/// A proposed price, to be put to a test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceProposal {
    pub proposal_id: Uuid,
    /// The price the proposal was made from.
    pub from: Price,
    pub to: Price,
    pub reason: String,
}

/// Everything a product actor knows, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductState {
    pub product_id: Option<ProductId>,
    pub district: Option<DistrictSlug>,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub price: Option<Price>,
    pub currency: Option<Currency>,
    pub image_url: Option<String>,
    pub stock: u32,
    pub seo: Option<Seo>,
    /// The hash of the text the current embedding was computed from.
    pub embedding_of: Option<u64>,
    /// All signals ever.
    pub total: Counts,
    /// Signals since the copy last changed (or an experiment started or ended).
    pub window: Counts,
    /// The first position of the window.
    pub window_from: Position,
    /// How many times the description has changed.
    pub copy_version: u32,
    pub in_flight: Option<InFlight>,
    pub experiment: Option<RunningExperiment>,
    /// The price test under way.
    #[serde(default)]
    pub price_test: Option<RunningPriceTest>,
    /// When each command was last decided (for cooldowns).
    pub last_decided: BTreeMap<CommandKind, DateTime<Utc>>,
    /// Failed or rejected generations in a row, per command (for backoff and the fallback).
    #[serde(default)]
    pub failures: BTreeMap<CommandKind, Failures>,
    /// The stream version folded.
    pub version: u64,
    /// The global position of the last event folded.
    pub position: Position,
}

/// The text an embedding is computed from.
pub fn embedding_text(title: &str, description: &str, tags: &[String]) -> String {
    format!("{title}\n{description}\n{}", tags.join(", "))
}

/// A stable 64-bit hash (FNV-1a) of text, to know whether an embedding is out of date; stable
/// across builds and machines, unlike `std`'s hasher.
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl ProductState {
    /// Whether the product has been listed.
    pub fn is_listed(&self) -> bool {
        self.product_id.is_some()
    }

    /// The hash of the current copy's embedding text.
    pub fn copy_hash(&self) -> u64 {
        text_hash(&embedding_text(&self.title, &self.description, &self.tags))
    }

    fn reset_window(&mut self, position: Position) {
        self.window = Counts::default();
        self.window_from = position;
    }

    /// Folds one event of the product's stream, stored at `position` as `version`. Total: any
    /// event is accepted, none fails.
    pub fn evolve(&mut self, event: &DomainEvent, position: Position, version: u64) {
        self.version = version;
        self.position = position;
        match event {
            DomainEvent::ProductListed(e) => {
                self.product_id = Some(e.product_id.clone());
                self.district = Some(e.district.clone());
                self.title = e.title.clone();
                self.description = e.description.clone();
                self.tags = e.tags.clone();
                self.attributes = e.attributes.clone();
                self.price = Some(e.price.clone());
                self.currency = Some(e.currency.clone());
                self.image_url = e.image_url.clone();
                self.stock = e.stock;
                self.reset_window(position);
            }
            DomainEvent::ProductEdited(e) => {
                // The vendor changed the facts: what kept failing may pass now.
                self.failures.clear();
                if let Some(d) = &e.district {
                    self.district = Some(d.clone());
                }
                if let Some(t) = &e.title {
                    self.title = t.clone();
                }
                if let Some(d) = &e.description {
                    // A vendor's own copy ends any experiment on the old one.
                    self.description = d.clone();
                    self.copy_version += 1;
                    self.experiment = None;
                    self.reset_window(position);
                }
                if let Some(t) = &e.tags {
                    self.tags = t.clone();
                }
                if let Some(a) = &e.attributes {
                    self.attributes = a.clone();
                }
                if let Some(p) = &e.price {
                    // A vendor's own price ends any test of another.
                    self.price = Some(p.clone());
                    self.price_test = None;
                }
                if let Some(c) = &e.currency {
                    self.currency = Some(c.clone());
                }
                if let Some(u) = &e.image_url {
                    self.image_url = Some(u.clone());
                }
                if let Some(s) = e.stock {
                    self.stock = s;
                }
            }
            DomainEvent::StockChanged(e) => self.stock = e.stock,
            DomainEvent::PriceChanged(e) => {
                self.price = Some(e.price.clone());
                self.currency = Some(e.currency.clone());
                self.price_test = None;
            }
            DomainEvent::ProductViewed(_)
            | DomainEvent::ProductClicked(_)
            | DomainEvent::ImpressionServed(_)
            | DomainEvent::AddedToCart(_)
            | DomainEvent::Purchased(_)
            | DomainEvent::Bounced(_)
            | DomainEvent::ReviewSubmitted(_) => {
                self.total.add(event);
                self.window.add(event);
                if let (Some(t), Some(shopper)) = (&mut self.price_test, event.shopper_id()) {
                    let arm = &mut t.arms[experiment::arm(t.test_id, shopper) as usize];
                    match event {
                        DomainEvent::ProductViewed(_) => arm.views = arm.views.saturating_add(1),
                        DomainEvent::Purchased(p) => {
                            let amount = p.unit_price.ten_thousandths().saturating_mul(u64::from(p.quantity));
                            arm.orders = arm.orders.saturating_add(1);
                            arm.revenue_e4 = arm.revenue_e4.saturating_add(amount);
                            arm.revenue_sq += (amount as f64 / 10_000.0).powi(2);
                        }
                        _ => {}
                    }
                }
                if let (Some(x), Some(shopper)) = (&mut self.experiment, event.shopper_id()) {
                    let arm = &mut x.arms[experiment::arm(x.experiment_id, shopper) as usize];
                    match event {
                        DomainEvent::ProductViewed(_) => arm.views += 1,
                        DomainEvent::AddedToCart(_) => arm.conversions += 1,
                        _ => {}
                    }
                }
            }
            DomainEvent::OptimizationDecided(e) => {
                self.in_flight = Some(InFlight { decision_id: e.decision_id, command: e.command, at: e.at });
                self.last_decided.insert(e.command, e.at);
            }
            DomainEvent::GenerationRejected(e) => {
                self.clear_in_flight(e.decision_id);
                let f = self.failures.entry(e.command).or_insert(Failures { in_a_row: 0, last_at: e.at });
                f.in_a_row = f.in_a_row.saturating_add(1);
                f.last_at = e.at;
            }
            DomainEvent::CopyApplied(e) => {
                self.clear_in_flight(e.decision_id);
                self.failures.remove(&e.content.command());
                match &e.content {
                    Content::Description { text } => {
                        self.description = text.clone();
                        self.copy_version += 1;
                        self.reset_window(position);
                    }
                    Content::Tags { tags } => self.tags = tags.clone(),
                    Content::Seo(seo) => self.seo = Some(seo.clone()),
                    Content::Embedding { text_hash, .. } => self.embedding_of = Some(*text_hash),
                }
            }
            DomainEvent::ExperimentStarted(e) => {
                self.clear_in_flight(e.decision_id);
                self.failures.remove(&CommandKind::RewriteDescription);
                self.experiment = Some(RunningExperiment {
                    experiment_id: e.experiment_id,
                    decision_id: e.decision_id,
                    control: e.control.clone(),
                    challenger: e.challenger.clone(),
                    started_at: e.at,
                    arms: [ArmStats::default(); 2],
                });
                self.reset_window(position);
            }
            DomainEvent::ExperimentConcluded(e) => {
                if let Some(x) = self.experiment.take().filter(|x| x.experiment_id == e.experiment_id) {
                    if e.outcome == Outcome::ChallengerWon {
                        self.description = x.challenger;
                        self.copy_version += 1;
                    }
                    self.reset_window(position);
                }
            }
            DomainEvent::PriceTestStarted(e) => {
                self.price_test = Some(RunningPriceTest {
                    test_id: e.test_id,
                    proposal_id: e.proposal_id,
                    control: e.control.clone(),
                    challenger: e.challenger.clone(),
                    started_at: e.at,
                    arms: [PriceArm::default(); 2],
                });
            }
            DomainEvent::PriceTestConcluded(e) => {
                if self.price_test.as_ref().is_some_and(|t| t.test_id == e.test_id) {
                    self.price = Some(e.price.clone());
                    self.price_test = None;
                }
            }
            DomainEvent::DistrictOpened(_)
            | DomainEvent::RemovedFromCart(_)
            | DomainEvent::Searched(_)
            | DomainEvent::CopyGenerated(_) => {}
            // The core's events are never in a product's stream.
            DomainEvent::TaskQueued(_)
            | DomainEvent::TaskReprioritized(_)
            | DomainEvent::TaskStarted(_)
            | DomainEvent::TaskSucceeded(_)
            | DomainEvent::TaskFailed(_)
            | DomainEvent::TaskCancelled(_)
            | DomainEvent::SystemSwitched(_)
            | DomainEvent::JobRan(_)
            | DomainEvent::InsightRecorded(_) => {}
            // A repair changes what shoppers see (the read row), never the product's own facts:
            // the vendor's image stays the one to check, the state stays what the row is
            // repaired to.
            DomainEvent::ProductRepaired(_) => {}
            // Self-healing's own stream.
            DomainEvent::HealthChecked(_)
            | DomainEvent::HealthIssueOpened(_)
            | DomainEvent::HealthIssueClosed(_)
            | DomainEvent::NotificationDelivered(_) => {}
            // District evolution's events are in the districts' streams.
            DomainEvent::VoiceEvolutionProposed(_)
            | DomainEvent::VoiceTestStarted(_)
            | DomainEvent::VoiceEvolutionAbandoned(_)
            | DomainEvent::VoiceTestConcluded(_)
            | DomainEvent::CategoriesSuggested(_)
            | DomainEvent::MerchandisingRuleSet(_)
            | DomainEvent::MerchandisingRuleExpired(_)
            | DomainEvent::OrderingTestStarted(_)
            | DomainEvent::OrderingTestConcluded(_)
            | DomainEvent::AnomalyDetected(_)
            | DomainEvent::AnalyticsReported(_)
            | DomainEvent::SocialCalendarPlanned(_)
            | DomainEvent::SocialPostPublished(_)
            | DomainEvent::SocialPostFailed(_)
            | DomainEvent::PluginConfigured(_)
            | DomainEvent::PluginRan(_)
            | DomainEvent::PluginProposed(_) => {}
        }
    }

    fn clear_in_flight(&mut self, decision_id: Uuid) {
        if self.in_flight.as_ref().is_some_and(|f| f.decision_id == decision_id) {
            self.in_flight = None;
        }
    }
}

/// The thresholds of the product rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Views in the window before conversion or bounce rules may judge the copy.
    pub min_views: u64,
    /// Copy is weak when its posterior conversion is below this share of the district's.
    pub weak_ratio: f64,
    /// Copy is weak when this share of its views bounced.
    pub high_bounce_rate: f64,
    /// Impressions in the window before click-through may be judged.
    pub min_impressions: u64,
    /// Discoverability is weak below this click-through rate.
    pub low_ctr: f64,
    /// How long after a command the same command may be decided again.
    pub cooldown: Duration,
    /// A decision with no result after this long is given up (its executor died).
    pub in_flight_timeout: Duration,
    /// After a failed or rejected generation, the same command waits this long, doubled for
    /// every further failure in a row ...
    pub retry_backoff: Duration,
    /// ... up to this long.
    pub max_backoff: Duration,
    /// After this many failures in a row of a rule that fills missing copy, the offline
    /// generator writes it instead (0: never).
    pub fallback_after: u32,
    /// After this many failures in a row (the offline fallback's included), a command is not
    /// tried again until the vendor changes the product: its own text keeps failing, which is a
    /// person's to fix (0: never give up).
    pub give_up_after: u32,
    /// The weight, in views, of the district prior.
    pub prior_strength: f64,
    /// Reviews since the copy last changed before their sentiment may be judged (0: never) ...
    pub unhappy_reviews: u64,
    /// ... and the mean sentiment at or under which shoppers are unhappy with the product: the
    /// copy may promise what the product does not deliver, and is rewritten.
    pub unhappy_sentiment: f64,
    pub experiment: ExperimentPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_views: 40,
            weak_ratio: 0.5,
            high_bounce_rate: 0.6,
            min_impressions: 200,
            low_ctr: 0.01,
            cooldown: Duration::hours(6),
            in_flight_timeout: Duration::minutes(10),
            retry_backoff: Duration::minutes(5),
            max_backoff: Duration::hours(24),
            fallback_after: 3,
            give_up_after: 6,
            prior_strength: mall_events::measures::PRIOR_STRENGTH,
            unhappy_reviews: 3,
            unhappy_sentiment: -0.2,
            experiment: ExperimentPolicy::default(),
        }
    }
}

impl Policy {
    /// The policy as named numbers, as a decision records it.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([
            ("min_views".into(), self.min_views as f64),
            ("weak_ratio".into(), self.weak_ratio),
            ("high_bounce_rate".into(), self.high_bounce_rate),
            ("min_impressions".into(), self.min_impressions as f64),
            ("low_ctr".into(), self.low_ctr),
            ("cooldown_secs".into(), self.cooldown.num_seconds() as f64),
            ("in_flight_timeout_secs".into(), self.in_flight_timeout.num_seconds() as f64),
            ("retry_backoff_secs".into(), self.retry_backoff.num_seconds() as f64),
            ("max_backoff_secs".into(), self.max_backoff.num_seconds() as f64),
            ("fallback_after_failures".into(), self.fallback_after as f64),
            ("give_up_after_failures".into(), self.give_up_after as f64),
            ("prior_strength".into(), self.prior_strength),
            ("experiment_min_per_arm".into(), self.experiment.min_per_arm as f64),
            ("experiment_max_duration_secs".into(), self.experiment.max_duration.num_seconds() as f64),
            ("experiment_alpha".into(), self.experiment.alpha),
            ("experiment_tau".into(), self.experiment.tau),
            ("experiment_min_probability".into(), self.experiment.min_probability),
        ]);
        // A rule that is off is not recorded: decisions made before it existed read back as
        // they were written.
        if self.unhappy_reviews > 0 {
            m.insert("unhappy_reviews".into(), self.unhappy_reviews as f64);
            m.insert("unhappy_sentiment".into(), self.unhappy_sentiment);
        }
        m
    }

    /// The policy a decision recorded: defaults for anything it did not record, except the rules
    /// added later (backoff, fallback), which a decision that did not record them did not have.
    pub fn from_map(m: &BTreeMap<String, f64>) -> Policy {
        let d = Policy::default();
        let get = |k: &str, v: f64| m.get(k).copied().unwrap_or(v);
        Policy {
            min_views: get("min_views", d.min_views as f64) as u64,
            weak_ratio: get("weak_ratio", d.weak_ratio),
            high_bounce_rate: get("high_bounce_rate", d.high_bounce_rate),
            min_impressions: get("min_impressions", d.min_impressions as f64) as u64,
            low_ctr: get("low_ctr", d.low_ctr),
            cooldown: Duration::seconds(get("cooldown_secs", d.cooldown.num_seconds() as f64) as i64),
            in_flight_timeout: Duration::seconds(
                get("in_flight_timeout_secs", d.in_flight_timeout.num_seconds() as f64) as i64,
            ),
            retry_backoff: Duration::seconds(get("retry_backoff_secs", 0.0) as i64),
            max_backoff: Duration::seconds(get("max_backoff_secs", 0.0) as i64),
            fallback_after: get("fallback_after_failures", 0.0) as u32,
            give_up_after: get("give_up_after_failures", 0.0) as u32,
            prior_strength: get("prior_strength", d.prior_strength),
            unhappy_reviews: get("unhappy_reviews", 0.0) as u64,
            unhappy_sentiment: get("unhappy_sentiment", d.unhappy_sentiment),
            experiment: ExperimentPolicy {
                min_per_arm: get("experiment_min_per_arm", d.experiment.min_per_arm as f64) as u64,
                max_duration: Duration::seconds(get(
                    "experiment_max_duration_secs",
                    d.experiment.max_duration.num_seconds() as f64,
                ) as i64),
                alpha: get("experiment_alpha", d.experiment.alpha),
                tau: get("experiment_tau", d.experiment.tau),
                min_probability: get("experiment_min_probability", d.experiment.min_probability),
            },
        }
    }
}

/// What `decide` is given besides the state.
#[derive(Debug, Clone, PartialEq)]
pub struct DecideInput {
    /// The district's conversion prior.
    pub prior: Prior,
    /// Whether the generation budget has room for one more call for this product (its fair
    /// share of the hourly budget included). The offline fallback needs none.
    pub budget_available: bool,
    pub policy: Policy,
    /// The id of a decision made now (ids come in; `decide` makes none).
    pub decision_id: Uuid,
    pub now: DateTime<Utc>,
}

/// What a product actor decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Have content generated; the event records the decision and its evidence.
    Optimize(OptimizationDecided),
    /// End the running experiment.
    ConcludeExperiment(ExperimentConcluded),
    /// End the running price test.
    ConcludePriceTest(PriceTestConcluded),
}

impl Command {
    /// The event that records the command.
    pub fn into_event(self) -> DomainEvent {
        match self {
            Command::Optimize(e) => DomainEvent::OptimizationDecided(e),
            Command::ConcludeExperiment(e) => DomainEvent::ExperimentConcluded(e),
            Command::ConcludePriceTest(e) => DomainEvent::PriceTestConcluded(e),
        }
    }
}

/// Puts a proposed price to a test, or says why not: the product is listed and has no price
/// test under way, its price is still the one the proposal was made from, and the proposal
/// changes it.
pub fn price_test(
    state: &ProductState,
    p: &PriceProposal,
    test_id: Uuid,
    now: DateTime<Utc>,
) -> Result<PriceTestStarted, String> {
    let (Some(product_id), Some(price), Some(currency)) = (&state.product_id, &state.price, &state.currency) else {
        return Err("the product is not listed".into());
    };
    if let Some(t) = &state.price_test {
        return Err(format!("price test {} is under way", t.test_id));
    }
    if price.ten_thousandths() != p.from.ten_thousandths() {
        return Err(format!("the price is {price} now, not the {} it was proposed from", p.from));
    }
    if p.to.ten_thousandths() == p.from.ten_thousandths() || p.to.ten_thousandths() == 0 {
        return Err(format!("{} is no new price", p.to));
    }
    Ok(PriceTestStarted {
        test_id,
        product_id: product_id.clone(),
        proposal_id: p.proposal_id,
        control: price.clone(),
        challenger: p.to.clone(),
        currency: currency.clone(),
        reason: p.reason.clone(),
        at: now,
    })
}

/// The rules, in priority order: the first that fires is decided (at most one generation per
/// look, so the budget is spent where it matters most).
pub fn decide(state: &ProductState, input: &DecideInput) -> Vec<Command> {
    let Some(product_id) = state.product_id.clone() else { return Vec::new() };
    let mut commands = Vec::new();
    let policy = &input.policy;
    let w = &state.window;
    let posterior = input.prior.update(w.conversions(), w.views);

    let mut metrics = BTreeMap::from([
        ("window_impressions".to_string(), w.impressions as f64),
        ("window_views".into(), w.views as f64),
        ("window_clicks".into(), w.clicks as f64),
        ("window_carts".into(), w.carts as f64),
        ("window_purchases".into(), w.purchases as f64),
        ("window_bounces".into(), w.bounces as f64),
        ("window_revenue".into(), w.revenue as f64 / 10_000.0),
        ("total_views".into(), state.total.views as f64),
        ("total_purchases".into(), state.total.purchases as f64),
        ("conversion_observed".into(), ratio(w.conversions(), w.views)),
        ("conversion_posterior_mean".into(), posterior.mean()),
        ("district_conversion_prior".into(), input.prior.mean()),
        ("bounce_rate".into(), ratio(w.bounces, w.views)),
        ("click_through_rate".into(), ratio(w.clicks, w.impressions)),
    ]);

    // A price test is judged apart from the copy's work.
    if let Some(t) = &state.price_test
        && let Some(v) =
            crate::pricing::evaluate_test(&t.arms[0], &t.arms[1], input.now - t.started_at, &policy.experiment)
    {
        let kept = if v.outcome == Outcome::ChallengerWon { &t.challenger } else { &t.control };
        commands.push(Command::ConcludePriceTest(PriceTestConcluded {
            test_id: t.test_id,
            product_id: product_id.clone(),
            outcome: v.outcome,
            control: t.arms[0],
            challenger: t.arms[1],
            prob_challenger_better: v.prob_challenger_better,
            likelihood_ratio: v.likelihood_ratio,
            price: kept.clone(),
            policy: policy.to_map(),
            reason: v.reason,
            at: input.now,
        }));
    }
    if let Some(x) = &state.experiment {
        let elapsed = input.now - x.started_at;
        if let Some(v) = experiment::evaluate(x.arms[0], x.arms[1], elapsed, &policy.experiment) {
            commands.push(Command::ConcludeExperiment(ExperimentConcluded {
                experiment_id: x.experiment_id,
                product_id: product_id.clone(),
                outcome: v.outcome,
                control: x.arms[0],
                challenger: x.arms[1],
                prob_challenger_better: v.prob_challenger_better,
                likelihood_ratio: v.likelihood_ratio,
                reason: v.reason,
                at: input.now,
            }));
        }
        // No other copy work while copy is under test.
        return commands;
    }
    if let Some(f) = &state.in_flight
        && input.now - f.at < policy.in_flight_timeout
    {
        return commands;
    }
    // A decision that timed out without a result (its executor died) does not hold a cooldown.
    let timed_out = |c: CommandKind| state.in_flight.as_ref().is_some_and(|f| f.command == c);
    let cooled =
        |c: CommandKind| timed_out(c) || state.last_decided.get(&c).is_none_or(|t| input.now - *t >= policy.cooldown);
    // After failures in a row, a command waits: the backoff doubles with each failure, capped;
    // after too many it waits for the vendor (see `needs_a_person`).
    let backed_off = |c: CommandKind| {
        state.failures.get(&c).is_some_and(|f| {
            f.in_a_row > 0 && (input.now - f.last_at < backoff(policy, f.in_a_row) || needs_a_person(policy, f))
        })
    };
    let judged = w.views >= policy.min_views;
    let weak = judged && posterior.mean() < policy.weak_ratio * input.prior.mean();
    let bouncy = judged && ratio(w.bounces, w.views) >= policy.high_bounce_rate;
    let hidden = w.impressions >= policy.min_impressions && ratio(w.clicks, w.impressions) < policy.low_ctr;
    let unhappy =
        policy.unhappy_reviews > 0 && w.reviews >= policy.unhappy_reviews && w.sentiment() <= policy.unhappy_sentiment;
    // Reviews are part of the diagnosis once there are any (decisions made before reviews
    // existed recorded none).
    if w.reviews > 0 {
        metrics.insert("window_reviews".into(), w.reviews as f64);
        metrics.insert("review_rating_mean".into(), w.rating_sum as f64 / w.reviews as f64);
        metrics.insert("review_sentiment_mean".into(), w.sentiment());
    }

    // The rules, in priority order: (command, rule, finding, whether it fills missing copy).
    let mut rules: Vec<(CommandKind, &str, String, bool)> = Vec::new();
    if state.description.trim().is_empty() {
        rules.push((
            CommandKind::RewriteDescription,
            "missing_description",
            "the product has no description".into(),
            true,
        ));
    }
    if state.tags.is_empty() {
        rules.push((CommandKind::RegenerateTags, "missing_tags", "the product has no tags".into(), true));
    }
    if !state.description.trim().is_empty() && weak && cooled(CommandKind::RewriteDescription) {
        rules.push((
            CommandKind::RewriteDescription,
            "weak_description",
            format!(
                "converts {:.1}% of {} views (posterior mean {:.1}%) against a district prior of {:.1}%",
                100.0 * ratio(w.conversions(), w.views),
                w.views,
                100.0 * posterior.mean(),
                100.0 * input.prior.mean()
            ),
            false,
        ));
    } else if !state.description.trim().is_empty() && bouncy && cooled(CommandKind::RewriteDescription) {
        rules.push((
            CommandKind::RewriteDescription,
            "high_bounce",
            format!("{:.0}% of {} views bounced", 100.0 * ratio(w.bounces, w.views), w.views),
            false,
        ));
    } else if !state.description.trim().is_empty() && unhappy && cooled(CommandKind::RewriteDescription) {
        rules.push((
            CommandKind::RewriteDescription,
            "unhappy_reviews",
            format!(
                "{} reviews since the copy last changed average a sentiment of {:+.2} (mean rating {:.1}): the copy may promise what the product does not deliver",
                w.reviews,
                w.sentiment(),
                w.rating_sum as f64 / w.reviews as f64
            ),
            false,
        ));
    }
    if !state.tags.is_empty() && hidden && cooled(CommandKind::RegenerateTags) {
        rules.push((
            CommandKind::RegenerateTags,
            "weak_discoverability",
            format!("{:.2}% click-through on {} impressions", 100.0 * ratio(w.clicks, w.impressions), w.impressions),
            false,
        ));
    }
    if state.seo.is_none() {
        rules.push((
            CommandKind::UpdateSeo,
            "missing_seo",
            "the product has no SEO title or meta description".into(),
            true,
        ));
    }
    if state.embedding_of != Some(state.copy_hash()) {
        let rule = if state.embedding_of.is_none() { "missing_embedding" } else { "stale_embedding" };
        rules.push((
            CommandKind::RegenerateEmbedding,
            rule,
            "the search embedding does not match the current copy".into(),
            false,
        ));
    }
    // The first rule whose command is not backing off after failures is decided.
    let Some((command, rule, reason, fills)) = rules.into_iter().find(|(c, ..)| !backed_off(*c)) else {
        return commands;
    };
    let failures = state.failures.get(&command).map_or(0, |f| f.in_a_row);
    // Missing copy that the configured generator keeps failing to write is filled by the offline
    // generator, which needs no budget.
    let generator = if fills && policy.fallback_after > 0 && failures >= policy.fallback_after {
        GeneratorChoice::Offline
    } else {
        GeneratorChoice::Configured
    };
    if generator == GeneratorChoice::Configured && !input.budget_available {
        return commands;
    }
    metrics.insert("copy_version".into(), state.copy_version as f64);
    metrics.insert("failures_in_a_row".into(), failures as f64);
    commands.push(Command::Optimize(OptimizationDecided {
        decision_id: input.decision_id,
        product_id,
        command,
        generator,
        rule: rule.to_string(),
        reason: if generator == GeneratorChoice::Offline {
            format!("{reason}; the configured generator failed {failures} times in a row, so the offline one writes it")
        } else {
            reason
        },
        evidence: Evidence {
            metrics,
            from_position: state.window_from,
            to_position: state.position,
            stream_version: state.version,
            prior_alpha: input.prior.alpha,
            prior_beta: input.prior.beta,
            budget_available: input.budget_available,
        },
        policy: policy.to_map(),
        at: input.now,
    }));
    commands
}

/// When the next command backing off after failures may be tried again, if any is.
pub fn next_retry(state: &ProductState, policy: &Policy) -> Option<DateTime<Utc>> {
    state
        .failures
        .values()
        .filter(|f| f.in_a_row > 0 && !needs_a_person(policy, f))
        .map(|f| f.last_at + backoff(policy, f.in_a_row))
        .min()
}

/// Whether a command has failed so often in a row that trying again would only spend budget:
/// the product's own facts keep producing text the guardrails refuse (a title made of markup,
/// say). It is tried again when the vendor changes the product.
pub fn needs_a_person(policy: &Policy, failures: &Failures) -> bool {
    policy.give_up_after > 0 && failures.in_a_row >= policy.give_up_after
}

/// How long a command waits after `failures` failed or rejected generations in a row: the
/// policy's backoff doubled for each failure after the first, at most its maximum.
pub fn backoff(policy: &Policy, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::zero();
    }
    let doublings = (failures - 1).min(20);
    let wait = policy.retry_backoff.num_seconds().saturating_mul(1 << doublings);
    Duration::seconds(wait.min(policy.max_backoff.num_seconds()))
}

/// What follows a generation that passed the guardrails: new description copy is tested
/// against the current copy in an experiment; anything else (and a description where there was
/// none) becomes the copy at once.
pub fn on_generated(
    state: &ProductState,
    generated: &CopyGenerated,
    experiment_id: Uuid,
    now: DateTime<Utc>,
) -> Vec<DomainEvent> {
    match &generated.content {
        Content::Description { text } if !state.description.trim().is_empty() && state.experiment.is_none() => {
            vec![DomainEvent::ExperimentStarted(ExperimentStarted {
                experiment_id,
                decision_id: generated.decision_id,
                product_id: generated.product_id.clone(),
                control: state.description.clone(),
                challenger: text.clone(),
                at: now,
            })]
        }
        content => vec![DomainEvent::CopyApplied(CopyApplied {
            decision_id: generated.decision_id,
            product_id: generated.product_id.clone(),
            content: content.clone(),
            at: now,
        })],
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn with(mut events: Vec<DomainEvent>, more: Vec<DomainEvent>) -> Vec<DomainEvent> {
        events.extend(more);
        events
    }

    #[test]
    fn given_a_healthy_product_with_little_traffic_then_nothing_is_decided() {
        assert!(given(with(healthy("p1"), traffic("p1", 10, 0))).when(input()).is_empty());
    }

    #[test]
    fn given_a_product_without_description_then_one_is_written() {
        let mut listed = listed("p1", "toys", "Wooden train");
        if let DomainEvent::ProductListed(l) = &mut listed {
            l.description.clear();
        }
        let cmds = given([listed]).when(input());
        assert_eq!(rules(&cmds), [(CommandKind::RewriteDescription, "missing_description".to_string())]);
    }

    #[test]
    fn given_a_product_without_tags_then_tags_are_generated() {
        let mut listed = listed("p1", "toys", "Wooden train");
        if let DomainEvent::ProductListed(l) = &mut listed {
            l.tags.clear();
        }
        assert_eq!(rules(&given([listed]).when(input())), [(CommandKind::RegenerateTags, "missing_tags".to_string())]);
    }

    #[test]
    fn given_no_seo_then_seo_is_written_and_then_the_embedding() {
        let g = given([listed("p1", "toys", "Wooden train")]);
        assert_eq!(rules(&g.when(input())), [(CommandKind::UpdateSeo, "missing_seo".to_string())]);
        let g = given(healthy("p1").into_iter().take(2));
        assert_eq!(rules(&g.when(input())), [(CommandKind::RegenerateEmbedding, "missing_embedding".to_string())]);
    }

    #[test]
    fn given_a_copy_change_then_the_embedding_is_stale() {
        let edit = DomainEvent::ProductEdited(ProductEdited { description: Some("New words.".into()), ..edit("p1") });
        let cmds = given(with(healthy("p1"), vec![edit])).when(input());
        assert_eq!(rules(&cmds), [(CommandKind::RegenerateEmbedding, "stale_embedding".to_string())]);
    }

    #[test]
    fn given_enough_views_converting_far_below_the_district_then_the_description_is_rewritten_with_evidence() {
        let cmds = given(with(healthy("p1"), traffic("p1", 80, 1))).when(input());
        assert_eq!(rules(&cmds), [(CommandKind::RewriteDescription, "weak_description".to_string())]);
        let Command::Optimize(d) = &cmds[0] else { unreachable!() };
        assert_eq!(d.evidence.metrics["window_views"], 80.0);
        assert_eq!(d.evidence.metrics["window_carts"], 1.0);
        assert!(d.evidence.metrics["conversion_posterior_mean"] < 0.05);
        assert_eq!(d.evidence.to_position, d.evidence.stream_version);
        assert_eq!((d.evidence.prior_alpha, d.evidence.prior_beta), (2.0, 18.0));
        assert!(d.reason.contains("80 views"), "{}", d.reason);
        assert_eq!(Policy::from_map(&d.policy), Policy::default());
    }

    #[test]
    fn given_few_views_without_conversions_then_the_prior_keeps_it_from_being_judged() {
        assert!(given(with(healthy("p1"), traffic("p1", 30, 0))).when(input()).is_empty());
    }

    #[test]
    fn given_a_product_converting_like_its_district_then_nothing_is_rewritten() {
        assert!(given(with(healthy("p1"), traffic("p1", 200, 20))).when(input()).is_empty());
    }

    #[test]
    fn given_most_views_bounce_then_the_description_is_rewritten_for_high_bounce() {
        let mut events = with(healthy("p1"), traffic("p1", 50, 10));
        events.extend((0..40).map(|i| bounced("p1", &format!("shopper-{i}"))));
        let cmds = given(events).when(input());
        assert_eq!(rules(&cmds), [(CommandKind::RewriteDescription, "high_bounce".to_string())]);
    }

    #[test]
    fn given_many_impressions_and_no_clicks_then_tags_are_regenerated_for_discoverability() {
        let mut events = healthy("p1");
        events.extend((0..250).map(|i| impression("p1", &format!("shopper-{i}"))));
        let cmds = given(events).when(input());
        assert_eq!(rules(&cmds), [(CommandKind::RegenerateTags, "weak_discoverability".to_string())]);
    }

    #[test]
    fn given_a_decision_in_flight_then_no_second_one_until_it_times_out() {
        let g = given(with(healthy("p1"), traffic("p1", 80, 1)));
        let Command::Optimize(d) = g.when(input()).remove(0) else { unreachable!() };
        let mut state = g.state.clone();
        state.evolve(&DomainEvent::OptimizationDecided(d), 1_000, 1_000);
        let g = Given { state };
        assert!(g.when(input()).is_empty());
        let later = DecideInput { now: t0() + Duration::minutes(11), ..input() };
        assert_eq!(rules(&g.when(later)).len(), 1, "a decision whose executor died is given up");
    }

    #[test]
    fn given_a_rewrite_was_rejected_then_the_cooldown_holds_the_next_one() {
        let g = given(with(healthy("p1"), traffic("p1", 80, 1)));
        let Command::Optimize(d) = g.when(input()).remove(0) else { unreachable!() };
        let mut state = g.state.clone();
        state.evolve(&DomainEvent::OptimizationDecided(d.clone()), 1_000, 1_000);
        state.evolve(
            &DomainEvent::GenerationRejected(GenerationRejected {
                decision_id: d.decision_id,
                product_id: d.product_id.clone(),
                command: d.command,
                reason: "claims".into(),
                generation: Generation {
                    generator: "offline/1".into(),
                    prompt: String::new(),
                    raw_output: String::new(),
                    verdicts: vec![],
                },
                at: t0(),
            }),
            1_001,
            1_001,
        );
        assert!(state.in_flight.is_none());
        let g = Given { state };
        assert!(g.when(DecideInput { now: t0() + Duration::hours(1), ..input() }).is_empty());
        assert_eq!(rules(&g.when(DecideInput { now: t0() + Duration::hours(7), ..input() })).len(), 1);
    }

    /// A healthy product whose description was removed, and the rejections of `n` rewrites.
    fn without_description_rejected(n: u32, at: impl Fn(u32) -> DateTime<Utc>) -> ProductState {
        let mut events = healthy("p1");
        if let DomainEvent::ProductListed(l) = &mut events[0] {
            l.description.clear();
        }
        let mut state = given(events).state;
        // The embedding follows the copy, so that only the description is missing.
        state.embedding_of = Some(state.copy_hash());
        for i in 0..n {
            let g = Given { state: state.clone() };
            let Command::Optimize(d) = g.when(DecideInput { now: at(i), ..input() }).remove(0) else { unreachable!() };
            assert_eq!(d.rule, "missing_description");
            let expected = if i < 3 { GeneratorChoice::Configured } else { GeneratorChoice::Offline };
            assert_eq!(d.generator, expected, "the offline fallback after three failures");
            let v = 1_000 + 2 * i as u64;
            state.evolve(&DomainEvent::OptimizationDecided(d.clone()), v, v);
            state.evolve(&rejection(&d, at(i)), v + 1, v + 1);
        }
        state
    }

    fn rejection(d: &OptimizationDecided, at: DateTime<Utc>) -> DomainEvent {
        DomainEvent::GenerationRejected(GenerationRejected {
            decision_id: d.decision_id,
            product_id: d.product_id.clone(),
            command: d.command,
            reason: "markup: the sign '<'".into(),
            generation: Generation {
                generator: "openai:m".into(),
                prompt: String::new(),
                raw_output: String::new(),
                verdicts: vec![],
            },
            at,
        })
    }

    #[test]
    fn given_a_missing_description_that_keeps_failing_then_each_retry_waits_twice_as_long() {
        let policy = Policy::default();
        let once = without_description_rejected(1, |_| t0());
        let g = Given { state: once.clone() };
        assert!(g.when(DecideInput { now: t0() + Duration::minutes(4), ..input() }).is_empty(), "backing off");
        assert_eq!(rules(&g.when(DecideInput { now: t0() + Duration::minutes(5), ..input() })).len(), 1);
        let twice = without_description_rejected(2, |i| t0() + Duration::minutes(5 * i as i64));
        let g = Given { state: twice };
        let after = |m: i64| DecideInput { now: t0() + Duration::minutes(5 + m), ..input() };
        assert!(g.when(after(9)).is_empty());
        assert_eq!(rules(&g.when(after(10))).len(), 1, "the second wait is twice the first");
        assert_eq!(backoff(&policy, 1), Duration::minutes(5));
        assert_eq!(backoff(&policy, 4), Duration::minutes(40));
        assert_eq!(backoff(&policy, 40), Duration::hours(24), "capped");
    }

    #[test]
    fn given_three_failures_of_missing_copy_then_the_offline_generator_fills_it_without_budget() {
        let state = without_description_rejected(3, |i| t0() + Duration::hours(i as i64));
        let later = t0() + Duration::days(1);
        let cmds = Given { state }.when(DecideInput { now: later, budget_available: false, ..input() });
        let [Command::Optimize(d)] = &cmds[..] else { panic!("{cmds:?}") };
        assert_eq!((d.rule.as_str(), d.generator), ("missing_description", GeneratorChoice::Offline));
        assert_eq!(d.evidence.metrics["failures_in_a_row"], 3.0);
        assert!(d.reason.contains("failed 3 times"), "{}", d.reason);
    }

    #[test]
    fn given_a_backed_off_rule_then_the_next_rule_is_decided_and_success_resets_the_count() {
        let mut events = healthy("p1");
        if let DomainEvent::ProductListed(l) = &mut events[0] {
            l.description.clear();
            l.tags.clear();
        }
        let g = given(events);
        let Command::Optimize(d) = g.when(input()).remove(0) else { unreachable!() };
        assert_eq!(d.rule, "missing_description");
        let mut state = g.state.clone();
        state.evolve(&DomainEvent::OptimizationDecided(d.clone()), 100, 100);
        state.evolve(&rejection(&d, t0()), 101, 101);
        let g = Given { state: state.clone() };
        assert_eq!(rules(&g.when(input())), [(CommandKind::RegenerateTags, "missing_tags".to_string())]);
        // A description that applies resets the count.
        state.evolve(
            &DomainEvent::CopyApplied(CopyApplied {
                decision_id: d.decision_id,
                product_id: d.product_id.clone(),
                content: Content::Description { text: "A train.".into() },
                at: t0(),
            }),
            102,
            102,
        );
        assert!(!state.failures.contains_key(&CommandKind::RewriteDescription));
    }

    #[test]
    fn given_failures_the_fallback_cannot_fix_then_the_command_waits_for_the_vendor() {
        let policy = Policy::default();
        let state = without_description_rejected(6, |i| t0() + Duration::days(i as i64));
        let f = state.failures[&CommandKind::RewriteDescription];
        assert!(needs_a_person(&policy, &f));
        let much_later = DecideInput { now: t0() + Duration::days(60), ..input() };
        assert!(Given { state: state.clone() }.when(much_later.clone()).is_empty(), "no more attempts");
        assert_eq!(next_retry(&state, &policy), None, "no wake-up either");
        // The vendor edits the product: it is tried again.
        let mut state = state;
        state.evolve(
            &DomainEvent::ProductEdited(ProductEdited { title: Some("Wooden train".into()), ..edit("p1") }),
            5_000,
            5_000,
        );
        assert_eq!(rules(&Given { state }.when(much_later)).len(), 1);
    }

    #[test]
    fn decisions_recorded_before_backoff_existed_replay_without_it() {
        let mut recorded = Policy::default().to_map();
        for k in ["retry_backoff_secs", "max_backoff_secs", "fallback_after_failures", "give_up_after_failures"] {
            recorded.remove(k);
        }
        let p = Policy::from_map(&recorded);
        assert_eq!((p.retry_backoff, p.fallback_after), (Duration::zero(), 0));
        assert_eq!(Policy::from_map(&Policy::default().to_map()), Policy::default());
    }

    #[test]
    fn given_no_budget_then_nothing_is_generated() {
        let cmds =
            given(with(healthy("p1"), traffic("p1", 80, 1))).when(DecideInput { budget_available: false, ..input() });
        assert!(cmds.is_empty());
    }

    fn running_experiment() -> ProductState {
        let g = given(with(healthy("p1"), traffic("p1", 80, 1)));
        let Command::Optimize(d) = g.when(input()).remove(0) else { unreachable!() };
        let mut state = g.state.clone();
        state.evolve(&DomainEvent::OptimizationDecided(d.clone()), 1_000, 1_000);
        let generated = CopyGenerated {
            decision_id: d.decision_id,
            product_id: d.product_id.clone(),
            content: Content::Description { text: "A better train.".into() },
            generation: Generation {
                generator: "offline/1".into(),
                prompt: String::new(),
                raw_output: String::new(),
                verdicts: vec![],
            },
            at: t0(),
        };
        let next = on_generated(&state, &generated, Uuid::from_u128(77), t0());
        assert!(
            matches!(&next[..], [DomainEvent::ExperimentStarted(x)] if x.challenger == "A better train." && x.control == "Wooden train, made well.")
        );
        state.evolve(&next[0], 1_001, 1_001);
        state
    }

    #[test]
    fn given_new_copy_for_a_described_product_then_it_is_tested_in_an_experiment_and_nothing_else_is_decided() {
        let state = running_experiment();
        assert!(state.in_flight.is_none());
        assert_eq!(state.window, Counts::default());
        assert!(Given { state }.when(input()).is_empty());
    }

    #[test]
    fn given_an_experiment_then_views_and_carts_are_attributed_to_each_shoppers_arm() {
        let mut state = running_experiment();
        let x = state.experiment.clone().unwrap();
        let mut expected = [ArmStats::default(); 2];
        for (i, e) in traffic("p1", 100, 30).into_iter().enumerate() {
            let arm = experiment::arm(x.experiment_id, e.shopper_id().unwrap()) as usize;
            match &e {
                DomainEvent::ProductViewed(_) => expected[arm].views += 1,
                DomainEvent::AddedToCart(_) => expected[arm].conversions += 1,
                _ => {}
            }
            state.evolve(&e, 2_000 + i as u64, 2_000 + i as u64);
        }
        assert_eq!(state.experiment.unwrap().arms, expected);
        assert!(expected[0].views > 20 && expected[1].views > 20);
    }

    #[test]
    fn given_the_challenger_converts_far_better_then_it_wins_and_becomes_the_copy() {
        let mut state = running_experiment();
        let x = state.experiment.clone().unwrap();
        let mut pos = 2_000;
        for i in 0..1_200 {
            let s = format!("shopper-{i}");
            let shopper = mall_events::ids::ShopperId::parse(s.clone()).unwrap();
            pos += 1;
            state.evolve(&viewed("p1", &s), pos, pos);
            let rate = if experiment::arm(x.experiment_id, &shopper) == Arm::Challenger { 4 } else { 40 };
            if i % rate == 0 {
                pos += 1;
                state.evolve(&carted("p1", &s), pos, pos);
            }
        }
        let cmds = Given { state: state.clone() }.when(input());
        let [Command::ConcludeExperiment(c)] = &cmds[..] else { panic!("{cmds:?}") };
        assert_eq!(c.outcome, Outcome::ChallengerWon);
        assert!(c.prob_challenger_better > 0.95 && c.likelihood_ratio >= 20.0);
        state.evolve(&cmds[0].clone().into_event(), pos + 1, pos + 1);
        assert_eq!(state.description, "A better train.");
        assert!(state.experiment.is_none());
        assert_eq!(state.copy_version, 1);
    }

    #[test]
    fn given_no_winner_by_the_maximum_duration_then_the_challenger_is_rolled_back() {
        let mut state = running_experiment();
        let cmds = Given { state: state.clone() }.when(DecideInput { now: t0() + Duration::days(15), ..input() });
        let [Command::ConcludeExperiment(c)] = &cmds[..] else { panic!("{cmds:?}") };
        assert_eq!(c.outcome, Outcome::Inconclusive);
        state.evolve(&cmds[0].clone().into_event(), 5_000, 5_000);
        assert_eq!(state.description, "Wooden train, made well.");
        assert!(state.experiment.is_none());
    }

    /// Reviews of `p` by distinct shoppers.
    fn reviews(p: &str, list: &[(u8, &str)]) -> Vec<DomainEvent> {
        list.iter()
            .enumerate()
            .map(|(i, (rating, text))| reviewed(p, &format!("reviewer-{i}"), *rating, text))
            .collect()
    }

    #[test]
    fn given_shoppers_unhappy_in_their_reviews_then_the_description_is_rewritten_with_the_figures() {
        let unhappy =
            reviews("p1", &[(1, "Broke after a day, terrible."), (2, "Flimsy and disappointing."), (2, "Not good.")]);
        let cmds = given(with(healthy("p1"), unhappy.clone())).when(input());
        let [Command::Optimize(d)] = &cmds[..] else { panic!("{cmds:?}") };
        assert_eq!((d.command, d.rule.as_str()), (CommandKind::RewriteDescription, "unhappy_reviews"), "{}", d.reason);
        assert_eq!(d.evidence.metrics["window_reviews"], 3.0);
        assert!((d.evidence.metrics["review_rating_mean"] - 5.0 / 3.0).abs() < 1e-9);
        assert!(d.evidence.metrics["review_sentiment_mean"] < -0.5, "{:?}", d.evidence.metrics);
        assert!(d.reason.contains("3 reviews"), "{}", d.reason);
        // The review text is data: it is in no part of the decision.
        assert!(!serde_json::to_string(d).unwrap().contains("Flimsy"));
    }

    #[test]
    fn given_too_few_or_happy_reviews_or_a_policy_from_before_reviews_then_no_rewrite_for_them() {
        let two = reviews("p1", &[(1, "Terrible."), (1, "Awful.")]);
        assert!(given(with(healthy("p1"), two)).when(input()).is_empty());
        let happy = reviews("p1", &[(5, "Lovely."), (4, "Sturdy and nice."), (5, "")]);
        let g = given(with(healthy("p1"), happy));
        assert!(g.when(input()).is_empty());
        assert!(g.state.window.sentiment() > 0.5);
        let unhappy = reviews("p1", &[(1, "Terrible."), (1, "Awful."), (1, "Bad.")]);
        let old = Policy::from_map(&BTreeMap::new());
        assert_eq!(old.unhappy_reviews, 0, "decisions recorded before reviews replay without the rule");
        assert!(!old.to_map().contains_key("unhappy_reviews"), "and record it as they did");
        assert!(given(with(healthy("p1"), unhappy)).when(DecideInput { policy: old, ..input() }).is_empty());
    }

    fn proposal(from: &str, to: &str) -> PriceProposal {
        PriceProposal {
            proposal_id: Uuid::from_u128(9),
            from: Price::parse(from).unwrap(),
            to: Price::parse(to).unwrap(),
            reason: "converts at 6.0% and sells out in 9 days".into(),
        }
    }

    fn price_testing() -> ProductState {
        let mut state = given([listed("p1", "toys", "Wooden train")]).state;
        let started = price_test(&state, &proposal("19.9000", "20.90"), Uuid::from_u128(10), t0()).unwrap();
        assert_eq!((started.control.as_str(), started.challenger.as_str()), ("19.90", "20.90"));
        state.evolve(&DomainEvent::PriceTestStarted(started), 10, 10);
        state
    }

    /// A purchase of `p` by `s` at `price`.
    fn bought_at(p: &str, s: &str, price: &str) -> DomainEvent {
        let mut e = bought(p, s);
        if let DomainEvent::Purchased(x) = &mut e {
            x.unit_price = Price::parse(price).unwrap();
        }
        e
    }

    #[test]
    fn given_a_price_proposal_then_a_test_starts_only_from_the_price_it_was_made_from_and_one_at_a_time() {
        let state = given([listed("p1", "toys", "Wooden train")]).state;
        let now = t0();
        assert!(price_test(&state, &proposal("18.00", "19.00"), Uuid::nil(), now).unwrap_err().contains("19.90 now"));
        assert!(
            price_test(&state, &proposal("19.90", "19.90"), Uuid::nil(), now).unwrap_err().contains("no new price")
        );
        assert!(price_test(&ProductState::default(), &proposal("19.90", "20.90"), Uuid::nil(), now).is_err());
        let testing = price_testing();
        assert!(price_test(&testing, &proposal("19.90", "18.90"), Uuid::nil(), now).unwrap_err().contains("under way"));
    }

    #[test]
    fn given_a_price_test_then_each_arm_gets_its_views_and_orders_and_the_better_earner_is_kept() {
        let mut state = price_testing();
        let t = state.price_test.clone().unwrap();
        let mut pos = 100;
        // The challenger (20.90) sells to one view in 5, the control (19.90) to one in 25.
        for i in 0..1_000 {
            let s = format!("shopper-{i}");
            let arm = experiment::arm(t.test_id, &mall_events::ids::ShopperId::parse(s.clone()).unwrap());
            pos += 1;
            state.evolve(&viewed("p1", &s), pos, pos);
            let every = if arm == Arm::Challenger { 5 } else { 25 };
            if i % every == 0 {
                pos += 1;
                state.evolve(&bought_at("p1", &s, t.price(arm).as_str()), pos, pos);
            }
        }
        let arms = state.price_test.as_ref().unwrap().arms;
        assert_eq!(arms[0].views + arms[1].views, 1_000);
        assert!(arms[1].per_view() > 3.0 * arms[0].per_view(), "{arms:?}");
        let cmds = Given { state: state.clone() }.when(DecideInput { now: t0() + Duration::hours(3), ..input() });
        let Some(Command::ConcludePriceTest(c)) = cmds.first() else { panic!("{cmds:?}") };
        assert_eq!((c.outcome, c.price.as_str()), (Outcome::ChallengerWon, "20.90"), "{}", c.reason);
        assert!(c.likelihood_ratio >= 20.0 && c.prob_challenger_better >= 0.95);
        state.evolve(&cmds[0].clone().into_event(), pos + 1, pos + 1);
        assert_eq!(state.price.as_ref().unwrap().as_str(), "20.90");
        assert!(state.price_test.is_none());
    }

    #[test]
    fn given_no_winner_by_the_maximum_duration_then_today_s_price_stays() {
        let mut state = price_testing();
        let cmds = Given { state: state.clone() }.when(DecideInput { now: t0() + Duration::days(15), ..input() });
        let Some(Command::ConcludePriceTest(c)) = cmds.first() else { panic!("{cmds:?}") };
        assert_eq!((c.outcome, c.price.as_str()), (Outcome::Inconclusive, "19.90"));
        state.evolve(&cmds[0].clone().into_event(), 50, 50);
        assert_eq!(state.price.as_ref().unwrap().as_str(), "19.90");
    }

    #[test]
    fn given_the_vendor_sets_a_price_during_a_test_then_the_test_ends_and_theirs_holds() {
        let mut state = price_testing();
        state.evolve(
            &DomainEvent::ProductEdited(ProductEdited { price: Some(Price::parse("17.00").unwrap()), ..edit("p1") }),
            20,
            20,
        );
        assert!(state.price_test.is_none());
        assert_eq!(state.price.as_ref().unwrap().as_str(), "17.00");
    }

    #[test]
    fn given_tags_generated_then_they_apply_at_once() {
        let state = given([listed("p1", "toys", "Wooden train")]).state;
        let generated = CopyGenerated {
            decision_id: Uuid::from_u128(5),
            product_id: ProductId::parse("p1").unwrap(),
            content: Content::Tags { tags: vec!["wood".into(), "train".into()] },
            generation: Generation {
                generator: "offline/1".into(),
                prompt: String::new(),
                raw_output: String::new(),
                verdicts: vec![],
            },
            at: t0(),
        };
        let next = on_generated(&state, &generated, Uuid::from_u128(6), t0());
        let mut state = state;
        state.evolve(&next[0], 2, 2);
        assert_eq!(state.tags, ["wood", "train"]);
    }

    #[test]
    fn decide_is_pure_the_same_state_and_input_give_the_same_commands() {
        let g = given(with(healthy("p1"), traffic("p1", 80, 1)));
        assert_eq!(g.when(input()), g.when(input()));
    }
}
