//! What every task of a job is given ([`TaskSettings`]), decided once at planning and
//! carried to the tasks: in memory in local mode, in the job's payload in cluster mode.

use std::sync::Arc;

use tokio::runtime::Handle;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::exec::TaskEnv;
use crate::ids::{AttemptId, JobId};
use crate::input::{BadRecords, ReadOptions};
use crate::job::{Broadcasts, Job, SideInputs};
use crate::output::OutputLayout;
use crate::partition::{Partitioner, RangePartitioner};
use crate::progress::Progress;
use crate::shuffle::{RunBudget, RunStore};
use crate::storage::StorageOptions;

/// How map output rows are routed to reduce partitions, decided at planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionerChoice {
    /// The job's own ([`Job::partitioner`]).
    Job,
    /// Ranges cut from a sample of the map output's keys (total order): their split
    /// points, in Arrow's row format.
    Range(Vec<Vec<u8>>),
    /// The default for the map output's key: the hash of its grouping key
    /// ([`default_partitioner`](crate::partition::default_partitioner)).
    Default,
}

impl PartitionerChoice {
    /// The choice shipped to a task as its sampled split points: the job's own partitioner
    /// wins over them, as it did at planning.
    pub fn shipped<J: Job>(job: &J, range_split_points: Option<&[Vec<u8>]>) -> Self {
        match range_split_points {
            _ if job.partitioner().is_some() => PartitionerChoice::Job,
            Some(points) => PartitionerChoice::Range(points.to_vec()),
            None => PartitionerChoice::Default,
        }
    }

    /// The sampled split points, if ranges were chosen.
    pub fn range_split_points(&self) -> Option<&[Vec<u8>]> {
        match self {
            PartitionerChoice::Range(points) => Some(points),
            _ => None,
        }
    }

    /// The partitioner chosen for `job`.
    pub fn build<J: Job>(&self, job: &J) -> Result<Arc<dyn Partitioner>> {
        match self {
            PartitionerChoice::Job => job
                .partitioner()
                .map(Arc::from)
                .ok_or_else(|| Error::Internal("the job's own partitioner is gone".into())),
            PartitionerChoice::Range(points) => {
                let keyed = job.map_output();
                let types: Vec<_> = keyed
                    .key_indices()?
                    .iter()
                    .map(|&i| keyed.schema().field(i).data_type().clone())
                    .collect();
                Ok(Arc::new(RangePartitioner::from_bytes(&types, points)?))
            }
            PartitionerChoice::Default => crate::partition::default_partitioner(&job.map_output()),
        }
    }
}

/// What every task of a job is given, the same whichever process runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSettings {
    /// Reduce partitions.
    pub num_partitions: usize,
    /// How map output is routed to them.
    pub partitioner: PartitionerChoice,
    /// How inputs are read.
    pub read: ReadOptions,
    /// Rows of input that may fail to parse before the job fails (`--max-bad-records`).
    pub max_bad_records: u64,
    /// Map output buffered before it is sorted into a run (a task process's worker may
    /// give it less or more).
    pub map_buffer_bytes: usize,
    /// Sorted runs kept in memory before they spill: the job's, shared by its tasks in
    /// local mode (a submission gives each task process its share).
    pub run_budget: RunBudget,
    /// How part files are written: the job's defaults with the flags applied.
    pub layout: OutputLayout,
    /// The output directory.
    pub output: String,
    /// The job's object-store options: its inputs, output and side inputs are resolved
    /// with them.
    pub storage_options: StorageOptions,
    /// The values the job's plan broadcast to its tasks.
    pub broadcasts: Broadcasts,
}

/// What the process running a job's tasks supplies to them, and planning to the sample of
/// a total-order job's map output.
#[derive(Clone, Copy)]
pub struct TaskResources<'a> {
    /// The runtime that does I/O.
    pub io: &'a Handle,
    /// The job run.
    pub job_id: &'a JobId,
    /// The attempt the tasks are (0 in local mode).
    pub attempt: AttemptId,
    /// Where rows of input that fail to parse go.
    pub bad_records: &'a BadRecords,
    /// Where map tasks put their sorted runs. `None` only where no task runs but a sample
    /// may (planning at submission): [`plan_job`](super::plan_job) then makes a scratch
    /// store in the spill directory if the job samples.
    pub store: Option<&'a Arc<RunStore>>,
    /// Where progress is counted.
    pub progress: &'a Progress,
}

impl TaskSettings {
    /// The settings `config` gives `job`, whose plan broadcast `broadcasts`; the
    /// partitioner is the job's own or the default until sampling chooses ranges.
    pub fn of_config<J: Job>(job: &J, config: &RunConfig, broadcasts: Broadcasts) -> Result<Self> {
        Ok(TaskSettings {
            num_partitions: job.reducers().unwrap_or(config.reducers).max(1),
            partitioner: PartitionerChoice::shipped(job, None),
            read: ReadOptions { replace_invalid_utf8: config.replace_invalid_utf8 },
            max_bad_records: config.max_bad_records,
            map_buffer_bytes: config.map_buffer_bytes(),
            run_budget: config.run_budget(),
            layout: config.output_layout_of(job)?,
            output: config.output.clone(),
            storage_options: config.storage_options.clone(),
            broadcasts,
        })
    }

    /// The environment of `job`'s tasks run with these settings by `process`, which must
    /// give them a run store.
    pub fn env<'a, J: Job>(&self, job: &J, process: &TaskResources<'a>) -> Result<TaskEnv<'a>> {
        let store = process.store.ok_or_else(|| Error::Internal("tasks given no run store".into()))?;
        Ok(TaskEnv {
            io: process.io,
            job_id: process.job_id,
            attempt: process.attempt,
            num_partitions: self.num_partitions,
            read: self.read,
            bad_records: process.bad_records,
            map_buffer_bytes: self.map_buffer_bytes,
            store,
            partitioner: self.partitioner.build(job)?,
            progress: process.progress,
            layout: self.layout.clone(),
            side: SideInputs {
                broadcasts: self.broadcasts.clone(),
                io: Some(process.io.clone()),
                storage: self.storage_options.clone(),
            },
        })
    }
}
