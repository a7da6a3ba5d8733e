//! The job API: what a job author implements.
//!
//! A [`Job`] declares its input ([`InputSpec`]), the keyed schema of its map output
//! ([`KeyedSchema`]), and builds a [`Mapper`] per map task and a [`Reducer`] per reduce task,
//! plus an optional combiner and partitioner. Mappers and reducers work on Arrow
//! [`RecordBatch`]es (the batch level); [`record`] adapts plain closures over typed keys and
//! values (the record level) to the same traits.

mod emitter;
mod group;
mod identity;
mod planning;
pub mod record;
pub mod rows;
mod schema;
pub mod schema_serde;
mod side;

pub use emitter::{BatchSink, Counters, Emitter};
pub use group::{Groups, KeyGroup};
pub use identity::{IdentityMapper, IdentityReducer};
pub use planning::PlanContext;
pub(crate) use planning::planned;
pub use schema::KeyedSchema;
pub use side::{BROADCAST_LIMIT_BYTES, Broadcasts, SideInputs};
// What a job reads: owned by `input`, whose readers consume it, and part of the job API.
pub use crate::input::{InputSpec, ParquetColumn, TextShape};

use arrow::array::RecordBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::JobResult;
use crate::ids::{AttemptId, JobId, TaskId};
use crate::partition::Partitioner;

/// A MapReduce job: its parameters are the implementing struct's fields.
///
/// The struct is parsed from the command line (it is a `clap::Args`) and serialized into
/// every task (it is `Serialize + DeserializeOwned`), so a task in another process rebuilds
/// exactly the job the user launched.
///
/// Only [`Job::map_output`], [`Job::mapper`] and [`Job::reducer`] are required; every other
/// method has a default. A batch-level job that counts the rows of a Parquet input per
/// value of one column (`select COLUMN, count(*) ... group by 1`):
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, UInt64Array};
/// use gristmill::arrow::datatypes::UInt64Type;
/// use gristmill::prelude::*;
///
/// #[derive(gristmill::clap::Args, gristmill::serde::Serialize, gristmill::serde::Deserialize)]
/// #[serde(crate = "gristmill::serde")]
/// struct CountBy {
///     /// The column to count by (a Utf8 column of the input).
///     #[arg(long)]
///     by: String,
/// }
///
/// /// Emits (value, 1) for every row.
/// struct Ones;
///
/// impl Mapper for Ones {
///     fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
///         let ones = UInt64Array::from(vec![1; batch.num_rows()]);
///         let columns = vec![batch.column(0).clone(), Arc::new(ones) as _];
///         out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
///     }
/// }
///
/// /// Sums the ones of each group (also the combiner).
/// struct Sum;
///
/// impl Reducer for Sum {
///     fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
///         let total: u64 = group.column(1).as_primitive::<UInt64Type>().values().iter().sum();
///         let count = UInt64Array::from(vec![total]);
///         let columns = vec![group.key().column(0).clone(), Arc::new(count) as _];
///         out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
///     }
/// }
///
/// impl Job for CountBy {
///     const NAME: &'static str = "count-by";
///     const ABOUT: &'static str = "Counts rows per value of a column";
///
///     fn validate(&self) -> JobResult<()> {
///         if self.by.is_empty() { Err("--by names no column".into()) } else { Ok(()) }
///     }
///     fn input(&self) -> InputSpec {
///         InputSpec::text_lines().with_parquet_columns([(self.by.as_str(), DataType::Utf8)])
///     }
///     fn map_output(&self) -> KeyedSchema {
///         KeyedSchema::new([(self.by.as_str(), DataType::Utf8), ("count", DataType::UInt64)])
///     }
///     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
///         Ok(Box::new(Ones))
///     }
///     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
///         Ok(Box::new(Sum))
///     }
///     fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
///         Some(Box::new(Sum))
///     }
///     fn reducers(&self) -> Option<usize> {
///         Some(1) // one ordered part file
///     }
/// }
///
/// let job = CountBy { by: "country".into() };
/// assert!(job.validate().is_ok());
/// assert_eq!(job.map_output().key_indices()?, [0]);
/// # Ok::<(), gristmill::Error>(())
/// ```
///
/// `fn main() -> std::process::ExitCode { gristmill::main::<CountBy>() }` makes it a job
/// binary (see [`crate::main`]).
pub trait Job: clap::Args + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The job's name: the binary name shown in `--help`, logs and the manifest.
    const NAME: &'static str;
    /// One line on what the job computes, shown in `--help`.
    const ABOUT: &'static str;

    /// Checks the job's parameters before anything runs (e.g. compiles a pattern once).
    fn validate(&self) -> JobResult<()> {
        Ok(())
    }

    /// Reads what the job must know before it runs, once per job: in local mode before any
    /// task, in cluster mode in the submitting process before it submits (never in tasks,
    /// nor by a driver recovering the job). The job keeps what it learns in its own fields
    /// (`#[arg(skip)] #[serde(default)]`): they are serialized into every task, so
    /// [`Job::map_output`], [`Job::mapper`] and the others just read them. Larger values go
    /// to every task through [`PlanContext::broadcast`]. An error fails the job before any
    /// task runs, as a [`Job::validate`] error does.
    ///
    /// ```
    /// use gristmill::job::PlanContext;
    /// use gristmill::job::record::{map_lines, record_schema};
    /// use gristmill::prelude::*;
    ///
    /// /// Counts the lines of its input that contain the first line of `--needle-file`.
    /// #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
    /// struct CountNeedle {
    ///     #[arg(long)]
    ///     needle_file: String,
    ///     /// Read by `plan`.
    ///     #[arg(skip)]
    ///     #[serde(default)]
    ///     needle: String,
    /// }
    ///
    /// impl Job for CountNeedle {
    ///     const NAME: &'static str = "count-needle";
    ///     const ABOUT: &'static str = "Counts lines holding a needle read from a file";
    ///     fn plan(&mut self, ctx: &PlanContext) -> JobResult<()> {
    ///         let text = ctx.read(&self.needle_file)?;
    ///         let Some(first) = std::str::from_utf8(&text)?.lines().next() else {
    ///             return Err(format!("{} is empty", self.needle_file).into());
    ///         };
    ///         self.needle = first.to_owned();
    ///         Ok(())
    ///     }
    ///     fn map_output(&self) -> KeyedSchema {
    ///         record_schema::<str, u64>("needle", "lines")
    ///     }
    ///     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
    ///         let needle = self.needle.clone();
    ///         Ok(map_lines::<str, u64, _>(move |line, out| {
    ///             if line.contains(&needle) {
    ///                 out.emit(needle.as_str(), 1);
    ///             }
    ///             Ok(())
    ///         }))
    ///     }
    ///     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
    ///         Ok(Box::new(IdentityReducer))
    ///     }
    /// }
    /// ```
    fn plan(&mut self, _ctx: &PlanContext) -> JobResult<()> {
        Ok(())
    }

    /// What the mappers read from the `--input` flags.
    fn input(&self) -> InputSpec {
        InputSpec::text_lines()
    }

    /// The inputs of a job that names its own (e.g. the two sides of a join), each with
    /// its own spec; [`TaskInfo::input`] tells a mapper which one it reads. Empty (the
    /// default) means the `--input` flags, read as [`Job::input`].
    fn inputs(&self) -> Vec<JobInput> {
        Vec::new()
    }

    /// The schema of the map output and which of its columns are the key.
    fn map_output(&self) -> KeyedSchema;

    /// The schema of what reducers emit (and what the part files hold).
    /// Defaults to the map output's schema.
    fn output_schema(&self) -> arrow::datatypes::SchemaRef {
        self.map_output().schema().clone()
    }

    /// How part files are written (Parquet unless the job says otherwise).
    fn output_format(&self) -> crate::output::OutputFormat {
        crate::output::OutputFormat::Parquet
    }

    /// How Parquet part files are written: the codec and rows per row group (zstd and
    /// [`crate::output::DEFAULT_ROW_GROUP_ROWS`] unless the job says otherwise, e.g.
    /// `ParquetOutput::default().with_compression(Codec::Snappy)`). `--compression` and
    /// `--row-group-size`, when given, override it.
    fn parquet_output(&self) -> crate::output::ParquetOutput {
        crate::output::ParquetOutput::default()
    }

    /// A fixed number of reduce partitions, overriding `--reducers` (e.g. 1 for a small
    /// aggregate that must come out in one ordered file).
    ///
    /// `Some(0)` makes a map-only job (Hadoop's `setNumReduceTasks(0)`): each map task
    /// writes what its mapper emits, rows of [`Job::output_schema`], straight to its own
    /// part file, in the order emitted; nothing is sorted or shuffled and
    /// [`Job::reducer`] is never called.
    fn reducers(&self) -> Option<usize> {
        None
    }

    /// Asks for globally sorted output: the engine samples map-output keys and range
    /// partitions them, so partition `i`'s keys all precede partition `i + 1`'s
    /// (Hadoop's TotalOrderPartitioner, Spark's RangePartitioner).
    fn total_order(&self) -> bool {
        false
    }

    /// How reduce tasks receive their partition's rows: sorted into key groups (the
    /// default, Hadoop's contract) or in any order, for reducers that aggregate by hash.
    fn reduce_input(&self) -> ReduceInput {
        ReduceInput::Grouped
    }

    /// Builds the mapper of one map task.
    fn mapper(&self, task: &TaskInfo) -> JobResult<Box<dyn Mapper>>;

    /// Builds the reducer of one reduce task.
    fn reducer(&self, task: &TaskInfo) -> JobResult<Box<dyn Reducer>>;

    /// Builds a map-side combiner, if the reduction can be applied partially. It sees the
    /// groups of one map task's partition and must emit rows of the map-output schema,
    /// keeping each group's key.
    fn combiner(&self, _task: &TaskInfo) -> Option<Box<dyn Reducer>> {
        None
    }

    /// A line describing the result, printed on stdout after a successful run (for example
    /// grep's number of matches).
    fn describe_result(&self, _report: &crate::run::JobReport) -> Option<String> {
        None
    }

    /// Routes keys to reduce partitions; defaults to the stable hash partitioner.
    fn partitioner(&self) -> Option<Box<dyn Partitioner>> {
        None
    }
}

/// How a reduce task receives the rows of its partition ([`Job::reduce_input`]).
///
/// A reducer for [`ReduceInput::Unordered`] aggregates by hash in
/// [`Reducer::reduce_batch`] and emits in [`Reducer::finish`]; it must still take key groups
/// (a partition larger than the reduce budget arrives sorted):
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, StringArray, UInt64Array};
/// use gristmill::prelude::*;
///
/// /// Counts rows per word, in any order.
/// #[derive(Default)]
/// struct HashCount(BTreeMap<String, u64>);
///
/// impl Reducer for HashCount {
///     fn reduce_batch(&mut self, batch: &RecordBatch, _: &mut Emitter) -> JobResult<()> {
///         for word in batch.column(0).as_string::<i32>().iter().flatten() {
///             *self.0.entry(word.to_owned()).or_default() += 1;
///         }
///         Ok(())
///     }
///     fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
///         self.reduce_batch(&group.rows(), out)
///     }
///     fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
///         let words = StringArray::from_iter_values(self.0.keys());
///         let counts = UInt64Array::from_iter_values(self.0.values().copied());
///         out.emit(RecordBatch::try_new(out.schema().clone(), vec![Arc::new(words), Arc::new(counts)])?)
///     }
/// }
///
/// // In the job: `fn reduce_input(&self) -> ReduceInput { ReduceInput::Unordered }`.
/// let schema = KeyedSchema::new([("word", DataType::Utf8), ("count", DataType::UInt64)]);
/// let mut out = Emitter::new(schema.schema().clone());
/// let words = RecordBatch::try_from_iter([("word", Arc::new(StringArray::from(vec!["b", "a", "b"])) as _)])?;
/// let mut reducer = HashCount::default();
/// reducer.reduce_batch(&words, &mut out)?;
/// reducer.finish(&mut out)?;
/// let counts = out.take_batches();
/// assert_eq!(counts[0].column(1).as_primitive::<gristmill::arrow::datatypes::UInt64Type>().values(), &[1, 2]);
/// assert_eq!(ReduceInput::default(), ReduceInput::Grouped);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReduceInput {
    /// Sorted by key and cut into key groups, handed to [`Reducer::reduce_groups`]; the
    /// map side sorts and combines its output.
    #[default]
    Grouped,
    /// In any order, batch by batch, handed to [`Reducer::reduce_batch`] (Spark's hash
    /// aggregation): the map side only partitions its output, so nothing is sorted and
    /// the combiner is not run. Memory stays bounded: a partition larger than the reduce
    /// budget (what a map task buffers) is sorted on the reduce side instead and reduced
    /// by key groups, so such a reducer must take both kinds of input.
    Unordered,
}

/// What a task knows about itself, handed to the constructors of mappers and reducers.
///
/// A job with several inputs picks each map task's mapper by [`TaskInfo::input`]; messages
/// can name the split:
///
/// ```
/// use gristmill::prelude::*;
///
/// /// Builds the mapper of a map task of a job reading `users` (input 0) and `orders` (input 1).
/// fn mapper_for(task: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
///     match task.input {
///         0 | 1 => Ok(Box::new(IdentityMapper)),
///         other => Err(format!("{}: no input {other} (task {} of job {})", task.split, task.task, task.job_id).into()),
///     }
/// }
/// # let _ = mapper_for;
/// ```
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// The job run.
    pub job_id: JobId,
    /// The task.
    pub task: TaskId,
    /// Which try this is.
    pub attempt: AttemptId,
    /// The number of reduce partitions.
    pub num_partitions: usize,
    /// What the task processes, for messages (file and byte range, or partition).
    pub split: String,
    /// For map tasks: which of the job's inputs the split belongs to.
    pub input: usize,
    /// What the task may read besides its split: the plan's broadcast values, the
    /// engine's I/O runtime and the job's storage options.
    pub side: SideInputs,
}

impl TaskInfo {
    /// The value the job's [`Job::plan`] broadcast under `name` (see
    /// [`PlanContext::broadcast`]).
    ///
    /// Each call builds a new `T` from the value's JSON (a deserialization, allocations
    /// and all): fetch it once per task in [`Job::mapper`] (or [`Job::reducer`]) and keep
    /// it in the mapper, never per record, as `wordcount-stopwords` does
    /// (`jobs/src/stopwords.rs`).
    pub fn broadcast<T: DeserializeOwned>(&self, name: &str) -> JobResult<T> {
        self.side.broadcasts.get(name)
    }

    /// Runs `future` on the engine's I/O runtime, for a task that reads side files itself
    /// (with [`TaskInfo::storage_options`]); an error where the task has no runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> JobResult<F::Output> {
        Ok(self.io()?.block_on(future))
    }

    /// The engine's I/O runtime (e.g. for [`crate::input::Split::read`] of side files).
    pub fn io(&self) -> JobResult<&tokio::runtime::Handle> {
        self.side.io.as_ref().ok_or_else(|| "this task was built without an I/O runtime".into())
    }

    /// The job's object-store options.
    pub fn storage_options(&self) -> &crate::storage::StorageOptions {
        &self.side.storage
    }
}

/// One input of a job with several.
///
/// ```
/// use gristmill::prelude::*;
///
/// // What `Job::inputs` returns for a join of Parquet users with CSV orders.
/// let inputs = vec![
///     JobInput { paths: vec!["data/users/".into()], spec: InputSpec::text_lines().with_parquet_columns([("id", DataType::Int64)]) },
///     JobInput { paths: vec!["data/orders/*.csv".into()], spec: InputSpec::text_lines() },
/// ];
/// assert_eq!(inputs[1].paths, ["data/orders/*.csv"]);
/// ```
#[derive(Clone, Debug)]
pub struct JobInput {
    /// Files, directories, globs or URLs.
    pub paths: Vec<String>,
    /// How to read them.
    pub spec: InputSpec,
}

/// Turns input batches into map-output batches.
///
/// A batch-level mapper works on whole Arrow batches (the fast path); the record level
/// ([`record::map_lines`], [`rows::map_rows`]) builds one from a closure. A mapper can be
/// tried on a batch of its own with an [`Emitter`]:
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{Array, AsArray, StringArray, UInt64Array};
/// use gristmill::prelude::*;
///
/// /// Emits (line, length in bytes) for every non-empty line.
/// struct LineLengths;
///
/// impl Mapper for LineLengths {
///     fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
///         let lines = batch.column(0).as_string::<i32>();
///         let kept: StringArray = lines.iter().flatten().filter(|l| !l.is_empty()).map(Some).collect();
///         let lengths: UInt64Array = kept.iter().flatten().map(|l| l.len() as u64).collect();
///         out.count("lines", kept.len() as u64);
///         out.emit(RecordBatch::try_new(out.schema().clone(), vec![Arc::new(kept), Arc::new(lengths)])?)
///     }
/// }
///
/// let lines = RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(StringArray::from(vec!["ab", "", "c"]))])?;
/// let schema = KeyedSchema::new([("line", DataType::Utf8), ("bytes", DataType::UInt64)]);
/// let mut out = Emitter::new(schema.schema().clone());
/// let mut mapper = LineLengths;
/// mapper.map(&lines, &mut out)?;
/// mapper.finish(&mut out)?;
/// assert_eq!(out.take_batches()[0].num_rows(), 2);
/// assert_eq!(out.take_counters().get("lines"), 2);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub trait Mapper: Send {
    /// Maps one input batch, emitting rows of the map-output schema.
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()>;

    /// Called once after the last batch of the split (for in-mapper combining).
    fn finish(&mut self, _out: &mut Emitter) -> JobResult<()> {
        Ok(())
    }

    /// Offers the job's combiner to fold pairs in the mapper's memory as they are emitted
    /// (typed records with [`rows::fold_values`](crate::job::rows::fold_values) take it);
    /// engine plumbing that a mapper written by hand leaves alone. `memory_bytes` is what
    /// the mapper may hold for it.
    #[doc(hidden)]
    fn combine_in_memory(&mut self, _combiner: Box<dyn Reducer>, _memory_bytes: usize) {}
}

/// Turns the groups of one key into output rows.
///
/// [`Reducer::reduce`] sees one key's rows; a vectorized reducer overrides
/// [`Reducer::reduce_groups`] to handle a run of groups of one sorted batch at once:
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, StringArray, UInt64Array};
/// use gristmill::arrow::compute::take;
/// use gristmill::arrow::datatypes::UInt64Type;
/// use gristmill::prelude::*;
///
/// /// Sums the `count` column (1) per word (0).
/// struct SumCounts;
///
/// impl Reducer for SumCounts {
///     fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
///         let sum: u64 = group.column(1).as_primitive::<UInt64Type>().values().iter().sum();
///         out.emit(RecordBatch::try_new(out.schema().clone(), vec![group.key().column(0).clone(), Arc::new(UInt64Array::from(vec![sum]))])?)
///     }
///
///     fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
///         let counts = groups.batch().column(1).as_primitive::<UInt64Type>();
///         let sums: UInt64Array = (0..groups.len()).map(|i| groups.range(i).map(|r| counts.value(r)).sum::<u64>()).map(Some).collect();
///         let firsts = UInt64Array::from_iter_values(groups.starts().iter().map(|&s| s as u64));
///         let words = take(groups.batch().column(0), &firsts, None)?;
///         out.emit(RecordBatch::try_new(out.schema().clone(), vec![words, Arc::new(sums)])?)
///     }
/// }
///
/// let schema = KeyedSchema::new([("word", DataType::Utf8), ("count", DataType::UInt64)]);
/// let sorted = RecordBatch::try_new(
///     schema.schema().clone(),
///     vec![Arc::new(StringArray::from(vec!["a", "a", "b"])), Arc::new(UInt64Array::from(vec![2, 3, 1]))],
/// )?;
/// let mut out = Emitter::new(schema.schema().clone());
/// SumCounts.reduce_groups(&Groups::new(&sorted, &[0, 2], &[0]), &mut out)?;
/// let sums = out.take_batches();
/// assert_eq!(sums[0].column(1).as_primitive::<UInt64Type>().values(), &[5, 1]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub trait Reducer: Send {
    /// Reduces every row of one key.
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()>;

    /// Reduces a run of consecutive groups at once. The default calls [`Reducer::reduce`]
    /// per group; vectorized reducers override it.
    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        for group in groups.iter() {
            self.reduce(&group, out)?;
        }
        Ok(())
    }

    /// Reduces rows of the partition in any order, for jobs whose [`Job::reduce_input`] is
    /// [`ReduceInput::Unordered`]: the reducer keeps its state (a hash table of groups) and
    /// emits in [`Reducer::finish`]. Rows are handed over in map task order, each task's in
    /// the order it emitted them.
    fn reduce_batch(&mut self, _batch: &RecordBatch, _out: &mut Emitter) -> JobResult<()> {
        Err("this reducer takes key groups only, but its job asks for ReduceInput::Unordered".into())
    }

    /// Called once after the last group (or batch) of the partition.
    fn finish(&mut self, _out: &mut Emitter) -> JobResult<()> {
        Ok(())
    }

    /// A typed fold's table of pairs for a map task
    /// ([`rows::fold_values`](crate::job::rows::fold_values)); engine plumbing, `None` for
    /// any other reducer.
    #[doc(hidden)]
    fn into_pair_table(self: Box<Self>, _memory_bytes: usize) -> Option<Box<dyn std::any::Any + Send>> {
        None
    }
}
