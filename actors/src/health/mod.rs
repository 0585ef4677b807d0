//! Self-healing: the health check's rules.
//!
//! Two pure steps. [`detect`] turns the facts the shell gathered (each product's own state and
//! its read row, whether its image works, the districts open, the projections' lag, the queue's
//! failing model calls, a timed read) into [`Finding`]s, each with its kind, severity, subject,
//! evidence and — where the correct value is known — its [`Repair`]. The findings are recorded
//! in the check's `health_checked` event; [`decide`] then turns them and the open issues (the
//! [`HealthState`] folded from every self-healing event) into what to do: open an issue, repair a
//! product, close an issue the check no longer finds. Replay re-runs `decide` on each recorded
//! check ([`Verifier`]).
//!
//! - [`fetch`]: the image fetcher, safe against server-side request forgery;
//! - [`placeholder`]: the SVG mall draws for a product whose image is broken;
//! - [`actor`]: the health decider behind the shell's `Kind`.

pub mod actor;
pub mod fetch;
pub mod placeholder;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use mall_events::RecordedEvent;
use mall_events::domain::{AttributeValue, DomainEvent};
use mall_events::health::{Finding, HealthChecked, Remedy, Repair, Severity};
use mall_events::ids::{Currency, DistrictSlug, Position, Price, ProductId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The URL mall serves a product's placeholder image at (stable: the same for the same product).
pub fn placeholder_url(product_id: &str) -> String {
    format!("/api/products/{product_id}/placeholder.svg")
}

/// A product as its own state says it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductView {
    pub product_id: ProductId,
    pub district: DistrictSlug,
    pub title: String,
    pub description: String,
    pub has_tags: bool,
    pub has_seo: bool,
    pub has_embedding: bool,
    pub price: Price,
    pub currency: Currency,
    pub stock: u32,
    /// The vendor's image.
    pub image_url: Option<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The product stream's version and the last global position folded.
    pub version: u64,
    pub position: Position,
    /// The longest run of failed or rejected generations of any command, and which.
    pub rejections: Option<(String, u32)>,
}

/// A product's row in the read tables.
#[derive(Debug, Clone, PartialEq)]
pub struct RowView {
    pub district: String,
    pub title: String,
    pub description: String,
    pub price: String,
    pub currency: String,
    pub stock: i64,
    pub image_url: Option<String>,
    pub listed_position: Position,
}

/// What fetching a product's image found.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageCheck {
    Works,
    /// Fetched and not a usable image.
    Broken(String),
    /// Refused before connecting (the URL, or where it leads).
    Refused(String),
}

/// One product: its own state, its read row, its image.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductFacts {
    pub state: ProductView,
    /// `None`: the read side has no row for it.
    pub row: Option<RowView>,
    /// `None`: no image, or images were not checked.
    pub image: Option<ImageCheck>,
}

/// A projection's lag behind the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub projection: String,
    pub positions: u64,
    pub seconds: f64,
}

/// Everything a check looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub products: Vec<ProductFacts>,
    /// The districts open now.
    pub districts: BTreeSet<String>,
    /// Where the read rows were read at: rows of products whose state folded further are not
    /// compared (the read side has not caught up with them yet).
    pub rows_position: Position,
    /// Whether images were checked this time.
    pub images_checked: bool,
    pub lags: Vec<Lag>,
    /// Model calls that failed in the last hour, and the last error.
    pub failed_calls: u64,
    pub last_call_error: Option<String>,
    /// How long a timed storefront read took, in milliseconds.
    pub read_ms: Option<f64>,
}

/// When a measure is an issue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub lag_positions: u64,
    pub lag_seconds: f64,
    pub rejection_streak: u32,
    pub failed_calls: u64,
    pub slow_read_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            lag_positions: 10_000,
            lag_seconds: 60.0,
            rejection_streak: 3,
            failed_calls: 3,
            slow_read_ms: 250.0,
        }
    }
}

/// The scope a kind of issue belongs to: an issue is closed only by a check that examined it.
pub fn scope(kind: &str) -> &'static str {
    match kind {
        "broken_image" | "image_recovered" => "images",
        "projection_lag" | "rejection_streak" | "failing_llm" | "slow_read" => "performance",
        _ => "products",
    }
}

fn finding(
    kind: &str,
    subject: String,
    severity: Severity,
    remedy: Remedy,
    evidence: &[(&str, String)],
    repair: Option<Repair>,
) -> Finding {
    Finding {
        kind: kind.into(),
        subject,
        severity,
        remedy,
        evidence: evidence.iter().map(|(k, v)| (k.to_string(), clip(v))).collect(),
        repair,
    }
}

/// Evidence values are short.
fn clip(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The fields a read row and a product's own state disagree on.
fn disagreements(s: &ProductView, r: &RowView) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut check = |field: &'static str, row: String, state: String| {
        if row != state {
            out.push((field, row, state));
        }
    };
    check("district", r.district.clone(), s.district.as_str().to_string());
    // Text differs by content; the evidence says how, not what (vendor text is not evidence).
    if r.title != s.title {
        out.push(("title", format!("{} bytes", r.title.len()), format!("{} bytes", s.title.len())));
    }
    if r.description != s.description {
        out.push(("description", format!("{} bytes", r.description.len()), format!("{} bytes", s.description.len())));
    }
    let row_price = Price::parse(r.price.clone()).map(|p| p.ten_thousandths()).ok();
    if row_price != Some(s.price.ten_thousandths()) {
        out.push(("price", r.price.clone(), s.price.as_str().to_string()));
    }
    let mut check = |field: &'static str, row: String, state: String| {
        if row != state {
            out.push((field, row, state));
        }
    };
    check("currency", r.currency.clone(), s.currency.as_str().to_string());
    check("stock", r.stock.to_string(), s.stock.to_string());
    out
}

fn row_repair(s: &ProductView) -> Repair {
    Repair::Row {
        title: s.title.clone(),
        description: s.description.clone(),
        price: s.price.clone(),
        currency: s.currency.clone(),
        stock: s.stock,
        district: s.district.clone(),
        as_of: s.version,
    }
}

/// A listing's identity for duplicates: its title (case and spacing aside) and its attributes.
fn listing_key(s: &ProductView) -> (String, String) {
    let title = s.title.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    (title, serde_json::to_string(&s.attributes).unwrap_or_default())
}

/// The findings the facts call for. Pure.
pub fn detect(facts: &Facts, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let subject = |p: &ProductView| format!("product:{}", p.product_id);
    // The earliest listing of each title and attributes is the original; the others duplicate it.
    let mut first: BTreeMap<(String, String), (Position, &str)> = BTreeMap::new();
    for p in &facts.products {
        let at = p.row.as_ref().map_or(p.state.position, |r| r.listed_position);
        let e = first.entry(listing_key(&p.state)).or_insert((at, p.state.product_id.as_str()));
        if (at, p.state.product_id.as_str()) < *e {
            *e = (at, p.state.product_id.as_str());
        }
    }
    for p in &facts.products {
        let s = &p.state;
        let missing: Vec<&str> = [
            ("description", s.description.trim().is_empty()),
            ("tags", !s.has_tags),
            ("seo", !s.has_seo),
            ("embedding", !s.has_embedding),
        ]
        .into_iter()
        .filter_map(|(k, m)| m.then_some(k))
        .collect();
        if !missing.is_empty() {
            out.push(finding(
                "missing_copy",
                subject(s),
                if missing.contains(&"description") { Severity::Medium } else { Severity::Low },
                Remedy::Task,
                &[("missing", missing.join(", "))],
                None,
            ));
        }
        if !facts.districts.contains(s.district.as_str()) {
            out.push(finding(
                "orphan",
                subject(s),
                Severity::High,
                Remedy::Person,
                &[("district", s.district.as_str().into()), ("why", "no open district has this slug".into())],
                None,
            ));
        }
        if s.price.ten_thousandths() == 0 {
            out.push(finding(
                "invalid_price",
                subject(s),
                Severity::High,
                Remedy::Person,
                &[("price", s.price.as_str().into()), ("currency", s.currency.as_str().into())],
                None,
            ));
        }
        let (first_at, first_id) = first[&listing_key(s)];
        if first_id != s.product_id.as_str() {
            out.push(finding(
                "duplicate_listing",
                subject(s),
                Severity::Medium,
                Remedy::Person,
                &[("duplicate_of", first_id.to_string()), ("original_listed_at", first_at.to_string())],
                None,
            ));
        }
        if let Some(r) = &p.row
            && s.position <= facts.rows_position
        {
            if r.stock < 0 {
                out.push(finding(
                    "negative_stock",
                    subject(s),
                    Severity::High,
                    Remedy::Fix,
                    &[("row.stock", r.stock.to_string()), ("state.stock", s.stock.to_string())],
                    Some(row_repair(s)),
                ));
            } else {
                let diff = disagreements(s, r);
                if !diff.is_empty() {
                    let mut evidence = vec![("fields", diff.iter().map(|d| d.0).collect::<Vec<_>>().join(", "))];
                    for (field, row, state) in &diff {
                        evidence.push((field, format!("row {row}, state {state}")));
                    }
                    out.push(finding(
                        "row_mismatch",
                        subject(s),
                        Severity::Medium,
                        Remedy::Fix,
                        &evidence,
                        Some(row_repair(s)),
                    ));
                }
            }
        }
        if let (Some(url), Some(check)) = (&s.image_url, &p.image) {
            let placeholder = placeholder_url(s.product_id.as_str());
            let shows_placeholder = p.row.as_ref().is_some_and(|r| r.image_url.as_deref() == Some(&placeholder));
            match check {
                ImageCheck::Broken(why) | ImageCheck::Refused(why) => out.push(finding(
                    "broken_image",
                    subject(s),
                    Severity::High,
                    Remedy::Fix,
                    &[
                        ("url", url.clone()),
                        ("why", why.clone()),
                        ("refused", matches!(check, ImageCheck::Refused(_)).to_string()),
                    ],
                    Some(Repair::Placeholder { original: url.clone(), placeholder }),
                )),
                ImageCheck::Works if shows_placeholder => out.push(finding(
                    "image_recovered",
                    subject(s),
                    Severity::Low,
                    Remedy::Fix,
                    &[("url", url.clone())],
                    Some(Repair::Restore { image_url: url.clone() }),
                )),
                ImageCheck::Works => {}
            }
        }
        if let Some((command, n)) = &s.rejections
            && *n >= t.rejection_streak
        {
            out.push(finding(
                "rejection_streak",
                subject(s),
                Severity::Low,
                Remedy::Log,
                &[("command", command.clone()), ("in_a_row", n.to_string())],
                None,
            ));
        }
    }
    for l in &facts.lags {
        if l.positions > t.lag_positions || l.seconds > t.lag_seconds {
            out.push(finding(
                "projection_lag",
                format!("projection:{}", l.projection),
                Severity::Medium,
                Remedy::Log,
                &[("positions", l.positions.to_string()), ("seconds", format!("{:.1}", l.seconds))],
                None,
            ));
        }
    }
    if facts.failed_calls >= t.failed_calls {
        let mut evidence = vec![("failed_last_hour", facts.failed_calls.to_string())];
        if let Some(e) = &facts.last_call_error {
            evidence.push(("last_error", e.clone()));
        }
        out.push(finding("failing_llm", "mall".into(), Severity::Medium, Remedy::Log, &evidence, None));
    }
    if let Some(ms) = facts.read_ms
        && ms > t.slow_read_ms
    {
        out.push(finding(
            "slow_read",
            "reads".into(),
            Severity::Low,
            Remedy::Log,
            &[("ms", format!("{ms:.1}")), ("threshold_ms", format!("{:.0}", t.slow_read_ms))],
            None,
        ));
    }
    out
}

/// The findings a check records: all of them, or — past [`MAX_FINDINGS`] — the most severe
/// (then `true`: the check closes nothing for want of a finding).
///
/// [`MAX_FINDINGS`]: mall_events::health::MAX_FINDINGS
pub fn recorded(mut findings: Vec<Finding>) -> (Vec<Finding>, bool) {
    let max = mall_events::health::MAX_FINDINGS;
    if findings.len() <= max {
        return (findings, false);
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings.truncate(max);
    (findings, true)
}

/// The scopes a check examined, for its `checked` field.
pub fn checked(facts: &Facts) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::from([("products".to_string(), facts.products.len() as u64), ("performance".to_string(), 1)]);
    if facts.images_checked {
        c.insert("images".into(), facts.products.iter().filter(|p| p.image.is_some()).count() as u64);
    }
    c
}

/// An issue not yet closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIssue {
    pub issue_id: Uuid,
    pub kind: String,
    pub subject: String,
    pub severity: Severity,
    pub remedy: Remedy,
    pub opened_at: DateTime<Utc>,
    /// The last repair made for it.
    pub repair: Option<Repair>,
}

/// The last check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    pub check_id: Uuid,
    pub event_id: Uuid,
    pub at: DateTime<Utc>,
    pub trigger: String,
    pub findings: usize,
}

/// Self-healing's folded state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthState {
    /// Open issues by `kind|subject`.
    pub open: BTreeMap<String, OpenIssue>,
    pub last_check: Option<LastCheck>,
    pub checks: u64,
    pub repairs: u64,
    pub closed: u64,
    /// Notifications not yet delivered: the event id of each, with its position.
    pub outbox: BTreeMap<Uuid, Position>,
    /// The global position of the last event folded.
    pub position: Position,
}

fn key(kind: &str, subject: &str) -> String {
    format!("{kind}|{subject}")
}

impl HealthState {
    /// Folds one self-healing event. Total.
    pub fn evolve(&mut self, e: &RecordedEvent, d: &DomainEvent) {
        self.position = e.position;
        match d {
            DomainEvent::HealthChecked(c) => {
                self.checks += 1;
                self.last_check = Some(LastCheck {
                    check_id: c.check_id,
                    event_id: e.event_id,
                    at: c.at,
                    trigger: c.trigger.clone(),
                    findings: c.findings.len(),
                });
            }
            DomainEvent::HealthIssueOpened(o) => {
                self.open.insert(
                    key(&o.kind, &o.subject),
                    OpenIssue {
                        issue_id: o.issue_id,
                        kind: o.kind.clone(),
                        subject: o.subject.clone(),
                        severity: o.severity,
                        remedy: o.remedy,
                        opened_at: o.at,
                        repair: None,
                    },
                );
                if o.remedy == Remedy::Person {
                    self.outbox.insert(e.event_id, e.position);
                }
            }
            DomainEvent::HealthIssueClosed(c) if self.open.values().any(|i| i.issue_id == c.issue_id) => {
                self.open.retain(|_, i| i.issue_id != c.issue_id);
                self.closed += 1;
            }
            DomainEvent::ProductRepaired(r) => {
                if let Some(i) = self.open.values_mut().find(|i| i.issue_id == r.issue_id) {
                    i.repair = Some(r.repair.clone());
                }
                self.repairs += 1;
                self.outbox.insert(e.event_id, e.position);
            }
            DomainEvent::NotificationDelivered(n) => {
                self.outbox.remove(&n.notification_id);
            }
            _ => {}
        }
    }
}

/// What a check decides.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A finding becomes an issue.
    Open { issue_id: Uuid, finding: Finding },
    /// A product is repaired for an issue.
    Repair { issue_id: Uuid, product_id: String, repair: Repair, reason: String },
    /// An issue the check no longer finds.
    Close { issue_id: Uuid, reason: String },
}

/// The id of the issue a check opens for a finding: the same for the same check and finding.
pub fn issue_id(check_id: Uuid, kind: &str, subject: &str) -> Uuid {
    Uuid::new_v5(&check_id, key(kind, subject).as_bytes())
}

fn reason_for(kind: &str, repair: &Repair) -> String {
    match (kind, repair) {
        (_, Repair::Placeholder { .. }) => "the image is broken: mall's placeholder is shown until it works".into(),
        (_, Repair::Restore { .. }) => "the original image works again".into(),
        ("negative_stock", Repair::Row { .. }) => "the read row's stock is negative: rewritten from the product".into(),
        (_, Repair::Row { .. }) => "the read row disagrees with the product's own state: rewritten from it".into(),
    }
}

/// What the check calls for, given the open issues. Pure: the same state and check always
/// decide the same; a second check that finds the same thing decides nothing new.
pub fn decide(state: &HealthState, check: &HealthChecked) -> Vec<Decision> {
    let mut out = Vec::new();
    let found: BTreeSet<String> = check.findings.iter().map(|f| key(&f.kind, &f.subject)).collect();
    for f in &check.findings {
        let product = f.subject.strip_prefix("product:").unwrap_or(&f.subject).to_string();
        // A recovered image is the end of its broken-image issue.
        let k = if f.kind == "image_recovered" { key("broken_image", &f.subject) } else { key(&f.kind, &f.subject) };
        let open = state.open.get(&k).or_else(|| state.open.get(&key(&f.kind, &f.subject)));
        let issue = match open {
            Some(i) => i.issue_id,
            None => {
                let id = issue_id(check.check_id, &f.kind, &f.subject);
                out.push(Decision::Open { issue_id: id, finding: f.clone() });
                id
            }
        };
        if let Some(repair) = &f.repair
            && open.is_none_or(|i| i.repair.as_ref() != Some(repair))
        {
            out.push(Decision::Repair {
                issue_id: issue,
                product_id: product,
                repair: repair.clone(),
                reason: reason_for(&f.kind, repair),
            });
        }
    }
    for (k, i) in &state.open {
        if check.truncated || found.contains(k) || !check.checked.contains_key(scope(&i.kind)) {
            continue;
        }
        let reason = match (i.kind.as_str(), &i.repair) {
            ("broken_image", _) => "the image works again".to_string(),
            (_, Some(_)) => "repaired: the check no longer finds it".to_string(),
            _ => "the check no longer finds it".to_string(),
        };
        out.push(Decision::Close { issue_id: i.issue_id, reason });
    }
    out
}

/// A check's decisions as events: what `decide` said, with the check's id and time.
pub fn events(check: &HealthChecked, decisions: &[Decision], tasks: &BTreeMap<Uuid, Uuid>) -> Vec<DomainEvent> {
    use mall_events::health::{HealthIssueClosed, HealthIssueOpened, ProductRepaired};
    decisions
        .iter()
        .filter_map(|d| {
            Some(match d {
                Decision::Open { issue_id, finding } => DomainEvent::HealthIssueOpened(HealthIssueOpened {
                    issue_id: *issue_id,
                    check_id: check.check_id,
                    kind: finding.kind.clone(),
                    subject: finding.subject.clone(),
                    severity: finding.severity,
                    remedy: finding.remedy,
                    evidence: finding.evidence.clone(),
                    task_id: tasks.get(issue_id).copied(),
                    at: check.at,
                }),
                Decision::Repair { issue_id, product_id, repair, reason } => {
                    DomainEvent::ProductRepaired(ProductRepaired {
                        product_id: ProductId::parse(product_id.clone()).ok()?,
                        issue_id: *issue_id,
                        check_id: check.check_id,
                        repair: repair.clone(),
                        reason: reason.clone(),
                        at: check.at,
                    })
                }
                Decision::Close { issue_id, reason } => DomainEvent::HealthIssueClosed(HealthIssueClosed {
                    issue_id: *issue_id,
                    check_id: check.check_id,
                    reason: reason.clone(),
                    at: check.at,
                }),
            })
        })
        .collect()
}

/// One recorded check whose decisions replay does not reproduce.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub position: Position,
    pub check_id: Uuid,
    pub recorded: Vec<String>,
    pub reproduced: Vec<String>,
}

/// Re-runs `decide` at every recorded check, with the state folded before it, and compares what
/// it decides with the events the check recorded (every event it caused).
#[derive(Debug, Default)]
pub struct Verifier {
    /// The check being compared: its event's id (what its effects name as their cause), and
    /// what it recorded so far beside what `decide` reproduces.
    current: Option<(Uuid, Mismatch)>,
    pub checked: usize,
    pub mismatches: Vec<Mismatch>,
}

fn describe(d: &DomainEvent) -> Option<String> {
    Some(match d {
        DomainEvent::HealthIssueOpened(o) => {
            format!("open {} {} {:?} {:?} {}", o.kind, o.subject, o.severity, o.remedy, o.issue_id)
        }
        DomainEvent::ProductRepaired(r) => {
            format!("repair {} {} {}", r.product_id, r.issue_id, serde_json::to_string(&r.repair).ok()?)
        }
        DomainEvent::HealthIssueClosed(c) => format!("close {}", c.issue_id),
        _ => return None,
    })
}

impl Verifier {
    /// Takes in one event with the state folded before it.
    pub fn observe(&mut self, state: &HealthState, e: &RecordedEvent, d: &DomainEvent) {
        if let DomainEvent::HealthChecked(c) = d {
            self.flush();
            let check = HealthChecked { at: c.at, ..c.clone() };
            let mut reproduced: Vec<String> =
                events(&check, &decide(state, c), &BTreeMap::new()).iter().filter_map(describe).collect();
            reproduced.sort();
            let check_id = c.check_id;
            self.current =
                Some((e.event_id, Mismatch { position: e.position, check_id, recorded: Vec::new(), reproduced }));
        } else if let Some((event_id, open)) = &mut self.current
            && e.causation_id == Some(*event_id)
            && let Some(s) = describe(d)
        {
            open.recorded.push(s);
        }
    }

    fn flush(&mut self) {
        if let Some((_, mut check)) = self.current.take() {
            self.checked += 1;
            check.recorded.sort();
            if check.recorded != check.reproduced {
                self.mismatches.push(check);
            }
        }
    }

    /// The verification, once every event was observed.
    pub fn finish(mut self) -> (usize, Vec<Mismatch>) {
        self.flush();
        (self.checked, self.mismatches)
    }
}
