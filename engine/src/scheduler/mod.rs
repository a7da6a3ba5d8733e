//! The cluster scheduler: a pure state machine over jobs, tasks, attempts and workers.
//!
//! The driver's gRPC service owns one [`Scheduler`] behind a mutex. It feeds it events
//! (a worker registered, heartbeated or was lost; a job was submitted or cancelled; an
//! attempt succeeded or failed; the commit finished) and a periodic [`Scheduler::tick`],
//! then drains [`Scheduler::take_actions`] and carries the [`Action`]s out (launch, kill,
//! drop shuffle data, commit, report the end of a job).
//!
//! The scheduler does no I/O, spawns nothing and never reads a clock: every method takes
//! `now`. That keeps every rule — priorities, retries, lost workers, fetch failures, backup
//! attempts, exactly-once commit — testable as plain function calls with a fake clock, and
//! leaves the tokio service around it (in [`crate::driver`]) a thin shell.
//!
//! Rules in brief:
//! * Free slots are filled after every event, one launch at a time, in fair-share order
//!   (see the `fair` module): the queue with the fewest running attempts per unit of weight (under its
//!   `max_slots`), within it the user with the fewest running attempts, within that user's
//!   jobs the highest priority (aged: one point per [`SchedulerConfig::aging`] since
//!   submission; FIFO among equals). A job's map tasks go first, its reduce tasks once every
//!   map task has a live output; workers take turns (round-robin). With one queue and one
//!   user this is plain priority order.
//! * A queue below its fair share for [`SchedulerConfig::preemption_timeout`] gets slots
//!   back: the youngest attempts of queues above their share are killed (outcome
//!   `Preempted`) and re-run; they do not count as failures.
//! * A failed attempt is retried (on another worker when possible) up to
//!   [`SchedulerConfig::max_attempts`]; a fatal failure (bad input, a bad job) fails the job
//!   at once, and so does a panic with the same message twice. Lost workers and fetch
//!   failures do not count toward that limit; they re-run the map outputs lost.
//! * A worker on which attempts of several jobs failed gets no new tasks for a while (at
//!   most half the workers at once); attempts past [`SchedulerConfig::task_timeout`] are
//!   killed and count as failed.
//! * A draining worker ([`Scheduler::drain_worker`]) takes no new tasks, finishes its
//!   running ones (past its deadline they are re-run elsewhere, not failures) and is
//!   released once no running job needs its map output.
//! * A lone attempt running much longer than its siblings gets one backup; the first
//!   attempt to succeed wins and the others are killed.
//! * When every partition has a winner the job is committed exactly once. A map-only job
//!   (no reducers) has one partition per map task, whose part file that task writes.
//! * Stale reports (unknown or finished attempts, ended jobs, unknown workers) are ignored.
//!
//! Every lookup on the launch path is indexed (workers with a free slot, each job's pending
//! tasks, runnable jobs per user and queue, attempts in each job's log), so an event costs
//! a few ordered-map operations per launch whatever the number of workers and jobs;
//! `examples/sched-sim` measures it at 10,000 workers and a million tasks.
//!
//! ```
//! use std::time::Instant;
//! use gristmill::ids::{JobId, WorkerId};
//! use gristmill::scheduler::{Action, JobSpec, Scheduler, SchedulerConfig};
//!
//! let now = Instant::now();
//! let mut scheduler = Scheduler::new(SchedulerConfig::default());
//! scheduler.add_worker(now, WorkerId("w1".into()), 2);
//! let id = JobId::from_string("job-1".into());
//! let spec = JobSpec {
//!     id,
//!     name: "wc".into(),
//!     priority: 0,
//!     owner: "alice".into(),
//!     queue: "default".into(),
//!     map_tasks: vec!["a.txt".into()],
//!     reducers: 1,
//!     task_memory: None,
//! };
//! scheduler.submit(now, spec).unwrap();
//! assert!(matches!(scheduler.take_actions()[..], [Action::Launch { .. }]));
//! ```

mod adopt;
mod assign;
mod attempts;
mod config;
mod detail;
mod diagnose;
mod drain;
mod events;
mod fair;
mod health;
mod job;
mod membership;
mod preempt;
mod reports;
mod types;
mod view;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use job::RunningAttempt;

pub use attempts::AttemptOutcome;
pub use config::{QueueConfig, SchedulerConfig};
pub use detail::{
    AttemptMetrics, AttemptView, JobDetail, PhaseProgress, TaskState, TaskView, WorkerAttemptView,
    WorkerDetail, median,
};
pub use diagnose::{
    Diagnosis, LostTime, PartitionSize, SKEW_FACTOR, STRAGGLER_FACTOR, SlotWait, Straggler, diagnose,
};
pub use events::AttemptEvent;
pub use fair::QueueView;
pub use types::{
    Action, AttemptRef, Counters, FailureKind, JobSpec, JobState, MapOutputRef, SubmitError, TaskFailure,
    TaskOutcome, WinningPart,
};
pub use view::{JobView, Phase, TaskCounts, WorkerView};
pub use worker::WorkerState;

use crate::ids::{JobId, WorkerId};
use attempts::AttemptEnd;
use fair::Fair;
use job::Job;
use worker::Workers;

/// The queue of jobs submitted without one.
pub const DEFAULT_QUEUE: &str = "default";

/// The scheduler state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    workers: Workers,
    jobs: HashMap<JobId, Job>,
    next_seq: u64,
    /// Ended jobs, oldest first (forgotten past `retained_jobs`).
    ended: VecDeque<JobId>,
    actions: Vec<Action>,
    /// Launches and ends of attempts, for observers.
    events: Vec<AttemptEvent>,
    /// Queues, users and runnable jobs in fair-share order.
    fair: Fair,
    /// Jobs changed since the fair-share index last looked at them.
    dirty: Vec<JobId>,
    /// Held jobs with tasks to launch (indexed once their hold ends).
    held: HashSet<JobId>,
    /// Jobs whose next task has waited for memory past
    /// [`SchedulerConfig::memory_wait`], with the memory it needs: no other job's attempt
    /// goes to a worker that could hold it (see [`Self::schedule`]).
    memory_waits: HashMap<JobId, u64>,
    /// The first submission: the origin of the ranks that aging gives jobs.
    epoch: Option<Instant>,
}

impl Scheduler {
    /// An empty scheduler: no workers, no jobs.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            fair: Fair::new(&config.queues),
            dirty: Vec::new(),
            held: HashSet::new(),
            memory_waits: HashMap::new(),
            epoch: None,
            config,
            workers: Workers::default(),
            jobs: HashMap::new(),
            next_seq: 0,
            ended: VecDeque::new(),
            actions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Submits a job; it runs when slots are free and no job of higher priority waits.
    pub fn submit(&mut self, now: Instant, spec: JobSpec) -> Result<(), SubmitError> {
        if self.jobs.contains_key(&spec.id) {
            return Err(SubmitError::DuplicateJob { job: spec.id });
        }
        tracing::info!(job = %spec.id, maps = spec.map_tasks.len(), reducers = spec.reducers, "job submitted");
        let seq = self.next_seq;
        self.next_seq += 1;
        self.epoch.get_or_insert(now);
        let id = spec.id.clone();
        self.dirty.push(id.clone());
        self.jobs.insert(id.clone(), Job::new(spec, seq, now, self.config.first_attempt));
        // A map-only job without input has nothing to run, only an empty output to commit.
        if let Some(job) = self.jobs.get_mut(&id).filter(|j| j.parts_written()) {
            start_commit(now, job, &mut self.workers, &mut self.actions, &mut self.events);
        }
        self.schedule(now);
        Ok(())
    }

    /// The worker running `attempt`, if it runs: reports about it are accepted from that
    /// worker only.
    pub fn attempt_worker(&self, attempt: &AttemptRef) -> Option<&WorkerId> {
        let job = self.jobs.get(&attempt.job)?;
        let task = job.tasks(attempt.task.kind).get(attempt.task.index as usize)?;
        task.running.iter().find(|r| r.attempt == attempt.attempt).map(|r| &r.worker)
    }

    /// Cancels a queued or running job: kills its attempts, drops its shuffle data and
    /// reports it `Cancelled`. False if the job is unknown, committing or ended.
    pub fn cancel(&mut self, now: Instant, job: &JobId) -> bool {
        if !self.jobs.get(job).is_some_and(Job::is_active) {
            return false;
        }
        self.end_job(now, job, JobState::Cancelled);
        self.schedule(now);
        true
    }

    /// The driver finished committing a job (after a `Commit` action): it ends as
    /// `Succeeded`, or `Failed(message)` on error. Ignored unless the job is committing.
    pub fn commit_finished(&mut self, now: Instant, job: &JobId, result: Result<(), String>) {
        if self.jobs.get(job).is_none_or(|j| j.state != JobState::Committing) {
            return;
        }
        let state = match result {
            Ok(()) => JobState::Succeeded,
            Err(message) => JobState::Failed(message),
        };
        self.end_job(now, job, state);
        self.schedule(now);
    }

    /// Periodic work: declares workers without a recent heartbeat lost, readmits excluded
    /// workers whose cooldown passed, kills attempts past the task timeout, fills free
    /// slots, then launches backup attempts for stragglers.
    pub fn tick(&mut self, now: Instant) {
        let timeout = self.config.heartbeat_timeout;
        let silent: Vec<(WorkerId, f64)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.is_alive())
            .map(|(id, w)| (id.clone(), now.saturating_duration_since(w.last_heartbeat)))
            .filter(|(_, silence)| *silence >= timeout)
            .map(|(id, silence)| (id, silence.as_secs_f64()))
            .collect();
        for (worker, silence) in silent {
            self.lose_worker(now, &worker, &format!("no heartbeat for {silence:.1}s"));
        }
        self.readmit_workers(now);
        self.settle_drains(now);
        self.time_out_attempts(now);
        self.schedule(now);
        self.preempt(now);
        if self.config.speculation {
            self.speculate(now);
        }
    }

    /// Records what a worker uses (from its heartbeat), for its view.
    pub fn record_resources(&mut self, worker: &WorkerId, resources: crate::metrics::WorkerResources) {
        self.workers.update(worker, |w| w.resources = Some(resources));
    }

    /// True if the scheduler knows the job (it has not been forgotten).
    pub fn has_job(&self, job: &JobId) -> bool {
        self.jobs.contains_key(job)
    }

    /// Forgets an ended job (the driver keeps its history elsewhere); false if it is
    /// unknown or has not ended.
    pub fn forget(&mut self, job: &JobId) -> bool {
        if !self.jobs.get(job).is_some_and(|j| j.state.is_terminal()) {
            return false;
        }
        self.jobs.remove(job);
        self.held.remove(job);
        self.ended.retain(|id| id != job);
        true
    }

    /// Drains the attempt events (launches, ends) since the last call, oldest first.
    pub fn take_attempt_events(&mut self) -> Vec<AttemptEvent> {
        std::mem::take(&mut self.events)
    }

    /// Drains the queued actions, oldest first.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// A snapshot of one job (ended jobs are kept up to `retained_jobs`).
    pub fn job(&self, now: Instant, id: &JobId) -> Option<JobView> {
        self.jobs.get(id).map(|j| j.view(now))
    }

    /// Snapshots of every known job, in submit order.
    pub fn jobs(&self, now: Instant) -> Vec<JobView> {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs.into_iter().map(|j| j.view(now)).collect()
    }

    /// Snapshots of every known worker (lost ones included), by id.
    pub fn workers(&self, now: Instant) -> Vec<WorkerView> {
        let workers = self.workers.iter();
        workers
            .map(|(id, w)| WorkerView {
                id: id.clone(),
                slots: w.slots,
                running: w.running.clone(),
                state: w.state.clone(),
                secs_since_heartbeat: now.saturating_duration_since(w.last_heartbeat).as_secs_f64(),
                tasks_completed: w.completed,
                excluded_secs_left: w.excluded_until.map(|u| u.saturating_duration_since(now).as_secs_f64()),
                resources: w.resources,
            })
            .collect()
    }

    /// Ends an active or committing job: kills its attempts, drops its shuffle data on
    /// every live worker that ran part of it, and reports the end.
    fn end_job(&mut self, now: Instant, id: &JobId, state: JobState) {
        let Some(job) = self.jobs.get_mut(id).filter(|j| !j.state.is_terminal()) else { return };
        kill_running(
            now,
            job,
            &mut self.workers,
            &mut self.actions,
            &mut self.events,
            "killed: the job ended",
        );
        for worker in job.workers_used.iter().filter(|w| self.workers.is_alive(w)) {
            self.actions.push(Action::DropJobData { worker: worker.clone(), job: id.clone() });
        }
        tracing::info!(job = %id, state = ?state, "job ended");
        job.state = state.clone();
        job.finished = Some(now);
        // Indexed now: the job may be forgotten below before the next sync.
        self.sync_job(now, id);
        self.actions.push(Action::JobEnded { job: id.clone(), state });
        self.ended.push_back(id.clone());
        while self.ended.len() > self.config.retained_jobs {
            if let Some(old) = self.ended.pop_front() {
                self.jobs.remove(&old);
            }
        }
    }
}

/// Every partition has a winner: kills what still runs and queues the job's one `Commit`.
fn start_commit(
    now: Instant,
    job: &mut Job,
    workers: &mut Workers,
    actions: &mut Vec<Action>,
    events: &mut Vec<AttemptEvent>,
) {
    kill_running(now, job, workers, actions, events, "killed: every partition has a winner");
    job.state = JobState::Committing;
    tracing::info!(job = %job.id, "all partitions done: committing");
    actions.push(Action::Commit { job: job.id.clone(), winners: job.winners() });
}

/// Kills every running attempt of a job (queues the `Kill`s), noting `why` in its log.
fn kill_running(
    now: Instant,
    job: &mut Job,
    workers: &mut Workers,
    actions: &mut Vec<Action>,
    events: &mut Vec<AttemptEvent>,
    why: &str,
) {
    for (attempt, run) in job.drain_running() {
        workers.forget(&run.worker, &attempt);
        events.push(ended(&attempt, &run, AttemptOutcome::Killed));
        let end = AttemptEnd::failed(AttemptOutcome::Killed, why);
        job.attempt_log.finish(now, attempt.task, attempt.attempt, end);
        actions.push(Action::Kill { worker: run.worker, attempt });
    }
}

/// The event of `run`, an attempt of `attempt`'s task, ending with `outcome`.
fn ended(attempt: &AttemptRef, run: &RunningAttempt, outcome: AttemptOutcome) -> AttemptEvent {
    let attempt = AttemptRef { attempt: run.attempt, ..attempt.clone() };
    AttemptEvent::Ended { attempt, worker: run.worker.clone(), outcome, started: run.started }
}
