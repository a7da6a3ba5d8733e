//! One runner behind every job binary ([`crate::main`]) and every pipeline round
//! ([`crate::pipeline::main`]): [`run`] runs a planned job in this process or submits it to
//! a cluster, and `serve_tasks` plays the binary's roles on a worker.

use std::process::ExitCode;
use std::time::Duration;

use crate::cluster::payload::TaskFile;
use crate::cluster::submit::{Submission, Submitted, submit};
use crate::config::RunConfig;
use crate::error::Result;
use crate::ids::JobId;
use crate::job::{Counters, Job};
use crate::local::run_local;
use crate::output::Manifest;
use crate::progress::Progress;

/// What a finished job reports, in every mode ([`run`] returns it in
/// [`Submitted::Finished`]).
///
/// ```
/// # use gristmill::config::RunConfig;
/// # use gristmill::progress::Progress;
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
/// use gristmill::local::run_local;
/// use gristmill::run::JobReport;
///
/// let dir = tempfile::tempdir()?;
/// let input = dir.path().join("words.txt");
/// std::fs::write(&input, "to be or\nnot to be\n")?;
/// let config = RunConfig::new(vec![input.display().to_string()], dir.path().join("out").display().to_string())
///     .with_threads(2);
/// let report: JobReport = run_local(&WordCount {}, &config, &Progress::default())?;
/// // Four distinct words out of six, read from one file by one map task.
/// assert_eq!(report.manifest.rows, 4);
/// assert_eq!((report.input_files, report.map_tasks), (1, 1));
/// assert_eq!(report.counters().get("map_output_records"), 6);
/// assert_eq!(report.manifest.job_id, report.job_id.as_str());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

/// Where a job runs.
///
/// ```
/// use gristmill::cluster::submit::Submission;
/// use gristmill::progress::Progress;
/// use gristmill::run::Mode;
///
/// /// On the cluster `--driver` named, else in this process.
/// fn mode<'a>(cluster: Option<&'a Submission>, progress: &'a Progress) -> Mode<'a> {
///     cluster.map_or(Mode::Local(progress), Mode::Cluster)
/// }
///
/// let progress = Progress::default();
/// assert!(matches!(mode(None, &progress), Mode::Local(_)));
/// ```
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// In this process, counting progress in `Progress` (local mode).
    Local(&'a Progress),
    /// On the cluster a submission names.
    Cluster(&'a Submission),
}

/// Runs `job` with `config` in `mode`: both plan it with the same
/// [`plan_job`](crate::plan::plan_job); locally it ends committed, on a cluster committed or
/// detached.
///
/// ```
/// # use gristmill::job::record::{map_lines, record_schema, reduce_records};
/// # use gristmill::prelude::*;
/// use gristmill::cluster::submit::Submitted;
/// use gristmill::config::RunConfig;
/// use gristmill::progress::Progress;
/// use gristmill::run::{Mode, run};
///
/// #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// struct WordCount {}
///
/// impl Job for WordCount {
///     const NAME: &'static str = "wordcount";
///     const ABOUT: &'static str = "Counts words";
///     fn map_output(&self) -> KeyedSchema {
///         record_schema::<str, u64>("word", "count")
///     }
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
/// let dir = tempfile::tempdir()?;
/// let input = dir.path().join("words.txt");
/// std::fs::write(&input, "a b a\nc a\n")?;
/// let output = dir.path().join("counts");
/// let config = RunConfig::new(vec![input.display().to_string()], output.display().to_string())
///     .with_threads(2)
///     .with_reducers(2);
/// let progress = Progress::default();
/// let Submitted::Finished(report) = run(&WordCount {}, &config, Mode::Local(&progress))? else {
///     unreachable!("a local run ends committed, never detached")
/// };
/// assert_eq!(report.manifest.rows, 3); // a, b and c
/// assert_eq!(report.manifest.files.len(), 2); // a part file per reducer
/// assert!(output.join("_SUCCESS").is_file());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run<J: Job>(job: &J, config: &RunConfig, mode: Mode<'_>) -> Result<Submitted> {
    match mode {
        Mode::Local(progress) => run_local(job, config, progress).map(Submitted::Finished),
        Mode::Cluster(how) => submit(job, config, how),
    }
}

/// Runs a task of the job a task names, `None` when the binary has no such job.
pub(crate) type RunTaskOf = fn(&str, &TaskFile) -> Option<ExitCode>;

/// Plays a binary's roles on a worker, if it was started in one: an executor serving
/// attempts, or a task process running one. `None`: it was started by a user.
pub(crate) fn serve_tasks(binary: &str, run_task: RunTaskOf) -> Option<ExitCode> {
    if crate::cluster::executor::executor_role() {
        return Some(crate::cluster::executor::runner::serve(&move |task| {
            run_task(&task.job.job_name, task).is_some()
        }));
    }
    let source = task_role_arg()?;
    let task = match crate::cluster::task::read_task(&source) {
        Ok(task) => task,
        Err(code) => return Some(code),
    };
    let name = task.job.job_name.clone();
    Some(run_task(&name, &task).unwrap_or_else(|| {
        eprintln!("error: {binary} has no job named {name:?} (see Pipeline::run_task)");
        ExitCode::from(2)
    }))
}

/// `<job> __gristmill-task -`: the hidden role workers run tasks in; returns where the task
/// spec comes from (`-`: stdin, the only source [`crate::cluster::task::read_task`] takes).
pub(crate) fn task_role_arg() -> Option<std::ffi::OsString> {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(role), Some(source)) if role == crate::cluster::TASK_ROLE_ARG => Some(source),
        _ => None,
    }
}
