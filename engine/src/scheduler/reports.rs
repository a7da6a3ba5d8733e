//! Attempt reports: a success (the first one of a task wins) or a failure (retry, recompute
//! a lost map output, or fail the job).

use std::time::Instant;

use super::attempts::{AttemptEnd, AttemptOutcome};
use super::job::{self, Output};
use super::types::{Action, AttemptRef, Counters, FailureKind, JobState, TaskFailure, TaskOutcome};
use super::{Scheduler, ended, start_commit};
use crate::ids::{TaskId, TaskKind};

impl Scheduler {
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
        let Some(run) = job.stop_attempt(attempt.task, attempt.attempt) else { return };
        self.dirty.push(attempt.job.clone());
        self.workers.forget(&run.worker, attempt);
        self.events.push(ended(attempt, &run, AttemptOutcome::Succeeded));
        self.workers.update(&run.worker, |w| w.completed += 1);
        let mut losers = Vec::new();
        for loser in job.stop_all(attempt.task) {
            let loser_ref = AttemptRef { attempt: loser.attempt, ..attempt.clone() };
            self.workers.forget(&loser.worker, &loser_ref);
            self.events.push(ended(&loser_ref, &loser, AttemptOutcome::Killed));
            losers.push(loser.attempt);
            self.actions.push(Action::Kill { worker: loser.worker, attempt: loser_ref });
        }
        job.set_output(attempt.task, Some(Output { attempt: attempt.attempt, worker: run.worker, part }));
        if let Some(task) = job.task_mut(attempt.task) {
            task.counters = counters.clone();
        }
        job.attempt_log.finish(now, attempt.task, attempt.attempt, AttemptEnd::succeeded(counters));
        for loser in losers {
            let why = format!("killed: attempt {} of the task won", attempt.attempt.0);
            job.attempt_log.finish(now, attempt.task, loser, AttemptEnd::failed(AttemptOutcome::Killed, why));
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
        let Some(run) = job.stop_attempt(attempt.task, attempt.attempt) else { return };
        self.dirty.push(attempt.job.clone());
        let Some(task) = job.task_mut(attempt.task) else { return };
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
                let held_there = |m: &job::Task| m.output.as_ref().is_some_and(|o| o.worker == holder);
                if job.maps.get(map_task as usize).is_some_and(held_there) {
                    job.lose_output(now, TaskId::map(map_task as usize));
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
}
