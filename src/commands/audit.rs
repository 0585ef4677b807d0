//! `mall audit product ID` and `mall replay STREAM [--until POS|TIME] [--verify]`: read-only,
//! from the log alone (they work beside a running server).

use std::sync::Arc;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use mall_actors::audit::{self, Change, History, Status};
use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::executors::offline::OfflineGenerator;
use mall_actors::runtime::entity::{self, Kind, Until};
use mall_actors::runtime::snapshot::MemorySnapshots;
use mall_actors::runtime::{Runtime, RuntimeConfig};
use mall_events::domain::Content;
use mall_events::ids::{DistrictSlug, ProductId, ShopperId};
use mall_events::{EventStore, StreamId};

use crate::cli::Exit;
use crate::store::{self, Access, StoreArgs};

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

/// Runs `mall audit ...`: the history is built while the live actors' loader folds the
/// product's stream.
pub async fn audit(store_args: &StoreArgs, cmd: AuditCommand) -> Result<(), Exit> {
    let AuditCommand::Product { id, json } = cmd;
    let id = ProductId::parse(id).map_err(|e| anyhow!("product id: {}", e.0))?;
    let store = store::open(store_args, Access::ReadOnly).await?;
    let mut history = audit::HistoryBuilder::default();
    let state = fold::<entity::Product>(store, &id, Until::Head, &mut |s, e, d| history.observe(s, e, d)).await?;
    let history = history.finish(&state);
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

/// Parses `--until`: a log position or an RFC 3339 time.
fn parse_until(s: &str) -> anyhow::Result<Until> {
    if let Ok(p) = s.parse::<u64>() {
        return Ok(Until::Position(p));
    }
    s.parse::<DateTime<Utc>>()
        .map(Until::Time)
        .map_err(|_| anyhow!("--until: {s:?} is neither a log position nor an RFC 3339 time"))
}

/// Folds an instance of `K` with the live actors' loader ([`entity::replay_observed`]): from
/// the log alone, no snapshot, up to `until`, showing `observe` each event with the state
/// before it.
async fn fold<K: Kind>(
    store: Arc<dyn EventStore>,
    id: &K::Id,
    until: Until,
    observe: &mut entity::Observer<'_, K>,
) -> Result<K::State, Exit> {
    let rt = Runtime::new(
        store,
        Arc::new(MemorySnapshots::default()),
        Arc::new(OfflineGenerator),
        Arc::new(HashEmbedder),
        RuntimeConfig::default(),
    );
    let (state, folded) = entity::replay_observed::<K>(&rt, id, until, observe).await.map_err(anyhow::Error::from)?;
    if folded == 0 {
        let upto = if until == Until::Head { "" } else { " up to --until" };
        return Err(anyhow!("no events of {}-{id}{upto}", K::NAME).into());
    }
    Ok(state)
}

/// Runs `mall replay`.
/// The merchandising stream as it was: every rule and ordering test; with `verify`, each ordering
/// test's conclusion recounted from the district's events up to the position it recorded and
/// decided again at its time. (A rule records its evidence; the catalog facts a sweep saw are not
/// in the log, so rules are shown, not re-decided.)
async fn replay_merchandising(
    store: Arc<dyn EventStore>,
    until: Until,
    verify: bool,
) -> Result<(serde_json::Value, Option<audit::Verification>), Exit> {
    use mall_actors::merchandising::Rules;
    use mall_actors::merchandising::ordering::{self, Tests};
    use mall_events::Direction;
    let stream = StreamId::parse(mall_events::merchandising::STREAM).expect("a valid stream id");
    let (mut rules, mut tests) = (Rules::default(), Tests::default());
    let mut from = 1;
    'read: loop {
        let batch = store.read_stream(&stream, from, Direction::Forward, 1_000).await.map_err(anyhow::Error::from)?;
        let Some(last) = batch.last() else { break };
        from = last.stream_version + 1;
        for e in &batch {
            if !until.includes(e) {
                break 'read;
            }
            let d = e.decode().map_err(|err| anyhow!("position {}: {err}", e.position))?;
            rules.apply(&d);
            tests.apply(&d, e.position);
        }
    }
    let verification = if verify {
        let mut events: std::collections::HashMap<uuid::Uuid, Vec<(u64, mall_events::domain::DomainEvent)>> =
            std::collections::HashMap::new();
        for t in tests.0.values() {
            let Some(c) = &t.concluded else { continue };
            let tag = mall_events::ids::tag::district(&t.started.district);
            let mut at = t.position + 1;
            let mut folded = Vec::new();
            'tag: loop {
                let batch = store.read_by_tag(&tag, at, 1_000).await.map_err(anyhow::Error::from)?;
                let Some(last) = batch.last() else { break };
                at = last.position + 1;
                for e in batch {
                    if e.position > c.as_of {
                        break 'tag;
                    }
                    if let Ok(d) = e.decode() {
                        folded.push((e.position, d));
                    }
                }
            }
            events.insert(t.started.test_id, folded);
        }
        let policy = mall_actors::product::experiment::ExperimentPolicy::default();
        let (checked, mismatches) = ordering::verify(
            &tests,
            |t| events.get(&t.started.test_id).map(|v| v.iter().map(|(p, d)| (*p, d)).collect()).unwrap_or_default(),
            &policy,
        );
        Some(audit::Verification {
            checked,
            mismatches: mismatches
                .into_iter()
                .map(|(recorded, reproduced)| audit::Mismatch {
                    position: recorded.as_of,
                    stream_version: 0,
                    event_type: "ordering_test_concluded".into(),
                    recorded: serde_json::to_value(&recorded).expect("json"),
                    reproduced: serde_json::to_value(&reproduced).expect("json"),
                })
                .collect(),
        })
    } else {
        None
    };
    let state = serde_json::json!({
        "rules": rules.0.values().map(|r| serde_json::json!({"rule": r.set, "expired": r.expired})).collect::<Vec<_>>(),
        "ordering_tests": tests.0.values().map(|t| serde_json::json!({"started": t.started, "concluded": t.concluded})).collect::<Vec<_>>(),
    });
    Ok((state, verification))
}

pub async fn replay(store_args: &StoreArgs, args: &ReplayArgs) -> Result<(), Exit> {
    let stream = StreamId::parse(args.stream.clone()).map_err(|e| anyhow!("stream: {}", e.0))?;
    let until = args.until.as_deref().map(parse_until).transpose()?.unwrap_or(Until::Head);
    let store = store::open(store_args, Access::ReadOnly).await?;
    let id = stream.as_str()[stream.category().len() + 1..].to_string();
    let bad_id = |e: mall_events::ids::InvalidValue| anyhow!("stream: {}", e.0);
    let (state, verification) = match stream.category() {
        "product" => {
            let id = ProductId::parse(id).map_err(bad_id)?;
            let mut verifier = args.verify.then(audit::Verifier::default);
            let s = fold::<entity::Product>(store, &id, until, &mut |s, e, d| {
                if let Some(v) = &mut verifier {
                    v.observe(s, e, d);
                }
            })
            .await?;
            let v = verifier.map(audit::Verifier::finish);
            (serde_json::to_value(&s).expect("state serializes"), v)
        }
        "district" => {
            use mall_actors::district::evolution::Verifier;
            let id = DistrictSlug::parse(id).map_err(bad_id)?;
            // Each decision is checked against the state as of the position it decided at:
            // the first pass finds the decisions, the second folds and checks.
            let mut verifier = args.verify.then(Verifier::default);
            if let Some(v) = &mut verifier {
                fold::<entity::District>(store.clone(), &id, until, &mut |_, e, d| v.record(e, d)).await?;
            }
            let s = fold::<entity::District>(store, &id, until, &mut |s, _, _| {
                if let Some(v) = &mut verifier {
                    v.observe(s);
                }
            })
            .await?;
            let v = verifier.map(|v| {
                let (checked, mismatches) = v.finish(&s);
                audit::Verification {
                    checked,
                    mismatches: mismatches
                        .into_iter()
                        .map(|(position, recorded, reproduced)| audit::Mismatch {
                            position,
                            stream_version: 0,
                            event_type: "district_evolution".into(),
                            recorded: serde_json::from_str(&recorded).unwrap_or(serde_json::json!(recorded)),
                            reproduced: serde_json::from_str(&reproduced).unwrap_or(serde_json::json!(reproduced)),
                        })
                        .collect(),
                }
            });
            (serde_json::to_value(&s).expect("state serializes"), v)
        }
        "shopper" => {
            let id = ShopperId::parse(id).map_err(bad_id)?;
            let s = fold::<entity::Shopper>(store, &id, until, &mut |_, _, _| {}).await?;
            let prediction = <entity::Shopper as Kind>::decide(&s, &()).pop();
            let mut v = serde_json::to_value(&s).expect("state serializes");
            v["prediction"] = serde_json::to_value(prediction).expect("prediction serializes");
            (v, None)
        }
        "health" => {
            use mall_actors::health::{Verifier, actor::Health};
            let mut verifier = args.verify.then(Verifier::default);
            let s = fold::<Health>(store, &id, until, &mut |s, e, d| {
                if let Some(v) = &mut verifier {
                    v.observe(s, e, d);
                }
            })
            .await?;
            let v = verifier.map(|v| {
                let (checked, mismatches) = v.finish();
                audit::Verification {
                    checked,
                    mismatches: mismatches
                        .into_iter()
                        .map(|m| audit::Mismatch {
                            position: m.position,
                            stream_version: 0,
                            event_type: "health_checked".into(),
                            recorded: serde_json::json!(m.recorded),
                            reproduced: serde_json::json!(m.reproduced),
                        })
                        .collect(),
                }
            });
            (serde_json::to_value(&s).expect("state serializes"), v)
        }
        "merchandising" => {
            let (state, v) = replay_merchandising(store, until, args.verify).await?;
            (state, v)
        }
        other => {
            return Err(anyhow!(
                "stream: replay knows product-, district-, shopper-, health- and merchandising- streams, not {other}-"
            )
            .into());
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
    if let Some(v) = verification
        && !v.mismatches.is_empty()
    {
        return Err(Exit {
            code: 4,
            error: anyhow!("{} recorded decisions are not reproduced by replay", v.mismatches.len()),
        });
    }
    Ok(())
}
