//! The catalog projection over a real embedded log: the rows each kind of event makes, exactly-
//! once application, and a from-scratch rebuild equal to the live projection after a randomized
//! workload appended while the live one followed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mall_events::domain::*;
use mall_events::ids::*;
use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, NewEvent};
use mall_projections::catalog::{Catalog, PRODUCT_METRICS, PRODUCTS};
use mall_projections::memory::MemorySink;
use mall_projections::runner::{Projection, Sink, catch_up, follow, lag};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

fn pid(p: &str) -> ProductId {
    ProductId::parse(p).unwrap()
}

fn listed(p: &str, stock: u32) -> DomainEvent {
    DomainEvent::ProductListed(ProductListed {
        product_id: pid(p),
        district: DistrictSlug::parse("toys").unwrap(),
        title: format!("Train {p}"),
        description: "Rings.".into(),
        price: Price::parse("19.90").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        tags: vec!["wood".into()],
        attributes: BTreeMap::new(),
        image_url: None,
        stock,
    })
}

fn viewed(p: &str) -> DomainEvent {
    DomainEvent::ProductViewed(ProductViewed {
        campaign: None,
        id: Uuid::now_v7(),
        shopper_id: ShopperId::parse("s1").unwrap(),
        session_id: SessionId::parse("x").unwrap(),
        at: Utc::now(),
        product_id: pid(p),
        dwell_ms: 1_500,
    })
}

fn bought(p: &str, qty: u32) -> DomainEvent {
    DomainEvent::Purchased(Purchased {
        campaign: None,
        id: Uuid::now_v7(),
        shopper_id: ShopperId::parse("s1").unwrap(),
        session_id: SessionId::parse("x").unwrap(),
        at: Utc::now(),
        product_id: pid(p),
        order_id: OrderId::parse("o1").unwrap(),
        quantity: qty,
        unit_price: Price::parse("19.90").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
    })
}

fn applied(p: &str, content: Content) -> DomainEvent {
    DomainEvent::CopyApplied(CopyApplied { decision_id: Uuid::now_v7(), product_id: pid(p), content, at: Utc::now() })
}

fn started(p: &str, x: Uuid, challenger: &str) -> DomainEvent {
    DomainEvent::ExperimentStarted(ExperimentStarted {
        experiment_id: x,
        decision_id: Uuid::now_v7(),
        product_id: pid(p),
        control: "Rings.".into(),
        challenger: challenger.into(),
        at: Utc::now(),
    })
}

fn concluded(p: &str, x: Uuid, outcome: Outcome) -> DomainEvent {
    DomainEvent::ExperimentConcluded(ExperimentConcluded {
        experiment_id: x,
        product_id: pid(p),
        outcome,
        control: ArmStats { views: 200, conversions: 2 },
        challenger: ArmStats { views: 200, conversions: 40 },
        prob_challenger_better: 0.99,
        likelihood_ratio: 50.0,
        reason: "test".into(),
        at: Utc::now(),
    })
}

async fn put(store: &dyn EventStore, events: Vec<DomainEvent>) -> u64 {
    let mut last = 0;
    for e in events {
        let ne = NewEvent::from_domain(&e, e.signal_id().unwrap_or_else(Uuid::now_v7), vec![]).unwrap();
        last = store.append(&e.stream_id(), ExpectedVersion::Any, vec![ne]).await.unwrap().last_position;
    }
    last
}

fn open(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap())
}

#[tokio::test]
async fn each_event_makes_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let sink = MemorySink::new(Catalog.tables());
    let x = Uuid::now_v7();
    let y = Uuid::now_v7();
    put(
        &*store,
        vec![
            listed("p1", 3),
            viewed("p1"),
            viewed("p1"),
            bought("p1", 2),
            applied("p1", Content::Seo(Seo { title: "T".into(), meta_description: "M".into() })),
            applied("p1", Content::Tags { tags: vec!["wood".into(), "train".into()] }),
            started("p1", x, "Seven rings of oiled beech."),
        ],
    )
    .await;
    catch_up(&*store, &Catalog, &sink, 100, |_| {}).await.unwrap();
    let p = sink.get(PRODUCTS, "p1").unwrap();
    assert_eq!(
        (p["description"].as_str(), p["status"].as_str(), p["copy_version"].as_i64()),
        (Some("Rings."), Some("in_stock"), Some(0))
    );
    assert_eq!((p["seo_title"].as_str(), p["challenger"].as_str()), (Some("T"), Some("Seven rings of oiled beech.")));
    assert_eq!(p["tags"], serde_json::json!(["wood", "train"]));
    let m = sink.get(PRODUCT_METRICS, "p1").unwrap();
    assert_eq!((m["views"].as_i64(), m["purchases"].as_i64(), m["dwell_ms"].as_i64()), (Some(2), Some(1), Some(3_000)));
    assert_eq!(m["revenue_e4"], 398_000, "2 × 19.90 in ten-thousandths: {m:?}");

    // The challenger wins: it becomes the copy. The next one loses: the copy stays.
    put(
        &*store,
        vec![
            concluded("p1", x, Outcome::ChallengerWon),
            started("p1", y, "Worse copy."),
            concluded("p1", y, Outcome::ControlWon),
        ],
    )
    .await;
    put(&*store, vec![DomainEvent::StockChanged(StockChanged { product_id: pid("p1"), stock: 0 })]).await;
    catch_up(&*store, &Catalog, &sink, 100, |_| {}).await.unwrap();
    let p = sink.get(PRODUCTS, "p1").unwrap();
    assert_eq!(p["description"], "Seven rings of oiled beech.");
    assert_eq!((p["copy_version"].as_i64(), p["status"].as_str()), (Some(1), Some("out_of_stock")));
    assert!(p["experiment_id"].is_null() && p["challenger"].is_null());

    // A batch delivered twice takes effect once.
    let cp = sink.checkpoint().await.unwrap();
    let again = store.read_all(1, 1000).await.unwrap();
    assert!(!sink.apply(0, cp, None, mall_projections::runner::changes_of(&Catalog, &again).0).await.unwrap());
    assert_eq!(sink.get(PRODUCT_METRICS, "p1").unwrap()["views"], 2);
    let l = lag(&*store, &sink).await.unwrap();
    assert_eq!((l.positions, l.checkpoint), (0, cp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_scratch_equals_the_live_projection() {
    let seed: u64 = std::env::var("MALL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let live = Arc::new(MemorySink::new(Catalog.tables()));
    let (applied_tx, mut applied_rx) = tokio::sync::watch::channel(0);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow(store.clone(), Arc::new(Catalog), live.clone(), applied_tx, stop_rx));

    // A randomized workload, appended while the live projection follows.
    let mut rng = StdRng::seed_from_u64(seed);
    let products: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let mut listed_ones: Vec<String> = Vec::new();
    let mut open_experiments: Vec<(String, Uuid)> = Vec::new();
    let mut last = 0;
    for _ in 0..1_500 {
        let p = products[rng.random_range(0..products.len())].clone();
        let e = if !listed_ones.contains(&p) {
            listed_ones.push(p.clone());
            listed(&p, rng.random_range(0..5))
        } else {
            match rng.random_range(0..10) {
                0 => DomainEvent::StockChanged(StockChanged { product_id: pid(&p), stock: rng.random_range(0..5) }),
                1 => applied(&p, Content::Description { text: format!("Copy {}", rng.random_range(0..1000)) }),
                2 if !open_experiments.iter().any(|(q, _)| *q == p) => {
                    let x = Uuid::now_v7();
                    open_experiments.push((p.clone(), x));
                    started(&p, x, &format!("Challenger {}", rng.random_range(0..1000)))
                }
                3 if open_experiments.iter().any(|(q, _)| *q == p) => {
                    let i = open_experiments.iter().position(|(q, _)| *q == p).unwrap();
                    let (_, x) = open_experiments.remove(i);
                    concluded(&p, x, if rng.random_bool(0.5) { Outcome::ChallengerWon } else { Outcome::ControlWon })
                }
                4 => bought(&p, rng.random_range(1..4)),
                _ => viewed(&p),
            }
        };
        last = put(&*store, vec![e]).await;
        if rng.random_range(0..100) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(30), applied_rx.wait_for(|p| *p >= last)).await.unwrap().unwrap();
    let _ = stop_tx.send(true);
    follower.await.unwrap().unwrap();

    // From position 0, in batches of another size.
    let rebuilt = MemorySink::new(Catalog.tables());
    let mut progress = Vec::new();
    catch_up(&*store, &Catalog, &rebuilt, 37, |p| progress.push(p)).await.unwrap();
    assert!(progress.windows(2).all(|w| w[0] < w[1]) && progress.last() == Some(&last));
    for table in [PRODUCTS, PRODUCT_METRICS] {
        let (a, pa) = live.table(table);
        let (b, pb) = rebuilt.table(table);
        assert_eq!(pa, pb);
        assert!(!a.is_empty());
        assert_eq!(a, b, "seed {seed}: table {table} differs");
    }
}

#[tokio::test]
async fn the_optimization_tables_tell_what_product_intelligence_did() {
    use mall_projections::optimization::{COPY_HISTORY, EXPERIMENTS, OPTIMIZATION_LOG, Optimization};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let sink = MemorySink::new(Optimization.tables());
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    let decision = Uuid::now_v7();
    let decided = DomainEvent::OptimizationDecided(OptimizationDecided {
        decision_id: decision,
        product_id: pid("p1"),
        command: CommandKind::RewriteDescription,
        generator: GeneratorChoice::Configured,
        rule: "weak_description".into(),
        reason: "converts at 1% against 30%".into(),
        evidence: Evidence {
            metrics: [("window_views".to_string(), 120.0)].into(),
            from_position: 1,
            to_position: 9,
            stream_version: 4,
            prior_alpha: 1.0,
            prior_beta: 20.0,
            budget_available: true,
        },
        policy: BTreeMap::new(),
        at: Utc::now(),
    });
    put(
        &*store,
        vec![
            listed("p1", 3),
            viewed("p1"),
            decided,
            started("p1", x, "Seven rings of oiled beech."),
            concluded("p1", x, Outcome::ChallengerWon),
            applied("p1", Content::Tags { tags: vec!["beech".into()] }),
            started("p1", y, "Worse copy."),
            concluded("p1", y, Outcome::ControlWon),
        ],
    )
    .await;
    catch_up(&*store, &Optimization, &sink, 3, |_| {}).await.unwrap();

    let (log, _) = sink.table(OPTIMIZATION_LOG);
    let kinds: Vec<&str> = log.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "decided",
            "experiment_started",
            "experiment_concluded",
            "applied",
            "experiment_started",
            "experiment_concluded"
        ],
        "in log order"
    );
    assert_eq!(log[0]["detail"]["evidence"]["metrics"]["window_views"], 120.0, "the evidence is kept");
    assert_eq!(log[0]["decision_id"], decision.to_string());

    let won = sink.get(EXPERIMENTS, &x.to_string()).unwrap();
    assert_eq!((won["status"].as_str(), won["challenger_views"].as_i64()), (Some("challenger_won"), Some(200)));
    assert_eq!(sink.get(EXPERIMENTS, &y.to_string()).unwrap()["status"], "control_won");

    let (history, _) = sink.table(COPY_HISTORY);
    let outcome = |source: &str, text: &str| {
        history
            .iter()
            .find(|r| r["source"] == source && r["content"]["text"] == text)
            .map(|r| r["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome("listing", "Rings.").as_deref(), Some("applied"));
    assert_eq!(outcome("experiment", "Seven rings of oiled beech.").as_deref(), Some("kept"));
    assert_eq!(outcome("experiment", "Worse copy.").as_deref(), Some("rolled_back"));
    assert!(history.iter().any(|r| r["field"] == "tags" && r["source"] == "decision"));
    assert!(history.iter().all(|r| r["product_id"] == "p1"));
}

#[tokio::test]
async fn a_shopper_profile_counts_their_signals_and_spend() {
    use mall_projections::personalization::{Personalization, SHOPPER_PROFILES};
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let sink = MemorySink::new(Personalization.tables());
    put(&*store, vec![listed("p1", 3), viewed("p1"), viewed("p1"), bought("p1", 2)]).await;
    catch_up(&*store, &Personalization, &sink, 2, |_| {}).await.unwrap();
    let p = sink.get(SHOPPER_PROFILES, "s1").unwrap();
    assert_eq!(
        (p["signals"].as_i64(), p["views"].as_i64(), p["purchases"].as_i64(), p["spend_e4"].as_i64()),
        (Some(3), Some(2), Some(1), Some(398_000)),
        "{p:?}"
    );
}
