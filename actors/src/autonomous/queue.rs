//! The task queue as a fold of the core's events, and the scheduler's pick.
//!
//! **Order.** A queued task's standing is its priority plus one point for every `aging` step it
//! has waited. Ordering by that is the same at every instant as ordering by the fixed key
//! `priority × aging − queued_at`, so the queue keeps tasks sorted by the key once and a pick
//! reads the best first, without re-sorting as time passes. Ties go to the task queued first.
//!
//! **Bound.** A task of priority `p` queued at `t` can only be passed by tasks queued before
//! `t + (100 − p) × aging` (a later one's key is below its own even at priority 100): however
//! much work arrives after that, it runs once the work queued before that instant is done.
//!
//! **Pick.** Highest standing first, skipping a stopped system's tasks, a system already at its
//! concurrency limit, and tasks whose model calls the hourly budget cannot cover (the budget is
//! taken in standing order: the first task that does not fit blocks the other costly tasks of its
//! system for that pick, so a cheap task cannot starve an expensive one forever). Tasks are kept
//! in one ordered set per system and cost class, so a pick costs O(systems) per task picked,
//! whatever the queue's length.
//!
//! **One queued task per subject and action**: asking again merges into the queued one (keeping
//! the higher priority, see [`Queue::merge_target`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use mall_events::DomainEvent;
use mall_events::domain::TaskQueued;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A task as the queue knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: Uuid,
    pub system: String,
    pub subject: String,
    pub action: String,
    pub priority: u8,
    pub reason: String,
    pub metrics: BTreeMap<String, f64>,
    pub generations: u32,
    pub queued_at: DateTime<Utc>,
    pub status: Status,
    /// Attempts started so far.
    pub attempt: u32,
    /// A failed task's next try (it waits until then).
    pub retry_at: Option<DateTime<Utc>>,
    /// The success summary, the last error or the cancellation reason.
    pub outcome: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A sort key: higher standing first, then the earlier queued (by fold order).
type Key = (std::cmp::Reverse<i64>, u64);

/// The key of a task that later requests merge into: the same work is the same system's action
/// on the same subject (two systems' sweeps of the mall are different work).
fn open_key(system: &str, subject: &str, action: &str) -> (String, String) {
    (format!("{system}/{subject}"), action.to_string())
}

/// The queue: every task folded from the log, the queued ones indexed for the pick.
#[derive(Debug, Clone)]
pub struct Queue {
    aging_ms: i64,
    tasks: HashMap<Uuid, Task>,
    /// Queued tasks that may run now, by (system, costs model calls) in standing order.
    ready: BTreeMap<(String, bool), BTreeMap<Key, Uuid>>,
    /// Each queued task's place in `ready`.
    place: HashMap<Uuid, Key>,
    /// Failed tasks waiting for their retry time.
    delayed: BTreeSet<(DateTime<Utc>, Uuid)>,
    /// The queued (ready or delayed) task of each (subject, action).
    open: HashMap<(String, String), Uuid>,
    /// Running tasks per system.
    running: HashMap<String, usize>,
    /// Systems switched off (their tasks wait; their jobs do not run).
    stopped: BTreeSet<String>,
    /// Finished tasks, oldest first: the queue keeps the last [`KEEP_FINISHED`] (the read table
    /// keeps them all).
    finished: std::collections::VecDeque<Uuid>,
    /// Each job's last run.
    jobs: BTreeMap<String, mall_events::domain::JobRan>,
    /// The learning cycle's latest insight of each key.
    insights: BTreeMap<String, mall_events::domain::InsightRecorded>,
    seq: u64,
}

/// Finished tasks kept in the queue's memory.
pub const KEEP_FINISHED: usize = 10_000;

/// The queue as saved (so that a start need not fold the core's whole stream): its tasks —
/// the queued ones in standing order, so that ties keep their order — and what else it folded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueImage {
    queued: Vec<Task>,
    /// Running, waiting to retry, and finished (oldest first) tasks.
    others: Vec<Task>,
    finished: Vec<Uuid>,
    stopped: Vec<String>,
    jobs: Vec<mall_events::domain::JobRan>,
    insights: Vec<mall_events::domain::InsightRecorded>,
}

impl Queue {
    /// An empty queue whose tasks gain a point of standing every `aging`.
    pub fn new(aging: Duration) -> Self {
        Queue {
            aging_ms: aging.num_milliseconds().max(1),
            tasks: HashMap::new(),
            ready: BTreeMap::new(),
            place: HashMap::new(),
            delayed: BTreeSet::new(),
            open: HashMap::new(),
            running: HashMap::new(),
            stopped: BTreeSet::new(),
            finished: std::collections::VecDeque::new(),
            jobs: BTreeMap::new(),
            insights: BTreeMap::new(),
            seq: 0,
        }
    }

    fn key(&mut self, t: &Task) -> Key {
        self.seq += 1;
        (std::cmp::Reverse(t.priority as i64 * self.aging_ms - t.queued_at.timestamp_millis()), self.seq)
    }

    fn enqueue(&mut self, id: Uuid) {
        let t = self.tasks[&id].clone();
        let key = self.key(&t);
        self.ready.entry((t.system.clone(), t.generations > 0)).or_default().insert(key, id);
        self.place.insert(id, key);
        self.open.insert(open_key(&t.system, &t.subject, &t.action), id);
    }

    /// Takes a queued task out of the indexes (it starts, or is cancelled).
    fn dequeue(&mut self, id: Uuid) {
        let Some(t) = self.tasks.get(&id) else { return };
        if let Some(key) = self.place.remove(&id)
            && let Some(set) = self.ready.get_mut(&(t.system.clone(), t.generations > 0))
        {
            set.remove(&key);
        }
        if let Some(at) = t.retry_at {
            self.delayed.remove(&(at, id));
        }
        let k = open_key(&t.system, &t.subject, &t.action);
        if self.open.get(&k) == Some(&id) {
            self.open.remove(&k);
        }
    }

    fn finish_running(&mut self, system: &str) {
        if let Some(n) = self.running.get_mut(system) {
            *n = n.saturating_sub(1);
        }
    }

    fn finished(&mut self, id: Uuid) {
        self.finished.push_back(id);
        while self.finished.len() > KEEP_FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.tasks.remove(&old);
            }
        }
    }

    /// Folds one event of the core's stream (other events are passed by). Total: an event about
    /// an unknown task, or one out of its order, changes nothing.
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::TaskQueued(e) => {
                if self.tasks.contains_key(&e.task_id) {
                    return;
                }
                self.tasks.insert(e.task_id, Task::queued(e));
                self.enqueue(e.task_id);
            }
            DomainEvent::TaskReprioritized(e) => {
                let queued = self.tasks.get(&e.task_id).is_some_and(|t| t.status == Status::Queued);
                if !queued {
                    return;
                }
                let delayed = self.tasks[&e.task_id].retry_at.is_some();
                self.dequeue(e.task_id);
                let t = self.tasks.get_mut(&e.task_id).expect("known");
                t.priority = e.priority;
                t.reason = e.reason.clone();
                t.metrics = e.metrics.clone();
                t.updated_at = e.at;
                if delayed {
                    let (at, k) = (t.retry_at.expect("delayed"), open_key(&t.system, &t.subject, &t.action));
                    self.delayed.insert((at, e.task_id));
                    self.open.insert(k, e.task_id);
                } else {
                    self.enqueue(e.task_id);
                }
            }
            DomainEvent::TaskStarted(e) => {
                let queued = self.tasks.get(&e.task_id).is_some_and(|t| t.status == Status::Queued);
                if !queued {
                    return;
                }
                self.dequeue(e.task_id);
                let t = self.tasks.get_mut(&e.task_id).expect("known");
                t.status = Status::Running;
                t.attempt = e.attempt;
                t.retry_at = None;
                t.updated_at = e.at;
                *self.running.entry(t.system.clone()).or_default() += 1;
            }
            DomainEvent::TaskSucceeded(e) => {
                let Some(t) = self.tasks.get_mut(&e.task_id).filter(|t| t.status == Status::Running) else { return };
                t.status = Status::Succeeded;
                t.outcome = Some(e.summary.clone());
                t.updated_at = e.at;
                let system = t.system.clone();
                self.finish_running(&system);
                self.finished(e.task_id);
            }
            DomainEvent::TaskFailed(e) => {
                let Some(t) = self.tasks.get_mut(&e.task_id).filter(|t| t.status == Status::Running) else { return };
                t.outcome = Some(e.error.clone());
                t.updated_at = e.at;
                let system = t.system.clone();
                match e.retry_at {
                    Some(at) => {
                        t.status = Status::Queued;
                        t.retry_at = Some(at);
                        let k = open_key(&t.system, &t.subject, &t.action);
                        self.delayed.insert((at, e.task_id));
                        self.open.insert(k, e.task_id);
                    }
                    None => {
                        t.status = Status::Failed;
                        self.finished(e.task_id);
                    }
                }
                self.finish_running(&system);
            }
            DomainEvent::TaskCancelled(e) => {
                let Some(status) = self.tasks.get(&e.task_id).map(|t| t.status) else { return };
                if !matches!(status, Status::Queued | Status::Running) {
                    return;
                }
                self.dequeue(e.task_id);
                let t = self.tasks.get_mut(&e.task_id).expect("known");
                t.status = Status::Cancelled;
                t.outcome = Some(e.reason.clone());
                t.retry_at = None;
                t.updated_at = e.at;
                if status == Status::Running {
                    let system = t.system.clone();
                    self.finish_running(&system);
                }
                self.finished(e.task_id);
            }
            DomainEvent::JobRan(e) => {
                self.jobs.insert(e.job.clone(), e.clone());
            }
            DomainEvent::InsightRecorded(e) => {
                self.insights.insert(e.key.clone(), e.clone());
            }
            DomainEvent::SystemSwitched(e) => {
                if e.running {
                    self.stopped.remove(&e.system);
                } else {
                    self.stopped.insert(e.system.clone());
                }
            }
            _ => {}
        }
    }

    /// The queue as an image.
    pub fn image(&self) -> QueueImage {
        let mut by_key: Vec<(&Key, &Uuid)> = self.place.iter().map(|(id, k)| (k, id)).collect();
        by_key.sort();
        let queued: Vec<Task> = by_key.iter().map(|(_, id)| self.tasks[*id].clone()).collect();
        let others = self.tasks.values().filter(|t| !self.place.contains_key(&t.id)).cloned().collect::<Vec<_>>();
        QueueImage {
            queued,
            others,
            finished: self.finished.iter().copied().collect(),
            stopped: self.stopped.iter().cloned().collect(),
            jobs: self.jobs.values().cloned().collect(),
            insights: self.insights.values().cloned().collect(),
        }
    }

    /// The queue an image holds, its indexes rebuilt.
    pub fn from_image(aging: Duration, image: QueueImage) -> Self {
        let mut q = Queue::new(aging);
        for t in image.queued {
            let id = t.id;
            q.tasks.insert(id, t);
            q.enqueue(id);
        }
        for t in image.others {
            let id = t.id;
            match (t.status, t.retry_at) {
                (Status::Queued, Some(at)) => {
                    q.delayed.insert((at, id));
                    q.open.insert(open_key(&t.system, &t.subject, &t.action), id);
                }
                (Status::Running, _) => *q.running.entry(t.system.clone()).or_default() += 1,
                _ => {}
            }
            q.tasks.insert(id, t);
        }
        q.finished = image.finished.into_iter().filter(|id| q.tasks.contains_key(id)).collect();
        q.stopped = image.stopped.into_iter().collect();
        q.jobs = image.jobs.into_iter().map(|j| (j.job.clone(), j)).collect();
        q.insights = image.insights.into_iter().map(|i| (i.key.clone(), i)).collect();
        q
    }

    /// Moves failed tasks whose retry time has come back among the ready ones.
    pub fn promote(&mut self, now: DateTime<Utc>) {
        while let Some(&(at, id)) = self.delayed.first() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            if let Some(t) = self.tasks.get_mut(&id) {
                t.retry_at = None;
            }
            self.enqueue(id);
        }
    }

    /// The tasks to start now, best first: at most `slots` of them, at most `per_system` running
    /// per system (counting those running), none of a stopped system, and model calls within
    /// `budget`. Pure: the caller starts them (appending `task_started`).
    pub fn pick(&self, slots: usize, per_system: usize, mut budget: u64) -> Vec<Uuid> {
        let mut heads: Vec<(&(String, bool), std::iter::Peekable<std::collections::btree_map::Iter<'_, Key, Uuid>>)> =
            self.ready
                .iter()
                .filter(|((system, _), set)| !set.is_empty() && !self.stopped.contains(system))
                .map(|(k, set)| (k, set.iter().peekable()))
                .collect();
        let mut taken: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        while out.len() < slots {
            // The best head among the sets that may still give a task.
            let mut best: Option<(usize, Key)> = None;
            for (i, ((system, _), it)) in heads.iter_mut().enumerate() {
                let busy =
                    self.running.get(system).copied().unwrap_or(0) + taken.get(system.as_str()).copied().unwrap_or(0);
                if busy >= per_system {
                    continue;
                }
                if let Some((key, _)) = it.peek()
                    && best.is_none_or(|(_, b)| **key < b)
                {
                    best = Some((i, **key));
                }
            }
            let Some((i, _)) = best else { break };
            let ((system, costly), it) = &mut heads[i];
            let (_, id) = it.next().expect("peeked");
            let t = &self.tasks[id];
            if *costly {
                if u64::from(t.generations) > budget {
                    // The budget is taken in standing order: this set waits for the next hour.
                    let _ = heads.remove(i);
                    continue;
                }
                budget -= u64::from(t.generations);
            }
            *taken.entry(system.as_str()).or_default() += 1;
            out.push(*id);
        }
        out
    }

    /// The queued task of this subject and action, which a new request merges into.
    pub fn merge_target(&self, system: &str, subject: &str, action: &str) -> Option<&Task> {
        self.open.get(&open_key(system, subject, action)).and_then(|id| self.tasks.get(id))
    }

    /// The earliest retry time of a waiting failed task.
    pub fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.delayed.first().map(|(at, _)| *at)
    }

    pub fn task(&self, id: &Uuid) -> Option<&Task> {
        self.tasks.get(id)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// Queued tasks (ready or waiting to retry).
    pub fn queued(&self) -> usize {
        self.place.len() + self.delayed.len()
    }

    /// Running tasks.
    pub fn running(&self) -> usize {
        self.running.values().sum()
    }

    /// The tasks that were running when the log ends (after a crash: to run again).
    pub fn running_tasks(&self) -> Vec<&Task> {
        let mut v: Vec<&Task> = self.tasks.values().filter(|t| t.status == Status::Running).collect();
        v.sort_by_key(|t| (t.updated_at, t.id));
        v
    }

    /// Every insight the learning cycle recorded, by key.
    pub fn insights(&self) -> &BTreeMap<String, mall_events::domain::InsightRecorded> {
        &self.insights
    }

    /// How often a system's action helped, and was tried, in a district (all diagnoses).
    pub fn track_record(&self, system: &str, action: &str, district: &str) -> (u64, u64) {
        self.insights
            .values()
            .filter(|i| i.system == system && i.action == action && i.district == district)
            .fold((0, 0), |(h, t), i| (h + i.helped, t + i.tried))
    }

    /// A job's last recorded run.
    pub fn last_run(&self, job: &str) -> Option<&mall_events::domain::JobRan> {
        self.jobs.get(job)
    }

    pub fn is_stopped(&self, system: &str) -> bool {
        self.stopped.contains(system)
    }

    /// A task's standing now: its priority plus a point per `aging` waited (may pass 100).
    pub fn standing(&self, t: &Task, now: DateTime<Utc>) -> f64 {
        t.priority as f64 + (now - t.queued_at).num_milliseconds().max(0) as f64 / self.aging_ms as f64
    }
}

impl Task {
    fn queued(e: &TaskQueued) -> Self {
        Task {
            id: e.task_id,
            system: e.system.clone(),
            subject: e.subject.clone(),
            action: e.action.clone(),
            priority: e.priority,
            reason: e.reason.clone(),
            metrics: e.metrics.clone(),
            generations: e.generations,
            queued_at: e.at,
            status: Status::Queued,
            attempt: 0,
            retry_at: None,
            outcome: None,
            updated_at: e.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use mall_events::domain::*;

    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-11-29T12:00:00Z".parse().unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn queued(n: u128, system: &str, subject: &str, priority: u8, generations: u32, at: DateTime<Utc>) -> DomainEvent {
        DomainEvent::TaskQueued(TaskQueued {
            task_id: id(n),
            system: system.into(),
            subject: subject.into(),
            action: "nudge".into(),
            priority,
            reason: String::new(),
            metrics: BTreeMap::new(),
            generations,
            at,
        })
    }

    fn started(n: u128) -> DomainEvent {
        DomainEvent::TaskStarted(TaskStarted { task_id: id(n), attempt: 1, at: t0() })
    }

    fn given(events: &[DomainEvent]) -> Queue {
        let mut q = Queue::new(Duration::seconds(60));
        for e in events {
            q.evolve(e);
        }
        q
    }

    #[test]
    fn the_highest_priority_runs_first_and_equals_run_in_queue_order() {
        let q = given(&[
            queued(1, "a", "s1", 10, 0, t0()),
            queued(2, "a", "s2", 80, 0, t0()),
            queued(3, "b", "s3", 50, 0, t0()),
            queued(4, "b", "s4", 50, 0, t0()),
        ]);
        assert_eq!(q.pick(10, 10, 0), vec![id(2), id(3), id(4), id(1)]);
        assert_eq!(q.pick(2, 10, 0), vec![id(2), id(3)], "slots bound the pick");
    }

    #[test]
    fn a_waiting_task_gains_a_point_per_aging_step() {
        // Priority 10 queued 41 minutes before a priority 50: it stands at 51 > 50.
        let q = given(&[queued(1, "a", "s1", 10, 0, t0()), queued(2, "a", "s2", 50, 0, t0() + Duration::minutes(41))]);
        assert_eq!(q.pick(1, 10, 0), vec![id(1)]);
        let q = given(&[queued(1, "a", "s1", 10, 0, t0()), queued(2, "a", "s2", 50, 0, t0() + Duration::minutes(39))]);
        assert_eq!(q.pick(1, 10, 0), vec![id(2)]);
        // The bound: nothing queued after (100 − p) steps can pass it, even at 100.
        let q = given(&[queued(1, "a", "s1", 0, 0, t0()), queued(2, "a", "s2", 100, 0, t0() + Duration::minutes(101))]);
        assert_eq!(q.pick(1, 10, 0), vec![id(1)]);
        assert!((q.standing(q.task(&id(1)).unwrap(), t0() + Duration::minutes(30)) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_system_at_its_limit_or_stopped_yields_to_the_others() {
        let mut q = given(&[
            queued(1, "a", "s1", 90, 0, t0()),
            queued(2, "a", "s2", 80, 0, t0()),
            queued(3, "b", "s3", 10, 0, t0()),
        ]);
        assert_eq!(q.pick(3, 1, 0), vec![id(1), id(3)], "one per system");
        q.evolve(&started(1));
        assert_eq!(q.pick(3, 1, 0), vec![id(3)], "a is busy with 1");
        q.evolve(&DomainEvent::SystemSwitched(SystemSwitched {
            system: "b".into(),
            running: false,
            by: "admin".into(),
            at: t0(),
        }));
        assert_eq!(q.pick(3, 2, 0), vec![id(2)], "b is stopped; a may run a second");
        assert!(q.is_stopped("b"));
    }

    #[test]
    fn model_calls_are_taken_from_the_budget_in_standing_order() {
        let q = given(&[
            queued(1, "a", "s1", 90, 2, t0()),
            queued(2, "a", "s2", 80, 1, t0()),
            queued(3, "a", "s3", 70, 0, t0()),
        ]);
        assert_eq!(q.pick(10, 10, 3), vec![id(1), id(2), id(3)]);
        assert_eq!(q.pick(10, 10, 2), vec![id(1), id(3)], "2 does not fit after 1; free work goes on");
        assert_eq!(q.pick(10, 10, 1), vec![id(3)], "1 does not fit: the costly ones wait (no cheap overtaking)");
    }

    #[test]
    fn one_queued_task_per_subject_and_action() {
        let mut q = given(&[queued(1, "a", "p1", 30, 0, t0())]);
        assert_eq!(q.merge_target("a", "p1", "nudge").map(|t| t.id), Some(id(1)));
        assert!(q.merge_target("b", "p1", "nudge").is_none(), "another system's work is other work");
        q.evolve(&DomainEvent::TaskReprioritized(TaskReprioritized {
            task_id: id(1),
            priority: 70,
            reason: "asked again".into(),
            metrics: BTreeMap::new(),
            at: t0(),
        }));
        assert_eq!(q.task(&id(1)).unwrap().priority, 70);
        assert_eq!(q.queued(), 1);
        q.evolve(&started(1));
        assert!(q.merge_target("a", "p1", "nudge").is_none(), "a running task takes no merges");
    }

    #[test]
    fn a_failed_task_waits_for_its_retry_and_a_finished_one_leaves() {
        let mut q = given(&[queued(1, "a", "s1", 50, 0, t0()), started(1)]);
        assert_eq!(q.running(), 1);
        let retry = t0() + Duration::minutes(5);
        q.evolve(&DomainEvent::TaskFailed(TaskFailed {
            task_id: id(1),
            attempt: 1,
            error: "boom".into(),
            retry_at: Some(retry),
            at: t0(),
        }));
        assert_eq!((q.running(), q.queued()), (0, 1));
        assert_eq!(q.pick(5, 5, 0), Vec::<Uuid>::new(), "not before its retry time");
        q.promote(retry);
        assert_eq!(q.pick(5, 5, 0), vec![id(1)]);
        q.evolve(&started(1));
        q.evolve(&DomainEvent::TaskSucceeded(TaskSucceeded { task_id: id(1), summary: "done".into(), at: t0() }));
        assert_eq!((q.running(), q.queued()), (0, 0));
        assert_eq!(q.task(&id(1)).unwrap().status, Status::Succeeded);
        q.evolve(&started(1));
        assert_eq!(q.running(), 0, "a finished task does not start again");
    }

    #[test]
    fn a_task_running_when_the_log_ends_is_listed_to_run_again() {
        let q = given(&[queued(1, "a", "s1", 50, 0, t0()), queued(2, "a", "s2", 50, 0, t0()), started(1)]);
        assert_eq!(q.running_tasks().iter().map(|t| t.id).collect::<Vec<_>>(), vec![id(1)]);
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Queue { subject: u8, system: u8, priority: u8, generations: u32 },
            Pick { slots: usize, per_system: usize, budget: u64 },
            Finish { nth: usize, ok: bool, retry: bool },
            Tick,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0u8..20, 0u8..3, 0u8..=100, 0u32..3).prop_map(|(subject, system, priority, generations)| {
                    Step::Queue { subject, system, priority, generations }
                }),
                (1usize..5, 1usize..3, 0u64..5).prop_map(|(slots, per_system, budget)| Step::Pick {
                    slots,
                    per_system,
                    budget
                }),
                (0usize..8, any::<bool>(), any::<bool>()).prop_map(|(nth, ok, retry)| Step::Finish { nth, ok, retry }),
                Just(Step::Tick),
            ]
        }

        proptest! {
            /// Driven as the scheduler drives it (merge duplicates, start what is picked, finish,
            /// retry): no task runs twice at once, every task queued is queued, running or
            /// finished — none is lost — and the limits hold at every pick.
            #[test]
            fn the_queue_never_runs_a_task_twice_at_once_and_never_loses_one(steps in prop::collection::vec(step(), 1..120)) {
                let mut q = Queue::new(Duration::seconds(60));
                let mut now = t0();
                let mut next = 1u128;
                let mut all: Vec<Uuid> = Vec::new();
                let mut running: Vec<Uuid> = Vec::new();
                for s in steps {
                    match s {
                        Step::Queue { subject, system, priority, generations } => {
                            let subject = format!("s{subject}");
                            if let Some(t) = q.merge_target(&format!("sys{system}"), &subject, "nudge") {
                                if priority > t.priority {
                                    let e = DomainEvent::TaskReprioritized(TaskReprioritized {
                                        task_id: t.id, priority, reason: String::new(), metrics: BTreeMap::new(), at: now,
                                    });
                                    q.evolve(&e);
                                }
                                continue;
                            }
                            q.evolve(&queued(next, &format!("sys{system}"), &subject, priority, generations, now));
                            all.push(id(next));
                            next += 1;
                        }
                        Step::Pick { slots, per_system, budget } => {
                            let picked = q.pick(slots, per_system, budget);
                            prop_assert!(picked.len() <= slots);
                            let cost: u64 = picked.iter().map(|i| u64::from(q.task(i).unwrap().generations)).sum();
                            prop_assert!(cost <= budget);
                            for i in &picked {
                                prop_assert!(!running.contains(i), "picked while running");
                                prop_assert_eq!(q.task(i).unwrap().status, Status::Queued);
                            }
                            let mut per: HashMap<&str, usize> = HashMap::new();
                            for i in &picked {
                                *per.entry(q.task(i).unwrap().system.as_str()).or_default() += 1;
                            }
                            let per: HashMap<String, usize> = per.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                            for (system, n) in per {
                                let busy = q.tasks().filter(|t| t.status == Status::Running && t.system == system).count();
                                prop_assert!(busy + n <= per_system);
                            }
                            for i in picked {
                                let attempt = q.task(&i).unwrap().attempt + 1;
                                q.evolve(&DomainEvent::TaskStarted(TaskStarted { task_id: i, attempt, at: now }));
                                running.push(i);
                            }
                        }
                        Step::Finish { nth, ok, retry } => {
                            if running.is_empty() {
                                continue;
                            }
                            let i = running.remove(nth % running.len());
                            let e = if ok {
                                DomainEvent::TaskSucceeded(TaskSucceeded { task_id: i, summary: "ok".into(), at: now })
                            } else {
                                let t = q.task(&i).unwrap();
                                // The scheduler retries only when no other task took the subject.
                                let free = q.merge_target(&t.system, &t.subject, &t.action).is_none();
                                let retry_at = (retry && free).then(|| now + Duration::seconds(90));
                                DomainEvent::TaskFailed(TaskFailed { task_id: i, attempt: 1, error: "x".into(), retry_at, at: now })
                            };
                            q.evolve(&e);
                        }
                        Step::Tick => {
                            now += Duration::seconds(60);
                            q.promote(now);
                        }
                    }
                    prop_assert_eq!(q.running(), running.len());
                    let queued = all.iter().filter(|i| q.task(i).unwrap().status == Status::Queued).count();
                    prop_assert_eq!(q.queued(), queued, "every queued task is indexed once");
                    let mut open: Vec<(&str, &str, &str)> = q.tasks().filter(|t| t.status == Status::Queued).map(|t| (t.system.as_str(), t.subject.as_str(), t.action.as_str())).collect();
                    let n = open.len();
                    open.sort();
                    open.dedup();
                    prop_assert_eq!(open.len(), n, "one queued task per system, subject and action");
                }
            }
        }
    }
}
