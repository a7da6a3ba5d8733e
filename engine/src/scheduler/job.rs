//! One job's task and attempt tables.
//!
//! A task is *pending* (launchable) when it has no live output and no running attempt; a
//! reduce task additionally waits until every map task has a live output. Each kind keeps
//! the set of its pending tasks and the count of tasks without output, so the next task to
//! launch and "every map done" are found without scanning the tasks. Running attempts and
//! outputs change only through [`Job`]'s methods, which re-index the one task they touch.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::attempts::AttemptLog;
use super::types::{AttemptRef, Counters, JobSpec, JobState, MapOutputRef, TaskFailure, WinningPart};
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
}

/// The index over one kind's tasks.
#[derive(Clone, Debug, Default)]
pub(super) struct TaskIndex {
    /// Tasks without a live output and without a running attempt.
    pending: BTreeSet<u32>,
    /// Tasks without a live output.
    without_output: usize,
}

impl TaskIndex {
    fn new(tasks: usize) -> Self {
        TaskIndex { pending: (0..tasks as u32).collect(), without_output: tasks }
    }
}

/// One submitted job.
#[derive(Debug)]
pub(super) struct Job {
    pub id: JobId,
    pub name: String,
    pub priority: i32,
    pub owner: String,
    /// The queue it shares slots in.
    pub queue: String,
    /// Memory each attempt asks for (`None`: the worker's share per slot).
    pub task_memory: Option<u64>,
    /// Submit order, for FIFO within a priority.
    pub seq: u64,
    pub submitted: Instant,
    pub finished: Option<Instant>,
    pub state: JobState,
    /// The input split of each map task.
    pub splits: Vec<String>,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    map_index: TaskIndex,
    reduce_index: TaskIndex,
    /// Attempts running, backups included.
    running_attempts: u64,
    /// [`Job::map_outputs`], while no map output changed.
    map_outputs: Option<Arc<[MapOutputRef]>>,
    /// What the scheduler's fair-share index counts for this job.
    pub accounted: super::fair::Accounted,
    /// Passed over in the current scheduling round: its next task does not fit the memory
    /// any worker has free (not runnable in the fair-share index until the round ends).
    pub waits_for_memory: bool,
    /// Every worker an attempt of this job was launched on (holders of its shuffle data).
    pub workers_used: BTreeSet<WorkerId>,
    pub fetch_failures: u64,
    pub attempts_launched: u64,
    pub failed_attempts: u64,
    pub backups_launched: u64,
    pub preempted_attempts: u64,
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
            map_index: TaskIndex::new(spec.map_tasks.len()),
            reduce_index: TaskIndex::new(spec.reducers as usize),
            running_attempts: 0,
            map_outputs: None,
            accounted: Default::default(),
            waits_for_memory: false,
            id: spec.id,
            name: spec.name,
            priority: spec.priority,
            owner: spec.owner,
            queue: spec.queue,
            task_memory: spec.task_memory,
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
            preempted_attempts: 0,
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

    /// A task, to read or to change what the indexes do not cover (counters, failures,
    /// readiness); running attempts and outputs change through the methods below.
    pub fn task_mut(&mut self, task: TaskId) -> Option<&mut Task> {
        match task.kind {
            TaskKind::Map => self.maps.get_mut(task.index as usize),
            TaskKind::Reduce => self.reduces.get_mut(task.index as usize),
        }
    }

    fn task_and_index(&mut self, task: TaskId) -> Option<(&mut Task, &mut TaskIndex)> {
        match task.kind {
            TaskKind::Map => Some((self.maps.get_mut(task.index as usize)?, &mut self.map_index)),
            TaskKind::Reduce => Some((self.reduces.get_mut(task.index as usize)?, &mut self.reduce_index)),
        }
    }

    /// Changes a task's running attempts or output with `change`, then re-indexes it.
    fn change<T>(&mut self, task_id: TaskId, change: impl FnOnce(&mut Task) -> T) -> Option<T> {
        let (task, index) = self.task_and_index(task_id)?;
        let (had_output, running_before) = (task.output.is_some(), task.running.len());
        let out = change(task);
        let (has_output, running_after) = (task.output.is_some(), task.running.len());
        index.without_output = index.without_output + usize::from(had_output) - usize::from(has_output);
        if task.is_pending() {
            index.pending.insert(task_id.index);
        } else {
            index.pending.remove(&task_id.index);
        }
        self.running_attempts = self.running_attempts + running_after as u64 - running_before as u64;
        if task_id.kind == TaskKind::Map && (had_output || has_output) {
            self.map_outputs = None;
        }
        Some(out)
    }

    /// Notes a launched attempt of `task`.
    pub fn start_attempt(&mut self, task: TaskId, run: RunningAttempt) {
        self.change(task, |t| t.running.push(run));
    }

    /// Removes a running attempt of `task`, returning it.
    pub fn stop_attempt(&mut self, task: TaskId, attempt: AttemptId) -> Option<RunningAttempt> {
        self.change(task, |t| {
            let at = t.running.iter().position(|r| r.attempt == attempt)?;
            Some(t.running.remove(at))
        })
        .flatten()
    }

    /// Removes every running attempt of `task`, returning them.
    pub fn stop_all(&mut self, task: TaskId) -> Vec<RunningAttempt> {
        self.change(task, |t| std::mem::take(&mut t.running)).unwrap_or_default()
    }

    /// Sets (or, with `None`, clears: it was lost) the live output of `task`.
    pub fn set_output(&mut self, task: TaskId, output: Option<Output>) {
        self.change(task, |t| t.output = output);
    }

    /// Clears the live output of `task` (its holder was lost): it must run again.
    pub fn lose_output(&mut self, now: Instant, task: TaskId) {
        self.set_output(task, None);
        if let Some(t) = self.task_mut(task) {
            t.ready_at = Some(now);
        }
    }

    /// Attempts running, backups included.
    pub fn running_attempts(&self) -> u64 {
        self.running_attempts
    }

    pub fn maps_done(&self) -> bool {
        self.map_index.without_output == 0
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
        let writers = if self.is_map_only() { &self.map_index } else { &self.reduce_index };
        writers.without_output == 0
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

    /// The pending tasks of the current phase (none once the job committed or ended).
    fn pending_now(&self) -> Option<(TaskKind, &BTreeSet<u32>)> {
        match self.current_kind()? {
            TaskKind::Map => Some((TaskKind::Map, &self.map_index.pending)),
            TaskKind::Reduce => Some((TaskKind::Reduce, &self.reduce_index.pending)),
        }
    }

    /// The task to launch next: the lowest pending index of the current phase.
    pub fn next_pending(&self) -> Option<TaskId> {
        let (kind, pending) = self.pending_now()?;
        Some(TaskId { kind, index: *pending.first()? })
    }

    /// How many tasks can be launched now.
    pub fn pending_count(&self) -> usize {
        self.pending_now().map_or(0, |(_, pending)| pending.len())
    }

    /// Checks the indexes against the task tables (tests call this after every step).
    #[cfg(test)]
    pub fn assert_indexed(&self) {
        for (tasks, index) in [(&self.maps, &self.map_index), (&self.reduces, &self.reduce_index)] {
            let pending: BTreeSet<u32> =
                (0..tasks.len() as u32).filter(|i| tasks[*i as usize].is_pending()).collect();
            assert_eq!(index.pending, pending, "pending tasks of {}", self.id);
            assert_eq!(index.without_output, tasks.iter().filter(|t| t.output.is_none()).count());
        }
        let running: usize = self.maps.iter().chain(&self.reduces).map(|t| t.running.len()).sum();
        assert_eq!(self.running_attempts, running as u64, "running attempts of {}", self.id);
    }

    /// Where each map output lives (complete only once every map task is done). Built once
    /// and shared by every reduce launch until a map output changes.
    pub fn map_outputs(&mut self) -> Arc<[MapOutputRef]> {
        let maps = &self.maps;
        let built = self.map_outputs.get_or_insert_with(|| {
            let outputs = maps.iter().enumerate();
            outputs
                .filter_map(|(i, t)| {
                    let out = t.output.as_ref()?;
                    Some(MapOutputRef {
                        map_task: i as u32,
                        attempt: out.attempt,
                        worker: out.worker.clone(),
                    })
                })
                .collect()
        });
        built.clone()
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
        for (kind, count) in [(TaskKind::Map, self.maps.len()), (TaskKind::Reduce, self.reduces.len())] {
            for index in 0..count {
                let task = TaskId { kind, index: index as u32 };
                if self.tasks(kind)[index].running.is_empty() {
                    continue;
                }
                for r in self.stop_all(task) {
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
}
