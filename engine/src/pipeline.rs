//! Multi-round jobs: a [`Pipeline`] runs several MapReduce rounds in sequence, each round's
//! committed output feeding the next (iterative PageRank, a sampling pass before a sort).
//!
//! Intermediate rounds write to hidden scratch directories under the final output
//! (`<output>/_rounds/<name>`, skipped by input listing like every `_` name), removed when
//! the pipeline ends, whether it succeeds or fails.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, FromArgMatches, Parser};
use object_store::ObjectStoreExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::{RunArgs, init_cli, one_line};
use crate::cluster::payload::TaskFile;
use crate::cluster::submit::{Submission, Submitted};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::output::OutputDir;
use crate::progress::{Progress, ProgressReporter};
use crate::run::JobReport;
use crate::run::{Mode, run};
use crate::storage::{Location, StorageOptions};

/// The scratch directory's name under the final output.
const SCRATCH: &str = "_rounds";

/// A job binary that runs several rounds.
///
/// Word count, then how many words have each count: the second round reads the first's
/// committed Parquet output from a scratch directory.
///
/// ```no_run
/// use std::process::ExitCode;
///
/// use gristmill::cluster::payload::TaskFile;
/// use gristmill::job::record::{map_lines, record_schema, reduce_records};
/// use gristmill::job::rows::{map_rows, reduce_rows, row_schema, rows_input};
/// use gristmill::pipeline::{Pipeline, Rounds, run_task_of};
/// use gristmill::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(clap::Args, Serialize, Deserialize)]
/// struct WordCount {}
///
/// impl Job for WordCount {
///     const NAME: &'static str = "word-count";
///     const ABOUT: &'static str = "Counts words";
///     fn map_output(&self) -> KeyedSchema { record_schema::<str, u64>("word", "count") }
///     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
///         Ok(map_lines::<str, u64, _>(|line, out| {
///             line.split_whitespace().for_each(|w| out.emit(w, 1));
///             Ok(())
///         }))
///     }
///     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
///         Ok(reduce_records::<str, u64, str, u64, _>(|g, out| {
///             out.emit(g.key(), g.values().sum());
///             Ok(())
///         }))
///     }
/// }
///
/// /// A row of the first round's output.
/// #[derive(Deserialize)]
/// struct Counted { count: u64 }
///
/// #[derive(clap::Args, Serialize, Deserialize)]
/// struct CountHistogram {}
///
/// impl Job for CountHistogram {
///     const NAME: &'static str = "count-histogram";
///     const ABOUT: &'static str = "Words per count";
///     fn input(&self) -> InputSpec { rows_input::<Counted>() }
///     fn map_output(&self) -> KeyedSchema { row_schema::<u64, u64>() }
///     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
///         Ok(map_rows::<Counted, u64, u64, _>(|row, out| out.emit(row.count, 1)))
///     }
///     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
///         Ok(reduce_rows::<u64, u64, (u64, u64), _>(|count, words, out| out.emit((count, words.sum()))))
///     }
/// }
///
/// #[derive(clap::Args, Serialize, Deserialize)]
/// struct Histogram {}
///
/// impl Pipeline for Histogram {
///     const NAME: &'static str = "histogram";
///     const ABOUT: &'static str = "How many words occur once, twice, ...";
///
///     fn run(&self, rounds: &mut Rounds<'_>) -> gristmill::Result<()> {
///         let counts = rounds.scratch("counts");
///         rounds.run(&WordCount {}, rounds.inputs().to_vec(), &counts)?;
///         let output = rounds.output().to_owned();
///         rounds.run(&CountHistogram {}, vec![counts], &output)?;
///         Ok(())
///     }
///
///     fn run_task(job_name: &str, task: &TaskFile) -> Option<ExitCode> {
///         run_task_of::<WordCount>(job_name, task).or_else(|| run_task_of::<CountHistogram>(job_name, task))
///     }
/// }
///
/// fn main() -> ExitCode {
///     gristmill::pipeline::main::<Histogram>()
/// }
/// ```
pub trait Pipeline: Args + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The binary's name.
    const NAME: &'static str;
    /// One line on what it computes.
    const ABOUT: &'static str;

    /// Runs the rounds; the last one should write [`Rounds::output`].
    fn run(&self, rounds: &mut Rounds<'_>) -> Result<()>;

    /// Cluster mode: runs a task of the pipeline's job named `job_name` in this process
    /// (workers run pipeline binaries in task role). List every job type of the pipeline
    /// with [`run_task_of`]:
    /// `run_task_of::<RoundOne>(job_name, task).or_else(|| run_task_of::<RoundTwo>(job_name, task))`.
    /// The default knows no job: the pipeline then runs in local mode only.
    fn run_task(job_name: &str, task: &TaskFile) -> Option<ExitCode> {
        let _ = (job_name, task);
        None
    }
}

/// Runs `task` (the spec the worker piped in) if `job_name` is `J`'s; for
/// [`Pipeline::run_task`].
///
/// ```
/// # use std::process::ExitCode;
/// # use gristmill::cluster::payload::TaskFile;
/// # use gristmill::prelude::*;
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct Sample {}
/// # impl Job for Sample {
/// #     const NAME: &'static str = "sample";
/// #     const ABOUT: &'static str = "";
/// #     fn map_output(&self) -> KeyedSchema { KeyedSchema::new([("line", DataType::Utf8)]) }
/// #     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> { Ok(Box::new(IdentityMapper)) }
/// #     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> { Ok(Box::new(IdentityReducer)) }
/// # }
/// use gristmill::pipeline::run_task_of;
///
/// // The `Pipeline::run_task` of a pipeline whose rounds all run the job `Sample`.
/// fn run_task(job_name: &str, task: &TaskFile) -> Option<ExitCode> {
///     run_task_of::<Sample>(job_name, task)
/// }
/// # let _ = run_task;
/// ```
pub fn run_task_of<J: Job>(job_name: &str, task: &TaskFile) -> Option<ExitCode> {
    (job_name == J::NAME).then(|| crate::cluster::task::run::<J>(task))
}

/// Runs the rounds of a pipeline with the user's engine settings.
///
/// Handed to [`Pipeline::run`]; a loop of rounds, each reading the last one's output
/// (iterations until a fixed point, as `pagerank` runs them):
///
/// ```
/// # use gristmill::prelude::*;
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct Step {}
/// # impl Job for Step {
/// #     const NAME: &'static str = "step";
/// #     const ABOUT: &'static str = "";
/// #     fn map_output(&self) -> KeyedSchema { KeyedSchema::new([("line", DataType::Utf8)]) }
/// #     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> { Ok(Box::new(IdentityMapper)) }
/// #     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> { Ok(Box::new(IdentityReducer)) }
/// # }
/// use gristmill::pipeline::Rounds;
///
/// fn iterate(rounds: &mut Rounds<'_>, times: usize) -> gristmill::Result<()> {
///     let mut input = rounds.inputs().to_vec();
///     for i in 0..times {
///         let output = if i + 1 == times { rounds.output().to_owned() } else { rounds.scratch(&format!("step-{i}")) };
///         let report = rounds.run(&Step {}, input, &output)?;
///         tracing::info!(rows = report.manifest.rows, "step {i}");
///         input = vec![output];
///     }
///     assert_eq!(rounds.reports().len(), times);
///     Ok(())
/// }
/// # let _ = iterate;
/// ```
pub struct Rounds<'a> {
    base: RunConfig,
    progress: &'a Progress,
    reports: Vec<JobReport>,
    cluster: Option<Submission>,
}

impl<'a> Rounds<'a> {
    /// Rounds that run with `base`'s settings (threads, memory, ...) and end in its output.
    pub fn new(base: RunConfig, progress: &'a Progress) -> Self {
        Rounds { base, progress, reports: Vec::new(), cluster: None }
    }

    /// Rounds submitted to a cluster, one job after the other.
    pub fn on_cluster(mut self, submission: Submission) -> Self {
        self.cluster = Some(Submission { detach: false, ..submission });
        self
    }

    /// The `--input` flags, if the pipeline uses them.
    pub fn inputs(&self) -> &[String] {
        &self.base.inputs
    }

    /// The final output directory.
    pub fn output(&self) -> &str {
        &self.base.output
    }

    /// The object-store options every round's URLs are resolved with (`--storage-option`),
    /// for a pipeline that reads storage itself between rounds.
    pub fn storage_options(&self) -> &StorageOptions {
        &self.base.storage_options
    }

    /// True when the user allows reading outputs that did not commit (`--allow-uncommitted`),
    /// for a pipeline that lists its inputs itself between rounds.
    pub fn allow_uncommitted(&self) -> bool {
        self.base.allow_uncommitted
    }

    /// The input format the user forced (`--format`), if any, and the CSV options, for a
    /// pipeline that reads its input's schema itself
    /// ([`crate::input::inferred_schema`]).
    pub fn input_format(&self) -> (Option<crate::input::InputFormat>, crate::input::CsvOptions) {
        (self.base.format, self.base.csv)
    }

    /// The schema the user declared for CSV and JSON lines input (`--input-schema`), if any.
    pub fn input_schema(&self) -> Option<&arrow::datatypes::SchemaRef> {
        self.base.input_schema.as_ref()
    }

    /// A [`PlanContext`](crate::job::PlanContext) over the user's inputs and settings, for
    /// a pipeline that reads storage (a schema, a side file) before or between its rounds.
    pub fn plan_context(&self) -> Result<crate::job::PlanContext> {
        crate::job::PlanContext::with_own_runtime(&self.base)
    }

    /// A scratch output directory for an intermediate round.
    pub fn scratch(&self, name: &str) -> String {
        format!("{}/{SCRATCH}/{name}", self.base.output.trim_end_matches('/'))
    }

    /// Runs one round of `job` over `inputs` into `output` (scratch outputs are replaced;
    /// the final output follows `--overwrite`, `--output-format` and `--partition-by`).
    pub fn run<J: Job>(&mut self, job: &J, inputs: Vec<String>, output: &str) -> Result<&JobReport> {
        let mut config = self.base.clone();
        config.inputs = inputs;
        config.output = output.to_owned();
        config.overwrite = self.base.overwrite || output != self.base.output;
        if output != self.base.output {
            // Scratch rounds are read by the next round: the job's own layout.
            config.output_format = None;
            config.partition_by = Vec::new();
        }
        let mode = match &self.cluster {
            None => Mode::Local(self.progress),
            Some(how) => Mode::Cluster(how),
        };
        let report = match run(job, &config, mode)? {
            Submitted::Finished(report) => report,
            Submitted::Detached { job_id } => {
                return Err(Error::Config(format!(
                    "round {job_id} was detached; pipelines wait for each round"
                )));
            }
        };
        tracing::info!(
            round = self.reports.len(),
            job = J::NAME,
            rows = report.manifest.rows,
            "round committed"
        );
        self.reports.push(report);
        Ok(self.reports.last().expect("just pushed"))
    }

    /// The reports of the rounds run so far.
    pub fn reports(&self) -> &[JobReport] {
        &self.reports
    }
}

/// Runs `pipeline` with `config`: checks the final output first, then the rounds, then
/// removes the scratch directories.
///
/// What [`main`] does with the command line's flags; a program of one's own can run a
/// pipeline in its process:
///
/// ```no_run
/// # use gristmill::pipeline::{Pipeline, Rounds};
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct Histogram {}
/// # impl Pipeline for Histogram {
/// #     const NAME: &'static str = "histogram";
/// #     const ABOUT: &'static str = "";
/// #     fn run(&self, _: &mut Rounds<'_>) -> gristmill::Result<()> { Ok(()) }
/// # }
/// use gristmill::config::RunConfig;
/// use gristmill::pipeline::run_pipeline;
/// use gristmill::progress::Progress;
///
/// let config = RunConfig::new(vec!["data/text".into()], "out/histogram").with_threads(4);
/// let reports = run_pipeline(&Histogram {}, &config, &Progress::default(), None)?;
/// println!("{} rounds, {} rows", reports.len(), reports.last().map_or(0, |r| r.manifest.rows));
/// # Ok::<(), gristmill::Error>(())
/// ```
pub fn run_pipeline<P: Pipeline>(
    pipeline: &P,
    config: &RunConfig,
    progress: &Progress,
    cluster: Option<Submission>,
) -> Result<Vec<JobReport>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start a runtime: {e}")))?;
    let output = Location::parse_with(&config.output, &config.storage_options)?;
    runtime.block_on(OutputDir::new(output.clone()).prepare(config.overwrite))?;
    let mut rounds = Rounds::new(config.clone(), progress);
    if let Some(how) = cluster {
        rounds = rounds.on_cluster(how);
    }
    let result = pipeline.run(&mut rounds);
    let cleanup = runtime.block_on(remove_tree(&output.child(SCRATCH)));
    result?;
    cleanup?;
    Ok(rounds.reports)
}

async fn remove_tree(location: &Location) -> Result<()> {
    let objects = location.list().await?;
    for object in objects {
        match location.store().delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(Error::write(location.display(), Box::new(source))),
        }
    }
    if location.is_local() {
        let _ = std::fs::remove_dir_all(location.display());
    }
    Ok(())
}

#[derive(Parser)]
struct Cli<P: Pipeline> {
    #[command(flatten)]
    pipeline: P,
    #[command(flatten)]
    run: RunArgs,
}

/// The whole `main` of a pipeline binary: `fn main() -> ExitCode { gristmill::pipeline::main::<P>() }`.
///
/// The binary takes the pipeline's flags and the engine's (as a job binary does), and runs
/// the rounds locally or, with `--driver`, each on the cluster (see [`Pipeline`]):
///
/// ```no_run
/// # use gristmill::pipeline::{Pipeline, Rounds};
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct Histogram {}
/// # impl Pipeline for Histogram {
/// #     const NAME: &'static str = "histogram";
/// #     const ABOUT: &'static str = "";
/// #     fn run(&self, _: &mut Rounds<'_>) -> gristmill::Result<()> { Ok(()) }
/// # }
/// fn main() -> std::process::ExitCode {
///     gristmill::pipeline::main::<Histogram>()
/// }
/// ```
pub fn main<P: Pipeline>() -> ExitCode {
    init_cli();
    if let Some(code) = crate::run::serve_tasks(P::NAME, P::run_task) {
        return code;
    }
    let matches = Cli::<P>::command()
        .name(P::NAME)
        .bin_name(P::NAME)
        .about(P::ABOUT)
        .version(crate::VERSION)
        .get_matches();
    let cli = match Cli::<P>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let progress = Arc::new(Progress::default());
    let reporter = ProgressReporter::start(progress.clone(), cli.run.progress);
    let result = match cli.run.driver.as_deref().map(|driver| cli.run.submission(driver)).transpose() {
        Ok(cluster) => run_pipeline(&cli.pipeline, &cli.run.to_config(), &progress, cluster),
        Err(e) => Err(e),
    };
    drop(reporter);
    match result {
        Ok(reports) => {
            let seconds: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
            let rows = reports.last().map_or(0, |r| r.manifest.rows);
            eprintln!(
                "{}: {} rounds in {seconds:.2} s; committed {rows} rows to {}",
                P::NAME,
                reports.len(),
                cli.run.output
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
