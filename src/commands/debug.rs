//! `mall debug ...` (hidden): helpers for the crash tests.

use std::io::Write;

use clap::Subcommand;
use mall_events::{ExpectedVersion, NewEvent, StreamId};
use uuid::Uuid;

use crate::cli::Exit;
use crate::store::{self, Access, StoreArgs};

/// Hidden test helpers.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Append forever from several writers; print `ack <position> <event id> <stream> <version>`
    /// for each acknowledged (durable) event, until killed.
    AppendLoad {
        /// Concurrent writers.
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Stop after this many events per writer (default: never).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Append NDJSON records to the log as they are, past the catalog's rules (each still
    /// validated): a log written before those rules existed — a product listed in a district
    /// that was never opened, say — for the tests of self-healing.
    AppendRaw {
        /// The NDJSON file.
        file: std::path::PathBuf,
    },
    /// Write a synthetic mall as NDJSON records (for `mall import`): districts, products and
    /// shoppers' signals in time order, the same for the same seed.
    Synth {
        #[arg(long, default_value_t = 10)]
        districts: usize,
        #[arg(long, default_value_t = 5_000)]
        products: usize,
        #[arg(long, default_value_t = 50_000)]
        shoppers: usize,
        #[arg(long, default_value_t = 1_000_000)]
        signals: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Runs `mall debug ...`.
pub async fn run(store_args: &StoreArgs, cmd: DebugCommand) -> Result<(), Exit> {
    match cmd {
        DebugCommand::Synth { districts, products, shoppers, signals, seed } => {
            synth(districts.max(1), products.max(1), shoppers.max(1), signals, seed)?;
            Ok(())
        }
        DebugCommand::AppendRaw { file } => {
            let text = std::fs::read_to_string(&file).map_err(anyhow::Error::from)?;
            let store = store::open(store_args, Access::ReadWrite).await?;
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let record = mall_events::records::parse_record(line.as_bytes())
                    .map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
                let event = NewEvent::from_domain(&record, Uuid::now_v7(), Vec::new()).map_err(anyhow::Error::from)?;
                store.append(&record.stream_id(), ExpectedVersion::Any, vec![event]).await?;
            }
            store.close().await;
            Ok(())
        }
        DebugCommand::AppendLoad { writers, limit } => {
            let store = store::open(store_args, Access::ReadWrite).await?;
            let mut tasks = Vec::new();
            for w in 0..writers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let stream = StreamId::parse(format!("product-load{w}")).expect("valid");
                    let mut i = 0u64;
                    while limit.is_none_or(|l| i < l) {
                        // Batches of 1 to 3 events of varying size, so that kills land anywhere.
                        let n = 1 + (i % 3) as usize;
                        let events: Vec<NewEvent> = (0..n)
                            .map(|k| NewEvent {
                                event_id: Uuid::now_v7(),
                                event_type: "load".into(),
                                schema_version: 1,
                                tags: vec![format!("writer:{w}")],
                                correlation_id: None,
                                causation_id: None,
                                payload: vec![
                                    (i as u8).wrapping_add(k as u8);
                                    20 + ((i * 37 + k as u64) % 400) as usize
                                ],
                            })
                            .collect();
                        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                        let r = store.append(&stream, ExpectedVersion::Any, events).await?;
                        let mut out = std::io::stdout().lock();
                        for (k, id) in ids.iter().enumerate() {
                            let v = r.stream_version - (n - 1 - k) as u64;
                            let _ = writeln!(out, "ack {} {id} {stream} {v}", r.first_position + k as u64);
                        }
                        let _ = out.flush();
                        i += 1;
                    }
                    Ok::<_, mall_events::StoreError>(())
                }));
            }
            for t in tasks {
                t.await.map_err(anyhow::Error::from)??;
            }
            store.close().await;
            Ok(())
        }
    }
}

/// `mall debug synth`: one record per line on standard output.
fn synth(districts: usize, products: usize, shoppers: usize, signals: usize, seed: u64) -> std::io::Result<()> {
    use rand::{Rng, SeedableRng};
    use serde_json::json;
    const WORDS: &[&str] =
        &["oak", "linen", "copper", "field", "harbor", "maple", "stone", "river", "cedar", "wool", "amber", "slate"];
    const THINGS: &[&str] = &["lamp", "mug", "bag", "kite", "chair", "knife", "scarf", "bowl", "tent", "clock"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line = |v: serde_json::Value| -> std::io::Result<()> {
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")
    };
    for d in 0..districts {
        line(json!({"type": "district_opened", "slug": format!("d{d}"), "name": format!("District {d}"),
            "personality": {"tone": "warm", "style": "plain", "audience": "everyone"}}))?;
    }
    let title = |p: usize| format!("{} {} {p}", WORDS[p % WORDS.len()], THINGS[(p / WORDS.len()) % THINGS.len()]);
    let price = |p: usize| format!("{}.{:02}", 5 + p % 95, (p * 7) % 100);
    for p in 0..products {
        line(
            json!({"type": "product_listed", "product_id": format!("p{p}"), "district": format!("d{}", p % districts),
            "title": title(p), "description": "", "price": price(p), "currency": "EUR",
            "tags": [WORDS[p % WORDS.len()], THINGS[(p / WORDS.len()) % THINGS.len()]],
            "attributes": {"material": WORDS[(p / 3) % WORDS.len()]}, "stock": 1 + p % 50}),
        )?;
    }
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("valid").to_utc();
    for i in 0..signals {
        // A skewed choice of product (popular ones first) and a uniform shopper.
        let p = ((rng.random::<f64>().powi(3)) * products as f64) as usize % products;
        let s = rng.random_range(0..shoppers);
        let at = (start + chrono::Duration::seconds(i as i64 * 3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let base = |kind: &str| {
            json!({"type": kind, "id": Uuid::from_u64_pair(seed, i as u64), "shopper_id": format!("s{s}"),
                "session_id": format!("s{s}-{}", i / 50_000), "at": at, "product_id": format!("p{p}")})
        };
        let mut v = match rng.random_range(0..100) {
            0..40 => {
                let mut v = base("impression_served");
                v["list"] = json!("home");
                v["position"] = json!(rng.random_range(1..20));
                v
            }
            40..65 => {
                let mut v = base("product_viewed");
                v["dwell_ms"] = json!(rng.random_range(500..60_000));
                v
            }
            65..77 => {
                let mut v = base("product_clicked");
                v["list"] = json!("home");
                v["position"] = json!(rng.random_range(1..20));
                v
            }
            77..84 => {
                let mut v = base("added_to_cart");
                v["quantity"] = json!(1);
                v
            }
            84..86 => {
                let mut v = base("removed_from_cart");
                v["quantity"] = json!(1);
                v
            }
            86..91 => {
                let mut v = base("purchased");
                v["order_id"] = json!(format!("o{i}"));
                v["quantity"] = json!(1);
                v["unit_price"] = json!(price(p));
                v["currency"] = json!("EUR");
                v
            }
            91..95 => base("bounced"),
            _ => {
                let mut v = base("searched");
                let o = v.as_object_mut().expect("object");
                o.remove("product_id");
                o.insert("query".into(), json!(THINGS[p % THINGS.len()]));
                o.insert("result_ids".into(), json!([format!("p{p}")]));
                v
            }
        };
        if v["type"] == "impression_served" && i % 2 == 1 {
            v["list"] = json!(format!("district:d{}", p % districts));
        }
        line(v)?;
    }
    out.flush()
}
