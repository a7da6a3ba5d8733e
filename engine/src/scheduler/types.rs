//! The scheduler's vocabulary: what comes in (jobs, reports) and what goes out (actions).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::ErrorKind;
use crate::ids::{AttemptId, JobId, TaskId, WorkerId};

/// A job as submitted to the cluster: its tasks are known up front.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// The job's id (unique among the jobs the scheduler remembers).
    pub id: JobId,
    /// A human name, e.g. the job binary's name.
    pub name: String,
    /// Higher runs first among its owner's jobs in its queue (equal priorities in submit
    /// order); see the aging rule in the [module documentation](super).
    pub priority: i32,
    /// Who submitted it (the user name of the client certificate).
    pub owner: String,
    /// The queue it shares slots in ([`DEFAULT_QUEUE`](super::DEFAULT_QUEUE) unless the
    /// submitter chose one).
    pub queue: String,
    /// One human description per map task: its input split (e.g. `data/a.txt:0+67108864`).
    pub map_tasks: Vec<String>,
    /// Reduce partitions; 0 for a map-only job, whose map tasks write the part files.
    pub reducers: u32,
}

/// One attempt of one task of one job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AttemptRef {
    /// The job.
    pub job: JobId,
    /// The task within the job.
    pub task: TaskId,
    /// The attempt of the task (0 for the first launch, +1 for every later one).
    pub attempt: AttemptId,
}

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth another try (I/O, a crash, a user error that may be transient).
    Retryable,
    /// Will fail again whatever we do (a bad job): the job fails at once.
    Fatal,
    /// A reduce attempt could not fetch a map output: that output is recomputed and the
    /// reduce task retried, without counting against the reduce task's attempts.
    FetchFailed {
        /// The map task whose output could not be fetched.
        map_task: u32,
        /// The worker that was supposed to serve it.
        worker: WorkerId,
    },
}

/// What a failed attempt reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    /// How to react.
    pub kind: FailureKind,
    /// The typed kind of the task's error, when the task reported one.
    pub error: Option<ErrorKind>,
    /// The cause, one line.
    pub message: String,
    /// The last lines of the task process's stderr (may be empty).
    pub stderr_tail: String,
}

/// What a successful attempt reports (its counters travel alongside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    /// A map attempt wrote its output to its worker's shuffle directory.
    MapDone,
    /// A reduce attempt, or a map attempt of a map-only job, wrote an attempt-unique part
    /// file.
    PartWritten {
        /// Where the part file is (an object-store URL or path).
        part_file: String,
        /// Rows written.
        rows: u64,
    },
}

/// Where one map task's output can be fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapOutputRef {
    /// The map task (split index).
    pub map_task: u32,
    /// Its successful attempt.
    pub attempt: AttemptId,
    /// The worker holding the output.
    pub worker: WorkerId,
}

/// The accepted attempt of one partition: a reduce task's, or a map task's in a map-only job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WinningPart {
    /// The partition (reduce task index).
    pub partition: u32,
    /// The attempt that won.
    pub attempt: AttemptId,
    /// Its part file.
    pub part_file: String,
    /// Rows in it.
    pub rows: u64,
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum JobState {
    /// Submitted, no attempt launched yet.
    Queued,
    /// Some attempt has been launched.
    Running,
    /// Every partition has a winner; the driver is writing the manifest and `_SUCCESS`.
    Committing,
    /// Committed (terminal).
    Succeeded,
    /// Failed, with the message for the user (terminal).
    Failed(String),
    /// Cancelled by a user (terminal).
    Cancelled,
}

impl JobState {
    /// Succeeded, failed or cancelled: nothing will change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed(_) | JobState::Cancelled)
    }
}

/// What the driver must do; returned in order by [`take_actions`](super::Scheduler::take_actions).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start an attempt on a worker.
    Launch {
        /// Where.
        worker: WorkerId,
        /// What.
        attempt: AttemptRef,
        /// For reduce tasks: where every map output lives, one per map task in map order
        /// (empty for map tasks). Shared by the job's reduce launches.
        map_outputs: std::sync::Arc<[MapOutputRef]>,
    },
    /// Stop an attempt (its result is no longer wanted).
    Kill {
        /// Where it runs.
        worker: WorkerId,
        /// Which.
        attempt: AttemptRef,
    },
    /// Remove the job's shuffle files on a worker.
    DropJobData {
        /// The worker.
        worker: WorkerId,
        /// The job.
        job: JobId,
    },
    /// Every partition has a winner: write the manifest and `_SUCCESS`, remove the losers'
    /// files, then call [`commit_finished`](super::Scheduler::commit_finished). Emitted
    /// once per job.
    Commit {
        /// The job.
        job: JobId,
        /// One per partition, in partition order.
        winners: Vec<WinningPart>,
    },
    /// A draining worker runs nothing and holds nothing a running job needs: it may leave.
    ReleaseWorker {
        /// The worker.
        worker: WorkerId,
    },
    /// The job ended (the state is terminal).
    JobEnded {
        /// The job.
        job: JobId,
        /// Succeeded, Failed or Cancelled.
        state: JobState,
    },
}

/// Why [`submit`](super::Scheduler::submit) refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A job with this id is already known.
    #[error("job {job} already exists")]
    DuplicateJob {
        /// The id.
        job: JobId,
    },
}

/// Counters of one task attempt: name -> value.
pub type Counters = BTreeMap<String, u64>;
