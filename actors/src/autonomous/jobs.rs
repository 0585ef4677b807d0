//! The job runner: the seed's heartbeat. Each job belongs to a system and runs at its cadence
//! (ticks aligned to the epoch in UTC, so a cadence means the same instants on every node and
//! after every restart); a run queues the system's work as tasks and is recorded as a
//! `job_ran` event with the tick it ran for.
//!
//! A tick missed while the server was down runs once at start (for the latest tick, not once per
//! missed tick); a job never overlaps itself; a stopped system's jobs and disabled jobs do not
//! run. The runner reads time from a [`Clock`], so tests drive it by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mall_events::domain::{DomainEvent, JobRan};
use uuid::Uuid;

use super::scheduler::{Clock, Scheduler};

/// A job of the seed: its name, system and default cadence.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec {
    pub name: &'static str,
    pub system: &'static str,
    pub every_seconds: i64,
}

/// Every job of the seed at its default cadence (`social_calendar` weekly: its ticks fall on
/// Mondays 00:00 UTC plus the offset [`SOCIAL_OFFSET`] — 09:00).
pub const JOBS: &[JobSpec] = &[
    JobSpec { name: "product_intelligence", system: "product_intelligence", every_seconds: 1_800 },
    JobSpec { name: "merchandising", system: "merchandising", every_seconds: 900 },
    JobSpec { name: "district_evolution", system: "district_evolution", every_seconds: 21_600 },
    JobSpec { name: "health_check", system: "self_healing", every_seconds: 3_600 },
    JobSpec { name: "social_calendar", system: "social_media", every_seconds: 604_800 },
    JobSpec { name: "analytics_narratives", system: "analytics", every_seconds: 86_400 },
    JobSpec { name: "anomaly_detection", system: "analytics", every_seconds: 7_200 },
    JobSpec { name: "ab_test_analysis", system: "product_intelligence", every_seconds: 14_400 },
    JobSpec { name: "user_profiles", system: "personalization", every_seconds: 300 },
    JobSpec { name: "plugin_hooks", system: "plugins", every_seconds: 1_200 },
    // The core's own: finished work turned into insights (see `learning`).
    JobSpec { name: "learning_cycle", system: "product_intelligence", every_seconds: 60 },
];

/// Every system of the seed.
pub const SYSTEMS: &[&str] = &[
    "product_intelligence",
    "merchandising",
    "district_evolution",
    "self_healing",
    "social_media",
    "analytics",
    "personalization",
    "plugins",
];

/// Where the weekly ticks fall after the epoch's week start (1970-01-05 was a Monday): 09:00.
pub const SOCIAL_OFFSET: i64 = 4 * 86_400 + 9 * 3_600;

/// What a job does when it runs: queues its system's work; returns the tasks queued.
#[async_trait]
pub trait JobWork: Send + Sync + 'static {
    async fn run(&self, scheduler: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String>;
}

/// A job as configured.
pub struct Job {
    pub spec: JobSpec,
    pub every: Duration,
    pub enabled: bool,
    /// The work (none: its system does not exist yet).
    pub work: Option<Arc<dyn JobWork>>,
    running: AtomicBool,
}

/// The latest tick at or before `now` of a job run every `every` from `offset` (seconds).
pub fn latest_tick(every: Duration, offset: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let every = every.num_seconds().max(1);
    let t = now.timestamp() - offset;
    let k = t.div_euclid(every);
    DateTime::from_timestamp(k * every + offset, 0).unwrap_or(now)
}

/// The tick a job is due for now, if any: the latest tick, unless it already ran for it (or a
/// later one).
pub fn due(every: Duration, offset: i64, last_due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tick = latest_tick(every, offset, now);
    match last_due {
        Some(last) if last >= tick => None,
        _ => Some(tick),
    }
}

/// The runner: jobs and the scheduler they queue into.
pub struct Runner {
    scheduler: Arc<Scheduler>,
    clock: Arc<dyn Clock>,
    jobs: Vec<Arc<Job>>,
}

/// A job's status, as `GET /api/autonomous` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    pub name: &'static str,
    pub system: &'static str,
    pub every_seconds: i64,
    pub enabled: bool,
    pub available: bool,
    pub running: bool,
    pub last_run: Option<JobRan>,
    pub next_run: DateTime<Utc>,
}

impl Runner {
    /// Every job of the seed with its cadence (overridden by `every`, seconds by name) and
    /// switch (`disabled` names); `work` gives the work of the jobs whose systems exist.
    pub fn new(
        scheduler: Arc<Scheduler>,
        clock: Arc<dyn Clock>,
        every: &BTreeMap<String, i64>,
        disabled: &[String],
        mut work: BTreeMap<&'static str, Arc<dyn JobWork>>,
    ) -> Self {
        let jobs = JOBS
            .iter()
            .map(|spec| {
                Arc::new(Job {
                    spec: *spec,
                    every: Duration::seconds(every.get(spec.name).copied().unwrap_or(spec.every_seconds).max(1)),
                    enabled: !disabled.iter().any(|d| d == spec.name),
                    work: work.remove(spec.name),
                    running: AtomicBool::new(false),
                })
            })
            .collect();
        Runner { scheduler, clock, jobs }
    }

    fn offset(job: &Job) -> i64 {
        if job.spec.name == "social_calendar" { SOCIAL_OFFSET } else { 0 }
    }

    /// Starts every due job that may run (enabled, with work, its system running, not running
    /// already); returns the names started. Each run records its `job_ran` when it finishes.
    pub async fn tick(&self) -> Vec<&'static str> {
        let now = self.clock.now();
        let mut started = Vec::new();
        for job in &self.jobs {
            let Some(work) = job.work.clone().filter(|_| job.enabled) else { continue };
            let (stopped, last) = self
                .scheduler
                .with_queue(|q| (q.is_stopped(job.spec.system), q.last_run(job.spec.name).map(|r| r.due_at)))
                .await;
            if stopped {
                continue;
            }
            let Some(due_at) = due(job.every, Self::offset(job), last, now) else { continue };
            if job.running.swap(true, Ordering::AcqRel) {
                continue;
            }
            started.push(job.spec.name);
            let (job, scheduler, clock) = (job.clone(), self.scheduler.clone(), self.clock.clone());
            tokio::spawn(async move {
                let started_at = clock.now();
                let outcome = work.run(&scheduler, due_at).await;
                let (tasks, outcome) = match outcome {
                    Ok(t) => (t, "ok".to_string()),
                    Err(e) => (Vec::new(), e),
                };
                let ran = JobRan {
                    job: job.spec.name.into(),
                    system: job.spec.system.into(),
                    due_at,
                    started_at,
                    finished_at: clock.now(),
                    tasks,
                    outcome: if outcome.is_empty() { "failed".into() } else { outcome },
                };
                if let Err(e) = scheduler.record(DomainEvent::JobRan(ran)).await {
                    tracing::warn!(job = job.spec.name, error = %e, "cannot record a job's run; it runs again");
                }
                job.running.store(false, Ordering::Release);
            });
        }
        started
    }

    /// Every job's status.
    pub async fn status(&self) -> Vec<JobStatus> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for job in &self.jobs {
            let last = self.scheduler.with_queue(|q| q.last_run(job.spec.name).cloned()).await;
            let tick = latest_tick(job.every, Self::offset(job), now);
            let next = match &last {
                Some(l) if l.due_at >= tick => tick + job.every,
                _ if job.work.is_some() => tick,
                _ => tick + job.every,
            };
            out.push(JobStatus {
                name: job.spec.name,
                system: job.spec.system,
                every_seconds: job.every.num_seconds(),
                enabled: job.enabled,
                available: job.work.is_some(),
                running: job.running.load(Ordering::Acquire),
                last_run: last,
                next_run: next,
            });
        }
        out
    }

    /// Ticks every second until `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore};

    use super::super::scheduler::{Config, FixedBudget, ManualClock};
    use super::*;

    /// Counts its runs; each takes until `gate` opens.
    struct Counting {
        runs: AtomicUsize,
        gate: tokio::sync::Semaphore,
        dues: std::sync::Mutex<Vec<DateTime<Utc>>>,
    }

    #[async_trait]
    impl JobWork for Counting {
        async fn run(&self, _: &Scheduler, due: DateTime<Utc>) -> Result<Vec<Uuid>, String> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.dues.lock().unwrap().push(due);
            self.gate.acquire().await.map_err(|e| e.to_string())?.forget();
            Ok(vec![])
        }
    }

    struct World {
        store: Arc<dyn EventStore>,
        clock: Arc<ManualClock>,
        work: Arc<Counting>,
        _dir: tempfile::TempDir,
    }

    fn world(at: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap());
        let work = Arc::new(Counting {
            runs: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            dues: Default::default(),
        });
        World { store, clock: Arc::new(ManualClock::new(at.parse().unwrap())), work, _dir: dir }
    }

    async fn runner(w: &World) -> Runner {
        let s = Scheduler::load(w.store.clone(), w.clock.clone(), Arc::new(FixedBudget(0)), Config::default())
            .await
            .unwrap();
        let work: BTreeMap<&'static str, Arc<dyn JobWork>> = BTreeMap::from([("user_profiles", w.work.clone() as _)]);
        Runner::new(s, w.clock.clone(), &BTreeMap::new(), &[], work)
    }

    /// Lets the run finish and waits for its record.
    async fn finish(r: &Runner, w: &World, runs: usize) {
        w.work.gate.add_permits(1);
        for _ in 0..500 {
            let recorded = r.scheduler.with_queue(|q| q.last_run("user_profiles").is_some()).await;
            if recorded && w.work.runs.load(Ordering::SeqCst) == runs && !r.jobs[8].running.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the run did not finish");
    }

    #[tokio::test]
    async fn a_job_runs_at_each_tick_of_its_cadence_and_never_overlaps_itself() {
        let w = world("2026-11-29T12:01:00Z");
        let r = runner(&w).await;
        assert_eq!(r.tick().await, vec!["user_profiles"], "never ran: runs for the latest tick");
        assert_eq!(r.tick().await, Vec::<&str>::new(), "running: not started twice");
        w.clock.advance(Duration::minutes(10));
        assert_eq!(r.tick().await, Vec::<&str>::new(), "still running past its next tick: no overlap");
        finish(&r, &w, 1).await;
        assert_eq!(r.tick().await, vec!["user_profiles"], "the tick it missed while running");
        finish(&r, &w, 2).await;
        assert_eq!(r.tick().await, Vec::<&str>::new(), "nothing due until the next tick");
        w.clock.advance(Duration::minutes(5));
        assert_eq!(r.tick().await, vec!["user_profiles"]);
        finish(&r, &w, 3).await;
        let dues: Vec<String> = w.work.dues.lock().unwrap().iter().map(|d| d.format("%H:%M").to_string()).collect();
        assert_eq!(dues, vec!["12:00", "12:10", "12:15"], "ticks on the 5-minute grid");
        let status = r.status().await;
        let job = status.iter().find(|j| j.name == "user_profiles").unwrap();
        assert_eq!(job.next_run.format("%H:%M").to_string(), "12:20");
        assert!(status.iter().find(|j| j.name == "merchandising").is_some_and(|j| !j.available));
    }

    #[tokio::test]
    async fn a_tick_missed_while_down_runs_once_at_start() {
        let w = world("2026-11-29T12:01:00Z");
        let r = runner(&w).await;
        r.tick().await;
        finish(&r, &w, 1).await;
        drop(r);
        // Down for three hours: 36 ticks missed.
        w.clock.advance(Duration::hours(3));
        let r = runner(&w).await;
        assert_eq!(r.tick().await, vec!["user_profiles"]);
        finish(&r, &w, 2).await;
        assert_eq!(r.tick().await, Vec::<&str>::new(), "once, not once per missed tick");
        assert_eq!(w.work.dues.lock().unwrap()[1].format("%H:%M").to_string(), "15:00");
    }

    #[tokio::test]
    async fn a_stopped_systems_jobs_do_not_run() {
        let w = world("2026-11-29T12:01:00Z");
        let r = runner(&w).await;
        r.scheduler.switch("personalization", false, "admin").await.unwrap();
        assert_eq!(r.tick().await, Vec::<&str>::new());
        r.scheduler.switch("personalization", true, "admin").await.unwrap();
        assert_eq!(r.tick().await, vec!["user_profiles"]);
    }

    #[test]
    fn the_weekly_tick_falls_on_monday_at_nine() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap(); // a Sunday
        let t = latest_tick(Duration::seconds(604_800), SOCIAL_OFFSET, now);
        assert_eq!(t.format("%a %Y-%m-%d %H:%M").to_string(), "Mon 2026-11-23 09:00");
    }
}
