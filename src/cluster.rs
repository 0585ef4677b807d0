//! Several `mall serve` nodes on one PostgreSQL: leases with fencing tokens.
//!
//! What one node at a time owns is a lease (`mall_leases`, schema V18): the autonomous core
//! ([`AUTONOMOUS`]: the task queue, the job runner and the systems' loops, which move together
//! because the queue is one stream with one writer), each projection, and each shard of the
//! actors ([`shards`](mall_actors::runtime::shards): a hash of the actor's stream; the node holding
//! a shard delivers to its actors, which decide and append there). A shard's lease keeps how far
//! its actors were delivered (schema V22), so that its next holder delivers from there.
//! Every node renews itself in `mall_nodes` and its leases each round; a node takes free or
//! lapsed leases up to its fair share (the leases over the nodes alive) and hands back what is
//! over it, so a node that starts takes a share and a node that stops (or dies) gives its share
//! to the others. A lease that changes hands gets a new fencing token; every append made for
//! what a lease owns carries the token ([`FencedStore`]) and PostgreSQL refuses it once the lease
//! has another token or has lapsed — a node that was paused past its lease cannot act on it.
//!
//! Takeover bound: a node killed with `kill -9` stops renewing; its leases lapse at most `ttl`
//! after its last round, and the next round of a live node (every `ttl / 5`) takes them: within
//! `ttl + ttl / 5` (6 s with the default 5 s).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mall_actors::runtime::router::Progress;
use mall_actors::runtime::shards::{self, Held, SHARDS};
use mall_events::{AppendResult, EventStore, ExpectedVersion, Fence, NewEvent, StoreError, StreamId};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

/// The lease of the autonomous core.
pub const AUTONOMOUS: &str = "autonomous";

/// Every lease a node shares with the others: the core, each shard of the actors, each
/// projection.
pub fn lease_names(projections: impl IntoIterator<Item = String>) -> Vec<String> {
    std::iter::once(AUTONOMOUS.to_string())
        .chain((0..SHARDS).map(shards::lease))
        .chain(projections.into_iter().map(|p| projection_lease(&p)))
        .collect()
}

/// How long a node tries to take over what a lease owns before it gives the lease up.
pub const GIVE_UP: Duration = Duration::from_secs(10);
/// How long a lease given up is not taken again by the node that gave it up.
pub const COOL_OFF: Duration = Duration::from_secs(30);

/// The lease of a projection.
pub fn projection_lease(projection: &str) -> String {
    format!("projection:{projection}")
}

/// What a lease is for, by its name: `core`, `actor_shard` or `projection`.
pub fn lease_kind(name: &str) -> &'static str {
    if name == AUTONOMOUS {
        "core"
    } else if name.starts_with("projection:") {
        "projection"
    } else {
        "actor_shard"
    }
}

/// A node's place in the cluster.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name (stable across restarts: a restarted node takes back its own leases at once).
    pub id: String,
    /// Where other nodes reach this node's API.
    pub url: String,
    /// How long a lease lasts unless renewed.
    pub ttl: Duration,
}

impl NodeConfig {
    /// How often leases are renewed and shares looked at.
    pub fn renew(&self) -> Duration {
        (self.ttl / 5).max(Duration::from_millis(100))
    }
}

/// One lease as this process holds it: its token while held, `None` otherwise.
pub struct Lease {
    pub name: String,
    held: watch::Sender<Option<i64>>,
    /// Set when this node cannot run what the lease owns: the next round hands it back.
    give_up: std::sync::atomic::AtomicBool,
}

impl Lease {
    /// A lease this process holds for good (one process per log: the embedded store).
    pub fn always(name: &str) -> Arc<Self> {
        Arc::new(Lease { name: name.to_string(), held: watch::channel(Some(0)).0, give_up: false.into() })
    }

    /// The token, while held.
    pub fn token(&self) -> Option<i64> {
        *self.held.borrow()
    }

    /// The fence an append made for this lease carries, while held.
    pub fn fence(&self) -> Option<Fence> {
        self.token().map(|token| Fence { lease: self.name.clone(), token })
    }

    /// Follows the lease changing hands.
    pub fn watch(&self) -> watch::Receiver<Option<i64>> {
        self.held.subscribe()
    }

    /// Asks for the lease to be handed back at the next round (and not taken again here for
    /// [`COOL_OFF`]), so that another node may run what it owns.
    pub fn give_up(&self) {
        self.give_up.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn set(&self, token: Option<i64>) {
        self.held.send_if_modified(|t| {
            let changed = *t != token;
            *t = token;
            changed
        });
    }
}

/// This node's leases, renewed in PostgreSQL.
pub struct Leases {
    pub config: NodeConfig,
    /// This process (a restart of the same node is another instance).
    pub instance: Uuid,
    database_url: String,
    leases: BTreeMap<String, Arc<Lease>>,
    client: tokio::sync::Mutex<Option<Client>>,
    /// Who holds each lease (its node's URL), as of the last round.
    owners: RwLock<HashMap<String, (String, String)>>,
    /// Until when the leases this process holds are surely its own (the start of the last
    /// round that renewed them, plus the lease time).
    valid_until: std::sync::Mutex<Option<Instant>>,
    /// The nodes alive at the last round and this node's rank among them (by id): what splits
    /// the mall's hourly budget for query embeddings among the nodes.
    nodes: watch::Sender<(usize, usize)>,
    /// The actors' shards this process holds, with the checkpoint each was taken at.
    shards: watch::Sender<Vec<Option<Held>>>,
    /// The checkpoint each lease had when this process took it under its token.
    taken: std::sync::Mutex<HashMap<String, (i64, i64)>>,
    /// How far the router delivered the shards' actors (kept in each shard's lease).
    progress: std::sync::OnceLock<watch::Receiver<Progress>>,
    /// What the nodes show one another on internal calls.
    pub secret: String,
    /// The leases in the order they are taken (and handed back from the end): the kinds
    /// interleaved, so that each node's share holds some of each.
    order: Vec<String>,
    /// Leases given up here (this node could not run what they own), each with when it may be
    /// taken here again.
    cooling: std::sync::Mutex<HashMap<String, Instant>>,
}

/// The leases interleaved by kind (the part of the name before `:`): each at its place within
/// its kind (the core first), so that a share taken from the front, or handed back from the end,
/// holds about as many of each kind as every other share.
fn spread(names: &[String]) -> Vec<String> {
    let kind = |n: &str| n.split(':').next().unwrap_or(n).to_string();
    let mut sorted: Vec<String> = names.to_vec();
    sorted.sort();
    let mut size: HashMap<String, usize> = HashMap::new();
    for n in &sorted {
        *size.entry(kind(n)).or_default() += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut keyed: Vec<(f64, usize, String)> = sorted
        .into_iter()
        .map(|n| {
            let k = kind(&n);
            let i = seen.entry(k.clone()).or_default();
            let key = *i as f64 / size[&k] as f64;
            *i += 1;
            (key, size[&k], n)
        })
        .collect();
    // At one place, the smaller kind first (the core before everything); then by name.
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, n)| n).collect()
}

/// Why a round failed.
#[derive(Debug)]
pub struct LeaseError(String);

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leases: {}", self.0)
    }
}

impl std::error::Error for LeaseError {}

fn db(e: tokio_postgres::Error) -> LeaseError {
    LeaseError(e.to_string())
}

async fn connect(url: &str) -> Result<Client, LeaseError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl Leases {
    /// Joins: registers the node, makes sure every lease has its row, and runs a first round (so
    /// that a node alone holds everything when this returns).
    pub async fn join(database_url: &str, config: NodeConfig, names: Vec<String>) -> Result<Arc<Self>, LeaseError> {
        let leases = names.iter().map(|n| {
            (n.clone(), Arc::new(Lease { name: n.clone(), held: watch::channel(None).0, give_up: false.into() }))
        });
        let secret = {
            let client = connect(database_url).await?;
            let made = Uuid::new_v4().simple().to_string() + &Uuid::new_v4().simple().to_string();
            client
                .execute("INSERT INTO mall_cluster (secret) VALUES ($1) ON CONFLICT (id) DO NOTHING", &[&made])
                .await
                .map_err(db)?;
            client.query_one("SELECT secret FROM mall_cluster", &[]).await.map_err(db)?.get(0)
        };
        let this = Arc::new(Leases {
            config,
            instance: Uuid::new_v4(),
            database_url: database_url.to_string(),
            leases: leases.collect(),
            client: tokio::sync::Mutex::new(None),
            owners: RwLock::new(HashMap::new()),
            valid_until: std::sync::Mutex::new(None),
            nodes: watch::channel((1, 0)).0,
            shards: watch::channel(vec![None; SHARDS]).0,
            taken: std::sync::Mutex::new(HashMap::new()),
            progress: std::sync::OnceLock::new(),
            secret,
            order: spread(&names),
            cooling: std::sync::Mutex::new(HashMap::new()),
        });
        {
            let mut guard = this.connected().await?;
            let c = guard.as_mut().expect("connected");
            c.execute(
                "INSERT INTO mall_leases (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
                &[&names],
            )
            .await
            .map_err(db)?;
        }
        this.round().await?;
        Ok(this)
    }

    /// The actors' shards as this process holds them.
    pub fn shards(&self) -> watch::Receiver<Vec<Option<Held>>> {
        self.shards.subscribe()
    }

    /// How many nodes were alive at the last round.
    pub fn alive(&self) -> usize {
        self.nodes.borrow().0
    }

    /// The nodes alive and this node's rank among them, as they change.
    pub fn nodes(&self) -> watch::Receiver<(usize, usize)> {
        self.nodes.subscribe()
    }

    /// Keeps the router's progress in the shards' leases from now on.
    pub fn follow(&self, progress: watch::Receiver<Progress>) {
        let _ = self.progress.set(progress);
    }

    /// Tells the shards held (after the leases changed here).
    fn publish_shards(&self) {
        let taken = self.taken.lock().expect("taken").clone();
        let now: Vec<Option<Held>> = (0..SHARDS)
            .map(|k| {
                let name = shards::lease(k);
                let token = self.leases.get(&name)?.token()?;
                let checkpoint = taken.get(&name).filter(|(t, _)| *t == token).map(|(_, c)| (*c).max(0) as u64);
                Some(Held { token, checkpoint: Some(checkpoint.unwrap_or(0)) })
            })
            .collect();
        self.shards.send_if_modified(|held| {
            let changed = *held != now;
            *held = now;
            changed
        });
    }

    /// A lease by name (every name given to [`join`](Self::join)).
    pub fn lease(&self, name: &str) -> Arc<Lease> {
        self.leases.get(name).cloned().unwrap_or_else(|| panic!("no lease {name}"))
    }

    /// The name of every lease the nodes share.
    pub fn names(&self) -> Vec<String> {
        self.leases.keys().cloned().collect()
    }

    /// The names of the leases this process holds.
    pub fn held(&self) -> Vec<String> {
        self.leases.values().filter(|l| l.token().is_some()).map(|l| l.name.clone()).collect()
    }

    /// The URL of the node holding `name`, as of the last round (none while nobody holds it).
    pub fn owner_url(&self, name: &str) -> Option<String> {
        self.owners.read().expect("owners").get(name).map(|(_, url)| url.clone())
    }

    /// Runs `call` to the node at `url`, which held lease `name` when the call was sent, for as
    /// long as it still holds it: `None` once the lease has moved on (a node paused or cut off
    /// loses it within its time to live, and a call to it would otherwise wait out the client's
    /// whole timeout). What the call did there, if anything, was under the lease it then held.
    pub async fn while_held<F: std::future::Future>(&self, name: &str, url: &str, call: F) -> Option<F::Output> {
        let moved = async {
            while self.owner_url(name).as_deref() == Some(url) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            out = call => Some(out),
            () = moved => None,
        }
    }

    /// Every lease and the node holding it, as of the last round.
    pub fn owners(&self) -> BTreeMap<String, String> {
        self.owners.read().expect("owners").iter().map(|(l, (node, _))| (l.clone(), node.clone())).collect()
    }

    async fn connected(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, LeaseError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.database_url).await?);
        }
        Ok(guard)
    }

    /// One round: renew the node and its leases, take free or lapsed ones up to the fair share,
    /// hand back what is over it, and note who holds what.
    pub async fn round(&self) -> Result<(), LeaseError> {
        let started = Instant::now();
        let mut guard = self.connected().await?;
        let result = self.round_on(guard.as_mut().expect("connected"), started).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    async fn round_on(&self, c: &mut Client, started: Instant) -> Result<(), LeaseError> {
        let (node, instance) = (&self.config.id, &self.instance);
        let ttl = self.config.ttl.as_secs_f64();
        let names: &[String] = &self.order;
        c.execute(
            "INSERT INTO mall_nodes (id, instance, url, expires_at) \
             VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4)) \
             ON CONFLICT (id) DO UPDATE SET instance = EXCLUDED.instance, url = EXCLUDED.url, \
             expires_at = EXCLUDED.expires_at",
            &[node, instance, &self.config.url, &ttl],
        )
        .await
        .map_err(db)?;
        // How far the router delivered the shards it holds under their present tokens: kept in
        // their leases (raised only), for whoever holds them next.
        if let Some(progress) = self.progress.get() {
            let p = progress.borrow().clone();
            let (names, tokens): (Vec<String>, Vec<i64>) =
                (0..SHARDS).filter_map(|k| Some((shards::lease(k), p.shards.get(k).copied().flatten()?.token))).unzip();
            if !names.is_empty() {
                c.execute(
                    "UPDATE mall_leases l SET checkpoint = greatest(l.checkpoint, $3) \
                     FROM unnest($4::text[], $5::bigint[]) AS u(name, token) \
                     WHERE l.name = u.name AND l.token = u.token AND l.holder = $1 AND l.instance = $2 \
                       AND l.expires_at > clock_timestamp()",
                    &[node, instance, &(p.position as i64), &names, &tokens],
                )
                .await
                .map_err(db)?;
            }
        }
        let mut held: BTreeMap<String, i64> = c
            .query(
                "UPDATE mall_leases SET expires_at = clock_timestamp() + make_interval(secs => $3) \
                 WHERE holder = $1 AND instance = $2 AND expires_at > clock_timestamp() RETURNING name, token",
                &[node, instance, &ttl],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Leases this node gave up (it could not run what they own): handed back, and not taken
        // here again until they have cooled off, so that another node may run them.
        // (A lease given up after it was lost here is forgotten.)
        let given_up: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.give_up.swap(false, std::sync::atomic::Ordering::Relaxed) && held.contains_key(&l.name))
            .map(|l| l.name.clone())
            .collect();
        if !given_up.is_empty() {
            let until = Instant::now() + COOL_OFF;
            self.cooling.lock().expect("cooling").extend(given_up.iter().map(|n| (n.clone(), until)));
            self.hand_back(c, &mut held, &given_up, "this node could not run what it owns").await?;
        }
        let row = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE id < $1) FROM mall_nodes WHERE expires_at > clock_timestamp()",
                &[node],
            )
            .await
            .map_err(db)?;
        let (alive, rank): (i64, i64) = (row.get(0), row.get(1));
        let alive = (alive.max(1)) as usize;
        self.nodes.send_if_modified(|n| {
            let now = (alive, (rank.max(0) as usize).min(alive - 1));
            std::mem::replace(n, now) != now
        });
        let share = names.len().div_ceil(alive);
        // Cooling leases are left to the other nodes (a node alone takes them back at once).
        let names: Vec<String> = {
            let mut cooling = self.cooling.lock().expect("cooling");
            cooling.retain(|_, until| *until > Instant::now() && alive > 1);
            names.iter().filter(|n| !cooling.contains_key(*n)).cloned().collect()
        };
        if held.len() < share {
            let want = (share - held.len()) as i64;
            let taken = c
                .query(
                    "UPDATE mall_leases l SET holder = $1, instance = $2, token = l.token + 1, \
                     expires_at = clock_timestamp() + make_interval(secs => $3), acquired_at = clock_timestamp() \
                     FROM (SELECT name FROM mall_leases WHERE name = ANY($4) \
                           AND (holder IS NULL OR expires_at <= clock_timestamp() OR (holder = $1 AND instance <> $2)) \
                           ORDER BY array_position($4, name) LIMIT $5 FOR UPDATE SKIP LOCKED) f \
                     WHERE l.name = f.name RETURNING l.name, l.token, l.checkpoint",
                    &[node, instance, &ttl, &names, &want],
                )
                .await
                .map_err(db)?;
            for r in taken {
                let (name, token, checkpoint): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
                tracing::info!(lease = %name, token, "lease taken");
                self.taken.lock().expect("taken").insert(name.clone(), (token, checkpoint));
                held.insert(name, token);
            }
        } else if held.len() > share {
            // Hand back what is over the share, from the end of the order (the core last).
            let mut over: Vec<String> = self.order.iter().rev().filter(|n| held.contains_key(*n)).cloned().collect();
            over.truncate(held.len() - share);
            self.hand_back(c, &mut held, &over, "over this node's share").await?;
        }
        for (name, lease) in &self.leases {
            lease.set(held.get(name).copied());
        }
        self.publish_shards();
        *self.valid_until.lock().expect("valid") = Some(started + self.config.ttl);
        let owners = c
            .query(
                "SELECT l.name, n.id, n.url FROM mall_leases l JOIN mall_nodes n ON n.id = l.holder \
                 WHERE l.expires_at > clock_timestamp() AND n.expires_at > clock_timestamp()",
                &[],
            )
            .await
            .map_err(db)?;
        *self.owners.write().expect("owners") =
            owners.iter().map(|r| (r.get::<_, String>(0), (r.get::<_, String>(1), r.get::<_, String>(2)))).collect();
        Ok(())
    }

    /// Hands `names` back, `why`: stopped here first (no longer `held`), then freed in the
    /// database, which from then on refuses their tokens.
    async fn hand_back(
        &self,
        c: &Client,
        held: &mut BTreeMap<String, i64>,
        names: &[String],
        why: &str,
    ) -> Result<(), LeaseError> {
        for name in names {
            held.remove(name);
            if let Some(l) = self.leases.get(name) {
                l.set(None);
            }
            tracing::info!(lease = %name, why, "lease handed back");
        }
        self.publish_shards();
        c.execute(
            "UPDATE mall_leases SET holder = NULL, instance = NULL, expires_at = '-infinity' \
             WHERE name = ANY($3) AND holder = $1 AND instance = $2",
            &[&self.config.id, &self.instance, &names],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Drops every lease locally once they may have lapsed (no round renewed them in time).
    fn expire_if_stale(&self) {
        let stale = self.valid_until.lock().expect("valid").is_none_or(|t| Instant::now() >= t);
        if stale && self.leases.values().any(|l| l.token().is_some()) {
            tracing::warn!("leases not renewed in time: this node stops acting on them");
            for l in self.leases.values() {
                l.set(None);
            }
            self.publish_shards();
        }
    }

    /// Renews every `renew` until `shutdown`; then hands every lease back and leaves.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let renew = self.config.renew();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(renew) => {}
                _ = shutdown.changed() => break,
            }
            self.expire_if_stale();
            match tokio::time::timeout(renew.max(Duration::from_secs(1)), self.round()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "lease round failed"),
                Err(_) => {
                    *self.client.lock().await = None;
                    tracing::warn!("lease round timed out");
                }
            }
            self.expire_if_stale();
        }
        self.leave().await;
    }

    /// Hands every lease back (stopped here first) and leaves the node table, so that the other
    /// nodes take the share at their next round.
    pub async fn leave(&self) {
        for l in self.leases.values() {
            l.set(None);
        }
        self.publish_shards();
        let Ok(mut guard) = self.connected().await else { return };
        let Some(c) = guard.as_mut() else { return };
        let (node, instance) = (&self.config.id, &self.instance);
        let _ = c
            .execute(
                "UPDATE mall_leases SET holder = NULL, instance = NULL, expires_at = '-infinity' \
                 WHERE holder = $1 AND instance = $2",
                &[node, instance],
            )
            .await;
        let _ = c.execute("DELETE FROM mall_nodes WHERE id = $1 AND instance = $2", &[node, instance]).await;
    }
}

/// Runs what a lease owns while this node holds it: on taking it, `take_over` (catch up with
/// what the last holder wrote), then `start` the loops with a receiver that fires when the lease
/// is lost (or changes token) or `shutdown` fires; they are given 10 s to end. A loop may end of
/// its own accord (one with nothing to do here); one that panics ends the others, and they are
/// started again after a pause, as a take-over that fails is tried again. Failing so for
/// [`GIVE_UP`] under one token, the node gives the lease up, so that another may run it.
pub async fn own<T, S>(lease: Arc<Lease>, take_over: T, start: S, mut shutdown: watch::Receiver<bool>)
where
    T: Fn() -> futures_util::future::BoxFuture<'static, Result<(), String>>,
    S: Fn(watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>>,
{
    use futures_util::StreamExt;
    let mut held = lease.watch();
    // Since when taking over, or running, under the present token has failed.
    let mut failing: Option<(i64, Instant)> = None;
    loop {
        let token = loop {
            if let Some(t) = *held.borrow_and_update() {
                break t;
            }
            tokio::select! {
                r = held.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        };
        let failure = match take_over().await {
            Err(e) => format!("cannot take over: {e}"),
            Ok(()) => {
                tracing::info!(lease = %lease.name, token, "this node runs what the lease owns");
                let (term, term_rx) = watch::channel(false);
                let ran = Instant::now();
                let mut tasks: futures_util::stream::FuturesUnordered<_> = start(term_rx).into_iter().collect();
                let failed = loop {
                    tokio::select! {
                        r = held.changed() => {
                            if r.is_err() || *held.borrow_and_update() != Some(token) {
                                break None;
                            }
                        }
                        _ = shutdown.changed() => break None,
                        Some(r) = tasks.next(), if !tasks.is_empty() => {
                            if let Err(e) = r && e.is_panic() {
                                break Some(e.to_string());
                            }
                        }
                    }
                };
                let _ = term.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(10), async { while tasks.next().await.is_some() {} })
                    .await;
                if *shutdown.borrow() {
                    return;
                }
                let Some(e) = failed else {
                    tracing::warn!(lease = %lease.name, token, "the lease is lost: this node stopped what it owns");
                    failing = None;
                    continue;
                };
                if ran.elapsed() >= GIVE_UP {
                    // It ran well for a while: a new run of failures starts here.
                    failing = None;
                }
                format!("a loop failed: {e}")
            }
        };
        let since = match failing {
            Some((t, since)) if t == token => since,
            _ => Instant::now(),
        };
        failing = Some((token, since));
        if since.elapsed() >= GIVE_UP {
            // Another node may manage: the lease is handed back at the next round.
            tracing::warn!(lease = %lease.name, error = %failure, "giving the lease up");
            lease.give_up();
            tokio::select! {
                _ = held.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        tracing::warn!(lease = %lease.name, error = %failure, "trying again");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The store as the holder of one lease uses it: every append carries the lease's fencing
/// token, and none is made while the lease is not held. Reads go straight through.
pub struct FencedStore {
    pub inner: Arc<dyn EventStore>,
    pub lease: Arc<Lease>,
}

impl FencedStore {
    fn fence(&self) -> Result<Fence, StoreError> {
        self.lease.fence().ok_or_else(|| StoreError::Fenced { lease: self.lease.name.clone(), token: None })
    }
}

crate::store::wrapping_store!(FencedStore, inner, {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let fence = self.fence()?;
        self.inner.append_fenced(&fence, stream, expected, events).await
    }

    async fn append_fenced(
        &self,
        fence: &Fence,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append_fenced(fence, stream, expected, events).await
    }

    async fn close(&self) {
        // The store is the server's: closed once, by the server.
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_interleaves_the_kinds_with_the_core_first() {
        let names = lease_names(["a", "b", "c", "d"].map(String::from));
        let order = spread(&names);
        assert_eq!(order.len(), names.len());
        assert_eq!(order[0], AUTONOMOUS);
        // Any front part of the order holds shards and projections in proportion.
        for take in [5, 7, 9] {
            let front = &order[..take];
            let shards = front.iter().filter(|n| n.starts_with("actors:")).count();
            let projections = front.iter().filter(|n| n.starts_with("projection:")).count();
            // Eight shards to four projections: about two shards a projection.
            assert!((shards as i64 - 2 * projections as i64).abs() <= 3, "{front:?}");
            assert!(shards > 0 && projections > 0, "{front:?}");
        }
    }
}
