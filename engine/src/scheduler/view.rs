//! Read-only snapshots for status pages and the CLI (serialized as JSON by the driver).

use std::time::Instant;

use serde::Serialize;

use super::job::{Job, Task};
use super::types::{AttemptRef, Counters, JobState};
use super::worker::WorkerState;
use crate::ids::TaskKind;
use crate::ids::{JobId, WorkerId};

/// What a job is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Some map task has no live output.
    Map,
    /// Every map task has a live output; reduce tasks run.
    Reduce,
    /// Every partition has a winner; the driver commits.
    Commit,
    /// The job ended.
    Ended,
}

/// Task counts of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    /// Tasks of this kind.
    pub total: u32,
    /// Tasks with a live successful output (maps) or a winner (reduces).
    pub done: u32,
    /// Tasks with at least one running attempt.
    pub running: u32,
}

/// A snapshot of one job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobView {
    /// The id.
    pub id: JobId,
    /// The human name.
    pub name: String,
    /// Higher runs first.
    pub priority: i32,
    /// Who submitted it.
    pub owner: String,
    /// The queue it shares slots in.
    pub queue: String,
    /// Queued, running, committing or ended (with the failure message).
    pub state: JobState,
    /// What it is doing now.
    pub phase: Phase,
    /// Map tasks.
    pub maps: TaskCounts,
    /// Reduce tasks.
    pub reduces: TaskCounts,
    /// Attempts launched, backups included.
    pub attempts_launched: u64,
    /// Attempts that failed (for any reason, lost workers and fetch failures included).
    pub failed_attempts: u64,
    /// Backup (speculative) attempts launched.
    pub backups_launched: u64,
    /// Attempts killed to give their slots to a queue below its fair share (re-run; not
    /// failures).
    pub preempted_attempts: u64,
    /// Counters summed over the winning attempt of each task (never double-counted).
    pub counters: Counters,
    /// Seconds since submission.
    pub submitted_secs_ago: f64,
    /// Seconds from submission to the end (or to now while it runs).
    pub elapsed_secs: f64,
    /// While it runs: `counters` plus the latest counters of the furthest running attempt
    /// of each task still running (filled in by the driver from its workers' heartbeats);
    /// equal to `counters` once it ended.
    pub live_counters: Counters,
}

/// A snapshot of one worker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerView {
    /// The id.
    pub id: WorkerId,
    /// Task slots.
    pub slots: u32,
    /// Attempts running there, in launch order.
    pub running: Vec<AttemptRef>,
    /// Alive or lost (with the reason).
    pub state: WorkerState,
    /// Seconds since its last heartbeat (or registration).
    pub secs_since_heartbeat: f64,
    /// Attempts that succeeded there and were accepted since it registered.
    pub tasks_completed: u64,
    /// While it is excluded from new tasks (attempts of several jobs failed there): the
    /// seconds left.
    pub excluded_secs_left: Option<f64>,
    /// What it uses (CPU, memory, disk), as its last heartbeat said.
    pub resources: Option<crate::metrics::WorkerResources>,
}

impl Job {
    /// Counters summed over the last successful attempt of each task.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::new();
        for task in self.maps.iter().chain(&self.reduces) {
            for (name, value) in &task.counters {
                let total = sum.entry(name.clone()).or_insert(0);
                *total = total.saturating_add(*value);
            }
        }
        sum
    }

    pub fn view(&self, now: Instant) -> JobView {
        let counts = |tasks: &[Task]| TaskCounts {
            total: tasks.len() as u32,
            done: tasks.iter().filter(|t| t.output.is_some()).count() as u32,
            running: tasks.iter().filter(|t| !t.running.is_empty()).count() as u32,
        };
        let phase = match (&self.state, self.current_kind()) {
            (_, Some(TaskKind::Map)) => Phase::Map,
            (_, Some(TaskKind::Reduce)) => Phase::Reduce,
            (JobState::Committing, None) => Phase::Commit,
            (_, None) => Phase::Ended,
        };
        JobView {
            id: self.id.clone(),
            name: self.name.clone(),
            priority: self.priority,
            owner: self.owner.clone(),
            queue: self.queue.clone(),
            state: self.state.clone(),
            phase,
            maps: counts(&self.maps),
            reduces: counts(&self.reduces),
            attempts_launched: self.attempts_launched,
            failed_attempts: self.failed_attempts,
            backups_launched: self.backups_launched,
            preempted_attempts: self.preempted_attempts,
            counters: self.counters(),
            live_counters: self.counters(),
            submitted_secs_ago: now.saturating_duration_since(self.submitted).as_secs_f64(),
            elapsed_secs: self
                .finished
                .unwrap_or(now)
                .saturating_duration_since(self.submitted)
                .as_secs_f64(),
        }
    }
}
