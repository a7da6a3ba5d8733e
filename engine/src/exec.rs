//! Task execution: [`run_map_task`] and [`run_reduce_task`] are plain synchronous functions,
//! run on CPU threads. They catch panics in user code and wrap every failure with the task
//! and the split it was processing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use rayon::prelude::*;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId, PartitionId, TaskId};
use crate::input::{BadRecords, ReadOptions, Split};
use crate::job::{BatchSink, Counters, Emitter, Groups, Job, ReduceInput, Reducer, TaskInfo};
use crate::output::{OutputDir, OutputLayout, OutputWriter, PartFile, PartName};
use crate::partition::{Partitioner, RangePartitioner};
use crate::progress::Progress;
use crate::shuffle::{
    GroupedChunk, KeyEncoder, MERGE_CHUNK_ROWS, MapOutputBuilder, MapOutputSpec, MergeSpace, Regrouper, Run,
    RunMerger, RunStore,
};

/// Engine counter: input rows mappers received.
pub const MAP_INPUT_RECORDS: &str = "map_input_records";
/// Engine counter: input bytes of the splits read (of compressed text: decompressed bytes).
pub const MAP_INPUT_BYTES: &str = "map_input_bytes";
/// Engine counter: Parquet row groups a filter's statistics excluded (never read).
pub const INPUT_ROW_GROUPS_SKIPPED: &str = "input_row_groups_skipped";
/// Engine counter: compressed bytes of those row groups.
pub const INPUT_BYTES_SKIPPED: &str = "input_bytes_skipped";
/// Engine counter: input rows that failed to parse, skipped and written to `_bad_records/`
/// (`--max-bad-records`).
pub const BAD_RECORDS: &str = "bad_records";
/// Engine counter: rows of the row groups read that the page index excluded (never decoded).
pub const INPUT_ROWS_SKIPPED: &str = "input_rows_skipped";
/// Engine counter: rows mappers emitted.
pub const MAP_OUTPUT_RECORDS: &str = "map_output_records";
/// Engine counter: rows into combiners.
pub const COMBINE_INPUT_RECORDS: &str = "combine_input_records";
/// Engine counter: rows out of combiners.
pub const COMBINE_OUTPUT_RECORDS: &str = "combine_output_records";
/// Engine counter: key groups reducers received (not counted for unordered reduce input,
/// which is never cut into groups).
pub const REDUCE_INPUT_GROUPS: &str = "reduce_input_groups";
/// Engine counter: rows reducers received.
pub const REDUCE_INPUT_RECORDS: &str = "reduce_input_records";
/// Engine counter: bytes of map output spilled to disk.
pub const SPILLED_BYTES: &str = "spilled_bytes";
/// Engine counter: map output bytes reducers fetched from shuffle services.
pub const SHUFFLE_FETCHED_BYTES: &str = "shuffle_fetched_bytes";
/// Engine counter: map output bytes reducers read in place, from workers on its host.
pub const SHUFFLE_HOST_LOCAL_BYTES: &str = "shuffle_host_local_bytes";
/// Engine counter: rows reducers emitted (rows in the output).
pub const REDUCE_OUTPUT_RECORDS: &str = "reduce_output_records";

/// Output a reducer may buffer before it is written, even within one call of the reducer.
pub const REDUCE_EMIT_BYTES: usize = 8 << 20;

/// What every task of a job shares.
pub struct TaskEnv<'a> {
    /// The runtime that does I/O.
    pub io: &'a Handle,
    /// The job run.
    pub job_id: &'a JobId,
    /// The attempt these tasks are (0 in local mode).
    pub attempt: AttemptId,
    /// Reduce partitions.
    pub num_partitions: usize,
    /// How inputs are read.
    pub read: ReadOptions,
    /// Where rows of input that fail to parse go: the job's (local mode) or the task's,
    /// which fails once more than `--max-bad-records` are found.
    pub bad_records: &'a BadRecords,
    /// Map output buffered before it is sorted into a run.
    pub map_buffer_bytes: usize,
    /// Where map tasks put their sorted runs.
    pub store: &'a Arc<RunStore>,
    /// Routes map output rows to partitions.
    pub partitioner: Arc<dyn Partitioner>,
    /// Where progress is counted.
    pub progress: &'a Progress,
    /// How part files are written (format, codecs, partition columns): the job's defaults
    /// with the flags applied.
    pub layout: OutputLayout,
    /// What tasks may read besides their splits (the plan's broadcast values).
    pub side: crate::job::SideInputs,
}

impl TaskEnv<'_> {
    /// Where and within what a reduce (or a map writing its output) merges runs: half of
    /// the task's share of memory (twice the map buffer, a quarter), as the merge runs
    /// after the map buffer is freed, beside the runs the store keeps in memory.
    pub fn merge_space(&self) -> MergeSpace {
        MergeSpace { spill: self.store.spill_dir().clone(), budget: 2 * self.map_buffer_bytes as u64 }
    }

    fn info(&self, task: TaskId, split: String, input: usize) -> TaskInfo {
        TaskInfo {
            job_id: self.job_id.clone(),
            task,
            attempt: self.attempt,
            num_partitions: self.num_partitions,
            split,
            input,
            side: self.side.clone(),
        }
    }
}

/// The work of one map task (planned by [`plan_job`](crate::plan::plan_job)).
#[derive(Clone, Debug)]
pub struct MapTask {
    /// The task's index (its `TaskId`).
    pub index: usize,
    /// Which of the job's inputs the split belongs to (0 for single-input jobs).
    pub input: usize,
    /// What it reads.
    pub split: Split,
}

/// A map task's result: sorted runs per partition (`runs[p]`) and its counters.
pub struct MapTaskOutput {
    /// Sorted (and combined) runs of each partition.
    pub runs: Vec<Vec<Run>>,
    /// Engine and user counters.
    pub counters: Counters,
}

/// Runs user code, turning an error or a panic into a task failure naming `info`.
fn guarded<T>(info: &TaskInfo, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let _span = tracing::info_span!("task", task = %info.task, attempt = info.attempt.0, split = %info.split)
        .entered();
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        Err(Error::UserCode { stage: crate::error::PANICKED, message: panic_message(panic.as_ref()) })
    });
    result.map_err(|cause| match cause {
        already @ Error::Task { .. } => already,
        cause => Error::Task {
            task: info.task,
            split: info.split.clone(),
            kind: cause.kind(),
            cause: cause.to_string(),
        },
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// Wraps an error of user code; an engine error passing through it (a failed write of what
/// a reducer emitted) keeps its own kind.
fn user(stage: &'static str) -> impl Fn(crate::error::BoxError) -> Error {
    move |e| match e.downcast::<Error>() {
        Ok(engine) => *engine,
        Err(e) => Error::UserCode { stage, message: e.to_string() },
    }
}

/// Reads a map task's split, maps it, and partitions, sorts and combines the map output.
pub fn run_map_task<J: Job>(job: &J, env: &TaskEnv<'_>, task: &MapTask) -> Result<MapTaskOutput> {
    let split = &task.split;
    let info = env.info(TaskId::map(task.index), split.describe(), task.input);
    guarded(&info, || {
        let keyed = job.map_output();
        let schema = keyed.schema().clone();
        let partitioner = env.partitioner.clone();
        // Unordered reduce input is only partitioned: no sort, no combiner.
        let sort = job.reduce_input() == ReduceInput::Grouped;
        let combiner = if sort { job.combiner(&info) } else { None };
        let has_combiner = combiner.is_some();
        let spec = MapOutputSpec {
            key_columns: keyed.key_indices()?,
            num_partitions: env.num_partitions,
            partitioner,
            combiner,
            store: env.store.clone(),
            sort,
        };
        let mut builder = MapOutputBuilder::new(schema.clone(), spec)?;
        let mut mapper = job.mapper(&info).map_err(user("mapper failed:"))?;
        if has_combiner && let Some(combiner) = job.combiner(&info) {
            // A quarter of the map buffer: the table empties into the buffer.
            mapper.combine_in_memory(combiner, env.map_buffer_bytes / 4);
        }
        let mut out = Emitter::new(schema);
        let (mut rows_in, mut rows_out) = (0u64, 0u64);
        let read_and_map = tracing::info_span!("read split and map").entered();
        let bytes_in = split.read_keeping_bad(env.io, env.read, env.bad_records, &mut |batch| {
            rows_in += batch.num_rows() as u64;
            crate::cluster::executor::scope::check_cancelled()?;
            env.progress.add_input(0, batch.num_rows() as u64);
            mapper.map(&batch, &mut out).map_err(user("mapper failed:"))?;
            if out.buffered_bytes() >= env.map_buffer_bytes {
                rows_out += out.buffered_rows() as u64;
                builder.flush(out.take_batches())?;
            }
            Ok(true)
        })?;
        mapper.finish(&mut out).map_err(user("mapper failed:"))?;
        drop(read_and_map);
        let sort_and_spill = tracing::info_span!("sort and spill").entered();
        rows_out += out.buffered_rows() as u64;
        builder.flush(out.take_batches())?;
        env.progress.add_input(split.bytes(), 0);

        let mut counters = out.take_counters();
        let (runs, stats) = builder.finish();
        drop(sort_and_spill);
        count_input(&mut counters, split, rows_in, bytes_in);
        counters.add(MAP_OUTPUT_RECORDS, rows_out);
        if has_combiner {
            counters.add(COMBINE_INPUT_RECORDS, stats.combine_input_rows);
            counters.add(COMBINE_OUTPUT_RECORDS, stats.combine_output_rows);
        }
        Ok(MapTaskOutput { runs, counters })
    })
}

/// Reduces the runs of `partition` and writes the part file (with Hive partitioning, one
/// per partition value): merged into key groups, or handed over unordered to a reducer that
/// aggregates by hash (see [`ReduceInput`]).
pub fn run_reduce_task<J: Job>(
    job: &J,
    env: &TaskEnv<'_>,
    partition: usize,
    runs: Vec<Run>,
    output: &OutputDir,
) -> Result<(Vec<PartFile>, Counters)> {
    let info = env.info(TaskId::reduce(partition), format!("partition {partition}"), 0);
    guarded(&info, || {
        let mut reducer = job.reducer(&info).map_err(user("reducer failed:"))?;
        let mut part = PartOutput::create(job, env, PartitionId(partition as u32), info.attempt, output)?;
        let unordered = job.reduce_input() == ReduceInput::Unordered;
        let merge_and_reduce = tracing::info_span!("merge and reduce").entered();
        let in_memory: u64 = runs.iter().map(Run::memory_bytes).sum();
        let (groups, rows) = if unordered && in_memory <= env.map_buffer_bytes as u64 {
            (None, reduce_unordered(reducer.as_mut(), &mut part.out, runs)?)
        } else {
            let runs = if unordered { sort_runs(job, env, runs)? } else { runs };
            let runs = env.merge_space().reduce_runs(
                job.map_output().schema(),
                &job.map_output().key_indices()?,
                runs,
            )?;
            let (groups, rows) = reduce_grouped(job, reducer.as_mut(), &mut part.out, runs)?;
            (Some(groups), rows)
        };
        reducer.finish(&mut part.out).map_err(user("reducer failed:"))?;
        drop(merge_and_reduce);
        let (parts, mut counters) = tracing::info_span!("write").in_scope(|| part.close())?;
        if let Some(groups) = groups {
            counters.add(REDUCE_INPUT_GROUPS, groups);
        }
        counters.add(REDUCE_INPUT_RECORDS, rows);
        counters.add(REDUCE_OUTPUT_RECORDS, parts.iter().map(|p| p.rows).sum());
        Ok((parts, counters))
    })
}

/// Merges sorted `runs` and reduces them group by group; returns the groups and rows.
fn reduce_grouped<J: Job>(
    job: &J,
    reducer: &mut dyn Reducer,
    out: &mut Emitter,
    runs: Vec<Run>,
) -> Result<(u64, u64)> {
    let keyed = job.map_output();
    let key_columns = keyed.key_indices()?;
    let encoder = KeyEncoder::new(keyed.schema(), &key_columns)?;
    let mut merger = RunMerger::new(keyed.schema().clone(), encoder, runs, MERGE_CHUNK_ROWS)?;
    let grouping = keyed.grouping_columns()?;
    let mut regrouper = grouping.map(|columns| Regrouper::new(&key_columns, columns));
    let group_columns = &key_columns[..grouping.unwrap_or(key_columns.len())];
    let (mut groups, mut rows) = (0u64, 0u64);
    let mut reduce = |chunk: GroupedChunk| -> Result<()> {
        groups += chunk.starts.len() as u64;
        rows += chunk.batch.num_rows() as u64;
        let chunk_groups = Groups::new(&chunk.batch, &chunk.starts, group_columns);
        reducer.reduce_groups(&chunk_groups, out).map_err(user("reducer failed:"))?;
        out.flush()
    };
    while let Some(chunk) = merger.next_chunk()? {
        crate::cluster::executor::scope::check_cancelled()?;
        match regrouper.as_mut() {
            Some(regrouper) => regrouper.push(chunk)?.into_iter().try_for_each(&mut reduce)?,
            None => reduce(chunk)?,
        }
    }
    if let Some(last) = regrouper.as_mut().map(Regrouper::finish).transpose()?.flatten() {
        reduce(last)?;
    }
    Ok((groups, rows))
}

/// Hands every batch of `runs`, in run order, to [`Reducer::reduce_batch`]; returns the rows.
fn reduce_unordered(reducer: &mut dyn Reducer, out: &mut Emitter, runs: Vec<Run>) -> Result<u64> {
    let mut rows = 0u64;
    for run in runs {
        let mut reader = run.open()?;
        while let Some(batch) = reader.next_batch()? {
            crate::cluster::executor::scope::check_cancelled()?;
            rows += batch.num_rows() as u64;
            reducer.reduce_batch(&batch, out).map_err(user("reducer failed:"))?;
            out.flush()?;
        }
    }
    Ok(rows)
}

/// Sorts the unordered runs of a partition too large to reduce by hash into sorted runs:
/// the map side's sort, done on the reduce side, in buffers of a map task's size. Runs
/// are read in order and the sort is stable, so equal keys keep their map task order.
fn sort_runs<J: Job>(job: &J, env: &TaskEnv<'_>, runs: Vec<Run>) -> Result<Vec<Run>> {
    let keyed = job.map_output();
    let spec = MapOutputSpec {
        key_columns: keyed.key_indices()?,
        num_partitions: 1,
        partitioner: env.partitioner.clone(),
        combiner: None,
        store: env.store.clone(),
        sort: true,
    };
    let mut builder = MapOutputBuilder::new(keyed.schema().clone(), spec)?;
    let (mut buffered, mut bytes) = (Vec::new(), 0);
    for run in runs {
        let mut reader = run.open()?;
        while let Some(batch) = reader.next_batch()? {
            bytes += batch.get_array_memory_size();
            buffered.push(batch);
            if bytes >= env.map_buffer_bytes {
                builder.flush(std::mem::take(&mut buffered))?;
                bytes = 0;
            }
        }
    }
    builder.flush(buffered)?;
    let (mut sorted, _) = builder.finish();
    Ok(sorted.pop().unwrap_or_default())
}

/// The engine's checks of how a planned job's settings combine (after [`Job::validate`] and
/// [`Job::plan`]), run before any task, locally and at submission.
pub fn check_planned_job<J: Job>(job: &J) -> Result<()> {
    if job.map_output().grouping_columns()?.is_some() && job.total_order() {
        return Err(Error::InvalidJob(
            "a job that groups by part of its key cannot ask for total order".into(),
        ));
    }
    Ok(())
}

/// True for a map-only job: [`Job::reducers`] asks for none.
pub fn is_map_only<J: Job>(job: &J) -> bool {
    job.reducers() == Some(0)
}

/// Runs a map task of a map-only job (`Job::reducers() == Some(0)`): what the mapper emits
/// (rows of [`Job::output_schema`]) is written straight to the part file numbered after
/// the map task, in the order emitted; nothing is sorted or shuffled (Hadoop's
/// `setNumReduceTasks(0)`).
pub fn run_map_only_task<J: Job>(
    job: &J,
    env: &TaskEnv<'_>,
    task: &MapTask,
    output: &OutputDir,
) -> Result<(Vec<PartFile>, Counters)> {
    let split = &task.split;
    let info = env.info(TaskId::map(task.index), split.describe(), task.input);
    guarded(&info, || {
        let mut mapper = job.mapper(&info).map_err(user("mapper failed:"))?;
        let mut part = PartOutput::create(job, env, PartitionId(task.index as u32), info.attempt, output)?;
        let mut rows_in = 0u64;
        let bytes_in = split.read_keeping_bad(env.io, env.read, env.bad_records, &mut |batch| {
            rows_in += batch.num_rows() as u64;
            crate::cluster::executor::scope::check_cancelled()?;
            env.progress.add_input(0, batch.num_rows() as u64);
            mapper.map(&batch, &mut part.out).map_err(user("mapper failed:"))?;
            Ok(true)
        })?;
        mapper.finish(&mut part.out).map_err(user("mapper failed:"))?;
        env.progress.add_input(split.bytes(), 0);
        let (parts, mut counters) = part.close()?;
        count_input(&mut counters, split, rows_in, bytes_in);
        counters.add(MAP_OUTPUT_RECORDS, parts.iter().map(|p| p.rows).sum());
        Ok((parts, counters))
    })
}

/// A part file (or, partitioned, part files) being written: an emitter whose batches go to
/// the writer as they come.
struct PartOutput {
    out: Emitter,
    writer: Arc<Mutex<OutputWriter>>,
}

impl PartOutput {
    fn create<J: Job>(
        job: &J,
        env: &TaskEnv<'_>,
        partition: PartitionId,
        attempt: AttemptId,
        output: &OutputDir,
    ) -> Result<Self> {
        let part = PartName { partition, job: env.job_id, attempt };
        let writer = OutputWriter::create(env.io, output, part, job.output_schema(), &env.layout)?;
        // The emitter writes through the sink as soon as user code has emitted
        // REDUCE_EMIT_BYTES, even within one call (a join's frequent key).
        let writer = Arc::new(Mutex::new(writer));
        let sink_writer = writer.clone();
        let sink: BatchSink = Box::new(move |batch| {
            sink_writer.lock().map_err(|_| Error::Internal("part writer poisoned".into()))?.write(&batch)
        });
        let out = Emitter::new(job.output_schema()).with_sink(REDUCE_EMIT_BYTES, sink);
        Ok(PartOutput { out, writer })
    }

    /// Writes what is still buffered and closes the files; returns them and the counters
    /// user code kept.
    fn close(mut self) -> Result<(Vec<PartFile>, Counters)> {
        self.out.flush()?;
        let counters = self.out.take_counters();
        drop(self.out);
        let writer = Arc::into_inner(self.writer)
            .and_then(|w| w.into_inner().ok())
            .ok_or_else(|| Error::Internal("the part writer is still in use".into()))?;
        Ok((writer.close()?, counters))
    }
}

/// Rows of map output sampled per sampled split, for range partitioning.
const SAMPLE_ROWS_PER_SPLIT: usize = 10_000;
/// Splits sampled, spread evenly over the input.
const SAMPLE_SPLITS: usize = 16;

/// Samples the map output's keys (mapping the first rows of a few splits spread over the
/// input) and cuts them into `env.num_partitions` ranges.
pub fn sample_range_partitioner<J: Job>(
    job: &J,
    env: &TaskEnv<'_>,
    tasks: &[MapTask],
) -> Result<RangePartitioner> {
    let keyed = job.map_output();
    let key_columns = keyed.key_indices()?;
    let key_types: Vec<_> =
        key_columns.iter().map(|&i| keyed.schema().field(i).data_type().clone()).collect();
    let step = tasks.len().div_ceil(SAMPLE_SPLITS).max(1);
    let samples: Vec<Vec<RecordBatch>> = tasks
        .iter()
        .step_by(step)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|task| sample_task(job, env, task))
        .collect::<Result<_>>()?;
    let batches: Vec<RecordBatch> = samples.into_iter().flatten().collect();
    let keys = key_columns
        .iter()
        .map(|&c| {
            let columns: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            if columns.is_empty() {
                Ok(arrow::array::new_empty_array(keyed.schema().field(c).data_type()))
            } else {
                arrow::compute::concat(&columns)
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::arrow("sampled keys"))?;
    RangePartitioner::from_sample(&key_types, &keys, env.num_partitions)
}

fn sample_task<J: Job>(job: &J, env: &TaskEnv<'_>, task: &MapTask) -> Result<Vec<RecordBatch>> {
    let info = env.info(TaskId::map(task.index), format!("sample of {}", task.split.describe()), task.input);
    guarded(&info, || {
        let mut mapper = job.mapper(&info).map_err(user("mapper failed:"))?;
        let mut out = Emitter::new(job.map_output().schema().clone());
        let mut rows = 0;
        // Bad rows of a sample are found again (and kept) by the map task.
        let bad = BadRecords::new(env.bad_records.max());
        task.split.read_keeping_bad(env.io, env.read, &bad, &mut |batch| {
            let take = batch.num_rows().min(SAMPLE_ROWS_PER_SPLIT - rows);
            rows += take;
            mapper.map(&batch.slice(0, take), &mut out).map_err(user("mapper failed:"))?;
            Ok(rows < SAMPLE_ROWS_PER_SPLIT)
        })?;
        mapper.finish(&mut out).map_err(user("mapper failed:"))?;
        Ok(out.take_batches())
    })
}

/// Counts what a map task read: rows, bytes, and what a filter let it skip.
fn count_input(counters: &mut Counters, split: &Split, rows: u64, bytes: u64) {
    counters.add(MAP_INPUT_RECORDS, rows);
    counters.add(MAP_INPUT_BYTES, bytes);
    let skipped = split.skipped();
    if skipped.row_groups > 0 {
        counters.add(INPUT_ROW_GROUPS_SKIPPED, skipped.row_groups);
        counters.add(INPUT_BYTES_SKIPPED, skipped.bytes);
    }
    if skipped.rows > 0 {
        counters.add(INPUT_ROWS_SKIPPED, skipped.rows);
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;
    use serde::{Deserialize, Serialize};

    use super::check_planned_job;
    use crate::error::JobResult;
    use crate::job::{Job, KeyedSchema, Mapper, Reducer, TaskInfo};

    /// A secondary-sort job that may ask for total order.
    #[derive(clap::Args, Serialize, Deserialize)]
    struct Sessions {
        #[arg(long)]
        total: bool,
    }

    impl Job for Sessions {
        const NAME: &'static str = "sessions";
        const ABOUT: &'static str = "groups by user, sorted by time";
        fn map_output(&self) -> KeyedSchema {
            KeyedSchema::new([("user", DataType::Int64), ("ts", DataType::Int64)])
                .key(["user", "ts"])
                .group_by(1)
        }
        fn total_order(&self) -> bool {
            self.total
        }
        fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
            Err("not run".into())
        }
        fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
            Err("not run".into())
        }
    }

    #[test]
    fn grouping_by_part_of_the_key_with_total_order_is_refused_before_any_task() {
        assert!(check_planned_job(&Sessions { total: false }).is_ok());
        let refused = check_planned_job(&Sessions { total: true }).unwrap_err().to_string();
        assert!(refused.contains("cannot ask for total order"), "{refused}");
    }
}
