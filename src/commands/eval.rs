//! `mall eval recommendations`: offline evaluation of recommendations on the log or an NDJSON
//! file of records — a temporal leave-last-out split per shopper, the full catalog ranked, HR@k,
//! NDCG@k and coverage for each ranker, side by side.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use mall_actors::executors::embedder::HashEmbedder;
use mall_actors::personalization::eval::{self, DecayedPopularity, Interaction, ItemKnn, Popularity, Ranker};
use mall_actors::personalization::recommend::{Model, Params};
use mall_actors::personalization::synthetic;
use mall_events::domain::DomainEvent;

use crate::cli::Exit;
use crate::store::{self, Access, StoreArgs};

/// `mall eval ...`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// HR@k, NDCG@k and coverage of the baselines on a temporal leave-last-out split.
    Recommendations(RecommendationArgs),
}

/// `mall eval recommendations`.
#[derive(Debug, Args)]
pub struct RecommendationArgs {
    /// An NDJSON file of records (as `mall import` takes); without it, the store's log.
    #[arg(value_name = "FILE", conflicts_with = "synthetic")]
    pub path: Option<PathBuf>,
    /// The same, as a flag.
    #[arg(long, conflicts_with_all = ["path", "synthetic"])]
    pub file: Option<PathBuf>,
    /// Synthetic shoppers from this seed instead (see `personalization::synthetic`).
    #[arg(long, value_name = "SEED")]
    pub synthetic: Option<u64>,
    /// The list length measured.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Item-kNN's neighbours per product.
    #[arg(long, default_value_t = 50)]
    pub neighbours: usize,
    /// The half-life of decayed popularity, in days.
    #[arg(long, default_value_t = 7.0)]
    pub half_life_days: f64,
    #[arg(long)]
    pub json: bool,
}

/// A signal as an interaction (views, clicks, carts, purchases).
fn interaction(d: &DomainEvent) -> Option<Interaction> {
    let weight = match d {
        DomainEvent::ProductViewed(_) | DomainEvent::ProductClicked(_) => 1.0,
        DomainEvent::AddedToCart(_) => 4.0,
        DomainEvent::Purchased(_) => 6.0,
        _ => return None,
    };
    Some(Interaction {
        shopper: d.shopper_id()?.as_str().to_string(),
        product: d.product_id()?.as_str().to_string(),
        at: d.signal_at()?,
        weight,
        purchase: matches!(d, DomainEvent::Purchased(_)),
    })
}

/// A listed product's content vector (the built-in embedder over its title and tags).
fn content(d: &DomainEvent) -> Option<(String, Vec<f32>)> {
    match d {
        DomainEvent::ProductListed(p) => Some((
            p.product_id.as_str().to_string(),
            HashEmbedder::vector(&format!("{} {}", p.title, p.tags.join(" "))),
        )),
        _ => None,
    }
}

type Vectors = Vec<(String, Vec<f32>)>;

async fn interactions(store_args: &StoreArgs, file: Option<&PathBuf>) -> Result<(Vec<Interaction>, Vectors), Exit> {
    let mut out = Vec::new();
    let mut vectors = Vec::new();
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let d =
                    mall_events::records::parse_record(line.as_bytes()).map_err(|e| anyhow!("line {}: {e}", n + 1))?;
                out.extend(interaction(&d));
                vectors.extend(content(&d));
            }
        }
        None => {
            let store = store::open(store_args, Access::ReadOnly).await?;
            let mut from = 1;
            loop {
                let batch = store.read_all(from, 10_000).await.map_err(anyhow::Error::from)?;
                let Some(last) = batch.last() else { break };
                from = last.position + 1;
                for e in &batch {
                    if matches!(
                        e.event_type.as_str(),
                        "product_viewed" | "product_clicked" | "added_to_cart" | "purchased" | "product_listed"
                    ) && let Ok(d) = e.decode()
                    {
                        out.extend(interaction(&d));
                        vectors.extend(content(&d));
                    }
                }
            }
        }
    }
    Ok((out, vectors))
}

/// Runs `mall eval ...`.
pub async fn run(store_args: &StoreArgs, cmd: EvalCommand) -> Result<(), Exit> {
    let EvalCommand::Recommendations(args) = cmd;
    if args.k == 0 {
        return Err(anyhow!("--k: the list length must be at least 1").into());
    }
    if !(args.half_life_days.is_finite() && args.half_life_days > 0.0) {
        return Err(anyhow!("--half-life-days: a positive number of days").into());
    }
    let (all, vectors) = match args.synthetic {
        Some(seed) => (synthetic::interactions(seed, synthetic::Shape::default()), Vec::new()),
        None => interactions(store_args, args.path.as_ref().or(args.file.as_ref())).await?,
    };
    let split = eval::leave_last_out(all);
    if split.held_out.is_empty() {
        return Err(anyhow!("no shopper with two or more products to evaluate").into());
    }
    let params = Params { popularity_half_life_days: args.half_life_days, ..Params::default() };
    let mut mall = Model::new(params);
    for (product, v) in vectors {
        mall.set_vector(&product, v);
    }
    for i in &split.train {
        mall.observe(i);
    }
    let rankers: Vec<Box<dyn Ranker>> = vec![
        Box::new(Popularity::fit(&split.train)),
        Box::new(DecayedPopularity::fit(&split.train, args.half_life_days)),
        Box::new(ItemKnn::fit(&split.train, args.neighbours.max(1))),
        Box::new(mall),
    ];
    let figures: Vec<eval::Figures> = rankers.iter().map(|r| eval::evaluate(&split, r.as_ref(), args.k)).collect();
    if args.json {
        let k = args.k;
        let rows: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                let mut m = serde_json::Map::new();
                m.insert("name".into(), f.ranker.clone().into());
                m.insert("shoppers".into(), f.shoppers.into());
                m.insert(format!("hr_at_{k}"), f.hit_rate.into());
                m.insert(format!("ndcg_at_{k}"), f.ndcg.into());
                m.insert("coverage".into(), f.coverage.into());
                serde_json::Value::Object(m)
            })
            .collect();
        let body =
            serde_json::json!({"k": k, "products": split.catalog.len(), "train": split.train.len(), "models": rows});
        println!("{}", serde_json::to_string_pretty(&body).expect("json"));
        return Ok(());
    }
    println!(
        "{} shoppers held out, {} products, {} training interactions; the full catalog ranked",
        split.held_out.len(),
        split.catalog.len(),
        split.train.len()
    );
    let k = args.k;
    println!("{:<20} {:>9} {:>9} {:>9}", "ranker", format!("HR@{k}"), format!("NDCG@{k}"), "coverage");
    for f in &figures {
        println!("{:<20} {:>9.4} {:>9.4} {:>9.4}", f.ranker, f.hit_rate, f.ndcg, f.coverage);
    }
    Ok(())
}
