//! Workers leaving on purpose (SIGTERM, `gristmill worker drain`): a draining worker takes
//! no new tasks, finishes the attempts it runs (those still running at its deadline are
//! killed and re-run elsewhere, not counted as failures), and keeps serving its map output
//! until no running job needs it; then it is released ([`Action::ReleaseWorker`]) and may
//! exit. Nothing it did is lost, so nothing is recomputed.

use std::time::{Duration, Instant};

use super::attempts::{AttemptEnd, AttemptOutcome};
use super::job::Job;
use super::types::{Action, AttemptRef};
use super::worker::{Drain, WorkerState};
use super::{Scheduler, ended};
use crate::ids::WorkerId;

impl Scheduler {
    /// Starts draining `worker`: no new tasks; its attempts may run for `timeout` more.
    /// False if it is unknown or lost. Draining twice keeps the first deadline.
    pub fn drain_worker(&mut self, now: Instant, worker: &WorkerId, timeout: Duration) -> bool {
        if !self.workers.is_alive(worker) {
            return false;
        }
        self.workers.update(worker, |w| {
            if w.drain.is_none() {
                tracing::info!(%worker, running = w.running.len(), "worker draining");
                w.state = WorkerState::Draining;
                w.drain = Some(Drain { deadline: now + timeout, released: false });
            }
        });
        self.settle_drains(now);
        self.schedule(now);
        true
    }

    /// Gives back the attempts of draining workers past their deadline, and releases the
    /// draining workers that run nothing and hold no map output a running job needs.
    pub(super) fn settle_drains(&mut self, now: Instant) {
        let draining: Vec<(WorkerId, Drain)> =
            self.workers.draining().filter_map(|(id, w)| Some((id.clone(), w.drain?))).collect();
        for (worker, drain) in draining {
            if now >= drain.deadline {
                let running = self.workers.update(&worker, |w| w.running.clone()).unwrap_or_default();
                for attempt in running {
                    let why = format!("worker {worker} is draining and its drain timeout passed");
                    self.requeue_attempt(now, &attempt, AttemptOutcome::Lost, why);
                }
            }
            let idle = self.workers.update(&worker, |w| w.running.is_empty()).unwrap_or(false);
            if idle && !self.jobs.values().any(|job| needs_output_on(job, &worker)) {
                self.workers.update(&worker, |w| w.drain = Some(Drain { released: true, ..drain }));
                tracing::info!(%worker, "drained worker released: no running job needs its data");
                self.actions.push(Action::ReleaseWorker { worker });
            }
        }
    }

    /// Stops a running attempt whose result is still wanted: its task is pending again,
    /// nothing counts as failed, and the worker is told to kill it.
    pub(super) fn requeue_attempt(
        &mut self,
        now: Instant,
        attempt: &AttemptRef,
        outcome: AttemptOutcome,
        why: String,
    ) -> bool {
        let Some(job) = self.jobs.get_mut(&attempt.job) else { return false };
        let Some(run) = job.stop_attempt(attempt.task, attempt.attempt) else { return false };
        if let Some(task) = job.task_mut(attempt.task) {
            task.ready_at = Some(now);
        }
        tracing::info!(job = %attempt.job, task = %attempt.task, attempt = %attempt.attempt, worker = %run.worker, why, "attempt given back");
        job.attempt_log.finish(now, attempt.task, attempt.attempt, AttemptEnd::failed(outcome, why));
        self.workers.forget(&run.worker, attempt);
        self.events.push(ended(attempt, &run, outcome));
        let worker: WorkerId = run.worker;
        self.actions.push(Action::Kill { worker, attempt: attempt.clone() });
        self.dirty.push(attempt.job.clone());
        true
    }
}

/// True if `job` still runs and will read map output held on `worker` (a map-only job's
/// output is in storage; a job whose parts are written reads no more).
pub(super) fn needs_output_on(job: &Job, worker: &WorkerId) -> bool {
    job.is_active()
        && !job.is_map_only()
        && !job.parts_written()
        && job.workers_used.contains(worker)
        && job.maps.iter().any(|map| map.output.as_ref().is_some_and(|o| &o.worker == worker))
}
