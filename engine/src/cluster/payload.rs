//! What travels from a submitting job binary, through the driver and a worker, to the task
//! processes of the same binary: JSON documents the engine writes and reads on both ends.
//!
//! The worker hands a task its [`TaskFile`] on the task's stdin, never in a file: it holds
//! the job's storage options and secret.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{BadRecord, ReadOptions, SplitSpec};
use crate::job::{Broadcasts, Job};
use crate::output::{Codec, OutputLayout, ParquetOutput};
use crate::plan::{PartitionerChoice, TaskSettings};
use crate::security::JobSecret;
use crate::shuffle::RunBudget;
use crate::storage::StorageOptions;

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
    /// Rows of text input that may fail to parse before the job fails (`--max-bad-records`;
    /// absent from older submitters: none).
    #[serde(default)]
    pub max_bad_records: u64,
    /// Map output buffered before it is sorted into a run.
    pub map_buffer_bytes: usize,
    /// Sorted runs a map task keeps in memory before spilling.
    pub run_budget: RunBudget,
    /// The output directory.
    pub output: String,
    /// Object-store options (`--storage-option`): the job's inputs and output are
    /// resolved with them (`Debug` shows only their keys).
    pub storage_options: StorageOptions,
    /// Split points of a sampled range partitioner (total order jobs), in Arrow's row format.
    pub range_split_points: Option<Vec<Vec<u8>>>,
    /// How Parquet part files are written (the job's defaults with the flags applied);
    /// absent from older submitters, whose tasks use the job's defaults.
    #[serde(default)]
    pub parquet: Option<ParquetOutput>,
    /// How part files are written (format, codecs, partition columns); absent from older
    /// submitters, whose tasks use the job's format and `parquet`.
    #[serde(default)]
    pub layout: Option<OutputLayout>,
    /// The values the job's plan broadcast to its tasks (none from older submitters).
    #[serde(default)]
    pub broadcasts: Broadcasts,
}

impl JobPayload {
    /// The payload of `job` planned with `config` into tasks given `tasks`: each task
    /// process's share of the run budget, and the split points of a sampled partitioner.
    pub fn of_plan<J: Job>(job: &J, config: &RunConfig, tasks: &TaskSettings) -> Result<Self> {
        let threads = config.threads.max(1) as u64;
        let budget = tasks.run_budget;
        Ok(JobPayload {
            job_name: J::NAME.to_owned(),
            job: serde_json::to_value(job)
                .map_err(|e| Error::InvalidJob(format!("cannot serialize the job: {e}")))?,
            num_partitions: tasks.num_partitions,
            replace_invalid_utf8: tasks.read.replace_invalid_utf8,
            max_bad_records: tasks.max_bad_records,
            map_buffer_bytes: tasks.map_buffer_bytes,
            run_budget: RunBudget { owned: budget.owned / threads, mapped: budget.mapped / threads },
            output: tasks.output.clone(),
            storage_options: tasks.storage_options.clone(),
            range_split_points: tasks.partitioner.range_split_points().map(<[_]>::to_vec),
            parquet: Some(config.parquet_output(job.parquet_output())),
            layout: Some(tasks.layout.clone()),
            broadcasts: tasks.broadcasts.clone(),
        })
    }

    /// The settings a task of `job` is given: those of the plan, the layout of an older
    /// submitter's payload (which has none) from the job's defaults.
    pub fn task_settings<J: Job>(&self, job: &J) -> TaskSettings {
        TaskSettings {
            num_partitions: self.num_partitions,
            partitioner: PartitionerChoice::shipped(job, self.range_split_points.as_deref()),
            read: ReadOptions { replace_invalid_utf8: self.replace_invalid_utf8 },
            max_bad_records: self.max_bad_records,
            map_buffer_bytes: self.map_buffer_bytes,
            run_budget: self.run_budget,
            layout: self.layout.clone().unwrap_or_else(|| {
                let parquet = self.parquet.unwrap_or_else(|| job.parquet_output());
                OutputLayout::parquet(parquet).with_format(job.output_format())
            }),
            output: self.output.clone(),
            storage_options: self.storage_options.clone(),
            broadcasts: self.broadcasts.clone(),
        }
    }

    /// The Parquet codec of the job whose payload is `json`, for the manifest the driver
    /// writes; `None` when the payload does not say (an older submitter).
    pub fn parquet_codec_of(json: &[u8]) -> Option<Codec> {
        /// The one field read: the driver needs no other, whatever the submitter's version.
        #[derive(Deserialize)]
        struct Output {
            #[serde(default)]
            parquet: Option<ParquetOutput>,
        }
        serde_json::from_slice::<Output>(json).ok()?.parquet.map(|p| p.compression)
    }

    /// The bad records allowed to the job whose payload is `json` (0 when it does not say).
    pub fn max_bad_records_of(json: &[u8]) -> u64 {
        #[derive(Deserialize)]
        struct Limit {
            #[serde(default)]
            max_bad_records: u64,
        }
        serde_json::from_slice::<Limit>(json).map_or(0, |l| l.max_bad_records)
    }
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

/// Everything a task process needs, written by the worker to the task's stdin as JSON
/// (`<job> __gristmill-task -`). It holds secrets (the job's secret, its storage options),
/// so it is never written to disk; `Debug` redacts them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskFile {
    /// The job's id.
    pub job_id: String,
    /// The job's secret: reducers present it to shuffle services, and it names the job's
    /// map output directory on a worker.
    #[serde(with = "secret_text")]
    pub job_secret: JobSecret,
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
    /// The worker's shuffle directory: map output goes to the job's directory in it
    /// ([`crate::shuffle::job_shuffle_dir`]).
    pub shuffle_dir: PathBuf,
    /// The attempt's scratch directory (spills, fetched map output), removed afterwards.
    pub work_dir: PathBuf,
    /// Where the task writes its [`TaskResult`].
    pub result_file: PathBuf,
    /// The W3C `traceparent` of the driver's span of this attempt: the task's spans are
    /// its children ([`crate::telemetry`]).
    #[serde(default)]
    pub trace_parent: Option<String>,
    /// Map tasks: every reducer reads the output in place on this host, so it is written
    /// uncompressed (see `RunTask.map_output_stays_on_host`).
    #[serde(default)]
    pub map_output_stays_on_host: bool,
}

impl TaskFile {
    /// Reads a task spec (the JSON the worker pipes to the task's stdin).
    pub fn from_json(json: &[u8]) -> Result<TaskFile, String> {
        serde_json::from_slice(json).map_err(|e| format!("the task spec does not parse: {e}"))
    }

    /// The task spec as JSON, for the task's stdin only.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| format!("cannot serialize the task spec: {e}"))
    }
}

/// A [`JobSecret`] as a JSON string (it has no serde of its own, so it goes nowhere by
/// accident).
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::security::JobSecret;

    pub fn serialize<S: Serializer>(secret: &JobSecret, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<JobSecret, D::Error> {
        String::deserialize(deserializer).map(JobSecret::from_string)
    }
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
        /// The rows of its split it skipped as bad (at most `--max-bad-records`).
        #[serde(default)]
        bad_records: Vec<BadRecord>,
    },
    /// A reduce attempt, or a map attempt of a map-only job, wrote its part file.
    PartWritten {
        /// The part file's name (empty when the attempt wrote Hive-partitioned files:
        /// `files` lists them, possibly none).
        part_file: String,
        /// Its rows.
        rows: u64,
        /// Its bytes.
        bytes: u64,
        /// Where it is staged for the commit.
        staged: crate::output::Staged,
        /// Counters.
        counters: BTreeMap<String, u64>,
        /// The rows of its split a map attempt of a map-only job skipped as bad.
        #[serde(default)]
        bad_records: Vec<BadRecord>,
        /// The part files of a Hive-partitioned output, each staged (empty otherwise).
        #[serde(default)]
        files: Vec<WrittenFile>,
    },
    /// The attempt failed.
    Failed {
        /// False when another attempt would fail the same way.
        retryable: bool,
        /// The error's kind (absent from task binaries built before it existed).
        #[serde(default)]
        kind: Option<ErrorKind>,
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

/// One staged part file of a partitioned output, as a task reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    /// Its path relative to the output directory (`COL=value/part-...`).
    pub name: String,
    /// Its rows.
    pub rows: u64,
    /// Its bytes.
    pub bytes: u64,
    /// Where it is staged for the commit.
    pub staged: crate::output::Staged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_s_kind_survives_the_result_file_and_old_results_still_parse() {
        let failed = TaskResult::Failed {
            retryable: false,
            kind: Some(ErrorKind::CorruptInput),
            message: "map task 3 failed on data/a.parquet (row groups 0-1): corrupt".into(),
        };
        let json = serde_json::to_vec(&failed).unwrap();
        match serde_json::from_slice::<TaskResult>(&json).unwrap() {
            TaskResult::Failed { retryable, kind, message } => {
                assert!(!retryable);
                assert_eq!(kind, Some(ErrorKind::CorruptInput));
                assert!(message.contains("data/a.parquet"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let old: TaskResult = serde_json::from_str(r#"{"Failed":{"retryable":true,"message":"m"}}"#).unwrap();
        assert!(matches!(old, TaskResult::Failed { retryable: true, kind: None, .. }), "{old:?}");
    }
}
