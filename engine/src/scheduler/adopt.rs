//! Carrying on a job an earlier driver ran: the resumed job is held while the workers that
//! hold its map outputs re-attach, and the outputs they still hold are adopted as if their
//! map tasks had just succeeded, so those maps do not run again.

use std::time::Instant;

use super::Scheduler;
use super::attempts::{AttemptEnd, AttemptOutcome};
use super::job::Output;
use super::types::{AttemptRef, Counters};
use crate::ids::{AttemptId, JobId, TaskId, WorkerId};

impl Scheduler {
    /// Launches nothing of `job` before `until` (or its [`release`](Self::release)).
    pub fn hold(&mut self, job: &JobId, until: Instant) {
        if let Some(job) = self.jobs.get_mut(job) {
            job.held_until = Some(until);
            self.dirty.push(job.id.clone());
        }
    }

    /// Ends the hold of `job`: its tasks may launch now.
    pub fn release(&mut self, now: Instant, job: &JobId) {
        if let Some(job) = self.jobs.get_mut(job) {
            job.held_until = None;
            self.dirty.push(job.id.clone());
        }
        self.schedule(now);
    }

    /// Takes the output `attempt` of map task `map_task` that `worker` holds as the task's
    /// output, with the attempt's `counters`; attempts of the task still running lose. False
    /// (nothing changes) unless the job is active and needs map outputs, the task has none,
    /// and the worker is alive.
    pub fn adopt_map_output(
        &mut self,
        now: Instant,
        job_id: &JobId,
        map_task: u32,
        attempt: AttemptId,
        worker: &WorkerId,
        counters: Counters,
    ) -> bool {
        if !self.workers.is_alive(worker) {
            return false;
        }
        let Some(job) = self.jobs.get_mut(job_id) else { return false };
        if !job.is_active() || job.is_map_only() || job.parts_written() {
            return false;
        }
        let task_id = TaskId::map(map_task as usize);
        if job.maps.get(map_task as usize).is_none_or(|t| t.output.is_some()) {
            return false;
        }
        let mut losers = Vec::new();
        for loser in job.stop_all(task_id) {
            let loser_ref = AttemptRef { job: job_id.clone(), task: task_id, attempt: loser.attempt };
            self.workers.forget(&loser.worker, &loser_ref);
            self.events.push(super::ended(&loser_ref, &loser, AttemptOutcome::Killed));
            losers.push(loser.attempt);
            self.actions.push(super::Action::Kill { worker: loser.worker, attempt: loser_ref });
        }
        job.set_output(task_id, Some(Output { attempt, worker: worker.clone(), part: None }));
        if let Some(task) = job.task_mut(task_id) {
            task.counters = counters;
        }
        self.dirty.push(job_id.clone());
        for loser in losers {
            let why = "killed: an earlier run's output of the task was adopted";
            let end = AttemptEnd::failed(AttemptOutcome::Killed, why);
            job.attempt_log.finish(now, task_id, loser, end);
        }
        job.workers_used.insert(worker.clone());
        if job.maps_done() {
            job.maps_done_at = Some(now);
        }
        tracing::info!(job = %job_id, map_task, attempt = %attempt, worker = %worker, "adopted a map output a worker held");
        self.schedule(now);
        true
    }
}
