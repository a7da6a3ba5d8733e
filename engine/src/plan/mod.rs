//! Planning: a job's inputs to map tasks (one per split, tagged with the input it reads),
//! and the [`JobPlan`] every mode runs: [`plan_job`] decides, once, the map tasks, the
//! partitioner and what every task is given ([`TaskSettings`]). Local mode runs the plan
//! in this process; submission ships it to the driver and, in the job's payload, to every
//! task process, which rebuilds the same [`TaskSettings`] from it.

mod settings;

use std::sync::Arc;

pub use self::settings::{PartitionerChoice, TaskResources, TaskSettings};
use crate::config::RunConfig;
use crate::error::{Error, Result};
pub use crate::exec::MapTask;
use crate::exec::{is_map_only, sample_range_partitioner};
use crate::input::{SplitOptions, plan_splits};
use crate::job::{Broadcasts, InputSpec, Job, JobInput};
use crate::shuffle::{RunBudget, RunStore, SpillDir};
use crate::storage::resolve_inputs_with;

/// What planning found.
#[derive(Debug)]
pub struct Plan {
    /// The map tasks, in input order.
    pub map_tasks: Vec<MapTask>,
    /// Input files.
    pub files: usize,
    /// Input bytes.
    pub bytes: u64,
}

/// The job's inputs: its own ([`Job::inputs`]) or the `--input` flags read as [`Job::input`].
fn job_inputs<J: Job>(job: &J, config: &RunConfig) -> Result<Vec<JobInput>> {
    let own = job.inputs();
    match (own.is_empty(), config.inputs.is_empty()) {
        (true, true) => Err(Error::Config("no --input given".into())),
        (true, false) => Ok(vec![JobInput { paths: config.inputs.clone(), spec: job.input() }]),
        (false, true) => Ok(own),
        (false, false) => {
            Err(Error::Config(format!("{} takes its inputs from its own flags, not --input", J::NAME)))
        }
    }
}

/// Resolves every input and plans its splits: reads Parquet footers, checks columns.
pub async fn plan_map_tasks<J: Job>(job: &J, config: &RunConfig) -> Result<Plan> {
    let mut resolved = Vec::new();
    for (index, input) in job_inputs(job, config)?.into_iter().enumerate() {
        let files =
            resolve_inputs_with(&input.paths, &config.storage_options, config.allow_uncommitted).await?;
        resolved.push((index, files, input.spec));
    }
    let files = resolved.iter().map(|(_, f, _)| f.len()).sum();
    let bytes: u64 = resolved.iter().flat_map(|(_, f, _)| f).map(|f| f.size).sum();
    let options = SplitOptions {
        split_size: config.effective_split_size(bytes),
        format: config.format,
        csv: config.csv,
        schema: config.input_schema.clone(),
    };
    let mut map_tasks = Vec::new();
    for (input, files, spec) in resolved {
        let spec: InputSpec = spec;
        for split in plan_splits(files, &spec, &options).await? {
            map_tasks.push(MapTask { index: map_tasks.len(), input, split });
        }
    }
    Ok(Plan { map_tasks, files, bytes })
}

/// What a job runs as, decided once by [`plan_job`] and the same in every mode.
#[derive(Debug)]
pub struct JobPlan {
    /// The map tasks, in input order.
    pub map_tasks: Vec<MapTask>,
    /// Input files.
    pub files: usize,
    /// Input bytes.
    pub bytes: u64,
    /// True for a map-only job ([`Job::reducers`] is `Some(0)`): map tasks write part files.
    pub map_only: bool,
    /// What every task is given: partitions, partitioner, how to read and write.
    pub tasks: TaskSettings,
}

/// Plans `job` (already through [`Job::plan`], which gave `broadcasts`) with `config`:
/// resolves its inputs into map tasks, and decides its partitions and partitioner (the
/// job's own, ranges sampled from its map output for total order, or the hash of its
/// grouping key) and what every task is given. Sampling the keys of a total-order job maps
/// the first rows of a few splits with `resources`, as the job's tasks would (its run store
/// or, without one, a scratch store in the spill directory; bad rows counted apart, as the
/// map tasks read them again).
pub fn plan_job<J: Job>(
    job: &J,
    config: &RunConfig,
    broadcasts: Broadcasts,
    resources: &TaskResources<'_>,
) -> Result<JobPlan> {
    let Plan { map_tasks, files, bytes } = resources.io.block_on(plan_map_tasks(job, config))?;
    let map_only = is_map_only(job);
    let mut tasks = TaskSettings::of_config(job, config, broadcasts)?;
    if tasks.partitioner == PartitionerChoice::Default && job.total_order() && !map_only {
        resources.progress.start_phase("sample", 1);
        let scratch;
        let store = match resources.store {
            Some(store) => store,
            None => {
                let spill = Arc::new(SpillDir::create(&config.spill_dir, resources.job_id)?);
                scratch = Arc::new(RunStore::new(spill, RunBudget::uniform(0)));
                &scratch
            }
        };
        let env = tasks.env(job, &TaskResources { store: Some(store), ..*resources })?;
        let points = sample_range_partitioner(job, &env, &map_tasks)?.to_bytes();
        tasks.partitioner = PartitionerChoice::Range(points);
    }
    Ok(JobPlan { map_tasks, files, bytes, map_only, tasks })
}
