//! `mall audit product ID` and `mall replay STREAM [--until POS|TIME] [--verify]`: read-only,
//! from the log alone (they work beside a running server).

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use mall_actors::audit::{self, Change, History, Status};
use mall_actors::district::DistrictState;
use mall_actors::product::ProductState;
use mall_actors::shopper::{ShopperInput, ShopperState};
use mall_events::domain::{Content, DomainEvent};
use mall_events::ids::{Position, ProductId};
use mall_events::{EventStore, RecordedEvent, StreamId};

use crate::cli::Exit;
use crate::serve::reads::read_stream;
use crate::store::{self, Access, StoreArgs};

/// The most events a stream replay reads.
const MAX_EVENTS: usize = 10_000_000;

/// `mall audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every copy version of a product and why it changed.
    Product {
        /// The product id.
        id: String,
        /// Print the history as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mall replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The stream: `product-ID`, `district-SLUG` or `shopper-ID`.
    pub stream: String,
    /// Stop at this log position, or at this time (RFC 3339; events recorded up to it).
    #[arg(long)]
    pub until: Option<String>,
    /// Re-run `decide` at every recorded decision and report those it does not reproduce
    /// (products; exits non-zero if any).
    #[arg(long)]
    pub verify: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mall audit ...`.
pub async fn audit(store_args: &StoreArgs, cmd: AuditCommand) -> Result<(), Exit> {
    let AuditCommand::Product { id, json } = cmd;
    let id = ProductId::parse(id).map_err(|e| anyhow!("product id: {}", e.0))?;
    let store = store::open(store_args, Access::ReadOnly).await?;
    let events = read_stream(&*store, &StreamId::product(&id), MAX_EVENTS).await?;
    if events.is_empty() {
        return Err(anyhow!("no product {id} in the log").into());
    }
    let history = audit::history(&events)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&history).expect("history serializes"));
    } else {
        print!("{}", render(&history));
    }
    Ok(())
}

fn content(c: &Option<Content>) -> String {
    match c {
        None => "(none)".into(),
        Some(Content::Description { text }) => format!("{text:?}"),
        Some(Content::Tags { tags }) => format!("tags {}", tags.join(", ")),
        Some(Content::Seo(s)) => format!("title {:?}, meta {:?}", s.title, s.meta_description),
        Some(Content::Embedding { vector, text_hash }) => format!("{}-d vector of copy {text_hash:016x}", vector.len()),
    }
}

/// The history as a reader wants it.
pub fn render(h: &History) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "product {} — {:?}", h.product_id, h.title);
    let _ = writeln!(out, "  current description: {:?}", h.description);
    let _ = writeln!(out, "  tags: {}", h.tags.join(", "));
    let _ = writeln!(out, "\ndescription versions:");
    for v in &h.versions {
        let by = v.decision_id.map(|d| format!(" (decision {d})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  v{} since {} at position {}, from {}{by}:\n    {:?}",
            v.version,
            v.since.to_rfc3339(),
            v.position,
            v.source,
            v.text
        );
    }
    let _ = writeln!(out, "\ndecisions:");
    if h.changes.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &h.changes {
        render_change(&mut out, c);
    }
    out
}

fn render_change(out: &mut String, c: &Change) {
    use std::fmt::Write;
    let status = match c.status {
        Status::InFlight => "in flight",
        Status::Rejected => "rejected",
        Status::Applied => "applied",
        Status::Testing => "under test",
        Status::Kept => "kept (the challenger won)",
        Status::RolledBack => "rolled back",
    };
    let _ = writeln!(out, "\n  {} {} — rule {} — {status}", c.decided_at.to_rfc3339(), c.command.as_str(), c.rule);
    let _ = writeln!(out, "    decision {} at position {}", c.decision_id, c.position);
    let _ = writeln!(out, "    why: {}", c.reason);
    let e = &c.evidence;
    let _ = writeln!(
        out,
        "    evidence: positions {}..={} (stream version {}), district prior Beta({:.2}, {:.2}), budget {}",
        e.from_position,
        e.to_position,
        e.stream_version,
        e.prior_alpha,
        e.prior_beta,
        if e.budget_available { "available" } else { "spent" }
    );
    let metrics: Vec<String> = e.metrics.iter().map(|(k, v)| format!("{k}={}", trim(*v))).collect();
    let _ = writeln!(out, "    metrics: {}", metrics.join(" "));
    let _ = writeln!(out, "    old: {}", content(&c.old));
    let _ = writeln!(out, "    new: {}", content(&c.new));
    if let Some(g) = &c.generation {
        let _ = writeln!(out, "    generator: {}", g.generator);
        let _ = writeln!(out, "    prompt: {:?}", g.prompt);
        let _ = writeln!(out, "    raw output: {:?}", g.raw_output);
        for v in &g.verdicts {
            let _ =
                writeln!(out, "    guardrail {}: {} {}", v.check, if v.passed { "passed" } else { "FAILED" }, v.detail);
        }
    }
    if let Some(r) = &c.rejected_reason {
        let _ = writeln!(out, "    rejected: {r}");
    }
    if let Some(x) = &c.experiment {
        let _ = writeln!(
            out,
            "    experiment {} started {} at position {}",
            x.experiment_id,
            x.started_at.to_rfc3339(),
            x.started_position
        );
        if let Some(k) = &x.concluded {
            let _ = writeln!(
                out,
                "    concluded {} at position {}: {:?}; control {}/{} views converted, challenger {}/{}; P(challenger better) {:.3}, likelihood ratio {:.2}; {}",
                k.at.to_rfc3339(),
                x.concluded_position.unwrap_or_default(),
                k.outcome,
                k.control.conversions,
                k.control.views,
                k.challenger.conversions,
                k.challenger.views,
                k.prob_challenger_better,
                k.likelihood_ratio,
                k.reason
            );
        }
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.4}") }
}

/// Where a replay stops.
enum Until {
    Position(Position),
    Time(DateTime<Utc>),
}

impl Until {
    fn parse(s: &str) -> anyhow::Result<Self> {
        if let Ok(p) = s.parse::<u64>() {
            return Ok(Until::Position(p));
        }
        s.parse::<DateTime<Utc>>()
            .map(Until::Time)
            .map_err(|_| anyhow!("--until: {s:?} is neither a log position nor an RFC 3339 time"))
    }

    fn includes(&self, e: &RecordedEvent) -> bool {
        match self {
            Until::Position(p) => e.position <= *p,
            Until::Time(t) => e.recorded_at <= *t,
        }
    }
}

/// Runs `mall replay`.
pub async fn replay(store_args: &StoreArgs, args: &ReplayArgs) -> Result<(), Exit> {
    let stream = StreamId::parse(args.stream.clone()).map_err(|e| anyhow!("stream: {}", e.0))?;
    let until = args.until.as_deref().map(Until::parse).transpose()?;
    let keep = |e: &RecordedEvent| until.as_ref().is_none_or(|u| u.includes(e));
    let store = store::open(store_args, Access::ReadOnly).await?;
    let id = &stream.as_str()[stream.category().len() + 1..];
    let (state, verification) = match stream.category() {
        "product" => {
            let mut events = read_stream(&*store, &stream, MAX_EVENTS).await?;
            events.retain(keep);
            if events.is_empty() {
                return Err(
                    anyhow!("no events in {stream}{}", if until.is_some() { " up to --until" } else { "" }).into()
                );
            }
            let mut s = ProductState::default();
            for e in &events {
                s.evolve(&e.decode()?, e.position, e.stream_version);
            }
            let v = if args.verify { Some(audit::verify(&events)?) } else { None };
            (serde_json::to_value(&s).expect("state serializes"), v)
        }
        "district" => {
            let events = by_tag(&*store, &format!("district:{id}"), &keep).await?;
            let mut s = DistrictState::default();
            for e in &events {
                s.evolve(&e.decode()?, e.position);
            }
            (serde_json::to_value(&s).expect("state serializes"), None)
        }
        "shopper" => {
            let events = by_tag(&*store, &format!("shopper:{id}"), &keep).await?;
            let mut tags_of: HashMap<String, Vec<(Position, Vec<String>)>> = HashMap::new();
            let mut s = ShopperState::default();
            for e in &events {
                let d = e.decode()?;
                let product_tags = match d.product_id() {
                    Some(p) => {
                        if !tags_of.contains_key(p.as_str()) {
                            tags_of.insert(p.as_str().into(), tag_history(&*store, p).await?);
                        }
                        tags_of[p.as_str()]
                            .iter()
                            .rev()
                            .find(|(at, _)| *at <= e.position)
                            .map(|(_, t)| t.clone())
                            .unwrap_or_default()
                    }
                    None => Vec::new(),
                };
                let district = e.tags.iter().find_map(|t| t.strip_prefix("district:")).map(str::to_string);
                s.evolve(&ShopperInput { event: &d, position: e.position, district, product_tags });
            }
            let prediction = s.predict();
            let mut v = serde_json::to_value(&s).expect("state serializes");
            v["prediction"] = serde_json::to_value(prediction).expect("prediction serializes");
            (v, None)
        }
        other => {
            return Err(anyhow!("stream: replay knows product-, district- and shopper- streams, not {other}-").into());
        }
    };
    if args.json {
        let mut out = serde_json::json!({"stream": stream.as_str(), "state": state});
        if let Some(v) = &verification {
            out["verification"] = serde_json::to_value(v).expect("verification serializes");
        }
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        println!("{}", serde_json::to_string_pretty(&state).expect("json"));
        if let Some(v) = &verification {
            println!("verify: {} recorded decisions checked, {} not reproduced", v.checked, v.mismatches.len());
            for m in &v.mismatches {
                println!("  position {} ({}): recorded {}", m.position, m.event_type, m.recorded);
                println!("    decide now returns {}", m.reproduced);
            }
        }
    }
    if let Some(v) = verification {
        if !v.mismatches.is_empty() {
            return Err(Exit {
                code: 4,
                error: anyhow!("{} recorded decisions are not reproduced by replay", v.mismatches.len()),
            });
        }
    }
    Ok(())
}

async fn by_tag(
    store: &dyn EventStore,
    tag: &str,
    keep: &dyn Fn(&RecordedEvent) -> bool,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = out.last().map_or(1, |e| e.position + 1);
        let batch = store.read_by_tag(tag, from, 5_000).await?;
        if batch.is_empty() || out.len() >= MAX_EVENTS {
            break;
        }
        out.extend(batch);
    }
    out.retain(|e| keep(e));
    if out.is_empty() {
        anyhow::bail!("no events tagged {tag}");
    }
    Ok(out)
}

/// A product's tags over time: (position, tags from then on).
async fn tag_history(store: &dyn EventStore, p: &ProductId) -> anyhow::Result<Vec<(Position, Vec<String>)>> {
    let mut out = Vec::new();
    for e in read_stream(store, &StreamId::product(p), MAX_EVENTS).await.context("reading a product's tags")? {
        if !matches!(e.event_type.as_str(), "product_listed" | "product_edited" | "copy_applied") {
            continue;
        }
        match e.decode()? {
            DomainEvent::ProductListed(l) => out.push((e.position, l.tags)),
            DomainEvent::ProductEdited(x) if x.tags.is_some() => out.push((e.position, x.tags.unwrap_or_default())),
            DomainEvent::CopyApplied(a) => {
                if let Content::Tags { tags } = a.content {
                    out.push((e.position, tags));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
