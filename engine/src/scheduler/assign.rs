//! Filling free slots: pending tasks by job priority, then backup attempts for stragglers.

use std::cmp::Reverse;
use std::time::Instant;

use super::Scheduler;
use super::attempts::{AttemptOutcome, AttemptRecord};
use super::events::AttemptEvent;
use super::job::RunningAttempt;
use super::types::{Action, AttemptRef, JobState};
use crate::ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};

impl Scheduler {
    /// Queued and running jobs, higher priority first, then in submit order.
    fn active_jobs_in_order(&self) -> Vec<JobId> {
        let mut active: Vec<_> = self.jobs.values().filter(|j| j.is_active()).collect();
        active.sort_by_key(|j| (Reverse(j.priority), j.seq));
        active.into_iter().map(|j| j.id.clone()).collect()
    }

    /// Launches pending tasks on free slots: jobs by priority, a job's maps before its
    /// reduces, workers in round-robin order.
    pub(super) fn schedule(&mut self, now: Instant) {
        if self.workers.free_slots() == 0 {
            return;
        }
        for id in self.active_jobs_in_order() {
            let Some(job) = self.jobs.get(&id).filter(|j| !j.is_held(now)) else { continue };
            let kind_tasks = job.pending().into_iter().filter_map(|task| {
                let avoid = job.tasks(task.kind).get(task.index as usize)?.avoid.clone();
                Some((task, avoid))
            });
            let pending: Vec<(TaskId, Option<WorkerId>)> = kind_tasks.collect();
            for (task, avoid) in pending {
                let Some(worker) = self.workers.pick(avoid.as_ref(), false) else { return };
                self.launch(now, &id, task, worker, false);
            }
        }
    }

    /// Gives a lone, slow attempt a backup on another worker, for jobs whose current phase
    /// has nothing pending (the MapReduce paper's §3.6). Call after [`Self::schedule`].
    pub(super) fn speculate(&mut self, now: Instant) {
        for id in self.active_jobs_in_order() {
            if self.workers.free_slots() == 0 {
                return;
            }
            let Some(job) = self.jobs.get(&id).filter(|j| !j.is_held(now)) else { continue };
            let Some(kind) = job.current_kind() else { continue };
            if !job.pending().is_empty() {
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
                if let Some(worker) = self.workers.pick(Some(&running_on), true) {
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
            TaskKind::Map => Vec::new(),
            TaskKind::Reduce => job.map_outputs(),
        };
        let ready = if backup { now } else { job.ready_since(task_id) };
        let Some(task) = job.task_mut(task_id) else { return };
        let attempt = AttemptId(task.next_attempt);
        task.next_attempt = task.next_attempt.saturating_add(1);
        task.running.push(RunningAttempt { attempt, worker: worker.clone(), started: now });
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
        tracing::debug!(job = %job_id, task = %task_id, attempt = %attempt.attempt, %worker, backup, "launch");
        if let Some(w) = self.workers.by_id.get_mut(&worker) {
            w.running.push(attempt.clone());
        }
        self.workers.cursor = Some(worker.clone());
        let launched =
            AttemptEvent::Launched { attempt: attempt.clone(), worker: worker.clone(), backup, waited };
        self.events.push(launched);
        self.actions.push(Action::Launch { worker, attempt, map_outputs });
    }
}
