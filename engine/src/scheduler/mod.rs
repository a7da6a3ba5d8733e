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
//! * Free slots are filled after every event: jobs by priority (higher first, FIFO within a
//!   priority), a job's map tasks first, its reduce tasks once every map task has a live
//!   output; workers take turns (round-robin).
//! * A failed attempt is retried (on another worker when possible) up to
//!   [`SchedulerConfig::max_attempts`]; a fatal failure (bad input, a bad job) fails the job
//!   at once, and so does a panic with the same message twice. Lost workers and fetch
//!   failures do not count toward that limit; they re-run the map outputs lost.
//! * A worker on which attempts of several jobs failed gets no new tasks for a while (at
//!   most half the workers at once); attempts past [`SchedulerConfig::task_timeout`] are
//!   killed and count as failed.
//! * A lone attempt running much longer than its siblings gets one backup; the first
//!   attempt to succeed wins and the others are killed.
//! * When every partition has a winner the job is committed exactly once. A map-only job
//!   (no reducers) has one partition per map task, whose part file that task writes.
//! * Stale reports (unknown or finished attempts, ended jobs, unknown workers) are ignored.
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
//! let spec = JobSpec { id, name: "wc".into(), priority: 0, owner: "alice".into(), map_tasks: vec!["a.txt".into()], reducers: 1 };
//! scheduler.submit(now, spec).unwrap();
//! assert!(matches!(scheduler.take_actions()[..], [Action::Launch { .. }]));
//! ```

mod adopt;
mod assign;
mod attempts;
mod config;
mod detail;
mod diagnose;
mod events;
mod health;
mod job;
mod types;
mod view;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use job::RunningAttempt;

pub use attempts::AttemptOutcome;
pub use config::SchedulerConfig;
pub use detail::{
    AttemptMetrics, AttemptView, JobDetail, PhaseProgress, TaskState, TaskView, WorkerAttemptView,
    WorkerDetail, median,
};
pub use diagnose::{
    Diagnosis, LostTime, PartitionSize, SKEW_FACTOR, STRAGGLER_FACTOR, SlotWait, Straggler, diagnose,
};
pub use events::AttemptEvent;
pub use types::{
    Action, AttemptRef, Counters, FailureKind, JobSpec, JobState, MapOutputRef, SubmitError, TaskFailure,
    TaskOutcome, WinningPart,
};
pub use view::{JobView, Phase, TaskCounts, WorkerView};
pub use worker::WorkerState;

use crate::ids::{JobId, TaskKind, WorkerId};
use attempts::AttemptEnd;
use job::{Job, Output};
use worker::{Worker, Workers};

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
}

impl Scheduler {
    /// An empty scheduler: no workers, no jobs.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
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

    /// Registers a worker with `slots` task slots. A known id (alive or lost) starts over as
    /// a fresh worker: its running attempts are treated as lost and it is told to drop the
    /// shuffle data of every job it worked for (none of it is referenced any more).
    pub fn add_worker(&mut self, now: Instant, id: WorkerId, slots: u32) {
        if self.workers.by_id.contains_key(&id) {
            self.lose_worker(now, &id, "registered again");
            let mut stale: Vec<&Job> = self.jobs.values().filter(|j| j.workers_used.contains(&id)).collect();
            stale.sort_by_key(|j| j.seq);
            for job in stale {
                self.actions.push(Action::DropJobData { worker: id.clone(), job: job.id.clone() });
            }
        }
        tracing::info!(worker = %id, slots, "worker registered");
        self.workers.by_id.insert(id, Worker::new(now, slots));
        self.schedule(now);
    }

    /// Records a heartbeat. False if the worker is unknown or was declared lost: it must
    /// register again.
    pub fn heartbeat(&mut self, now: Instant, worker: &WorkerId) -> bool {
        let alive = match self.workers.by_id.get_mut(worker) {
            Some(w) if w.is_alive() => {
                w.last_heartbeat = now;
                true
            }
            _ => false,
        };
        self.schedule(now);
        alive
    }

    /// Declares a worker lost (its stream broke): its running attempts are retried elsewhere
    /// without counting as failures, and the map outputs it held are recomputed where still
    /// needed. Unknown or already lost workers are ignored.
    pub fn worker_lost(&mut self, now: Instant, worker: &WorkerId, reason: &str) {
        self.lose_worker(now, worker, reason);
        self.schedule(now);
    }

    /// Submits a job; it runs when slots are free and no job of higher priority waits.
    pub fn submit(&mut self, now: Instant, spec: JobSpec) -> Result<(), SubmitError> {
        if self.jobs.contains_key(&spec.id) {
            return Err(SubmitError::DuplicateJob { job: spec.id });
        }
        tracing::info!(job = %spec.id, maps = spec.map_tasks.len(), reducers = spec.reducers, "job submitted");
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = spec.id.clone();
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

    /// An attempt succeeded. The first success of a task wins (its other attempts are
    /// killed); reports of attempts that are not running are ignored. When every partition
    /// has a winner, the job's `Commit` is queued.
    pub fn task_succeeded(
        &mut self,
        now: Instant,
        attempt: &AttemptRef,
        outcome: TaskOutcome,
        counters: Counters,
    ) {
        let Some(job) = self.jobs.get_mut(&attempt.job).filter(|j| j.is_active()) else { return };
        let writes_part = attempt.task.kind == TaskKind::Reduce || job.is_map_only();
        let part = match (writes_part, outcome) {
            (false, TaskOutcome::MapDone) => None,
            (true, TaskOutcome::PartWritten { part_file, rows }) => Some((part_file, rows)),
            (_, outcome) => {
                let kind = attempt.task.kind;
                let map_only = if job.is_map_only() { " of a map-only job" } else { "" };
                let message = format!("reported {outcome:?} for a {kind:?} task{map_only}");
                let kind = FailureKind::Retryable;
                let failure = TaskFailure { kind, error: None, message, stderr_tail: String::new() };
                return self.task_failed(now, attempt, failure);
            }
        };
        let Some(task) = job.task_mut(attempt.task) else { return };
        let Some(run) = task.take_running(attempt.attempt) else { return };
        self.workers.forget(&run.worker, attempt);
        self.events.push(ended(attempt, &run, AttemptOutcome::Succeeded));
        if let Some(w) = self.workers.by_id.get_mut(&run.worker) {
            w.completed += 1;
        }
        let mut losers = Vec::new();
        for loser in task.running.drain(..) {
            let loser_ref = AttemptRef { attempt: loser.attempt, ..attempt.clone() };
            self.workers.forget(&loser.worker, &loser_ref);
            self.events.push(ended(&loser_ref, &loser, AttemptOutcome::Killed));
            losers.push(loser.attempt);
            self.actions.push(Action::Kill { worker: loser.worker, attempt: loser_ref });
        }
        task.output = Some(Output { attempt: attempt.attempt, worker: run.worker, part });
        task.counters = counters.clone();
        job.attempt_log.finish(now, attempt.task, attempt.attempt, AttemptEnd::succeeded(counters));
        for loser in losers {
            let why = format!("killed: attempt {} of the task won", attempt.attempt.0);
            job.attempt_log.finish(now, attempt.task, loser, AttemptEnd::failed(AttemptOutcome::Killed, why));
        }
        if attempt.task.kind == TaskKind::Map && job.maps_done() {
            job.maps_done_at = Some(now);
        }
        let took = now.saturating_duration_since(run.started);
        match attempt.task.kind {
            TaskKind::Map => job.map_durations.push(took),
            TaskKind::Reduce => job.reduce_durations.push(took),
        }
        if attempt.task.kind == TaskKind::Map && job.maps_done() {
            job.maps_done_at = Some(now);
        }
        if writes_part && job.parts_written() {
            start_commit(now, job, &mut self.workers, &mut self.actions, &mut self.events);
        }
        self.schedule(now);
    }

    /// An attempt failed: retry it, recompute a lost map output, or fail the job (see the
    /// module documentation). Reports of attempts that are not running are ignored.
    pub fn task_failed(&mut self, now: Instant, attempt: &AttemptRef, failure: TaskFailure) {
        let max_attempts = self.config.max_attempts.max(1);
        let Some(job) = self.jobs.get_mut(&attempt.job).filter(|j| j.is_active()) else { return };
        let what = job.describe(attempt.task);
        let fetch_limit = job.fetch_failure_limit();
        let Some(task) = job.task_mut(attempt.task) else { return };
        let Some(run) = task.take_running(attempt.attempt) else { return };
        task.ready_at = Some(now);
        self.workers.forget(&run.worker, attempt);
        self.events.push(ended(attempt, &run, AttemptOutcome::Failed));
        let cause = format!("attempt {} on worker {}: {}", attempt.attempt, run.worker, failure.message);
        tracing::warn!(job = %attempt.job, task = %attempt.task, %cause, "attempt failed");
        let fetch = match &failure.kind {
            FailureKind::FetchFailed { map_task, worker } if attempt.task.kind == TaskKind::Reduce => {
                Some((*map_task, worker.clone()))
            }
            _ => None,
        };
        let mut counted = false;
        let verdict = match (&failure.kind, fetch) {
            (FailureKind::Fatal, _) => {
                let kind = failure.error.map(|k| format!(" ({k})")).unwrap_or_default();
                Some(format!("{what} failed with a fatal error{kind}; {cause}"))
            }
            (_, Some((map_task, holder))) => {
                job.fetch_failures += 1;
                let held_there = |m: &&mut job::Task| m.output.as_ref().is_some_and(|o| o.worker == holder);
                if let Some(map) = job.maps.get_mut(map_task as usize).filter(held_there) {
                    map.output = None;
                    map.ready_at = Some(now);
                }
                (job.fetch_failures > fetch_limit).then(|| {
                    format!(
                        "too many shuffle fetch failures ({} > {fetch_limit}); last: {what} could not \
                         fetch map task {map_task} from worker {holder}: {cause}",
                        job.fetch_failures
                    )
                })
            }
            (_, None) => {
                counted = true;
                task.count_failure(&run.worker, &failure, max_attempts, &what, &cause)
            }
        };
        job.failed_attempts += 1;
        let end = AttemptEnd::failed(AttemptOutcome::Failed, failure.message.clone());
        job.attempt_log.finish(now, attempt.task, attempt.attempt, end);
        if counted {
            self.note_worker_failure(now, &run.worker, &attempt.job);
        }
        if let Some(mut message) = verdict {
            if !failure.stderr_tail.trim().is_empty() {
                message = format!("{message}\n--- stderr (tail) ---\n{}", failure.stderr_tail.trim_end());
            }
            self.end_job(now, &attempt.job, JobState::Failed(message));
        }
        self.schedule(now);
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
            .by_id
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
        self.time_out_attempts(now);
        self.schedule(now);
        if self.config.speculation {
            self.speculate(now);
        }
    }

    /// Records what a worker uses (from its heartbeat), for its view.
    pub fn record_resources(&mut self, worker: &WorkerId, resources: crate::metrics::WorkerResources) {
        if let Some(w) = self.workers.by_id.get_mut(worker) {
            w.resources = Some(resources);
        }
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
        let workers = self.workers.by_id.iter();
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

    /// Marks a worker lost; its running attempts become pending again (not counted as
    /// failures) and map outputs on it are invalidated in jobs that still need them.
    fn lose_worker(&mut self, now: Instant, worker: &WorkerId, reason: &str) {
        let Some(w) = self.workers.by_id.get_mut(worker).filter(|w| w.is_alive()) else { return };
        tracing::warn!(%worker, reason, running = w.running.len(), "worker lost");
        w.state = WorkerState::Lost { reason: reason.to_string() };
        for attempt in std::mem::take(&mut w.running) {
            let Some(job) = self.jobs.get_mut(&attempt.job).filter(|j| j.is_active()) else { continue };
            let Some(task) = job.task_mut(attempt.task) else { continue };
            let lost = task.take_running(attempt.attempt);
            if let Some(run) = &lost {
                task.ready_at = Some(now);
                self.events.push(ended(&attempt, run, AttemptOutcome::Lost));
                let end = AttemptEnd::failed(AttemptOutcome::Lost, format!("worker {worker} lost: {reason}"));
                job.attempt_log.finish(now, attempt.task, attempt.attempt, end);
            }
            job.failed_attempts += u64::from(lost.is_some());
        }
        // A map-only job's outputs are part files in storage: they survive the worker.
        let needs_map_outputs = |j: &Job| j.is_active() && !j.is_map_only() && !j.parts_written();
        for job in self.jobs.values_mut().filter(|j| needs_map_outputs(j)) {
            for map in &mut job.maps {
                if map.output.as_ref().is_some_and(|o| &o.worker == worker) {
                    map.output = None;
                    map.ready_at = Some(now);
                }
            }
        }
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
