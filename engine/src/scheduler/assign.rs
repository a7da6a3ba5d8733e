//! Filling free slots: pending tasks in fair-share order (see [`super::fair`]), then backup
//! attempts for stragglers.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;

use super::Scheduler;
use super::attempts::{AttemptOutcome, AttemptRecord};
use super::events::AttemptEvent;
use super::job::RunningAttempt;
use super::types::{Action, AttemptRef, JobState};
use crate::ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};

impl Scheduler {
    /// Launches pending tasks on free slots, one at a time: the job the fair-share index
    /// puts first, its lowest pending task (maps before reduces), workers in round-robin
    /// order. Each step is a few ordered-map lookups; nothing scans all jobs or workers.
    ///
    /// A job whose next task fits no worker's free memory is passed over for the rest of
    /// the round, so smaller tasks behind it run meanwhile (no head-of-line blocking); once
    /// it has waited [`memory_wait`](super::SchedulerConfig::memory_wait), workers that
    /// could hold it take no other job's attempts, and it gets the first that frees enough.
    pub(super) fn schedule(&mut self, now: Instant) {
        self.sync_dirty(now);
        self.memory_waits.retain(|id, _| self.jobs.get(id).is_some_and(|j| j.is_active()));
        let mut passed: Vec<JobId> = Vec::new();
        while self.workers.free_slots() > 0 {
            let Some(id) = self.fair.next_job().cloned() else { break };
            let Some(job) = self.jobs.get(&id) else { break };
            let Some(task) = job.next_pending() else {
                // The index says runnable but the job is not: re-sync it and look again.
                debug_assert!(false, "job {id} indexed as runnable with nothing pending");
                self.sync_job(now, &id);
                continue;
            };
            let avoid = job.tasks(task.kind).get(task.index as usize).and_then(|t| t.avoid.as_ref());
            let requested = job.task_memory;
            let reserved = self.memory_reserved_against(&id);
            let Some(worker) = self.workers.pick(avoid, false, requested, reserved) else {
                if !self.workers.could_ever_hold(requested) {
                    let message = too_large(requested.unwrap_or(0), self.workers.largest_memory());
                    self.end_job(now, &id, JobState::Failed(message));
                    continue;
                }
                // Kept back by another task's wait, it does not wait for memory itself.
                let kept_back =
                    reserved.is_some() && self.workers.pick(avoid, false, requested, None).is_some();
                // Waited since it became ready: for memory, or for slots before that.
                let waited = now.saturating_duration_since(job.ready_since(task));
                if !kept_back && waited >= self.config.memory_wait {
                    // Without a job limit it fits any worker once that worker is idle enough.
                    self.memory_waits.insert(id.clone(), requested.unwrap_or(0));
                }
                self.pass_over(now, &id, &mut passed);
                continue;
            };
            self.memory_waits.remove(&id);
            self.launch(now, &id, task, worker, false);
        }
        for id in passed {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.waits_for_memory = false;
            }
            self.sync_job(now, &id);
        }
    }

    /// Leaves job `id` out of the fair-share index until the round ends (see `schedule`).
    fn pass_over(&mut self, now: Instant, id: &JobId, passed: &mut Vec<JobId>) {
        if let Some(job) = self.jobs.get_mut(id) {
            job.waits_for_memory = true;
            passed.push(id.clone());
        }
        self.sync_job(now, id);
    }

    /// The least memory a task of another job than `id` waits for past the bound: workers
    /// with at least that much are kept for it (`None`: no task waits that long).
    fn memory_reserved_against(&self, id: &JobId) -> Option<u64> {
        self.memory_waits.iter().filter(|(waiting, _)| *waiting != id).map(|(_, bytes)| *bytes).min()
    }

    /// Gives a lone, slow attempt a backup on another worker, for jobs whose current phase
    /// has nothing pending (the MapReduce paper's §3.6). Call after [`Self::schedule`].
    pub(super) fn speculate(&mut self, now: Instant) {
        if self.workers.free_slots() == 0 {
            return;
        }
        let mut active: Vec<_> = self.jobs.values().filter(|j| j.is_active() && !j.is_held(now)).collect();
        active.sort_by_key(|j| (Reverse(j.priority), j.seq));
        let order: Vec<JobId> = active.into_iter().map(|j| j.id.clone()).collect();
        for id in order {
            if self.workers.free_slots() == 0 {
                return;
            }
            let Some(job) = self.jobs.get(&id) else { continue };
            let Some(kind) = job.current_kind() else { continue };
            if job.pending_count() > 0 || !self.fair.has_room(&job.queue) {
                continue;
            }
            let threshold = self.config.straggler_threshold(job.median_duration(kind));
            let mut stragglers: Vec<(Instant, u32, WorkerId)> = Vec::new();
            for (index, task) in job.tasks(kind).iter().enumerate() {
                let lone = match task.running.as_slice() {
                    [lone] if task.output.is_none() => lone,
                    _ => continue,
                };
                if now.saturating_duration_since(lone.started) > threshold {
                    stragglers.push((lone.started, index as u32, lone.worker.clone()));
                }
            }
            // The longest-running first.
            stragglers.sort_by_key(|(started, index, _)| (*started, *index));
            for (_, index, running_on) in stragglers {
                if !self.fair.has_room(&self.jobs[&id].queue) {
                    break;
                }
                let requested = self.jobs[&id].task_memory;
                let reserved = self.memory_reserved_against(&id);
                if let Some(worker) = self.workers.pick(Some(&running_on), true, requested, reserved) {
                    self.launch(now, &id, TaskId { kind, index }, worker, true);
                }
            }
        }
    }

    /// Starts the next attempt of a task on a worker and queues the `Launch`.
    fn launch(&mut self, now: Instant, job_id: &JobId, task_id: TaskId, worker: WorkerId, backup: bool) {
        let Some(job) = self.jobs.get_mut(job_id) else { return };
        let waited = now.saturating_duration_since(job.ready_since(task_id));
        let map_outputs = match task_id.kind {
            TaskKind::Map => Arc::from([]),
            TaskKind::Reduce => job.map_outputs(),
        };
        let ready = if backup { now } else { job.ready_since(task_id) };
        let Some(task) = job.task_mut(task_id) else { return };
        let attempt = AttemptId(task.next_attempt);
        task.next_attempt = task.next_attempt.saturating_add(1);
        job.start_attempt(task_id, RunningAttempt { attempt, worker: worker.clone(), started: now });
        job.attempt_log.launched(AttemptRecord {
            task: task_id,
            attempt,
            worker: worker.clone(),
            backup,
            ready: ready.min(now),
            started: now,
            ended: None,
            outcome: AttemptOutcome::Running,
            error: None,
            counters: None,
            shuffle_written_bytes: None,
        });
        job.attempts_launched += 1;
        job.backups_launched += u64::from(backup);
        job.workers_used.insert(worker.clone());
        if job.state == JobState::Queued {
            job.state = JobState::Running;
        }
        let attempt = AttemptRef { job: job_id.clone(), task: task_id, attempt };
        let memory = self.workers.attempt_memory(&worker, job.task_memory);
        tracing::debug!(job = %job_id, task = %task_id, attempt = %attempt.attempt, %worker, backup, memory, "launch");
        self.workers.start(&worker, attempt.clone(), memory);
        self.sync_job(now, job_id);
        let launched =
            AttemptEvent::Launched { attempt: attempt.clone(), worker: worker.clone(), backup, waited };
        self.events.push(launched);
        self.actions.push(Action::Launch { worker, attempt, memory, map_outputs });
    }
}

/// Why a job whose tasks need `needed` bytes each fails when no worker has that much.
fn too_large(needed: u64, largest: u64) -> String {
    format!(
        "each task of this job needs {} of memory (its --memory-limit), more than any worker has \
         for its tasks (at most {}): lower --memory-limit or add larger workers",
        bytes_text(needed),
        bytes_text(largest)
    )
}

/// `bytes` for people: MiB or GiB.
fn bytes_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}
