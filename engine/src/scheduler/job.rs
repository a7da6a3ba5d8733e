//! One job's task and attempt tables.
//!
//! A task is *pending* (launchable) when it has no live output and no running attempt; a
//! reduce task additionally waits until every map task has a live output. Pending is
//! derived, never stored, so it cannot drift from the tables.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::attempts::AttemptLog;
use super::types::{AttemptRef, Counters, JobSpec, JobState, MapOutputRef, TaskFailure, WinningPart};
use super::view::{JobView, Phase, TaskCounts};
use crate::error::ErrorKind;
use crate::ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};

/// An attempt that was launched and has not reported yet.
#[derive(Clone, Debug)]
pub(super) struct RunningAttempt {
    pub attempt: AttemptId,
    pub worker: WorkerId,
    pub started: Instant,
}

/// A successful attempt whose result stands.
#[derive(Clone, Debug)]
pub(super) struct Output {
    pub attempt: AttemptId,
    pub worker: WorkerId,
    /// Reduce tasks: the part file and its rows.
    pub part: Option<(String, u64)>,
}

/// One map or reduce task.
#[derive(Clone, Debug, Default)]
pub(super) struct Task {
    /// The id the next launch gets.
    pub next_attempt: u32,
    /// Failed attempts that count toward `max_attempts`.
    pub failures: u32,
    pub running: Vec<RunningAttempt>,
    /// Maps: the live output (cleared when it is lost), or in a map-only job the winner.
    /// Reduces: the winner.
    pub output: Option<Output>,
    /// The counters of the last successful attempt.
    pub counters: Counters,
    /// The worker the last counted failure happened on (avoided when possible).
    pub avoid: Option<WorkerId>,
    /// The message of the last panic: the same panic twice fails the job.
    pub last_panic: Option<String>,
    /// When it last became ready to run again (an attempt failed or was lost, its output
    /// was lost); `None` while it has been ready since its phase could start.
    pub ready_at: Option<Instant>,
}

impl Task {
    pub fn is_pending(&self) -> bool {
        self.output.is_none() && self.running.is_empty()
    }

    /// Counts a failed attempt on `worker`; returns why the job fails, if it must: the task
    /// used up its attempts, or panicked with the same message as before.
    pub fn count_failure(
        &mut self,
        worker: &WorkerId,
        failure: &TaskFailure,
        max_attempts: u32,
        what: &str,
        cause: &str,
    ) -> Option<String> {
        self.failures += 1;
        self.avoid = Some(worker.clone());
        if failure.error == Some(ErrorKind::Panic) {
            let again = self.last_panic.replace(failure.message.clone());
            if again.as_deref() == Some(failure.message.as_str()) {
                return Some(format!("{what} panicked twice with the same message; last {cause}"));
            }
        }
        (self.failures >= max_attempts)
            .then(|| format!("{what} failed {} times; last {cause}", self.failures))
    }

    /// Removes a running attempt, returning it.
    pub fn take_running(&mut self, attempt: AttemptId) -> Option<RunningAttempt> {
        let at = self.running.iter().position(|r| r.attempt == attempt)?;
        Some(self.running.remove(at))
    }
}

/// One submitted job.
#[derive(Debug)]
pub(super) struct Job {
    pub id: JobId,
    pub name: String,
    pub priority: i32,
    pub owner: String,
    /// Submit order, for FIFO within a priority.
    pub seq: u64,
    pub submitted: Instant,
    pub finished: Option<Instant>,
    pub state: JobState,
    /// The input split of each map task.
    pub splits: Vec<String>,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    /// Every worker an attempt of this job was launched on (holders of its shuffle data).
    pub workers_used: BTreeSet<WorkerId>,
    pub fetch_failures: u64,
    pub attempts_launched: u64,
    pub failed_attempts: u64,
    pub backups_launched: u64,
    pub map_durations: Vec<Duration>,
    pub reduce_durations: Vec<Duration>,
    /// A resumed job launches nothing before this (see [`super::Scheduler::hold`]).
    pub held_until: Option<Instant>,
    /// When every map task last had a live output (reduce tasks are ready from then on).
    pub maps_done_at: Option<Instant>,
    /// Every attempt launched, ended ones included (bounded).
    pub attempt_log: AttemptLog,
}

impl Job {
    pub fn new(spec: JobSpec, seq: u64, now: Instant, first_attempt: u32) -> Self {
        let task = Task { next_attempt: first_attempt, ..Task::default() };
        Job {
            maps: vec![task.clone(); spec.map_tasks.len()],
            reduces: vec![task; spec.reducers as usize],
            id: spec.id,
            name: spec.name,
            priority: spec.priority,
            owner: spec.owner,
            seq,
            submitted: now,
            finished: None,
            state: JobState::Queued,
            splits: spec.map_tasks,
            workers_used: BTreeSet::new(),
            fetch_failures: 0,
            attempts_launched: 0,
            failed_attempts: 0,
            backups_launched: 0,
            map_durations: Vec::new(),
            reduce_durations: Vec::new(),
            held_until: None,
            maps_done_at: None,
            attempt_log: AttemptLog::default(),
        }
    }

    /// When `task` became ready to run: the later of its phase's start (submission for
    /// maps, the last map output for reduces) and its last failure.
    pub fn ready_since(&self, task: TaskId) -> Instant {
        let phase = match task.kind {
            TaskKind::Map => self.submitted,
            TaskKind::Reduce => self.maps_done_at.unwrap_or(self.submitted),
        };
        let again = self.tasks(task.kind).get(task.index as usize).and_then(|t| t.ready_at);
        again.map_or(phase, |at| at.max(phase))
    }

    /// Queued or running: takes launches and reports.
    pub fn is_active(&self) -> bool {
        matches!(self.state, JobState::Queued | JobState::Running)
    }

    /// Held at `now`: launches nothing yet.
    pub fn is_held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|until| now < until)
    }

    pub fn tasks(&self, kind: TaskKind) -> &[Task] {
        match kind {
            TaskKind::Map => &self.maps,
            TaskKind::Reduce => &self.reduces,
        }
    }

    pub fn task_mut(&mut self, task: TaskId) -> Option<&mut Task> {
        match task.kind {
            TaskKind::Map => self.maps.get_mut(task.index as usize),
            TaskKind::Reduce => self.reduces.get_mut(task.index as usize),
        }
    }

    pub fn maps_done(&self) -> bool {
        self.maps.iter().all(|t| t.output.is_some())
    }

    /// No reduce tasks: the map tasks write the part files.
    pub fn is_map_only(&self) -> bool {
        self.reduces.is_empty()
    }

    /// The tasks that write part files: the reduces, or the maps of a map-only job.
    fn part_writers(&self) -> &[Task] {
        if self.is_map_only() { &self.maps } else { &self.reduces }
    }

    /// Every partition has a winning part file.
    pub fn parts_written(&self) -> bool {
        self.part_writers().iter().all(|t| t.output.is_some())
    }

    /// The kind of task the job is waiting for (`None` once it committed or ended).
    pub fn current_kind(&self) -> Option<TaskKind> {
        if !self.is_active() {
            None
        } else if self.maps_done() {
            Some(TaskKind::Reduce)
        } else {
            Some(TaskKind::Map)
        }
    }

    /// The tasks that can be launched now, maps first, in index order.
    pub fn pending(&self) -> Vec<TaskId> {
        let pending = |tasks: &[Task], make: fn(usize) -> TaskId| -> Vec<TaskId> {
            tasks.iter().enumerate().filter(|(_, t)| t.is_pending()).map(|(i, _)| make(i)).collect()
        };
        match self.current_kind() {
            None => Vec::new(),
            Some(TaskKind::Map) => pending(&self.maps, TaskId::map),
            Some(TaskKind::Reduce) => pending(&self.reduces, TaskId::reduce),
        }
    }

    /// Where each map output lives (complete only once every map task is done).
    pub fn map_outputs(&self) -> Vec<MapOutputRef> {
        let outputs = self.maps.iter().enumerate();
        outputs
            .filter_map(|(i, t)| {
                let out = t.output.as_ref()?;
                Some(MapOutputRef { map_task: i as u32, attempt: out.attempt, worker: out.worker.clone() })
            })
            .collect()
    }

    /// One winner per partition, in partition order (complete once every part is written).
    pub fn winners(&self) -> Vec<WinningPart> {
        let writers = self.part_writers().iter().enumerate();
        writers
            .filter_map(|(i, t)| {
                let out = t.output.as_ref()?;
                let (part_file, rows) = out.part.clone()?;
                Some(WinningPart { partition: i as u32, attempt: out.attempt, part_file, rows })
            })
            .collect()
    }

    /// Removes every running attempt, returning them.
    pub fn drain_running(&mut self) -> Vec<(AttemptRef, RunningAttempt)> {
        let mut out = Vec::new();
        for (kind, tasks) in [(TaskKind::Map, &mut self.maps), (TaskKind::Reduce, &mut self.reduces)] {
            for (index, task) in tasks.iter_mut().enumerate() {
                for r in task.running.drain(..) {
                    let task = TaskId { kind, index: index as u32 };
                    out.push((AttemptRef { job: self.id.clone(), task, attempt: r.attempt }, r));
                }
            }
        }
        out
    }

    /// "map task 3 (split data/a.txt:0+100)" or "reduce task 1".
    pub fn describe(&self, task: TaskId) -> String {
        match (task.kind, self.splits.get(task.index as usize)) {
            (TaskKind::Map, Some(split)) => format!("{task} (split {split})"),
            _ => task.to_string(),
        }
    }

    /// The most fetch failures the job tolerates before it fails.
    pub fn fetch_failure_limit(&self) -> u64 {
        4 * self.maps.len() as u64 + 10
    }

    /// The median duration of this job's completed tasks of a kind.
    pub fn median_duration(&self, kind: TaskKind) -> Option<Duration> {
        let mut durations = match kind {
            TaskKind::Map => self.map_durations.clone(),
            TaskKind::Reduce => self.reduce_durations.clone(),
        };
        durations.sort_unstable();
        durations.get(durations.len() / 2).copied()
    }

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
            state: self.state.clone(),
            phase,
            maps: counts(&self.maps),
            reduces: counts(&self.reduces),
            attempts_launched: self.attempts_launched,
            failed_attempts: self.failed_attempts,
            backups_launched: self.backups_launched,
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
