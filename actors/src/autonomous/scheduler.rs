//! The scheduler: the live task queue. It folds the core's stream at start, is its only writer,
//! and runs tasks on their systems' executors, highest standing first, with bounded concurrency
//! overall and per system, within the hourly generation budget.
//!
//! Every step is an event appended before it takes effect: a task is queued (or a duplicate
//! merged), started, and succeeded or failed (retried with exponential backoff up to
//! `max_attempts`) — so the queue after a crash is the fold of the log. A task that was running
//! when the server died is failed as "interrupted" and runs again; its executor's effects carry
//! the task id, so a second run changes nothing that the first already did.
//!
//! Steps are batched: what is picked together starts in one append, and the completions that
//! arrive together finish in one, so the queue keeps up with fast executors.
//!
//! With a snapshot store, the queue is saved as an image every [`IMAGE_EVERY`] events and when
//! the scheduler stops, naming the last event it folded (the core stream's version and that
//! event's id); a start loads the image when that event is in this log and folds only the
//! stream after it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mall_events::domain::{
    DomainEvent, SystemSwitched, TaskFailed, TaskQueued, TaskReprioritized, TaskStarted, TaskSucceeded,
};
use mall_events::{Direction, EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use uuid::Uuid;

use super::queue::{Queue, QueueImage, Task};
use crate::runtime::snapshot::{self, SnapshotStore};

/// Events appended between two saved images of the queue.
pub const IMAGE_EVERY: u64 = 10_000;
/// Where the queue's image is saved (versioned: an image of an older shape is not read).
const IMAGE_KEY: &str = "autonomous-queue.v1";

/// The queue as saved, tied to the last event it folded.
#[derive(serde::Serialize, serde::Deserialize)]
struct CoreImage {
    version: u64,
    last_event: Uuid,
    queue: QueueImage,
}

/// What the scheduler reads the time from (tests drive their own).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told (tests).
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock") = at;
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock")
    }
}

/// Carries out one action of one system.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Does the task's work and says what it did, or why it failed. Its effects (events) carry
    /// the task id, so a second run of the same task (after a crash) changes nothing the first did.
    async fn run(&self, task: &Task) -> Result<String, String>;
}

/// How many model calls are left this hour (the runtime's budget; tests give a fixed one).
pub trait BudgetView: Send + Sync + 'static {
    fn left(&self) -> u64;
}

impl BudgetView for crate::runtime::Budget {
    fn left(&self) -> u64 {
        u64::from(crate::runtime::Budget::left(self))
    }
}

/// A fixed budget (tests, benches).
pub struct FixedBudget(pub u64);

impl BudgetView for FixedBudget {
    fn left(&self) -> u64 {
        self.0
    }
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often the queue is looked at when nothing wakes it.
    pub tick: std::time::Duration,
    /// A queued task gains a point of standing per `aging` waited.
    pub aging: Duration,
    /// Tasks running at once, overall and per system.
    pub concurrency: usize,
    pub per_system: usize,
    /// Attempts before a failing task is given up.
    pub max_attempts: u32,
    /// The wait after the first failure (doubling, up to `max_backoff`).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The longest a task may run: one whose executor never answers fails (and frees its slot).
    pub task_timeout: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick: std::time::Duration::from_secs(30),
            aging: Duration::seconds(60),
            concurrency: 4,
            per_system: 2,
            max_attempts: 5,
            backoff: Duration::seconds(30),
            max_backoff: Duration::hours(1),
            task_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// A request to queue a task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub system: String,
    pub subject: String,
    pub action: String,
    pub priority: u8,
    pub reason: String,
    pub metrics: std::collections::BTreeMap<String, f64>,
    pub generations: u32,
}

struct State {
    queue: Queue,
    /// The core stream's version (the scheduler is its only writer).
    version: u64,
    /// The id of the event at `version`.
    last_event: Option<Uuid>,
    /// The version of the last saved image.
    saved: u64,
}

/// The live queue.
pub struct Scheduler {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    budget: Arc<dyn BudgetView>,
    pub config: Config,
    state: Mutex<State>,
    executors: std::sync::RwLock<HashMap<(String, String), Arc<dyn Executor>>>,
    wake: Notify,
    stream: StreamId,
    snapshots: Option<Arc<dyn SnapshotStore>>,
}

/// Why the scheduler could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the core's event: {0}")]
    Codec(String),
}

impl Scheduler {
    /// Folds the core's stream (the queue as the log has it) and fails, to be run again, every
    /// task that was running when the log ends (the server died while it ran).
    pub async fn load(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        budget: Arc<dyn BudgetView>,
        config: Config,
    ) -> Result<Arc<Self>, CoreError> {
        Self::load_with(store, clock, budget, config, None).await
    }

    /// [`load`](Self::load), starting from the queue's saved image when it is of this log, and
    /// saving images to `snapshots` from then on.
    pub async fn load_with(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        budget: Arc<dyn BudgetView>,
        config: Config,
        snapshots: Option<Arc<dyn SnapshotStore>>,
    ) -> Result<Arc<Self>, CoreError> {
        let core = Self::open(store, clock, budget, config, snapshots).await?;
        core.take_over().await?;
        Ok(core)
    }

    /// Folds the core's stream (from the saved image when it is of this log) without writing:
    /// the queue as the log has it, for a process that is not (yet) the stream's writer.
    pub async fn open(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        budget: Arc<dyn BudgetView>,
        config: Config,
        snapshots: Option<Arc<dyn SnapshotStore>>,
    ) -> Result<Arc<Self>, CoreError> {
        let stream = StreamId::parse(mall_events::autonomous::STREAM).expect("a valid stream id");
        let mut queue = Queue::new(config.aging);
        let (mut version, mut last_event) = (0, None);
        let image: Option<CoreImage> =
            snapshots.as_ref().and_then(|s| s.load(IMAGE_KEY)).and_then(|b| snapshot::decode(&b));
        if let Some(image) = image {
            let at = store.read_stream(&stream, image.version, Direction::Forward, 1).await?;
            if at.first().is_some_and(|e| e.stream_version == image.version && e.event_id == image.last_event) {
                queue = Queue::from_image(config.aging, image.queue);
                (version, last_event) = (image.version, Some(image.last_event));
            } else {
                tracing::warn!("a saved task queue of another log is ignored; folding the core's stream");
            }
        }
        let saved = version;
        let core = Arc::new(Scheduler {
            store,
            clock,
            budget,
            config,
            state: Mutex::new(State { queue, version, last_event, saved }),
            executors: Default::default(),
            wake: Notify::new(),
            stream,
            snapshots,
        });
        core.catch_up(&mut *core.state.lock().await).await?;
        Ok(core)
    }

    /// Folds what the core's stream holds after the state's version (written by the process
    /// that was its writer before this one).
    async fn catch_up(&self, state: &mut State) -> Result<(), CoreError> {
        loop {
            let batch = self.store.read_stream(&self.stream, state.version + 1, Direction::Forward, 10_000).await?;
            let Some(last) = batch.last() else { return Ok(()) };
            state.version = last.stream_version;
            state.last_event = Some(last.event_id);
            for e in &batch {
                match e.decode() {
                    Ok(d) => state.queue.evolve(&d),
                    Err(err) => {
                        tracing::warn!(position = e.position, error = %err, "a core event that does not decode is passed by")
                    }
                }
            }
        }
    }

    /// Becomes the stream's writer: folds what others wrote since, and fails, to be run again,
    /// every task that was running when its last writer stopped (or died) — the server's own
    /// start, or this node taking the core over from another.
    pub async fn take_over(&self) -> Result<(), CoreError> {
        let core = self;
        let mut state = core.state.lock().await;
        core.catch_up(&mut state).await?;
        let now = core.clock.now();
        let interrupted: Vec<DomainEvent> = state
            .queue
            .running_tasks()
            .iter()
            .map(|t| {
                DomainEvent::TaskFailed(TaskFailed {
                    task_id: t.id,
                    attempt: t.attempt,
                    error: "interrupted: the server stopped while it ran".into(),
                    retry_at: Some(now),
                    at: now,
                })
            })
            .collect();
        core.append(&mut state, interrupted).await?;
        Ok(())
    }

    /// Registers the executor of a system's action.
    pub fn register(&self, system: &str, action: &str, executor: Arc<dyn Executor>) {
        self.executors.write().expect("executors").insert((system.into(), action.into()), executor);
    }

    /// Appends the events (in one append) and folds them.
    async fn append(&self, state: &mut State, events: Vec<DomainEvent>) -> Result<(), CoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let new: Vec<NewEvent> = events
            .iter()
            .map(|e| NewEvent::from_domain(e, Uuid::now_v7(), vec![]).map_err(|e| CoreError::Codec(e.to_string())))
            .collect::<Result<_, _>>()?;
        let last = new.last().map(|e| e.event_id);
        let r = self.store.append(&self.stream, ExpectedVersion::Exact(state.version), new).await?;
        state.version = r.stream_version;
        state.last_event = last;
        for e in &events {
            state.queue.evolve(e);
        }
        if state.version >= state.saved + IMAGE_EVERY {
            self.save_image(state);
        }
        Ok(())
    }

    /// Saves the queue's image (when there is a snapshot store and something new to save).
    fn save_image(&self, state: &mut State) {
        let (Some(snapshots), Some(last_event)) = (&self.snapshots, state.last_event) else { return };
        if state.version == state.saved {
            return;
        }
        let image = CoreImage { version: state.version, last_event, queue: state.queue.image() };
        if let Some(bytes) = snapshot::encode(&image) {
            snapshots.save(IMAGE_KEY, &bytes);
            state.saved = state.version;
        }
    }

    /// Saves the queue's image now (at shutdown).
    pub async fn save(&self) {
        let mut state = self.state.lock().await;
        self.save_image(&mut state);
    }

    /// Queues tasks; a request for a subject and action already queued merges into that task
    /// (raising its priority when the new one is higher). Returns each request's task id.
    pub async fn queue(&self, requests: Vec<Request>) -> Result<Vec<Uuid>, CoreError> {
        let now = self.clock.now();
        let mut state = self.state.lock().await;
        let mut ids = Vec::with_capacity(requests.len());
        let mut events = Vec::new();
        let mut fresh: HashMap<(String, String), (Uuid, usize)> = HashMap::new();
        for r in requests {
            let priority = r.priority.min(100);
            let key = (r.subject.clone(), r.action.clone());
            // Merged into a task queued before, or into one queued by this same call.
            let existing = state.queue.merge_target(&r.system, &r.subject, &r.action).map(|t| (t.id, t.priority));
            if let Some((id, had)) = existing {
                if priority > had {
                    events.push(DomainEvent::TaskReprioritized(TaskReprioritized {
                        task_id: id,
                        priority,
                        reason: r.reason,
                        metrics: r.metrics,
                        at: now,
                    }));
                }
                ids.push(id);
                continue;
            }
            if let Some(&(id, i)) = fresh.get(&key) {
                if let DomainEvent::TaskQueued(q) = &mut events[i]
                    && priority > q.priority
                {
                    q.priority = priority;
                    q.reason = r.reason;
                    q.metrics = r.metrics;
                }
                ids.push(id);
                continue;
            }
            let id = Uuid::now_v7();
            fresh.insert(key, (id, events.len()));
            events.push(DomainEvent::TaskQueued(TaskQueued {
                task_id: id,
                system: r.system,
                subject: r.subject,
                action: r.action,
                priority,
                reason: r.reason,
                metrics: r.metrics,
                generations: r.generations,
                at: now,
            }));
            ids.push(id);
        }
        self.append(&mut state, events).await?;
        drop(state);
        self.wake.notify_one();
        Ok(ids)
    }

    /// Starts or stops a system (an event: a stopped system stays stopped after a restart).
    pub async fn switch(&self, system: &str, running: bool, by: &str) -> Result<(), CoreError> {
        let mut state = self.state.lock().await;
        if state.queue.is_stopped(system) != running {
            return Ok(());
        }
        let e = DomainEvent::SystemSwitched(SystemSwitched {
            system: system.into(),
            running,
            by: by.into(),
            at: self.clock.now(),
        });
        self.append(&mut state, vec![e]).await?;
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Reads the queue.
    pub async fn with_queue<T>(&self, f: impl FnOnce(&Queue) -> T) -> T {
        f(&self.state.lock().await.queue)
    }

    /// Appends an event to the core's stream (a job's run record).
    pub async fn record(&self, event: DomainEvent) -> Result<(), CoreError> {
        let mut state = self.state.lock().await;
        self.append(&mut state, vec![event]).await
    }

    /// Wakes the loop (work was queued elsewhere, or the budget refilled).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The wait before retrying after `attempt` failures.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1i32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(i32::MAX);
        (self.config.backoff * factor).min(self.config.max_backoff)
    }

    /// Runs the queue until `shutdown` fires: picks, starts, and finishes tasks as their
    /// executors answer. Tasks still running at shutdown are left running in the log (and run
    /// again at the next start); the queue's image is saved.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Uuid, u32, Result<String, String>)>();
        let mut errors = 0u32;
        loop {
            let mut finished = Vec::new();
            while let Ok(d) = done_rx.try_recv() {
                finished.push(d);
            }
            match self.step(finished, &done_tx).await {
                Ok(()) => errors = 0,
                Err(e) => {
                    errors += 1;
                    tracing::warn!(error = %e, "the task queue could not write; retrying");
                    let wait = std::time::Duration::from_millis(100u64 << errors.min(6));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            }
            let next_retry = self.state.lock().await.queue.next_retry();
            let mut wait = self.config.tick;
            if let Some(at) = next_retry {
                let until = (at - self.clock.now()).to_std().unwrap_or_default();
                wait = wait.min(until.max(std::time::Duration::from_millis(10)));
            }
            tokio::select! {
                d = done_rx.recv() => {
                    if let Some(d) = d {
                        // Put it back for the next step, with any others that arrived.
                        let _ = done_tx.send(d);
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        // What was folded need not be folded again at the next start.
        self.save().await;
    }

    /// One round: finish what completed, then start what may start.
    async fn step(
        &self,
        finished: Vec<(Uuid, u32, Result<String, String>)>,
        done: &mpsc::UnboundedSender<(Uuid, u32, Result<String, String>)>,
    ) -> Result<(), CoreError> {
        let now = self.clock.now();
        let mut state = self.state.lock().await;
        let mut events = Vec::with_capacity(finished.len());
        for (task_id, attempt, outcome) in finished {
            events.push(match outcome {
                Ok(summary) => DomainEvent::TaskSucceeded(TaskSucceeded { task_id, summary, at: now }),
                Err(error) => {
                    let t = state.queue.task(&task_id);
                    // Retried unless out of attempts or the subject has a newer task queued.
                    let free = t.is_some_and(|t| state.queue.merge_target(&t.system, &t.subject, &t.action).is_none());
                    let retry_at = (attempt < self.config.max_attempts && free).then(|| now + self.backoff(attempt));
                    let error: String = error.chars().take(mall_events::autonomous::MAX_TEXT_LEN / 4).collect();
                    DomainEvent::TaskFailed(TaskFailed { task_id, attempt, error, retry_at, at: now })
                }
            });
        }
        self.append(&mut state, events).await?;
        state.queue.promote(now);
        let slots = self.config.concurrency.saturating_sub(state.queue.running());
        if slots == 0 {
            return Ok(());
        }
        let picked = state.queue.pick(slots, self.config.per_system, self.budget.left());
        if picked.is_empty() {
            return Ok(());
        }
        let starts: Vec<DomainEvent> = picked
            .iter()
            .map(|id| {
                let attempt = state.queue.task(id).map_or(1, |t| t.attempt + 1);
                DomainEvent::TaskStarted(TaskStarted { task_id: *id, attempt, at: now })
            })
            .collect();
        self.append(&mut state, starts).await?;
        let executors = self.executors.read().expect("executors");
        for id in picked {
            let Some(task) = state.queue.task(&id).cloned() else { continue };
            let executor = executors.get(&(task.system.clone(), task.action.clone())).cloned();
            let done = done.clone();
            let attempt = task.attempt;
            let limit = self.config.task_timeout;
            // The task's id is the causation id of every event its run appends: the span carries
            // it, so that the run's logs and its events are found together.
            let span = tracing::info_span!(
                "task",
                task_id = %task.id,
                system = %task.system,
                action = %task.action,
                subject = %task.subject,
                attempt
            );
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let outcome = match executor {
                        Some(x) => {
                            // A panicking executor fails its task, and one that never answers fails
                            // at the time limit: neither takes the queue down or holds a slot.
                            let run = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(x.run(&task)));
                            match tokio::time::timeout(limit, run).await {
                                Ok(Ok(r)) => r,
                                Ok(Err(_)) => Err("the executor panicked".into()),
                                Err(_) => Err(format!("the executor did not answer within {} s", limit.as_secs_f64())),
                            }
                        }
                        None => Err(format!("no executor for {} {}", task.system, task.action)),
                    };
                    if let Err(e) = &outcome {
                        tracing::info!(error = %e, "the task failed");
                    }
                    let _ = done.send((task.id, attempt, outcome));
                },
                span,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use mall_events::{EmbeddedConfig, EmbeddedStore};

    use super::*;

    /// Records the subjects it ran, in order; fails the subjects named in `fail`.
    #[derive(Default)]
    struct Recorder {
        ran: StdMutex<Vec<String>>,
        fail: StdMutex<Vec<String>>,
    }

    #[async_trait]
    impl Executor for Recorder {
        async fn run(&self, task: &Task) -> Result<String, String> {
            self.ran.lock().unwrap().push(task.subject.clone());
            if self.fail.lock().unwrap().contains(&task.subject) {
                return Err(format!("{} failed", task.subject));
            }
            Ok(format!("ran {}", task.subject))
        }
    }

    fn request(subject: &str, priority: u8) -> Request {
        Request {
            system: "product_intelligence".into(),
            subject: subject.into(),
            action: "nudge".into(),
            priority,
            reason: "test".into(),
            metrics: Default::default(),
            generations: 0,
        }
    }

    struct World {
        store: Arc<dyn EventStore>,
        clock: Arc<ManualClock>,
        _dir: tempfile::TempDir,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap());
        World { store, clock: Arc::new(ManualClock::new("2026-11-29T12:00:00Z".parse().unwrap())), _dir: dir }
    }

    async fn scheduler(w: &World, config: Config) -> Arc<Scheduler> {
        Scheduler::load(w.store.clone(), w.clock.clone(), Arc::new(FixedBudget(100)), config).await.unwrap()
    }

    type Done = (Uuid, u32, Result<String, String>);

    /// Steps by hand: one step, then every completion fed back until nothing runs.
    async fn drive(s: &Scheduler, tx: &mpsc::UnboundedSender<Done>, rx: &mut mpsc::UnboundedReceiver<Done>) {
        s.step(vec![], tx).await.unwrap();
        while s.with_queue(|q| q.running()).await > 0 {
            let d = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            s.step(vec![d], tx).await.unwrap();
        }
    }

    #[tokio::test]
    async fn tasks_run_highest_first_and_their_outcomes_are_events() {
        let w = world();
        let s = scheduler(&w, Config { concurrency: 1, per_system: 1, ..Config::default() }).await;
        let x = Arc::new(Recorder::default());
        s.register("product_intelligence", "nudge", x.clone());
        let ids = s
            .queue(vec![request("low", 10), request("high", 90), request("mid", 50), request("high", 20)])
            .await
            .unwrap();
        assert_eq!(ids[1], ids[3], "a duplicate merges into the queued task");
        let (stop, rx) = watch::channel(false);
        let h = tokio::spawn(s.clone().run(rx));
        for _ in 0..500 {
            if x.ran.lock().unwrap().len() == 3 && s.with_queue(|q| q.running() == 0).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(*x.ran.lock().unwrap(), vec!["high", "mid", "low"]);
        let _ = stop.send(true);
        h.await.unwrap();
        // The log says the same: a fresh load has every task succeeded.
        let again = scheduler(&w, Config::default()).await;
        again
            .with_queue(|q| {
                assert_eq!((q.queued(), q.running()), (0, 0));
                assert!(q.tasks().all(|t| t.status == super::super::queue::Status::Succeeded && t.outcome.is_some()));
            })
            .await;
    }

    #[tokio::test]
    async fn a_failing_task_backs_off_and_is_given_up_after_its_attempts() {
        let w = world();
        let config = Config { max_attempts: 3, backoff: Duration::seconds(30), ..Config::default() };
        let s = scheduler(&w, config).await;
        let x = Arc::new(Recorder::default());
        x.fail.lock().unwrap().push("bad".into());
        s.register("product_intelligence", "nudge", x.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = s.queue(vec![request("bad", 50)]).await.unwrap()[0];
        let mut waits = Vec::new();
        for _ in 0..3 {
            drive(&s, &tx, &mut rx).await;
            if let Some(at) = s.with_queue(|q| q.task(&id).unwrap().retry_at).await {
                waits.push((at - w.clock.now()).num_seconds());
                drive(&s, &tx, &mut rx).await;
                assert_eq!(x.ran.lock().unwrap().len(), waits.len(), "not before its retry time");
                w.clock.set(at);
            }
        }
        assert_eq!(waits, vec![30, 60], "exponential backoff");
        let t = s.with_queue(|q| q.task(&id).unwrap().clone()).await;
        assert_eq!((t.status, t.attempt), (super::super::queue::Status::Failed, 3), "given up after 3 attempts");
        assert_eq!(t.outcome.as_deref(), Some("bad failed"));
        w.clock.advance(Duration::days(1));
        drive(&s, &tx, &mut rx).await;
        assert_eq!(x.ran.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_task_interrupted_by_a_crash_runs_again_and_a_stopped_system_stays_stopped() {
        let w = world();
        let s = scheduler(&w, Config::default()).await;
        let ids = s.queue(vec![request("p1", 50)]).await.unwrap();
        s.switch("merchandising", false, "admin").await.unwrap();
        // Started, then the process dies (no executor ever answers).
        let (tx, _rx) = mpsc::unbounded_channel();
        s.step(vec![], &tx).await.unwrap();
        assert_eq!(s.with_queue(|q| q.running()).await, 1);
        drop(s);
        let again = scheduler(&w, Config::default()).await;
        let t = again.with_queue(|q| q.task(&ids[0]).unwrap().clone()).await;
        assert_eq!(t.status, super::super::queue::Status::Queued, "failed as interrupted, to run again");
        assert!(t.outcome.unwrap().contains("interrupted"));
        assert!(again.with_queue(|q| q.is_stopped("merchandising")).await, "stopped across the restart");
        let x = Arc::new(Recorder::default());
        again.register("product_intelligence", "nudge", x.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        drive(&again, &tx, &mut rx).await;
        assert_eq!(*x.ran.lock().unwrap(), vec!["p1"], "it runs again");
    }

    /// What a queue shows of itself, for comparing two.
    fn observed(q: &Queue, now: DateTime<Utc>) -> impl PartialEq + std::fmt::Debug {
        let mut tasks: Vec<Task> = q.tasks().cloned().collect();
        tasks.sort_by_key(|t| t.id);
        let merge: Vec<Option<Uuid>> =
            tasks.iter().map(|t| q.merge_target(&t.system, &t.subject, &t.action).map(|m| m.id)).collect();
        let standing: Vec<i64> = tasks.iter().map(|t| (q.standing(t, now) * 1000.0) as i64).collect();
        (
            tasks,
            merge,
            standing,
            q.pick(1_000, 1_000, 1_000),
            q.pick(3, 1, 1),
            (q.queued(), q.running(), q.next_retry()),
            (q.is_stopped("merchandising"), q.last_run("learning_cycle").cloned(), q.insights().clone()),
        )
    }

    /// The queue saved as an image and loaded with the stream after it equals the fold of the
    /// whole stream — ties in standing, tasks waiting to retry, stopped systems, job runs and
    /// insights included — and an image of another log is ignored.
    #[tokio::test]
    async fn a_saved_queue_image_plus_the_stream_after_it_equals_the_whole_fold() {
        use crate::runtime::snapshot::MemorySnapshots;
        let w = world();
        let snapshots: Arc<dyn SnapshotStore> = Arc::new(MemorySnapshots::default());
        let load = |snapshots: Option<Arc<dyn SnapshotStore>>| {
            Scheduler::load_with(
                w.store.clone(),
                w.clock.clone(),
                Arc::new(FixedBudget(100)),
                Config::default(),
                snapshots,
            )
        };
        let s = load(Some(snapshots.clone())).await.unwrap();
        let x = Arc::new(Recorder::default());
        x.fail.lock().unwrap().push("flaky".into());
        s.register("product_intelligence", "nudge", x.clone());
        // Done, failed and waiting to retry, queued with equal standing, queued costly.
        s.queue(vec![request("done", 90), request("flaky", 80)]).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        drive(&s, &tx, &mut rx).await;
        s.queue(vec![request("tie-a", 40), request("tie-b", 40), request("tie-c", 40)]).await.unwrap();
        s.queue(vec![Request { generations: 2, ..request("costly", 70) }]).await.unwrap();
        s.switch("merchandising", false, "admin").await.unwrap();
        let job = mall_events::domain::JobRan {
            job: "learning_cycle".into(),
            system: "product_intelligence".into(),
            due_at: w.clock.now(),
            started_at: w.clock.now(),
            finished_at: w.clock.now(),
            tasks: vec![],
            outcome: "ok".into(),
        };
        s.record(DomainEvent::JobRan(job)).await.unwrap();
        s.save().await;
        let saved = s.state.lock().await.version;
        // More after the image: folded from the stream.
        w.clock.advance(Duration::seconds(90));
        s.queue(vec![request("later", 40), request("tie-a", 60)]).await.unwrap();
        drop(s);

        let from_image = load(Some(snapshots.clone())).await.unwrap();
        assert_eq!(from_image.state.lock().await.saved, saved, "started from the image");
        let folded = load(None).await.unwrap();
        let now = w.clock.now();
        let a = from_image.with_queue(|q| format!("{:?}", observed(q, now))).await;
        let b = folded.with_queue(|q| format!("{:?}", observed(q, now))).await;
        assert_eq!(a, b);
        assert!(a.contains("tie-b") && a.contains("flaky") && a.contains("learning_cycle"));

        // The same image beside another log (fewer core events, other ids) is ignored.
        let other = world();
        let s =
            Scheduler::load(other.store.clone(), other.clock.clone(), Arc::new(FixedBudget(100)), Config::default())
                .await
                .unwrap();
        s.queue(vec![request("elsewhere", 10)]).await.unwrap();
        let beside = Scheduler::load_with(
            other.store.clone(),
            other.clock.clone(),
            Arc::new(FixedBudget(100)),
            Config::default(),
            Some(snapshots),
        )
        .await
        .unwrap();
        let subjects: Vec<String> = beside.with_queue(|q| q.tasks().map(|t| t.subject.clone()).collect()).await;
        assert_eq!(subjects, vec!["elsewhere"]);
    }

    /// Never answers, or panics.
    struct Hostile;

    #[async_trait]
    impl Executor for Hostile {
        async fn run(&self, task: &Task) -> Result<String, String> {
            if task.subject == "panics" {
                panic!("the executor blew up");
            }
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn an_executor_that_never_answers_or_panics_fails_its_task_and_frees_the_slot() {
        let w = world();
        let config = Config {
            concurrency: 1,
            per_system: 1,
            max_attempts: 1,
            task_timeout: std::time::Duration::from_millis(50),
            ..Config::default()
        };
        let s = scheduler(&w, config).await;
        s.register("product_intelligence", "nudge", Arc::new(Hostile));
        let ids = s.queue(vec![request("hangs", 90), request("panics", 50)]).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        drive(&s, &tx, &mut rx).await;
        drive(&s, &tx, &mut rx).await;
        let outcomes = s
            .with_queue(|q| {
                ids.iter().map(|i| (q.task(i).unwrap().status, q.task(i).unwrap().outcome.clone())).collect::<Vec<_>>()
            })
            .await;
        assert_eq!(outcomes[0].0, super::super::queue::Status::Failed);
        assert!(outcomes[0].1.as_deref().unwrap().contains("did not answer"), "{outcomes:?}");
        assert_eq!(outcomes[1].0, super::super::queue::Status::Failed, "the slot was freed for the next task");
        assert_eq!(outcomes[1].1.as_deref(), Some("the executor panicked"));
    }

    #[tokio::test]
    async fn a_stopped_systems_tasks_wait_until_it_starts() {
        let w = world();
        let s = scheduler(&w, Config::default()).await;
        let x = Arc::new(Recorder::default());
        s.register("product_intelligence", "nudge", x.clone());
        s.switch("product_intelligence", false, "admin").await.unwrap();
        s.queue(vec![request("p1", 50)]).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        drive(&s, &tx, &mut rx).await;
        assert_eq!(s.with_queue(|q| (q.running(), q.queued())).await, (0, 1));
        s.switch("product_intelligence", true, "admin").await.unwrap();
        drive(&s, &tx, &mut rx).await;
        assert_eq!(*x.ran.lock().unwrap(), vec!["p1"]);
    }
}
