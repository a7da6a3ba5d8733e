//! Detailed snapshots for the web UI: a job's tasks and every attempt it launched (the task
//! table, the timeline), its phases with an ETA, and one worker's attempts and the map output
//! it holds. Pure data (serde); times are seconds since the job's submission.

use std::time::Instant;

use serde::Serialize;

use super::Scheduler;
use super::attempts::{AttemptOutcome, AttemptRecord};
use super::diagnose::{Diagnosis, diagnose};
use super::job::{Job, Task};
use super::types::Counters;
use super::view::{JobView, WorkerView};
use crate::exec::{
    MAP_INPUT_BYTES, MAP_INPUT_RECORDS, MAP_OUTPUT_RECORDS, REDUCE_INPUT_RECORDS, REDUCE_OUTPUT_RECORDS,
    SHUFFLE_FETCHED_BYTES, SHUFFLE_HOST_LOCAL_BYTES, SPILLED_BYTES,
};
use crate::ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};

/// What an attempt read, shuffled, spilled and wrote (from the counters it reported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttemptMetrics {
    /// Maps: bytes of the split read. Reduces: shuffle bytes read.
    pub input_bytes: u64,
    /// Maps: rows of the split. Reduces: rows of the partition.
    pub input_rows: u64,
    /// Map output bytes written to the worker's shuffle directory.
    pub shuffle_written_bytes: u64,
    /// Map output bytes a reduce fetched or read in place.
    pub shuffle_read_bytes: u64,
    /// Bytes spilled to disk.
    pub spill_bytes: u64,
    /// Rows emitted.
    pub output_rows: u64,
}

impl AttemptMetrics {
    /// Metrics of a `kind` attempt from its counters (and its map output size, if known).
    pub fn from_counters(kind: TaskKind, counters: &Counters, shuffle_written: Option<u64>) -> Self {
        let get = |name: &str| counters.get(name).copied().unwrap_or(0);
        let shuffle_read_bytes = get(SHUFFLE_FETCHED_BYTES).saturating_add(get(SHUFFLE_HOST_LOCAL_BYTES));
        let (input_bytes, input_rows, output_rows) = match kind {
            TaskKind::Map => (get(MAP_INPUT_BYTES), get(MAP_INPUT_RECORDS), get(MAP_OUTPUT_RECORDS)),
            TaskKind::Reduce => (shuffle_read_bytes, get(REDUCE_INPUT_RECORDS), get(REDUCE_OUTPUT_RECORDS)),
        };
        AttemptMetrics {
            input_bytes,
            input_rows,
            shuffle_written_bytes: shuffle_written.unwrap_or(0),
            shuffle_read_bytes,
            spill_bytes: get(SPILLED_BYTES),
            output_rows,
        }
    }
}

/// One attempt of a task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptView {
    /// The task.
    pub task: TaskId,
    /// The attempt number.
    pub attempt: AttemptId,
    /// Where it ran.
    pub worker: WorkerId,
    /// A speculative copy of a slow attempt.
    pub backup: bool,
    /// Running, succeeded, failed, killed, lost or preempted.
    pub outcome: AttemptOutcome,
    /// Why it failed, was killed or lost.
    pub error: Option<String>,
    /// Seconds from the job's submission to its launch.
    pub start_secs: f64,
    /// Seconds from the job's submission to its end (`None` while it runs).
    pub end_secs: Option<f64>,
    /// How long it ran (until now while it runs).
    pub duration_secs: f64,
    /// Seconds its task waited for a slot before it launched (0 for backups).
    pub waited_secs: f64,
    /// What it reported with its success (`None` for attempts that did not succeed).
    pub metrics: Option<AttemptMetrics>,
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a slot (or for the map phase to end).
    Pending,
    /// An attempt runs.
    Running,
    /// It has a live output (or a winner).
    Succeeded,
}

/// One map or reduce task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskView {
    /// The task.
    pub task: TaskId,
    /// Maps: the input split it reads.
    pub split: Option<String>,
    /// Pending, running or succeeded.
    pub state: TaskState,
    /// Its winning (or live) attempt.
    pub winner: Option<AttemptId>,
    /// Attempts remembered, backups included.
    pub attempts: u32,
    /// How long the winner ran.
    pub duration_secs: Option<f64>,
    /// The winner's metrics.
    pub metrics: Option<AttemptMetrics>,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
}

/// Progress of one phase, with an estimate of the time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PhaseProgress {
    /// Tasks of the phase.
    pub total: u32,
    /// Tasks done.
    pub done: u32,
    /// Tasks with a running attempt.
    pub running: u32,
    /// The median duration of its successful attempts.
    pub median_task_secs: Option<f64>,
    /// Median task duration × tasks left / slots (`None` before a task succeeded, 0 when
    /// the phase is done).
    pub eta_secs: Option<f64>,
}

impl PhaseProgress {
    /// Progress of `total` tasks of which `done` are done, given the durations of the
    /// phase's successful attempts and the cluster's slots.
    pub fn new(total: u32, done: u32, running: u32, durations: &[f64], slots: u32) -> Self {
        let median_task_secs = median(durations);
        let left = f64::from(total.saturating_sub(done));
        let eta_secs = if left == 0.0 {
            Some(0.0)
        } else {
            median_task_secs.map(|m| m * left / f64::from(slots.max(1)))
        };
        PhaseProgress { total, done, running, median_task_secs, eta_secs }
    }
}

/// The median of `values` (the upper one of an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// Everything the job page shows: the job, its phases, tasks, attempts and diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job's summary (the fields of `/api/jobs`).
    #[serde(flatten)]
    pub job: JobView,
    /// Slots of the live workers (the ETA divides by them).
    pub slots: u32,
    /// The map phase.
    pub map_phase: PhaseProgress,
    /// The reduce phase.
    pub reduce_phase: PhaseProgress,
    /// Maps, then reduces, by index.
    pub tasks: Vec<TaskView>,
    /// Every attempt remembered, in launch order.
    pub attempts: Vec<AttemptView>,
    /// Attempts forgotten (the oldest ended ones, past the limit a job keeps).
    pub attempts_dropped: u64,
    /// Why it is slow.
    pub diagnosis: Diagnosis,
}

/// One attempt that ran on a worker, with its job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerAttemptView {
    /// The job.
    pub job: JobId,
    /// The attempt (times relative to that job's submission).
    #[serde(flatten)]
    pub attempt: AttemptView,
}

/// Everything the worker page shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerDetail {
    /// The worker's summary (the fields of `/api/workers`).
    #[serde(flatten)]
    pub worker: WorkerView,
    /// The attempts of the jobs the scheduler remembers that ran there, newest first.
    pub attempts: Vec<WorkerAttemptView>,
    /// Live map outputs it holds for jobs that have not ended.
    pub map_outputs_held: u32,
    /// Their size in bytes, as the map attempts reported it.
    pub shuffle_bytes_held: u64,
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

impl Job {
    fn attempt_view(&self, now: Instant, r: &AttemptRecord) -> AttemptView {
        let metrics = r
            .counters
            .as_ref()
            .map(|c| AttemptMetrics::from_counters(r.task.kind, c, r.shuffle_written_bytes));
        AttemptView {
            task: r.task,
            attempt: r.attempt,
            worker: r.worker.clone(),
            backup: r.backup,
            outcome: r.outcome,
            error: r.error.clone(),
            start_secs: secs(self.submitted, r.started),
            end_secs: r.ended.map(|e| secs(self.submitted, e)),
            duration_secs: secs(r.started, r.ended.unwrap_or(now)),
            waited_secs: secs(r.ready, r.started),
            metrics,
        }
    }

    fn task_view(&self, task: TaskId, t: &Task, attempts: &[AttemptView]) -> TaskView {
        let mine: Vec<&AttemptView> = attempts.iter().filter(|a| a.task == task).collect();
        let winner = t.output.as_ref().map(|o| o.attempt);
        let won = mine.iter().find(|a| Some(a.attempt) == winner);
        let state = match (winner, t.running.is_empty()) {
            (Some(_), _) => TaskState::Succeeded,
            (None, false) => TaskState::Running,
            (None, true) => TaskState::Pending,
        };
        let failed = mine.iter().rev().find(|a| a.outcome == AttemptOutcome::Failed);
        TaskView {
            task,
            split: (task.kind == TaskKind::Map)
                .then(|| self.splits.get(task.index as usize).cloned())
                .flatten(),
            state,
            winner,
            attempts: mine.len() as u32,
            duration_secs: won.map(|a| a.duration_secs),
            metrics: won.and_then(|a| a.metrics),
            last_error: failed.and_then(|a| a.error.clone()),
        }
    }

    /// The job page's snapshot, given the slots of the live workers.
    pub(super) fn detail(&self, now: Instant, slots: u32) -> JobDetail {
        let attempts: Vec<AttemptView> = self.attempt_log.iter().map(|r| self.attempt_view(now, r)).collect();
        let mut tasks = Vec::new();
        for kind in [TaskKind::Map, TaskKind::Reduce] {
            for (i, t) in self.tasks(kind).iter().enumerate() {
                tasks.push(self.task_view(TaskId { kind, index: i as u32 }, t, &attempts));
            }
        }
        let job = self.view(now);
        let phase = |kind: TaskKind, counts: super::TaskCounts| {
            let durations: Vec<f64> = attempts
                .iter()
                .filter(|a| a.task.kind == kind && a.outcome == AttemptOutcome::Succeeded)
                .map(|a| a.duration_secs)
                .collect();
            PhaseProgress::new(counts.total, counts.done, counts.running, &durations, slots)
        };
        let (map_phase, reduce_phase) =
            (phase(TaskKind::Map, job.maps), phase(TaskKind::Reduce, job.reduces));
        let diagnosis = diagnose(&tasks, &attempts);
        JobDetail {
            job,
            slots,
            map_phase,
            reduce_phase,
            tasks,
            attempts,
            attempts_dropped: self.attempt_log.dropped,
            diagnosis,
        }
    }
}

impl Scheduler {
    /// Slots of the live workers.
    fn live_slots(&self) -> u32 {
        self.workers.iter().filter(|(_, w)| w.is_alive()).map(|(_, w)| w.slots).sum()
    }

    /// The job page's snapshot of a job the scheduler remembers.
    pub fn job_detail(&self, now: Instant, id: &JobId) -> Option<JobDetail> {
        self.jobs.get(id).map(|j| j.detail(now, self.live_slots()))
    }

    /// The worker page's snapshot.
    pub fn worker_detail(&self, now: Instant, id: &WorkerId) -> Option<WorkerDetail> {
        let worker = self.workers(now).into_iter().find(|w| &w.id == id)?;
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.seq));
        let mut attempts = Vec::new();
        let (mut map_outputs_held, mut shuffle_bytes_held) = (0, 0u64);
        for job in jobs {
            let mut here: Vec<WorkerAttemptView> = job
                .attempt_log
                .iter()
                .filter(|r| &r.worker == id)
                .map(|r| WorkerAttemptView { job: job.id.clone(), attempt: job.attempt_view(now, r) })
                .collect();
            here.reverse();
            attempts.extend(here);
            if job.state.is_terminal() {
                continue;
            }
            for (i, map) in job.maps.iter().enumerate() {
                let Some(out) = map.output.as_ref().filter(|o| &o.worker == id) else { continue };
                map_outputs_held += 1;
                let record = job.attempt_log.get(TaskId::map(i), out.attempt);
                shuffle_bytes_held += record.and_then(|r| r.shuffle_written_bytes).unwrap_or(0);
            }
        }
        Some(WorkerDetail { worker, attempts, map_outputs_held, shuffle_bytes_held })
    }

    /// Notes the size of the map output a map attempt reports with its success; call it
    /// before [`Scheduler::task_succeeded`].
    pub fn note_map_output(&mut self, attempt: &super::AttemptRef, bytes: u64) {
        if let Some(job) = self.jobs.get_mut(&attempt.job) {
            job.attempt_log.note_map_output(attempt.task, attempt.attempt, bytes);
        }
    }
}
