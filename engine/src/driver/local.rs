//! The local runner: map tasks and then reduce tasks on a rayon pool in this process, with
//! map output handed to reducers in memory (no sockets, no serialization).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use rayon::prelude::*;
use tokio::runtime::Runtime;
use tracing::{info, info_span};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::exec::{MapTaskOutput, SPILLED_BYTES, TaskEnv, run_map_task, run_reduce_task};
use crate::ids::JobId;
use crate::input::{ReadOptions, SplitOptions, plan_splits};
use crate::job::{Counters, Job};
use crate::output::{MANIFEST_FORMAT, Manifest, ManifestFile, OutputDir};
use crate::progress::Progress;
use crate::shuffle::{Run, RunStore, SpillDir};
use crate::storage::{Location, resolve_inputs};

/// What a finished job reports.
#[derive(Clone, Debug)]
pub struct JobReport {
    /// The job run.
    pub job_id: JobId,
    /// The committed manifest (also in `_SUCCESS`).
    pub manifest: Manifest,
    /// Input files read.
    pub input_files: usize,
    /// Map tasks run.
    pub map_tasks: usize,
    /// Wall time from start to commit.
    pub elapsed: Duration,
}

impl JobReport {
    /// The job's counters.
    pub fn counters(&self) -> &Counters {
        &self.manifest.counters
    }
}

/// Runs `job` in this process. On failure, whatever the job wrote is removed and no
/// `_SUCCESS` is written.
pub fn run_local<J: Job>(job: &J, config: &RunConfig, progress: &Progress) -> Result<JobReport> {
    config.validate()?;
    job.validate().map_err(|e| Error::InvalidJob(e.to_string()))?;
    let started = Instant::now();
    let job_id = JobId::generate();
    let _span = info_span!("job", job = J::NAME, id = %job_id).entered();
    let io = io_runtime()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .thread_name(|i| format!("gristmill-cpu-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start {} threads: {e}", config.threads)))?;

    progress.start_phase("plan", 0);
    let output = OutputDir::new(Location::parse(&config.output)?);
    io.block_on(output.prepare(config.overwrite))?;
    let files = io.block_on(resolve_inputs(&config.inputs))?;
    let input_files = files.len();
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let split_options =
        SplitOptions { split_size: config.effective_split_size(total_bytes), format: config.format };
    let splits = io.block_on(plan_splits(files, &job.input(), &split_options))?;
    info!(files = input_files, bytes = total_bytes, splits = splits.len(), "planned");

    let spill = Arc::new(SpillDir::create(&config.spill_dir, &job_id)?);
    let store = Arc::new(RunStore::new(spill, config.in_memory_run_bytes()));
    let env = TaskEnv {
        io: io.handle(),
        job_id: &job_id,
        num_partitions: config.reducers,
        read: ReadOptions { replace_invalid_utf8: config.replace_invalid_utf8 },
        map_buffer_bytes: config.map_buffer_bytes(),
        store: &store,
        progress,
    };
    let result = pool.install(|| -> Result<_> {
        progress.start_phase("map", splits.len());
        let map_outputs: Vec<MapTaskOutput> = splits
            .par_iter()
            .enumerate()
            .map(|(i, split)| {
                let out = run_map_task(job, &env, i, split);
                progress.task_done();
                out
            })
            .collect::<Result<_>>()?;
        let (by_partition, mut counters) = regroup(map_outputs, config.reducers);
        progress.start_phase("reduce", config.reducers);
        let parts: Vec<_> = by_partition
            .into_par_iter()
            .enumerate()
            .map(|(p, runs)| {
                let out = run_reduce_task(job, &env, p, runs, &output);
                progress.task_done();
                out
            })
            .collect::<Result<_>>()?;
        counters.add(SPILLED_BYTES, store.spilled_bytes());
        let mut files = Vec::with_capacity(parts.len());
        for (part, part_counters) in parts {
            counters.merge(&part_counters);
            files.push(part);
        }
        Ok((files, counters))
    });
    drop(store);
    let (parts, counters) = match result {
        Ok(done) => done,
        Err(e) => {
            if let Err(cleanup) = io.block_on(output.abort(&job_id)) {
                tracing::warn!(error = %cleanup, "could not remove the failed job's part files");
            }
            return Err(e);
        }
    };

    progress.start_phase("commit", 1);
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        job: J::NAME.to_owned(),
        job_id: job_id.to_string(),
        committed_at_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        rows: parts.iter().map(|p| p.rows).sum(),
        files: parts
            .iter()
            .map(|p| ManifestFile {
                name: p.name.clone(),
                partition: p.partition.0,
                rows: p.rows,
                bytes: p.bytes,
            })
            .collect(),
        counters,
    };
    io.block_on(output.commit(&manifest, &parts))?;
    progress.task_done();
    info!(rows = manifest.rows, "committed");
    Ok(JobReport { job_id, manifest, input_files, map_tasks: splits.len(), elapsed: started.elapsed() })
}

/// A small runtime for storage I/O; CPU work stays on the rayon pool.
fn io_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gristmill-io")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the I/O runtime: {e}")))
}

/// Turns per-map-task runs into per-partition lists of runs (in map task order) and sums
/// the map counters.
fn regroup(outputs: Vec<MapTaskOutput>, partitions: usize) -> (Vec<Vec<Run>>, Counters) {
    let mut by_partition: Vec<Vec<Run>> = vec![Vec::new(); partitions];
    let mut counters = Counters::default();
    for output in outputs {
        counters.merge(&output.counters);
        for (p, runs) in output.runs.into_iter().enumerate() {
            by_partition[p].extend(runs);
        }
    }
    (by_partition, counters)
}
