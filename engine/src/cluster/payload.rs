//! What travels from a submitting job binary, through the driver and a worker, to the task
//! processes of the same binary: JSON documents the engine writes and reads on both ends.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::input::SplitSpec;
use crate::shuffle::RunBudget;

/// The job's settings every task needs (`RunTask.job_payload`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobPayload {
    /// The job's name (`Job::NAME`): which job of a pipeline binary a task belongs to.
    #[serde(default)]
    pub job_name: String,
    /// The job's own parameters (its `clap::Args` struct, serialized).
    pub job: serde_json::Value,
    /// Reduce partitions.
    pub num_partitions: usize,
    /// Replace invalid UTF-8 in text input.
    pub replace_invalid_utf8: bool,
    /// Map output buffered before it is sorted into a run.
    pub map_buffer_bytes: usize,
    /// Sorted runs a map task keeps in memory before spilling.
    pub run_budget: RunBudget,
    /// The output directory.
    pub output: String,
    /// Object-store options (`--storage-option`).
    pub storage_options: Vec<(String, String)>,
    /// Split points of a sampled range partitioner (total order jobs), in Arrow's row format.
    pub range_split_points: Option<Vec<Vec<u8>>>,
}

/// One map task's input (`RunTask.split_payload`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapSplit {
    /// Which of the job's inputs.
    pub input: usize,
    /// The split.
    pub split: SplitSpec,
}

/// Where a reducer finds one map task's output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapOutputSource {
    /// The map task.
    pub map_task: u32,
    /// Its winning attempt.
    pub attempt: u32,
    /// The worker that holds it.
    pub worker: String,
    /// That worker's shuffle service, host:port.
    pub address: String,
    /// That worker's shuffle directory, when it is on this host: the reducer reads the
    /// output from there rather than fetching it.
    #[serde(default)]
    pub local_dir: Option<std::path::PathBuf>,
}

/// Everything a task process needs, written by the worker to `task.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskFile {
    /// The job's id.
    pub job_id: String,
    /// True for a map task.
    pub is_map: bool,
    /// Split index or partition.
    pub index: u32,
    /// Attempt number.
    pub attempt: u32,
    /// The job's settings.
    pub job: JobPayload,
    /// Map tasks: the input split.
    pub split: Option<MapSplit>,
    /// Reduce tasks: every map output.
    pub map_outputs: Vec<MapOutputSource>,
    /// Where map output goes (the worker's shuffle directory).
    pub shuffle_dir: PathBuf,
    /// The attempt's scratch directory (spills, fetched map output), removed afterwards.
    pub work_dir: PathBuf,
    /// Where the task writes its [`TaskResult`].
    pub result_file: PathBuf,
}

/// How a task process ended, written to the result file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskResult {
    /// A map attempt wrote its output.
    MapDone {
        /// Bytes of map output.
        output_bytes: u64,
        /// Counters.
        counters: BTreeMap<String, u64>,
    },
    /// A reduce attempt, or a map attempt of a map-only job, wrote its part file.
    PartWritten {
        /// The part file's name.
        part_file: String,
        /// Its rows.
        rows: u64,
        /// Its bytes.
        bytes: u64,
        /// Counters.
        counters: BTreeMap<String, u64>,
    },
    /// The attempt failed.
    Failed {
        /// False when another attempt would fail the same way.
        retryable: bool,
        /// The cause.
        message: String,
    },
    /// A map output could not be fetched.
    FetchFailed {
        /// The map task.
        map_task: u32,
        /// The worker that should have served it.
        worker: String,
        /// The cause.
        message: String,
    },
}
