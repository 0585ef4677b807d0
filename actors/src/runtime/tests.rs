//! The runtime over a real embedded store: the router delivers, the actors fold exactly once,
//! decide and append, snapshot, passivate, and come back from a panic with nothing lost.

use std::sync::Arc;
use std::time::Duration;

use mall_events::domain::DomainEvent;
use mall_events::embedded::{EmbeddedConfig, EmbeddedStore};
use mall_events::ids::{DistrictSlug, ProductId, tag};
use mall_events::{EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use uuid::Uuid;

use super::entity::{self, Deliver, Get, Passivate, Poison, Product};
use super::router::Actors;
use super::snapshot::{MemorySnapshots, SnapshotStore};
use super::{Budget, Runtime, RuntimeConfig};
use crate::executors::embedder::HashEmbedder;
use crate::executors::offline::OfflineGenerator;
use crate::testing::*;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn EventStore>,
    snapshots: Arc<MemorySnapshots>,
    actors: Arc<Actors>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

fn world(config: RuntimeConfig) -> World {
    world_of(config, None)
}

/// A world whose process runs only the shards `shards` says (as leases share them out).
fn world_of(config: RuntimeConfig, shards: Option<super::shards::Shards>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap());
    let snapshots = Arc::new(MemorySnapshots::default());
    let rt = Runtime::new(store.clone(), snapshots.clone(), Arc::new(OfflineGenerator), Arc::new(HashEmbedder), config);
    if let Some(shards) = shards {
        rt.set_shards(shards);
    }
    let arbiters = (0..2).map(|_| actix::Arbiter::new().handle()).collect();
    let actors = Actors::new(rt, arbiters);
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    actix::spawn(actors.clone().run(rx));
    World { _dir: dir, store, snapshots, actors, shutdown }
}

/// Appends domain events to their streams, tagging product events with `district`.
async fn put(store: &Arc<dyn EventStore>, events: Vec<DomainEvent>) -> u64 {
    let mut last = 0;
    for e in events {
        let extra =
            if e.product_id().is_some() { vec![tag::district(&DistrictSlug::parse("toys").unwrap())] } else { vec![] };
        let ne = NewEvent::from_domain(&e, Uuid::now_v7(), extra).unwrap();
        last = store.append(&e.stream_id(), ExpectedVersion::Any, vec![ne]).await.unwrap().last_position;
    }
    last
}

async fn settled(w: &World, position: u64) {
    let mut rx = w.actors.delivered.subscribe();
    if tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|p| *p >= position)).await.is_err() {
        panic!(
            "the router delivered up to {} of {position}; districts resident {}, published {:?}, products resident {}",
            *w.actors.delivered.borrow(),
            w.actors.districts.resident(),
            w.actors.rt.priors.read().unwrap().keys().collect::<Vec<_>>(),
            w.actors.products.resident()
        );
    }
}

async fn product(w: &World, p: &str) -> crate::product::ProductState {
    w.actors.products.get(&ProductId::parse(p).unwrap()).send(Get::<Product>::default()).await.unwrap().unwrap()
}

/// Polls the product until `pred` holds.
async fn until(
    w: &World,
    p: &str,
    pred: impl Fn(&crate::product::ProductState) -> bool,
) -> crate::product::ProductState {
    for _ in 0..400 {
        let s = product(w, p).await;
        if pred(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the product never reached the expected state: {:?}", product(w, p).await);
}

#[actix::test]
async fn signals_fold_once_and_a_listing_gets_its_missing_copy() {
    let w = world(RuntimeConfig::default());
    let mut events = vec![opened("toys"), listed("p1", "toys", "Wooden train")];
    events.extend(traffic("p1", 30, 3));
    let last = put(&w.store, events).await;
    settled(&w, last).await;

    let s = product(&w, "p1").await;
    assert_eq!(s.total.views, 30);
    assert_eq!(s.total.carts, 3);

    // Listed with a description and one tag but no SEO and no embedding: both are generated,
    // guarded and applied, each as events on the product's stream.
    let s = until(&w, "p1", |s| s.seo.is_some() && s.embedding_of == Some(s.copy_hash())).await;
    assert!(!s.seo.as_ref().unwrap().title.is_empty());
    let stream = w
        .store
        .read_stream(
            &mall_events::StreamId::product(&ProductId::parse("p1").unwrap()),
            1,
            mall_events::Direction::Forward,
            1000,
        )
        .await
        .unwrap();
    let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
    assert!(types.contains(&"optimization_decided"), "{types:?}");
    assert!(types.contains(&"copy_generated"), "{types:?}");
    assert!(types.iter().filter(|t| **t == "copy_applied").count() >= 2, "{types:?}");
    // The history explains both changes, and replay reproduces every recorded decision.
    let h = crate::audit::history(&stream).unwrap();
    let seo = h.changes.iter().find(|c| c.rule == "missing_seo").expect("the SEO decision");
    assert_eq!(seo.status, crate::audit::Status::Applied);
    let generation = seo.generation.as_ref().unwrap();
    assert_eq!(generation.generator, crate::executors::offline::VERSION);
    assert!(!generation.verdicts.is_empty() && generation.verdicts.iter().all(|v| v.passed));
    assert!(seo.evidence.to_position >= seo.evidence.from_position);
    let v = crate::audit::verify(&stream).unwrap();
    assert!(v.checked >= 2 && v.mismatches.is_empty(), "{v:?}");
    // A tampered decision is reported.
    let mut tampered = stream.clone();
    let i = tampered.iter().position(|e| e.event_type == "optimization_decided").unwrap();
    let DomainEvent::OptimizationDecided(mut o) = tampered[i].decode().unwrap() else { unreachable!() };
    o.evidence.metrics.insert("window_views".into(), 1e6);
    tampered[i].payload = mall_events::codec::encode(&DomainEvent::OptimizationDecided(o)).unwrap();
    let v = crate::audit::verify(&tampered).unwrap();
    assert_eq!(v.mismatches.len(), 1, "{v:?}");
    assert_eq!(v.mismatches[0].position, tampered[i].position);
    // The shopper profiles folded their own views.
    let shopper = w
        .actors
        .shoppers
        .get(&mall_events::ids::ShopperId::parse("shopper-0").unwrap())
        .send(Get::<entity::Shopper>::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shopper.recent.len(), 2, "{shopper:?}");
    let _ = w.shutdown.send(true);
}

#[actix::test]
async fn a_shard_taken_over_is_delivered_only_what_follows_its_checkpoint() {
    use super::shards::{Held, SHARDS, Shards, shard_of_actor};
    let (held, rx) = tokio::sync::watch::channel(vec![None; SHARDS]);
    let w = world_of(RuntimeConfig::default(), Some(Shards::leased(rx)));
    let pid = ProductId::parse("p1").unwrap();
    let k = shard_of_actor::<Product>(&pid);
    let stream = mall_events::StreamId::product(&pid);
    let decided = || async {
        let events = w.store.read_stream(&stream, 1, mall_events::Direction::Forward, 1000).await.unwrap();
        events.iter().filter(|e| e.event_type == "optimization_decided").count()
    };
    // A listing with no SEO and no embedding (each a decision once delivered), while another
    // node holds the product's shard: this one follows the log but delivers nothing to it.
    let listed_at = put(&w.store, vec![opened("toys"), listed("p1", "toys", "Wooden train")]).await;
    let last = put(&w.store, traffic("p1", 10, 1)).await;
    settled(&w, last).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.actors.products.resident(), 0, "an actor of a shard held elsewhere was woken");

    // Taken over from a holder that delivered everything: nothing is delivered again.
    let mut now = vec![None; SHARDS];
    now[k] = Some(Held { token: 1, checkpoint: Some(last) });
    held.send(now).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.actors.products.resident(), 0, "what the last holder delivered was delivered again");
    assert_eq!(decided().await, 0);

    // Lost, then taken over from a holder that had delivered only up to the listing: what came
    // after is delivered, and the product decides on what it now knows.
    held.send(vec![None; SHARDS]).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut now = vec![None; SHARDS];
    now[k] = Some(Held { token: 2, checkpoint: Some(listed_at) });
    held.send(now).unwrap();
    let s = until(&w, "p1", |s| s.seo.is_some()).await;
    assert_eq!(s.total.views, 10, "the events after the checkpoint are folded once");
    assert!(decided().await >= 1);
    let _ = w.shutdown.send(true);
}

#[actix::test]
async fn redelivery_is_skipped_and_a_panic_reloads_from_the_log() {
    let w = world(RuntimeConfig { generations_per_hour: 0, ..RuntimeConfig::default() });
    let mut events = vec![opened("toys"), listed("p1", "toys", "Wooden train")];
    events.extend(traffic("p1", 20, 0));
    let last = put(&w.store, events).await;
    settled(&w, last).await;
    assert_eq!(product(&w, "p1").await.total.views, 20);

    // The router delivers again what it already delivered (as after a restart).
    let pid = ProductId::parse("p1").unwrap();
    let all: Vec<Arc<RecordedEvent>> = w.store.read_all(1, 1000).await.unwrap().into_iter().map(Arc::new).collect();
    let addr = w.actors.products.get(&pid);
    addr.send(Deliver(all.clone())).await.unwrap();
    assert_eq!(product(&w, "p1").await.total.views, 20, "a redelivered event was counted twice");

    // A panic while folding: the state is dropped and rebuilt from the log, so the events of
    // the failed delivery are not lost and nothing is counted twice.
    addr.send(Poison).await.unwrap();
    let last = put(&w.store, traffic("p1", 5, 0)).await;
    settled(&w, last).await;
    assert_eq!(product(&w, "p1").await.total.views, 25);
    assert!(addr.connected(), "the actor survives the panic");

    // A delivery that skips events makes the actor read the gap from the log.
    let more = put(&w.store, traffic("p1", 3, 0)).await;
    let tail: Vec<Arc<RecordedEvent>> = w.store.read_all(more, 1).await.unwrap().into_iter().map(Arc::new).collect();
    addr.send(Deliver(tail)).await.unwrap();
    assert_eq!(product(&w, "p1").await.total.views, 28);
    let _ = w.shutdown.send(true);
}

#[actix::test]
async fn snapshots_are_written_and_activation_reads_snapshot_plus_tail() {
    let w = world(RuntimeConfig { snapshot_every: 10, generations_per_hour: 0, ..RuntimeConfig::default() });
    let mut events = vec![opened("toys"), listed("p1", "toys", "Wooden train")];
    events.extend(traffic("p1", 25, 0));
    let last = put(&w.store, events).await;
    settled(&w, last).await;
    let key = "product-p1";
    let snap: crate::product::ProductState =
        super::snapshot::decode(&w.snapshots.load(key).expect("a snapshot every 10 events")).unwrap();
    assert!(snap.total.views >= 10 && snap.total.views <= 25);

    // Passivate, append behind the actor's back, and activate again: snapshot plus tail.
    let pid = ProductId::parse("p1").unwrap();
    w.actors.products.get(&pid).send(Passivate).await.unwrap();
    let snap: crate::product::ProductState = super::snapshot::decode(&w.snapshots.load(key).unwrap()).unwrap();
    assert_eq!(snap.total.views, 25, "passivation saves the whole state");
    let _ = w.shutdown.send(true);
    put(&w.store, traffic("p1", 4, 0)).await;
    let rt = w.actors.rt.clone();
    let loaded = entity::load::<Product>(&rt, &pid).await.unwrap();
    assert_eq!(loaded.total.views, 29);
    // And it equals a fold of the whole stream with no snapshot.
    let fresh = entity::load::<Product>(
        &Runtime::new(
            w.store.clone(),
            Arc::new(MemorySnapshots::default()),
            Arc::new(OfflineGenerator),
            Arc::new(HashEmbedder),
            RuntimeConfig::default(),
        ),
        &pid,
    )
    .await
    .unwrap();
    assert_eq!(loaded, fresh);
}

/// The same snapshots beside another log (a fresh database behind the same data directory): a
/// snapshot whose last event that log does not hold is ignored, and the actor folds that log.
#[actix::test]
async fn a_snapshot_of_another_log_is_ignored() {
    let w = world(RuntimeConfig { snapshot_every: 10, generations_per_hour: 0, ..RuntimeConfig::default() });
    let mut events = vec![opened("toys"), listed("p1", "toys", "Wooden train")];
    events.extend(traffic("p1", 25, 0));
    let last = put(&w.store, events).await;
    settled(&w, last).await;
    assert_eq!(w.actors.checkpoint().await, last, "the router resumes where it stopped");
    let pid = ProductId::parse("p1").unwrap();
    w.actors.products.get(&pid).send(Passivate).await.unwrap();
    let _ = w.shutdown.send(true);
    // Another log: the same product, fewer events; the old snapshots stay.
    let dir = tempfile::tempdir().unwrap();
    let other: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap());
    put(&other, vec![opened("toys"), listed("p1", "toys", "Wooden train")]).await;
    put(&other, traffic("p1", 3, 0)).await;
    let rt = Runtime::new(
        other.clone(),
        w.snapshots.clone(),
        Arc::new(OfflineGenerator),
        Arc::new(HashEmbedder),
        RuntimeConfig::default(),
    );
    let loaded = entity::load::<Product>(&rt, &pid).await.unwrap();
    assert_eq!(loaded.total.views, 3, "the other log's state, not the snapshot's");
    // The router's checkpoint is of the first log too: on this one it delivers everything again
    // (skipping none of this log's events would leave products never decided).
    let actors = super::router::Actors::new(rt.clone(), vec![actix::Arbiter::current()]);
    assert_eq!(actors.checkpoint().await, 0);
    // A log that was cut back to before the snapshot (restored from an older backup) likewise.
    let district = entity::load::<entity::District>(&rt, &DistrictSlug::parse("toys").unwrap()).await.unwrap();
    assert!(district.position <= other.stats().await.unwrap().last_position);
}

/// An event an actor cannot fold (here its fold panics, every time) is parked for that actor
/// and passed by — on delivery and on every reload — instead of taking the actor down or being
/// retried for ever; the events after it are folded.
#[actix::test]
async fn an_event_whose_fold_fails_is_parked_for_that_actor_and_passed_by() {
    let w = world(RuntimeConfig { generations_per_hour: 0, ..RuntimeConfig::default() });
    let last = put(&w.store, vec![opened("toys"), listed("p1", "toys", "Wooden train")]).await;
    settled(&w, last).await;
    let views = put(&w.store, traffic("p1", 1, 0)).await;
    // The next view's fold panics.
    w.actors.rt.poison_position.store(views + 1, std::sync::atomic::Ordering::SeqCst);
    let last = put(&w.store, traffic("p1", 5, 0)).await;
    settled(&w, last).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = w.actors.products.get(&ProductId::parse("p1").unwrap()).send(Get::<Product>::default()).await.unwrap();
        if p.as_ref().is_some_and(|p| p.total.views == 5) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", p.map(|p| p.total));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parked = w.actors.rt.parked();
    assert!(parked.iter().any(|p| p.actor == "product-p1" && p.position == views + 1), "{parked:?}");
    // A reload from the log passes it by too.
    let loaded = entity::load::<Product>(&w.actors.rt, &ProductId::parse("p1").unwrap()).await.unwrap();
    assert_eq!(loaded.total.views, 5);
    let _ = w.shutdown.send(true);
}

#[actix::test]
async fn resident_actors_are_bounded() {
    let w = world(RuntimeConfig { max_resident: 3, generations_per_hour: 0, ..RuntimeConfig::default() });
    let mut events = vec![opened("toys")];
    for i in 0..6 {
        let p = format!("p{i}");
        events.push(listed(&p, "toys", "Wooden train"));
        events.extend(traffic(&p, 2, 0));
    }
    let last = put(&w.store, events).await;
    settled(&w, last).await;
    assert!(w.actors.products.resident() <= 3);
    // Evicted actors saved their state on the way out, and come back whole.
    for i in 0..6 {
        assert_eq!(product(&w, &format!("p{i}")).await.total.views, 2);
    }
    assert!(w.actors.products.resident() <= 3);
    let _ = w.shutdown.send(true);
}

#[test]
fn the_budget_is_shared_fairly_and_a_refund_gives_a_call_back() {
    let budget = Budget::with_share(10, 3);
    assert!((0..3).all(|_| budget.take("a")));
    assert!(!budget.take("a"), "a product cannot take more than its share");
    assert!(!budget.available_for("a") && budget.available_for("b"));
    budget.refund("a");
    assert!(budget.take("a"));
    for p in ["b", "c", "d"] {
        while budget.take(p) {}
    }
    assert_eq!(budget.left(), 0);
    assert!(!budget.take("e"), "the mall-wide budget holds too");
    assert!(!budget.available());
    assert_eq!(Budget::new(1_000).per_subject(), 10);
    assert_eq!(Budget::new(100).per_subject(), 3);
}

#[test]
fn nodes_split_the_budget_into_parts_that_add_up_to_it() {
    for (per_hour, nodes) in [(10u32, 3usize), (1_000, 3), (2, 3), (7, 1), (0, 2)] {
        let parts: Vec<u32> = (0..nodes)
            .map(|rank| {
                let b = Budget::with_share(per_hour, per_hour.max(1));
                b.split(nodes, rank);
                let mut spent = 0;
                while b.take("p") {
                    spent += 1;
                }
                assert_eq!(spent, b.per_hour(), "a node spends its part, no more");
                assert_eq!(b.mall_per_hour(), per_hour);
                spent
            })
            .collect();
        assert_eq!(parts.iter().sum::<u32>(), per_hour, "{per_hour} over {nodes}: {parts:?}");
        assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1, "{parts:?}");
    }
    // Calls spent count against a part that shrinks; a part that grows back gives room again.
    let b = Budget::with_share(10, 10);
    (0..6).for_each(|_| assert!(b.take("p")));
    b.split(2, 1);
    assert!(!b.take("p") && b.left() == 0);
    b.split(1, 0);
    assert_eq!(b.left(), 4);
}

/// Appends records as the edges do: the catalog decides each (a signal is tagged with its
/// product's district now), then applies it.
async fn put_admitted(store: &Arc<dyn EventStore>, catalog: &mut crate::catalog::Catalog, e: DomainEvent) -> u64 {
    let id = e.signal_id().unwrap_or_else(Uuid::now_v7);
    let admitted = catalog.decide(&e, id).expect("the history is valid");
    let ne = NewEvent::from_domain(&e, id, admitted.extra_tags).unwrap();
    let r = store.append(&e.stream_id(), ExpectedVersion::Any, vec![ne]).await.unwrap();
    catalog.apply(r.last_position, id, &e);
    r.last_position
}

/// For randomized histories — signals of several shoppers at times that go back and forth,
/// tag edits and moves between districts interleaved with them, products deciding and applying
/// copy, actors passivated mid-way so that they come back from a snapshot plus the tail — every
/// product's, district's and shopper's live state equals the state `mall replay`'s loader folds
/// from the log alone at the same position.
#[actix::test]
async fn live_state_equals_replayed_state_at_the_same_position() {
    use rand::{Rng, SeedableRng};
    let kinds = ["toys", "games"];
    for seed in 0..6u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let w = world(RuntimeConfig { snapshot_every: 7, ..RuntimeConfig::default() });
        let mut catalog = crate::catalog::Catalog::default();
        for d in kinds {
            put_admitted(&w.store, &mut catalog, opened(d)).await;
        }
        let products: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
        for (i, p) in products.iter().enumerate() {
            put_admitted(&w.store, &mut catalog, listed(p, kinds[i % 2], "Wooden train")).await;
        }
        let shoppers: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
        let vocabulary = ["wood", "rail", "kite", "puzzle", "gift"];
        for step in 0..160 {
            let p = &products[rng.random_range(0..products.len())];
            let s = &shoppers[rng.random_range(0..shoppers.len())];
            let mut e = match rng.random_range(0..20) {
                0 => {
                    let n = rng.random_range(1..3);
                    let tags: Vec<&str> = (0..n).map(|_| vocabulary[rng.random_range(0..vocabulary.len())]).collect();
                    retagged(p, &tags)
                }
                1 => moved(p, kinds[rng.random_range(0..2)]),
                2 => {
                    // Passivate an actor: it comes back from its snapshot and the log.
                    match rng.random_range(0..3) {
                        0 => w.actors.products.send(&ProductId::parse(p.as_str()).unwrap(), Passivate).await,
                        1 => {
                            let id = mall_events::ids::ShopperId::parse(s.as_str()).unwrap();
                            w.actors.shoppers.send(&id, Passivate).await
                        }
                        _ => {
                            let id = DistrictSlug::parse(kinds[rng.random_range(0..2)]).unwrap();
                            w.actors.districts.send(&id, Passivate).await
                        }
                    }
                    .unwrap();
                    continue;
                }
                3..=5 => carted(p, s),
                6 => bought(p, s),
                7 => bounced(p, s),
                _ => viewed(p, s),
            };
            if e.is_signal() {
                // Times go forward by the hour, and now and then a late signal arrives.
                let hours = step as i64 - if rng.random_range(0..6) == 0 { 30 } else { 0 };
                let at = (t0() + chrono::Duration::hours(hours)).to_rfc3339();
                set_at(&mut e, &at);
            }
            put_admitted(&w.store, &mut catalog, e).await;
        }
        // Let the products finish deciding and applying copy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let head = w.store.stats().await.unwrap().last_position;
        settled(&w, head).await;

        let replaying = || {
            Runtime::new(
                w.store.clone(),
                Arc::new(MemorySnapshots::default()),
                Arc::new(OfflineGenerator),
                Arc::new(HashEmbedder),
                RuntimeConfig::default(),
            )
        };
        for p in &products {
            let id = ProductId::parse(p.as_str()).unwrap();
            let live = w.actors.products.send(&id, Get::<Product>::default()).await.unwrap().unwrap();
            let (replayed, _) =
                entity::replay::<Product>(&replaying(), &id, entity::Until::Position(live.position)).await.unwrap();
            assert_eq!(live, replayed, "seed {seed}: product {p}");
        }
        for d in kinds {
            let id = DistrictSlug::parse(d).unwrap();
            let live = w.actors.districts.send(&id, Get::<entity::District>::default()).await.unwrap().unwrap();
            let (replayed, _) =
                entity::replay::<entity::District>(&replaying(), &id, entity::Until::Position(live.position))
                    .await
                    .unwrap();
            assert_eq!(live, replayed, "seed {seed}: district {d}");
        }
        let mut tags_seen = 0;
        for s in &shoppers {
            let id = mall_events::ids::ShopperId::parse(s.as_str()).unwrap();
            let live = w.actors.shoppers.send(&id, Get::<entity::Shopper>::default()).await.unwrap().unwrap();
            let (replayed, _) =
                entity::replay::<entity::Shopper>(&replaying(), &id, entity::Until::Position(live.position))
                    .await
                    .unwrap();
            assert_eq!(live, replayed, "seed {seed}: shopper {s}");
            tags_seen += live.tags.len();
        }
        assert!(tags_seen > 0, "the profiles folded product tags");
        let _ = w.shutdown.send(true);
    }
}
