//! Planning: a job's inputs to map tasks (one per split, tagged with the input it reads).

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::input::{Split, SplitOptions, plan_splits};
use crate::job::{InputSpec, Job, JobInput};
use crate::storage::resolve_inputs_with;

/// The work of one map task.
#[derive(Clone, Debug)]
pub struct MapTask {
    /// The task's index (its `TaskId`).
    pub index: usize,
    /// Which of the job's inputs the split belongs to (0 for single-input jobs).
    pub input: usize,
    /// What it reads.
    pub split: Split,
}

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
