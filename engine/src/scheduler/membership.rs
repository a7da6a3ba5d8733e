//! Workers joining and leaving: registration (again, after a loss), heartbeats, and a lost
//! worker's attempts and map outputs given back to their jobs.

use std::time::Instant;

use super::attempts::{AttemptEnd, AttemptOutcome};
use super::job::Job;
use super::types::Action;
use super::worker::{Worker, WorkerState};
use super::{Scheduler, ended};
use crate::ids::{TaskId, WorkerId};

impl Scheduler {
    /// Registers a worker with `slots` task slots and no memory limit of its own (see
    /// [`Scheduler::add_worker_with_memory`]).
    pub fn add_worker(&mut self, now: Instant, id: WorkerId, slots: u32) {
        self.add_worker_with_memory(now, id, slots, u64::MAX);
    }

    /// Registers a worker with `slots` task slots and `memory` bytes its tasks may use
    /// together: an attempt is launched there only when the memory it gets fits what the
    /// running ones leave. A known id (alive or lost) starts over as a fresh worker: its
    /// running attempts are treated as lost and it is told to drop the shuffle data of every
    /// job it worked for (none of it is referenced any more).
    pub fn add_worker_with_memory(&mut self, now: Instant, id: WorkerId, slots: u32, memory: u64) {
        if self.workers.contains(&id) {
            self.lose_worker(now, &id, "registered again");
            let mut stale: Vec<&Job> = self.jobs.values().filter(|j| j.workers_used.contains(&id)).collect();
            stale.sort_by_key(|j| j.seq);
            for job in stale {
                self.actions.push(Action::DropJobData { worker: id.clone(), job: job.id.clone() });
            }
        }
        tracing::info!(worker = %id, slots, memory, "worker registered");
        self.workers.insert(id, Worker::new(now, slots, memory));
        self.schedule(now);
    }

    /// Records a heartbeat. False if the worker is unknown or was declared lost: it must
    /// register again.
    pub fn heartbeat(&mut self, now: Instant, worker: &WorkerId) -> bool {
        let alive = self.workers.is_alive(worker);
        if alive {
            self.workers.update(worker, |w| w.last_heartbeat = now);
        }
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

    /// Marks a worker lost; its running attempts become pending again (not counted as
    /// failures) and map outputs on it are invalidated in jobs that still need them.
    pub(super) fn lose_worker(&mut self, now: Instant, worker: &WorkerId, reason: &str) {
        if !self.workers.is_alive(worker) {
            return;
        }
        let lost_state = WorkerState::Lost { reason: reason.to_string() };
        let running = self.workers.update(worker, |w| {
            w.state = lost_state;
            w.reserved.clear();
            std::mem::take(&mut w.running)
        });
        let running = running.unwrap_or_default();
        tracing::warn!(%worker, reason, running = running.len(), "worker lost");
        for attempt in running {
            let Some(job) = self.jobs.get_mut(&attempt.job).filter(|j| j.is_active()) else { continue };
            let lost = job.stop_attempt(attempt.task, attempt.attempt);
            if let Some(run) = &lost {
                if let Some(task) = job.task_mut(attempt.task) {
                    task.ready_at = Some(now);
                }
                self.events.push(ended(&attempt, run, AttemptOutcome::Lost));
                let end = AttemptEnd::failed(AttemptOutcome::Lost, format!("worker {worker} lost: {reason}"));
                job.attempt_log.finish(now, attempt.task, attempt.attempt, end);
                self.dirty.push(attempt.job.clone());
            }
            job.failed_attempts += u64::from(lost.is_some());
        }
        // A map-only job's outputs are part files in storage: they survive the worker.
        let needs_map_outputs = |j: &Job| {
            j.is_active() && !j.is_map_only() && !j.parts_written() && j.workers_used.contains(worker)
        };
        for job in self.jobs.values_mut().filter(|j| needs_map_outputs(j)) {
            let held_there: Vec<usize> = (job.maps.iter().enumerate())
                .filter(|(_, map)| map.output.as_ref().is_some_and(|o| &o.worker == worker))
                .map(|(i, _)| i)
                .collect();
            for index in &held_there {
                job.lose_output(now, TaskId::map(*index));
            }
            if !held_there.is_empty() {
                self.dirty.push(job.id.clone());
            }
        }
    }
}
