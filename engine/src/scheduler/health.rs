//! Keeping bad workers and hung attempts from holding jobs up: a worker on which attempts
//! of several jobs failed is excluded from new tasks for a while (blacklisting, capped so a
//! cluster never excludes all its workers), and attempts running past the task timeout are
//! killed and counted as failures.

use std::time::Instant;

use super::Scheduler;
use super::types::{Action, AttemptRef, FailureKind, TaskFailure};
use crate::error::ErrorKind;
use crate::ids::{JobId, TaskId, TaskKind, WorkerId};

impl Scheduler {
    /// Records a counted failure of `job` on `worker`, and excludes the worker when attempts
    /// of enough distinct jobs failed there within the window — unless half the live workers
    /// (rounded down) are excluded already.
    pub(super) fn note_worker_failure(&mut self, now: Instant, worker: &WorkerId, job: &JobId) {
        let (threshold, window) = (self.config.exclude_after_jobs, self.config.exclusion_window);
        let (alive, excluded) = self.workers.alive_and_excluded();
        let cooldown = self.config.exclusion_cooldown;
        if !self.workers.is_alive(worker) {
            return;
        }
        self.workers.update(worker, |w| {
            w.failures.retain(|(at, _)| now.saturating_duration_since(*at) < window);
            w.failures.push((now, job.clone()));
            let jobs: std::collections::HashSet<&JobId> = w.failures.iter().map(|(_, j)| j).collect();
            if threshold == 0 || jobs.len() < threshold || w.excluded_until.is_some() {
                return;
            }
            if excluded + 1 > alive / 2 {
                tracing::warn!(%worker, jobs = jobs.len(), excluded, alive, "not excluding a failing worker: at the cap");
                return;
            }
            tracing::warn!(%worker, jobs = jobs.len(), ?cooldown, "worker excluded: attempts of several jobs failed there");
            w.excluded_until = Some(now + cooldown);
            w.failures.clear();
        });
    }

    /// Ends the exclusions whose cooldown has passed.
    pub(super) fn readmit_workers(&mut self, now: Instant) {
        let due: Vec<WorkerId> = (self.workers.iter())
            .filter(|(_, w)| w.excluded_until.is_some_and(|until| now >= until))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            tracing::info!(worker = %id, "worker readmitted after its exclusion");
            self.workers.update(&id, |w| w.excluded_until = None);
        }
    }

    /// Kills every attempt running longer than the task timeout and fails it (retryable,
    /// so the task runs again until its attempts are used up).
    pub(super) fn time_out_attempts(&mut self, now: Instant) {
        let Some(limit) = self.config.task_timeout else { return };
        let mut late: Vec<(AttemptRef, WorkerId)> = Vec::new();
        for job in self.jobs.values().filter(|j| j.is_active()) {
            for kind in [TaskKind::Map, TaskKind::Reduce] {
                for (index, task) in job.tasks(kind).iter().enumerate() {
                    let task_id = TaskId { kind, index: index as u32 };
                    let overdue =
                        task.running.iter().filter(|r| now.saturating_duration_since(r.started) >= limit);
                    late.extend(overdue.map(|r| {
                        (
                            AttemptRef { job: job.id.clone(), task: task_id, attempt: r.attempt },
                            r.worker.clone(),
                        )
                    }));
                }
            }
        }
        for (attempt, worker) in late {
            // An earlier timeout may have failed the job, which killed this one already.
            if self.attempt_worker(&attempt).is_none() {
                continue;
            }
            self.actions.push(Action::Kill { worker, attempt: attempt.clone() });
            let failure = TaskFailure {
                kind: FailureKind::Retryable,
                error: Some(ErrorKind::TimedOut),
                message: format!("timed out after {limit:?} (--task-timeout); killed"),
                stderr_tail: String::new(),
            };
            self.task_failed(now, &attempt, failure);
        }
    }
}
