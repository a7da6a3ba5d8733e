//! The local runner: map tasks and then reduce tasks on a rayon pool in this process, with
//! map output handed to reducers in memory or through local spill files (no sockets). A
//! map-only job's map tasks write the part files themselves.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokio::runtime::Runtime;
use tracing::{info, info_span};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::exec::{
    BAD_RECORDS, MapTaskOutput, SPILLED_BYTES, TaskEnv, run_map_only_task, run_map_task, run_reduce_task,
};
use crate::ids::JobId;
use crate::input::BadRecords;
use crate::job::{Counters, Job};
use crate::output::{Manifest, OutputDir, PartFile, write_bad_records};
use crate::plan::{MapTask, TaskResources, plan_job};
use crate::progress::Progress;
use crate::run::JobReport;
use crate::shuffle::{Run, RunStore, SpillDir};
use crate::storage::{Location, request_stats};

/// Runs `job` in this process. On failure, whatever the job wrote is removed and no
/// `_SUCCESS` is written; spill files are removed either way.
///
/// The job's [`Job::plan`] runs first, once, on a copy of `job` made through its
/// serialized form, as a task in a cluster would receive it; the tasks run that copy.
/// [`run`](crate::run::run) calls it in [`Mode::Local`](crate::run::Mode::Local).
///
/// ```
/// # use gristmill::job::record::{map_lines, record_schema, reduce_records};
/// # use gristmill::prelude::*;
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct WordCount {}
/// # impl Job for WordCount {
/// #     const NAME: &'static str = "wordcount";
/// #     const ABOUT: &'static str = "Counts words";
/// #     fn map_output(&self) -> KeyedSchema { record_schema::<str, u64>("word", "count") }
/// #     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
/// #         Ok(map_lines::<str, u64, _>(|line, out| {
/// #             line.split_whitespace().for_each(|w| out.emit(w, 1));
/// #             Ok(())
/// #         }))
/// #     }
/// #     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
/// #         Ok(reduce_records::<str, u64, str, u64, _>(|g, out| {
/// #             out.emit(g.key(), g.values().sum());
/// #             Ok(())
/// #         }))
/// #     }
/// # }
/// use gristmill::config::RunConfig;
/// use gristmill::local::run_local;
/// use gristmill::progress::Progress;
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("words.txt"), "one two two\n")?;
/// let output = dir.path().join("out");
/// let config = RunConfig::new(
///     vec![dir.path().join("words.txt").display().to_string()],
///     output.display().to_string(),
/// )
/// .with_threads(2);
/// let progress = Progress::default();
/// assert_eq!(run_local(&WordCount {}, &config, &progress)?.manifest.rows, 2);
/// // A committed output is kept unless the run may replace it.
/// assert!(run_local(&WordCount {}, &config, &progress).is_err());
/// assert!(output.join("_SUCCESS").is_file());
/// let again = run_local(&WordCount {}, &config.with_overwrite(true), &progress)?;
/// assert_eq!(again.manifest.rows, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_local<J: Job>(job: &J, config: &RunConfig, progress: &Progress) -> Result<JobReport> {
    config.validate()?;
    job.validate().map_err(|e| Error::InvalidJob(e.to_string()))?;
    let started = Instant::now();
    let requests = request_stats();
    let job_id = JobId::generate();
    let span = info_span!("job", job = J::NAME, id = %job_id);
    let _entered = span.enter();
    let io = io_runtime()?;
    progress.start_phase("plan", 0);
    let (planned, broadcasts) = crate::job::planned(job, config, io.handle())?;
    let job = &planned;
    crate::exec::check_planned_job(job)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .thread_name(|i| format!("gristmill-cpu-{i}"))
        .start_handler(|_| crate::logging::enter_root_span())
        .build()
        .map_err(|e| Error::Internal(format!("cannot start {} threads: {e}", config.threads)))?;

    let output = OutputDir::new(Location::parse_with(&config.output, &config.storage_options)?);
    io.block_on(output.prepare(config.overwrite))?;
    let spill = Arc::new(SpillDir::create(&config.spill_dir, &job_id)?);
    // Each thread's task sizes its I/O buffers within its share of the limit.
    crate::memory::set_task_memory(config.memory_limit / config.threads.max(1) as u64);
    crate::memory::fit_allocator_to(config.memory_limit);
    let store = Arc::new(RunStore::new(spill, config.run_budget()));
    let bad_records = BadRecords::new(config.max_bad_records);
    let resources = TaskResources {
        io: io.handle(),
        job_id: &job_id,
        attempt: crate::ids::AttemptId(0),
        bad_records: &bad_records,
        store: Some(&store),
        progress,
    };
    // Planning samples a total-order job's keys on the pool's threads.
    let plan = pool.install(|| {
        let _entered = span.enter();
        plan_job(job, config, broadcasts, &resources)
    })?;
    info!(files = plan.files, bytes = plan.bytes, splits = plan.map_tasks.len(), "planned");
    let parquet_codec = plan.tasks.layout.parquet_codec();
    let env = plan.tasks.env(job, &resources)?;
    // Phases run on the pool's threads, under the job's span.
    let result = pool.install(|| -> Result<_> {
        let _entered = span.enter();
        let (mut parts, mut counters) = if plan.map_only {
            map_only_phase(job, &env, &plan.map_tasks, &output)?
        } else {
            let (runs, mut counters) = map_phase(job, &env, &plan.map_tasks)?;
            let parts = reduce_phase(job, &env, runs, &output, &mut counters)?;
            counters.add(SPILLED_BYTES, store.spilled_bytes());
            (parts, counters)
        };
        stage_bad_records(&env, &output, &mut parts, &mut counters)?;
        Ok((parts, counters))
    });
    drop(store);
    let (parts, mut counters) = match result {
        Ok(done) => done,
        Err(e) => {
            if let Err(cleanup) = io.block_on(output.abort(&job_id)) {
                tracing::warn!(error = %cleanup, "could not remove the failed job's part files");
            }
            return Err(e);
        }
    };

    // Storage requests of planning, reading and writing (the commit's own are not counted).
    request_stats().add_since(&requests, &mut counters);
    progress.start_phase("commit", 1);
    let manifest =
        Manifest::new(J::NAME, job_id.as_str(), &parts, counters).with_parquet_codec(parquet_codec);
    info_span!("commit").in_scope(|| io.block_on(output.commit(&manifest, &parts)))?;
    progress.task_done();
    info!(rows = manifest.rows, "committed");
    let map_tasks = plan.map_tasks.len();
    Ok(JobReport { job_id, manifest, input_files: plan.files, map_tasks, elapsed: started.elapsed() })
}

/// Counts the job's bad records and stages them, to be committed with the part files.
fn stage_bad_records(
    env: &TaskEnv<'_>,
    output: &OutputDir,
    parts: &mut Vec<PartFile>,
    counters: &mut Counters,
) -> Result<()> {
    if env.bad_records.max() == 0 {
        return Ok(());
    }
    let rows = env.bad_records.take();
    counters.add(BAD_RECORDS, rows.len() as u64);
    parts.extend(write_bad_records(env.io, output, env.job_id, env.attempt, &rows)?);
    Ok(())
}

/// Runs every map task; returns each partition's runs (in map task order) and the counters.
fn map_phase<J: Job>(job: &J, env: &TaskEnv<'_>, tasks: &[MapTask]) -> Result<(Vec<Vec<Run>>, Counters)> {
    env.progress.start_phase("map", tasks.len());
    let started = Instant::now();
    let phase = info_span!("phase", phase = "map");
    let outputs: Vec<MapTaskOutput> = tasks
        .par_iter()
        .map(|task| {
            let out = phase.in_scope(|| run_map_task(job, env, task));
            env.progress.task_done();
            out
        })
        .collect::<Result<_>>()?;
    info!(tasks = tasks.len(), seconds = started.elapsed().as_secs_f64(), "map phase done");
    let mut by_partition: Vec<Vec<Run>> = vec![Vec::new(); env.num_partitions];
    let mut counters = Counters::default();
    for output in outputs {
        counters.merge(&output.counters);
        for (p, runs) in output.runs.into_iter().enumerate() {
            by_partition[p].extend(runs);
        }
    }
    Ok((by_partition, counters))
}

/// Runs every map task of a map-only job, each writing its own part file.
fn map_only_phase<J: Job>(
    job: &J,
    env: &TaskEnv<'_>,
    tasks: &[MapTask],
    output: &OutputDir,
) -> Result<(Vec<PartFile>, Counters)> {
    env.progress.start_phase("map", tasks.len());
    let phase = info_span!("phase", phase = "map");
    let parts: Vec<(Vec<PartFile>, Counters)> = tasks
        .par_iter()
        .map(|task| {
            let out = phase.in_scope(|| run_map_only_task(job, env, task, output));
            env.progress.task_done();
            out
        })
        .collect::<Result<_>>()?;
    let mut counters = Counters::default();
    let parts = parts
        .into_iter()
        .flat_map(|(parts, part_counters)| {
            counters.merge(&part_counters);
            parts
        })
        .collect();
    Ok((parts, counters))
}

/// Runs every reduce task; returns the part files and adds the reducers' counters.
fn reduce_phase<J: Job>(
    job: &J,
    env: &TaskEnv<'_>,
    runs: Vec<Vec<Run>>,
    output: &OutputDir,
    counters: &mut Counters,
) -> Result<Vec<PartFile>> {
    env.progress.start_phase("reduce", runs.len());
    let (started, tasks) = (Instant::now(), runs.len());
    let phase = info_span!("phase", phase = "reduce");
    let parts: Vec<_> = runs
        .into_par_iter()
        .enumerate()
        .map(|(p, runs)| {
            let out = phase.in_scope(|| run_reduce_task(job, env, p, runs, output));
            env.progress.task_done();
            out
        })
        .collect::<Result<_>>()?;
    info!(tasks, seconds = started.elapsed().as_secs_f64(), "reduce phase done");
    Ok(parts
        .into_iter()
        .flat_map(|(parts, part_counters)| {
            counters.merge(&part_counters);
            parts
        })
        .collect())
}

/// A small runtime for storage I/O; CPU work stays on the rayon pool.
pub(crate) fn io_runtime() -> Result<Runtime> {
    io_runtime_builder()
        .on_thread_start(crate::cluster::executor::scope::inherit())
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the I/O runtime: {e}")))
}

/// How every I/O runtime of the engine is built (two threads, timers and I/O enabled).
pub(crate) fn io_runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).thread_name("gristmill-io").enable_all();
    builder
}
