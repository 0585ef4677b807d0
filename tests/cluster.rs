//! Three `mall serve` nodes on one PostgreSQL: leases spread the autonomous core and the
//! projections over them; a node killed with `kill -9` (20 rounds, at random points, under
//! continuous ingest, PostgreSQL restarted once on the way) has its share taken over within the
//! bound, nothing acknowledged is lost, no task runs twice, and every read table equals a rebuild.
//! A node paused past its lease (SIGSTOP) cannot append for the core, nor for the actors' shards
//! it ran, when it wakes (SIGCONT); a request forwarded to it while it sleeps is answered (retry)
//! once its lease moves on. A product whose actor runs on one node is rewritten through the task
//! queue on another; internal calls are read up to their own bound. A lease whose node cannot
//! take over what it owns goes to another node.
//!
//! The tests here restart nodes and PostgreSQL: one at a time.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mall_events::domain::DomainEvent;
use mall_events::postgres::{PgConfig, PgStore};
use mall_events::{Direction, EventStore, ExpectedVersion, Fence, StoreError, StreamId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::scenario;
use support::server::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Seconds a lease lasts in these tests (the takeover bound is 1.2 times this plus a round).
const TTL: &str = "2";
/// The bound this test holds takeovers to.
const BOUND: Duration = Duration::from_secs(6);

fn node_env() -> Vec<(&'static str, &'static str)> {
    vec![("MALL_LEASE_TTL", TTL), ("MALL_READ_RATE", "0"), ("MALL_INGEST_RATE", "0")]
}

struct Cluster {
    url: String,
    dir: tempfile::TempDir,
    nodes: Vec<Option<Server>>,
    /// Set on every node after [`node_env`].
    env: Vec<(&'static str, &'static str)>,
}

impl Cluster {
    async fn new(n: usize) -> Cluster {
        Self::with_env(n, &[]).await
    }

    async fn with_env(n: usize, env: &[(&'static str, &'static str)]) -> Cluster {
        let pg = support::pg::Postgres::new().await;
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster { url: pg.url, dir, nodes: Vec::new(), env: env.to_vec() };
        for i in 0..n {
            let s = c.start(i);
            c.nodes.push(Some(s));
        }
        c
    }

    fn store(&self, i: usize) -> Store {
        Store::Postgres { url: self.url.clone(), snapshots: self.dir.path().join(format!("node{i}")) }
    }

    fn start(&self, i: usize) -> Server {
        let mut env = node_env();
        env.extend(self.env.iter().copied());
        Server::start(&self.store(i), &env)
    }

    fn live(&self) -> Vec<&Server> {
        self.nodes.iter().flatten().collect()
    }

    fn node_id(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{i}")).join("node-id")).unwrap().trim().to_string()
    }
}

/// Each lease and its holder, among those not lapsed.
async fn holders(url: &str) -> BTreeMap<String, String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .query("SELECT name, holder FROM mall_leases WHERE holder IS NOT NULL AND expires_at > clock_timestamp()", &[])
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

async fn lease_count(url: &str) -> usize {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query_one("SELECT count(*) FROM mall_leases", &[]).await.unwrap().get::<_, i64>(0) as usize
}

/// Waits until every lease is held by one of `alive`, each holding at most a fair share; the
/// time it took.
async fn settled(url: &str, alive: &HashSet<String>, what: &str) -> Duration {
    let started = Instant::now();
    let total = lease_count(url).await;
    let share = total.div_ceil(alive.len());
    loop {
        let h = holders(url).await;
        let mut per: HashMap<&String, usize> = HashMap::new();
        for holder in h.values() {
            *per.entry(holder).or_default() += 1;
        }
        let ok = h.len() == total
            && h.values().all(|holder| alive.contains(holder))
            && per.values().all(|n| *n <= share)
            && per.len() == alive.len();
        if ok {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: leases never settled on {alive:?}: {h:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every task of the core's stream started at most once per attempt and finished at most once.
fn no_task_twice(core: &[DomainEvent]) {
    let mut started: HashSet<(uuid::Uuid, u32)> = HashSet::new();
    let mut succeeded: HashSet<uuid::Uuid> = HashSet::new();
    for e in core {
        match e {
            DomainEvent::TaskStarted(s) => {
                assert!(
                    started.insert((s.task_id, s.attempt)),
                    "task {} attempt {} started twice",
                    s.task_id,
                    s.attempt
                )
            }
            DomainEvent::TaskSucceeded(s) => assert!(succeeded.insert(s.task_id), "task {} succeeded twice", s.task_id),
            _ => {}
        }
    }
}

async fn read_core(store: &dyn EventStore) -> Vec<DomainEvent> {
    let stream = StreamId::parse(mall_events::autonomous::STREAM).unwrap();
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let batch = store.read_stream(&stream, from, Direction::Forward, 1_000).await.unwrap();
        let Some(last) = batch.last() else { return out };
        from = last.stream_version + 1;
        out.extend(batch.iter().filter_map(|e| e.decode().ok()));
    }
}

fn restart_command() -> Option<String> {
    if let Ok(c) = std::env::var("MALL_PG_RESTART") {
        return Some(c);
    }
    let version = std::fs::read_dir("/etc/postgresql").ok()?.filter_map(|e| e.ok()).next()?.file_name();
    Some(format!("pg_ctlcluster --skip-systemctl-redirect {} main restart", version.to_string_lossy()))
}

/// Posts signals to the live nodes in turn until told to stop; the ids acknowledged.
fn ingest(bases: Arc<std::sync::Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let c = client();
        let mut acked = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let targets = bases.lock().unwrap().clone();
            let base = &targets[(i as usize) % targets.len()];
            let batch: Vec<Value> = (0..20)
                .map(|k| {
                    let product = scenario::PEERS[((i + k) % 5) as usize];
                    scenario_signal(product, &format!("c{}", (i * 20 + k) % 400))
                })
                .collect();
            let ids: Vec<String> = batch.iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
            let r = c
                .post(format!("{base}/api/signals"))
                .bearer_auth(INGEST)
                .json(&json!({ "signals": batch }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            // Only what was acknowledged counts; a node that died mid-request acknowledged nothing.
            if let Ok(r) = r
                && r.status() == StatusCode::ACCEPTED
            {
                acked.extend(ids);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    })
}

fn scenario_signal(product: &str, shopper: &str) -> Value {
    signal(if shopper.ends_with('7') { "added_to_cart" } else { "product_viewed" }, product, shopper)
}

/// A node's cluster gauges from `GET /metrics`: `(kind, held_by)` → leases, and
/// `("nodes", state)` → nodes.
async fn cluster_metrics(c: &reqwest::Client, s: &Server) -> BTreeMap<(String, String), i64> {
    let r = c.get(s.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some((metric, labels)) = series.split_once('{') else { continue };
        let labels: HashMap<&str, &str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let key = match metric {
            "mall_cluster_leases" => (labels["kind"].to_string(), labels["held_by"].to_string()),
            "mall_cluster_nodes" => ("nodes".to_string(), labels["state"].to_string()),
            _ => continue,
        };
        out.insert(key, value.parse().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_losing_any_one_with_nothing_lost_or_done_twice() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut cluster = Cluster::new(3).await;
    let ids: Vec<String> = (0..3).map(|i| cluster.node_id(i)).collect();
    let all: HashSet<String> = ids.iter().cloned().collect();
    let took = settled(&cluster.url, &all, "three nodes starting").await;
    println!("three nodes share the leases after {took:?}");
    let c = client();

    // The core is on one node; a request for it on another is forwarded there.
    let first = cluster.nodes[0].as_ref().unwrap();
    scenario::catalog(&c, first).await;
    for s in cluster.live() {
        let (status, body) = get_as(&c, s.url("/api/autonomous"), ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, health) = get(&c, s.url("/healthz")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["node"]["nodes_alive"], 3, "{health}");
    }
    let owners: Vec<bool> = {
        let mut v = Vec::new();
        for s in cluster.live() {
            v.push(get(&c, s.url("/healthz")).await.1["node"]["owns_core"].as_bool().unwrap());
        }
        v
    };
    assert_eq!(owners.iter().filter(|o| **o).count(), 1, "exactly one node owns the core: {owners:?}");
    // The mall's hourly budget for query embeddings (paid on the node serving the search) is
    // split among the nodes: the parts add up to it.
    let since = Instant::now();
    loop {
        let mut parts = Vec::new();
        for s in cluster.live() {
            parts.push(get(&c, s.url("/healthz")).await.1["search_budget"].clone());
        }
        let sum: u64 = parts.iter().map(|b| b["per_hour"].as_u64().unwrap()).sum();
        let mall = parts[0]["mall_per_hour"].as_u64().unwrap();
        if sum == mall && parts.iter().all(|b| b["per_hour"].as_u64() < Some(mall)) {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "the nodes' budgets do not add up to the mall's: {parts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The weak product's traffic, so that the core has work (a rewrite, its experiment).
    let pos = scenario::signals(&c, first, scenario::weak_traffic()).await;

    let bases = Arc::new(std::sync::Mutex::new(cluster.live().iter().map(|s| s.base.clone()).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let feeding = ingest(bases.clone(), stop.clone());

    let restart = restart_command();
    let mut takeovers = Vec::new();
    for round in 0..20usize {
        // A random point: some time into the round, a random node.
        let pause = 200 + (uuid::Uuid::new_v4().as_u128() % 800) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = (uuid::Uuid::new_v4().as_u128() % 3) as usize;
        let mut gone = cluster.nodes[victim].take().unwrap();
        *bases.lock().unwrap() = cluster.live().iter().map(|s| s.base.clone()).collect();
        gone.kill9();
        let alive: HashSet<String> = (0..3).filter(|i| *i != victim).map(|i| ids[i].clone()).collect();
        let took = settled(&cluster.url, &alive, &format!("round {round}: node {victim} killed")).await;
        takeovers.push(took);
        assert!(took <= BOUND, "round {round}: the share of the killed node was taken over in {took:?}");
        if round == 10
            && let Some(cmd) = &restart
        {
            let status = std::process::Command::new("sh").args(["-c", cmd]).status().unwrap();
            assert!(status.success(), "PostgreSQL restarted");
        }
        cluster.nodes[victim] = Some(cluster.start(victim));
        *bases.lock().unwrap() = cluster.live().iter().map(|s| s.base.clone()).collect();
        settled(&cluster.url, &all, &format!("round {round}: node {victim} back")).await;
    }
    stop.store(true, Ordering::Relaxed);
    let acked = feeding.await.unwrap();
    takeovers.sort();
    println!(
        "20 kill -9 rounds: takeover median {:?}, max {:?}; {} signals acknowledged",
        takeovers[takeovers.len() / 2],
        takeovers.last().unwrap(),
        acked.len()
    );
    assert!(acked.len() > 1_000, "ingest kept going: {}", acked.len());

    // Nothing acknowledged is lost.
    let store = PgStore::connect(PgConfig::new(&cluster.url)).await.unwrap();
    let wanted: Vec<uuid::Uuid> = acked.iter().map(|s| s.parse().unwrap()).collect();
    let mut found = HashSet::new();
    for chunk in wanted.chunks(1_000) {
        found.extend(store.read_events_by_id(chunk).await.unwrap().into_iter().map(|e| e.event_id));
    }
    let lost: Vec<_> = wanted.iter().filter(|id| !found.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged signals are not in the log, e.g. {:?}", lost.len(), lost.first());

    // Every node's reads see them: the product's counts agree on every node at one position.
    let head = store.stats().await.unwrap().last_position;
    let mut views = Vec::new();
    for s in cluster.live() {
        let (status, body) = get(&c, s.url(&format!("/api/products/p1?min_position={head}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        views.push(body["metrics"]["total"]["views"].clone());
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "the nodes disagree: {views:?}");
    assert!(pos > 0);

    // No task ran twice.
    let core = read_core(&store).await;
    assert!(core.iter().any(|e| matches!(e, DomainEvent::TaskStarted(_))), "the core ran tasks");
    no_task_twice(&core);

    // Each node's metrics tell the same: three nodes alive, every lease held by exactly one node.
    let kinds = [("core", 1), ("actor_shard", 8), ("projection", mall::readside::projections().len() as i64)];
    let since = Instant::now();
    loop {
        let mut views = Vec::new();
        for s in cluster.live() {
            views.push(cluster_metrics(&c, s).await);
        }
        let of = |v: &BTreeMap<(String, String), i64>, kind: &str, by: &str| {
            v.get(&(kind.to_string(), by.to_string())).copied().unwrap_or(-1)
        };
        let agreed = views.iter().all(|v| {
            v.get(&("nodes".into(), "alive".into())) == Some(&3)
                && kinds
                    .iter()
                    .all(|(k, n)| of(v, k, "nobody") == 0 && of(v, k, "this_node") + of(v, k, "other_node") == *n)
        }) && kinds.iter().all(|(k, n)| views.iter().map(|v| of(v, k, "this_node")).sum::<i64>() == *n);
        if agreed {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "the nodes' metrics disagree on the leases: {views:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every read table equals a rebuild from the log.
    let (code, out, err) = mall(&cluster.store(0), &["projections", "rebuild", "--all", "--verify"]);
    assert_eq!(code, 0, "rebuilds differ from the live tables:\n{out}\n{err}");
    // And over HTTP, on a node whichever holds the projections' leases.
    let (status, body) =
        post(&c, cluster.live()[2].url("/api/admin/projections/rebuild"), ADMIN, &json!({"verify": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for p in body["rebuilt"].as_array().unwrap() {
        assert_eq!(p["differences"], json!([]), "{body}");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_cannot_append_for_what_it_lost() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut cluster = Cluster::new(2).await;
    let ids: Vec<String> = (0..2).map(|i| cluster.node_id(i)).collect();
    settled(&cluster.url, &ids.iter().cloned().collect(), "two nodes starting").await;
    let c = client();
    scenario::catalog(&c, cluster.nodes[0].as_ref().unwrap()).await;

    let before = holders(&cluster.url).await;
    let core_owner = before["autonomous"].clone();
    let paused = ids.iter().position(|id| *id == core_owner).unwrap();
    let other = 1 - paused;
    // A shard of the actors the paused node runs too.
    let shard = before.iter().find(|(l, h)| l.starts_with("actors:") && **h == core_owner).unwrap().0.clone();
    let token_of = |name: String| {
        let url = cluster.url.clone();
        async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client.query_one("SELECT token FROM mall_leases WHERE name = $1", &[&name]).await.unwrap().get::<_, i64>(0)
        }
    };
    let token_before = token_of("autonomous".into()).await;
    let shard_token_before = token_of(shard.clone()).await;
    let pid = cluster.nodes[paused].as_ref().unwrap().child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // A request for the core sent now to the other node is forwarded to the paused owner: it is
    // answered (retry) once the core moves on, not after the forwarding client's 120 s.
    let forwarded = {
        let (c, url) = (client(), cluster.nodes[other].as_ref().unwrap().url("/api/autonomous"));
        tokio::spawn(async move {
            let sent = Instant::now();
            let r = c.get(url).bearer_auth(ADMIN).send().await.unwrap();
            let retry = r.headers().contains_key("retry-after");
            (sent.elapsed(), r.status(), retry, r.text().await.unwrap())
        })
    };

    // The other node takes the core over within the bound and acts on it (forwarded requests
    // now land there).
    let alone: HashSet<String> = [ids[other].clone()].into();
    let took = settled(&cluster.url, &alone, "the paused node's share taken").await;
    assert!(took <= BOUND, "took {took:?}");
    let survivor = cluster.nodes[other].as_ref().unwrap();
    scenario::until(&c, survivor, "/healthz", "the survivor owns the core", |h| h["node"]["owns_core"] == true).await;
    let pos = scenario::signals(&c, survivor, scenario::weak_traffic()).await;
    assert!(pos > 0);
    let (waited, status, retry, body) = forwarded.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry && body.contains("lost it"), "{body}");
    assert!(waited <= BOUND + Duration::from_secs(1), "a request forwarded to the paused owner waited {waited:?}");

    // An append under the paused node's token is refused by the database, whatever that node
    // still believes.
    let store = PgStore::connect(PgConfig::new(&cluster.url)).await.unwrap();
    let stream = StreamId::parse(mall_events::autonomous::STREAM).unwrap();
    let stale = Fence { lease: "autonomous".into(), token: token_before };
    let e = support::event("task_failed", b"stale");
    match store.append_fenced(&stale, &stream, ExpectedVersion::Any, vec![e.clone()]).await {
        Err(StoreError::Fenced { lease, token }) => {
            assert_eq!((lease.as_str(), token), ("autonomous", Some(token_before)))
        }
        other => panic!("an append under a lost lease was not refused: {other:?}"),
    }
    assert!(store.read_events_by_id(&[e.event_id]).await.unwrap().is_empty(), "nothing of it was written");
    // Nor can it append for a product of a shard it ran.
    let product = (0..).map(|i| format!("q{i}")).find(|p| shard_lease_of(p) == shard).unwrap();
    let stale = Fence { lease: shard.clone(), token: shard_token_before };
    let e = support::event("product_viewed", b"stale");
    let stream = StreamId::parse(format!("product-{product}")).unwrap();
    match store.append_fenced(&stale, &stream, ExpectedVersion::Any, vec![e.clone()]).await {
        Err(StoreError::Fenced { lease, .. }) => assert_eq!(lease, shard),
        other => panic!("an append under a lost shard was not refused: {other:?}"),
    }
    assert!(store.read_events_by_id(&[e.event_id]).await.unwrap().is_empty(), "nothing of it was written");
    let before = read_core(&store).await.len();

    // Woken, the paused node finds its leases gone, stops acting on them, and takes a share again.
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let woken = cluster.nodes[paused].as_ref().unwrap();
    // A fresh client: the woken node closes the keep-alive connections that went idle while it
    // slept, and a request sent on one as it closes fails.
    let c = client();
    scenario::until(&c, woken, "/healthz", "the woken node knows it lost the core", |h| {
        h["node"]["owns_core"] == false
    })
    .await;
    settled(&cluster.url, &ids.iter().cloned().collect(), "the woken node back in").await;
    assert_eq!(holders(&cluster.url).await["autonomous"], ids[other], "the core stays where it was taken");
    // Its requests for the core are forwarded to the owner, whose queue answers.
    let (status, body) = get_as(&c, woken.url("/api/autonomous"), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A request that says it was forwarded already is not answered for the core by a node that
    // does not hold it, nor forwarded again.
    let r = c
        .get(woken.url("/api/autonomous"))
        .bearer_auth(ADMIN)
        .header("x-mall-forwarded-by", "elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("does not hold the autonomous core"), "{body}");
    let core = read_core(&store).await;
    assert!(core.len() >= before);
    no_task_twice(&core);
    cluster.nodes.clear();
    store.close().await;
}

/// A public request for the core that one node forwards to the owner counts, at the owner, against
/// its client's address (which the forwarding node gives, vouched for by the nodes' secret), not
/// against the forwarding node's: clients reaching the core through one node do not share one
/// limit, and each is still held to its own. A client cannot give an address of its choosing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_public_requests_are_limited_by_their_clients_address() {
    let _one_at_a_time = SERIAL.lock().await;
    let mut cluster = Cluster::with_env(2, &[("MALL_READ_RATE", "1"), ("MALL_READ_BURST", "4")]).await;
    let ids: Vec<String> = (0..2).map(|i| cluster.node_id(i)).collect();
    settled(&cluster.url, &ids.iter().cloned().collect(), "two nodes starting").await;
    let core_holder = holders(&cluster.url).await["autonomous"].clone();
    let owner = ids.iter().position(|id| *id == core_holder).unwrap();
    let entry = cluster.nodes[1 - owner].as_ref().unwrap();
    // Two clients on their own loopback addresses, both through the node not holding the core.
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    // Voice commerce: public, and answered by the core's node.
    let ask = |c: &reqwest::Client, node: &Server| {
        c.post(node.url("/api/autonomous/voice")).json(&json!({"text": "show me toys"})).send()
    };
    let (x, y) = (from([127, 0, 0, 2]), from([127, 0, 0, 3]));
    for (name, c) in [("x", &x), ("y", &y)] {
        for i in 0..4 {
            let status = ask(c, entry).await.unwrap().status();
            assert_eq!(status, StatusCode::OK, "client {name}'s request {i}, within its own limit");
        }
    }
    // Past its burst (sent together, so that a slow machine refills at most a token or two).
    let statuses: Vec<StatusCode> = futures_util::future::join_all((0..6).map(|_| ask(&x, entry)))
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "a client past its limit: {statuses:?}");
    // An address a client gives itself, without the secret, is not taken: the owner limits it by
    // where it comes from (its burst spent by a first client claiming to be many).
    let direct = cluster.nodes[owner].as_ref().unwrap();
    let z = from([127, 0, 0, 4]);
    let statuses: Vec<StatusCode> = futures_util::future::join_all((0..6).map(|i| {
        z.post(direct.url("/api/autonomous/voice"))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .json(&json!({"text": "show me toys"}))
            .send()
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap().status())
    .collect();
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    cluster.nodes.clear();
}

/// The lease of the shard running product `id`'s actor.
fn shard_lease_of(id: &str) -> String {
    use mall_actors::runtime::shards;
    shards::lease(shards::shard_of(&format!("product-{id}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_on_one_node_is_rewritten_through_the_queue_on_another() {
    let _one_at_a_time = SERIAL.lock().await;
    let cluster = Cluster::new(2).await;
    let ids: Vec<String> = (0..2).map(|i| cluster.node_id(i)).collect();
    settled(&cluster.url, &ids.iter().cloned().collect(), "two nodes starting").await;
    let c = client();
    let first = cluster.nodes[0].as_ref().unwrap();
    scenario::catalog(&c, first).await;

    // Each node runs some of the actors' shards; a weak product whose shard is on the node that
    // does not run the task queue.
    let holders_before = holders(&cluster.url).await;
    let core = holders_before["autonomous"].clone();
    for id in &ids {
        assert!(
            holders_before.iter().any(|(l, h)| l.starts_with("actors:") && h == id),
            "node {id} runs no shard: {holders_before:?}"
        );
    }
    let weak = (0..)
        .map(|i| format!("weak{i}"))
        .find(|p| holders_before.get(&shard_lease_of(p)).is_some_and(|h| *h != core))
        .unwrap();
    let (status, body) =
        post(&c, first.url("/api/products"), ADMIN, &product(&weak, "toys", "Stacking rings", "Rings.")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let traffic: Vec<Value> = (0..100)
        .flat_map(|i| {
            let shopper = format!("w-s{i}");
            let mut v = vec![signal("product_viewed", &weak, &shopper)];
            if i == 0 {
                v.push(signal("added_to_cart", &weak, &shopper));
            }
            v
        })
        .collect();
    scenario::signals(&c, first, traffic).await;

    // Its actor decides on its node, the queue's node runs the generation task, and the
    // product's node carries it out: the copy, caused by the task, is in its stream.
    let store = PgStore::connect(PgConfig::new(&cluster.url)).await.unwrap();
    let stream = StreamId::parse(format!("product-{weak}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let generated = loop {
        let events = store.read_stream(&stream, 1, Direction::Forward, 1_000).await.unwrap();
        if let Some(g) = events.iter().find(|e| e.event_type == "copy_generated") {
            break g.clone();
        }
        assert!(Instant::now() < deadline, "no copy was generated for {weak}: {:?}", events.last());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // (The task's success is recorded once the product's node answered.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let (task, tasks) = loop {
        let tasks = read_core(&store).await;
        let done = tasks.iter().find_map(|e| match e {
            DomainEvent::TaskSucceeded(s) if Some(s.task_id) == generated.causation_id => Some(s.clone()),
            _ => None,
        });
        if let Some(task) = done {
            break (task, tasks);
        }
        assert!(Instant::now() < deadline, "the copy was not made by a task of the queue: {generated:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{weak}'s copy was generated by task {} on the queue's node", task.task_id);
    no_task_twice(&tasks);
    let holders_after = holders(&cluster.url).await;
    assert_eq!(holders_after["autonomous"], core, "the core stayed where it was");
    assert_eq!(holders_after[&shard_lease_of(&weak)], holders_before[&shard_lease_of(&weak)], "the shard too");

    // Each shard's lease keeps how far its actors were delivered, for its next holder.
    let (pg, conn) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let head = store.stats().await.unwrap().last_position as i64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let low: i64 = pg
            .query_one("SELECT min(checkpoint) FROM mall_leases WHERE name LIKE 'actors:%'", &[])
            .await
            .unwrap()
            .get(0);
        if low >= head {
            break;
        }
        assert!(Instant::now() < deadline, "the shards' checkpoints stay at {low} (the log is at {head})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The internal calls answer only a node of the cluster.
    let other = cluster.nodes.iter().flatten().find(|s| s.base != first.base).unwrap();
    for (path, secret) in
        [("/internal/queue", None), ("/internal/queue", Some("guess")), ("/internal/products/p1", None)]
    {
        let mut r = c.post(other.url(path)).json(&json!([]));
        if let Some(s) = secret {
            r = r.header("x-mall-cluster-secret", s);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} {secret:?}");
    }
    // With the secret, a body is read up to the internal bound (1 MiB), past actix's default
    // 256 KiB, and refused over it with a JSON answer.
    let secret: String = pg.query_one("SELECT secret FROM mall_cluster", &[]).await.unwrap().get(0);
    let padded = |len: usize| format!("[{}]", " ".repeat(len - 2));
    for (len, expected) in [(300 << 10, StatusCode::OK), ((1 << 20) + 1, StatusCode::PAYLOAD_TOO_LARGE)] {
        let r = c
            .post(other.url("/internal/products/p1"))
            .header("x-mall-cluster-secret", &secret)
            .header("content-type", "application/json")
            .body(padded(len))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if expected == StatusCode::OK {
            // Read whole and parsed: an array is not a product's work.
            assert_eq!(status, StatusCode::BAD_REQUEST, "{len} bytes: {body}");
            assert_eq!(body["field"], "work", "{body}");
        } else {
            assert_eq!(status, expected, "{len} bytes: {body}");
            assert!(body["message"].as_str().unwrap().contains("over"), "{body}");
        }
    }
    store.close().await;
}

/// A node that cannot take over what a lease owns (its `take_over` fails, and keeps failing)
/// gives the lease up after `GIVE_UP`; another node takes it and runs it, and the first does not
/// take it back while it cools off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_its_node_cannot_take_over_goes_to_another() {
    handed_on_from_a_node_that_cannot_run_it(Broken::TakeOver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_loops_keep_failing_on_its_node_goes_to_another() {
    handed_on_from_a_node_that_cannot_run_it(Broken::Loops).await;
}

/// What cannot run on the first node.
#[derive(Clone, Copy, PartialEq)]
enum Broken {
    /// Its take-over fails every time.
    TakeOver,
    /// It takes over, but one of its loops panics every time it starts.
    Loops,
}

/// Two nodes' leases on one PostgreSQL (real rounds) and `own` on each: the lease starts on the
/// first node, which cannot run what it owns; it gives the lease up, and the second runs it.
async fn handed_on_from_a_node_that_cannot_run_it(broken: Broken) {
    use mall::cluster::{GIVE_UP, Leases, NodeConfig, own};
    use std::sync::atomic::AtomicUsize;
    let _one_at_a_time = SERIAL.lock().await;
    let pg = support::pg::Postgres::new().await;
    mall_events::postgres::migrate(&pg.url).await.unwrap();
    let config =
        |id: &str| NodeConfig { id: id.to_string(), url: format!("http://{id}.invalid"), ttl: Duration::from_secs(2) };
    let names = vec!["autonomous".to_string()];
    let (stop, shutdown) = tokio::sync::watch::channel(false);

    let a = Leases::join(&pg.url, config("a"), names.clone()).await.unwrap();
    assert!(a.lease("autonomous").token().is_some(), "alone, the first node holds the lease");
    tokio::spawn(a.clone().run(shutdown.clone()));
    let tries = Arc::new(AtomicUsize::new(0));
    let (counted, started) = (tries.clone(), tries.clone());
    tokio::spawn(own(
        a.lease("autonomous"),
        move || -> futures_util::future::BoxFuture<'static, Result<(), String>> {
            if broken == Broken::Loops {
                return Box::pin(async { Ok(()) });
            }
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err("this node's copy of the state is broken".to_string()) })
        },
        move |term| {
            assert!(broken == Broken::Loops, "the node that cannot take over must not start what the lease owns");
            started.fetch_add(1, Ordering::SeqCst);
            vec![
                // A loop that ends of its own accord is no failure.
                tokio::spawn(async {}),
                tokio::spawn(async move {
                    let _term = term;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    panic!("this node's loop cannot run");
                }),
            ]
        },
        shutdown.clone(),
    ));

    let b = Leases::join(&pg.url, config("b"), names.clone()).await.unwrap();
    tokio::spawn(b.clone().run(shutdown.clone()));
    let ran = Arc::new(AtomicBool::new(false));
    let started = ran.clone();
    tokio::spawn(own(
        b.lease("autonomous"),
        || -> futures_util::future::BoxFuture<'static, Result<(), String>> { Box::pin(async { Ok(()) }) },
        move |_| {
            started.store(true, Ordering::SeqCst);
            vec![]
        },
        shutdown.clone(),
    ));

    // Two nodes, one lease: a fair share each is the one lease, so only giving it up moves it.
    let since = Instant::now();
    while !ran.load(Ordering::SeqCst) {
        assert!(
            since.elapsed() < GIVE_UP + Duration::from_secs(8),
            "the lease stayed with the node that cannot run it ({} tries)",
            tries.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("handed over after {:?} and {} failed tries", since.elapsed(), tries.load(Ordering::SeqCst));
    assert!(tries.load(Ordering::SeqCst) > 1, "the first node kept trying before it gave up");
    assert!(b.lease("autonomous").token().is_some());
    // It stays there: the first node does not take it back while it cools off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holders(&pg.url).await.get("autonomous").map(String::as_str), Some("b"));
    assert!(a.lease("autonomous").token().is_none());
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_says_when_postgres_has_less_room_for_connections_than_it_may_open() {
    let _one = SERIAL.lock().await;
    let (store, _dir) = Store::postgres().await;
    let Store::Postgres { url, .. } = &store else { unreachable!() };
    let database = url.rsplit('/').next().unwrap();
    {
        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        db.batch_execute(&format!("ALTER DATABASE {database} CONNECTION LIMIT 40")).await.unwrap();
    }
    // The database's limit is the one that binds (the server has more room: the tests here run
    // one at a time), and the connection asking is not counted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (room, which) = mall::store::connection_room(url).await.unwrap();
    assert_eq!((room, which), (40, "the database's CONNECTION LIMIT"));
    let needed = mall::store::serve_connections(2);
    assert!(needed > 40, "{needed}");

    let (s, stderr) = Server::start_capturing(&store, &node_env());
    let deadline = Instant::now() + Duration::from_secs(10);
    let warning = loop {
        let line = stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("a warning");
        if line.contains("more connections") {
            break line;
        }
    };
    assert!(
        warning.contains("WARN")
            && warning.contains("(the database's CONNECTION LIMIT)")
            && warning.contains(&format!("may open up to {needed} (2 writers)")),
        "{warning}"
    );
    // It serves all the same.
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
