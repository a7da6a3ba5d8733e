//! The task role of a job binary: `<job> __gristmill-task -` reads its [`TaskFile`] from
//! stdin (the worker writes it into a pipe and closes it: the spec holds the job's secret
//! and storage options, so it never touches a disk), runs one attempt of one map or reduce
//! task as a child process of the worker (so a crash takes down only the attempt), and
//! writes a [`TaskResult`] the worker reports to the driver.
//!
//! Map attempts write their output to the job's directory in the worker's shuffle
//! directory ([`write_map_output`]); reduce attempts fetch their partition of every map
//! output, presenting the job's secret, merge, reduce and write an attempt-unique part file
//! that the driver may commit. Map attempts of a map-only job write such a part file
//! themselves.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::fetch::{FetchError, FetchFailure, fetch_partition};
use super::live::{LiveSources, with_live_counters};
use super::payload::{MapOutputSource, TaskFile, TaskResult, WrittenFile};
use crate::error::{Error, Result};
use crate::exec::{
    BAD_RECORDS, SHUFFLE_FETCHED_BYTES, SHUFFLE_HOST_LOCAL_BYTES, SPILLED_BYTES, TaskEnv, is_map_only,
    run_map_only_task, run_map_task, run_reduce_task,
};
use crate::ids::{AttemptId, JobId};
use crate::input::{BadRecords, Split};
use crate::job::{Counters, Job};
use crate::output::{OutputDir, OutputLayout, PartFile};
use crate::plan::{MapTask, TaskResources};
use crate::progress::Progress;
use crate::security::JobSecret;
use crate::shuffle::{MapOutputFiles, Run, RunBudget, RunStore, SpillDir, write_map_output};
use crate::storage::Location;

/// The argument after [`TASK_ROLE_ARG`](super::TASK_ROLE_ARG) naming where the task spec
/// comes from: stdin, the only source.
pub const TASK_SPEC_FROM_STDIN: &str = "-";

/// The memory (bytes) this task process may keep in buffers and in-memory runs: what the
/// driver's scheduler reserved for the attempt on its worker (the job's per-task memory, or
/// the worker's `--memory` over its slots). It replaces the budget computed on the
/// submitting machine, so the task fits the worker it runs on.
pub const TASK_MEMORY_LIMIT_ENV: &str = "GRISTMILL_TASK_MEMORY_LIMIT";

/// The run budget and map buffer of a task given `limit` by its worker (the submitter's,
/// from the job, without one).
fn given_by_worker(run_budget: RunBudget, map_buffer_bytes: usize, limit: Option<u64>) -> (RunBudget, usize) {
    let Some(limit) = limit else { return (run_budget, map_buffer_bytes) };
    // As a local run shares its limit: a quarter buffers map output, half holds runs.
    let budget = RunBudget { owned: limit / 2, mapped: limit };
    (budget, (limit / 4).max(1 << 20) as usize)
}

/// Reads the task spec of the task role (`<job> __gristmill-task -`) from stdin, once;
/// on failure, says why on stderr and returns the exit code to end with.
pub fn read_task(source: &OsStr) -> Result<TaskFile, ExitCode> {
    let read = if source == TASK_SPEC_FROM_STDIN {
        read_task_within(std::io::stdin(), super::executor::runner::IDLE_EXIT)
    } else {
        Err(format!("task specs come on stdin (`{TASK_SPEC_FROM_STDIN}`), not from {}", source.display()))
    };
    read.map_err(|e| {
        eprintln!("error: cannot read the task spec: {e}");
        ExitCode::from(2)
    })
}

/// Reads a task spec from `input` to its end, within `limit`. The worker writes it right
/// after starting the process; a worker frozen (SIGSTOP) or hung in between would leave
/// the process blocked on its stdin for as long, holding its slot's memory: it gives up
/// instead, as an idle executor does.
fn read_task_within(
    input: impl Read + Send + 'static,
    limit: std::time::Duration,
) -> Result<TaskFile, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Nobody to tell when the wait is over.
        let _ = sender.send(read_task_from(input));
    });
    receiver.recv_timeout(limit).map_err(|_| format!("no whole task spec on stdin within {limit:?}"))?
}

/// Reads a task spec from `input` to its end.
fn read_task_from(mut input: impl Read) -> Result<TaskFile, String> {
    let mut json = Vec::new();
    input.read_to_end(&mut json).map_err(|e| format!("reading stdin: {e}"))?;
    TaskFile::from_json(&json)
}

/// Runs the attempt `task` describes; the exit code is 0 whenever a result was written
/// (even a failure), so only a crash exits otherwise.
///
/// In an executor ([`super::executor`]) it runs the attempt on the calling thread and
/// hands the result to the attempt's scope instead.
pub fn run<J: Job>(task: &TaskFile) -> ExitCode {
    if let Some(scope) = super::executor::scope::current() {
        tracing::info!(binary = J::NAME, "attempt started");
        let result = attempt_result::<J>(task);
        crate::telemetry::flush();
        if let TaskResult::Failed { message, .. } | TaskResult::FetchFailed { message, .. } = &result {
            match crate::logging::format() {
                crate::logging::LogFormat::Json => tracing::error!(error = %message, "attempt failed"),
                crate::logging::LogFormat::Text => {
                    scope.stderr.write(format!("error: {message}\n").as_bytes())
                }
            }
        } else {
            tracing::info!("attempt finished");
        }
        scope.deliver(result);
        return ExitCode::SUCCESS;
    }
    exit_when_orphaned();
    enter_task_span(task);
    tracing::info!(binary = J::NAME, "attempt started");
    let result = attempt_result::<J>(task);
    crate::telemetry::shutdown();
    if let TaskResult::Failed { message, .. } | TaskResult::FetchFailed { message, .. } = &result {
        match crate::logging::format() {
            // A JSON log stays one object a line.
            crate::logging::LogFormat::Json => tracing::error!(error = %message, "attempt failed"),
            crate::logging::LogFormat::Text => eprintln!("error: {message}"),
        }
    } else {
        tracing::info!("attempt finished");
    }
    let written = serde_json::to_vec(&result)
        .map_err(|e| e.to_string())
        .and_then(|json| write_atomically(&task.result_file, &json).map_err(|e| e.to_string()));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the task result {}: {e}", task.result_file.display());
            ExitCode::from(2)
        }
    }
}

/// Runs the attempt inside its exported span (a child of the worker's); a failure becomes
/// the result.
fn attempt_result<J: Job>(task: &TaskFile) -> TaskResult {
    let kind = if task.is_map { "map" } else { "reduce" };
    let span = tracing::info_span!("task process", job = %task.job_id, kind, index = task.index, attempt = task.attempt);
    crate::telemetry::adopt_parent(&span, task.trace_parent.as_deref());
    match span.in_scope(|| run_attempt::<J>(task)) {
        Ok(result) => result,
        Err(e) => {
            TaskResult::Failed { retryable: e.is_retryable(), kind: Some(e.kind()), message: e.to_string() }
        }
    }
}

/// Logs every line of this process inside a root span naming the job, task and attempt
/// (on every thread: the CPU pool's threads enter it as they start).
fn enter_task_span(task: &TaskFile) {
    let kind = if task.is_map { "map" } else { "reduce" };
    let task_name = format!("{kind} {}", task.index);
    // Target `gristmill::logging`: a span for log lines only, never exported (it never ends).
    let span = tracing::info_span!(target: "gristmill::logging", "task", job = %task.job_id, task = %task_name, attempt = task.attempt);
    crate::logging::enter_task_span(span);
    let pool = rayon::ThreadPoolBuilder::new().start_handler(|_| crate::logging::enter_root_span());
    if let Err(e) = pool.build_global() {
        tracing::debug!(error = %e, "the CPU pool was already started");
    }
}

/// A task whose worker died has been given to another worker: stop at once rather than
/// write output nobody will commit (the worker's death re-parents this process).
pub(crate) fn exit_when_orphaned() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
                if std::os::unix::process::parent_id() != parent {
                    eprintln!("error: the worker that started this task is gone; stopping");
                    std::process::exit(3);
                }
            }
        });
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn run_attempt<J: Job>(task: &TaskFile) -> Result<TaskResult> {
    let job: J = serde_json::from_value(task.job.job.clone())
        .map_err(|e| Error::InvalidJob(format!("the job's parameters do not parse: {e}")))?;
    // An executor's attempt uses the I/O runtime of the lane it holds; a task process its own.
    let own_io;
    let io = match super::executor::scope::current().and_then(|scope| scope.io.clone()) {
        Some(handle) => handle,
        None => {
            own_io = crate::local::io_runtime()?;
            own_io.handle().clone()
        }
    };
    let job_id = JobId::from_string(task.job_id.clone());
    // A map attempt with reducers keeps nothing in its work directory unless it spills (the
    // spill directory is made then) or runs long enough to write live counters (made by
    // their writer): making it for every attempt costs tiny ones more than their work.
    if !task.is_map || is_map_only(&job) {
        std::fs::create_dir_all(&task.work_dir)
            .map_err(|e| Error::local_disk(task.work_dir.display().to_string(), e))?;
    }
    let spill = Arc::new(SpillDir::lazy(&task.work_dir, &job_id));
    let worker_limit = match super::executor::scope::current() {
        // An executor's attempt: its thread's scope sizes its I/O buffers too.
        Some(scope) => scope.memory_limit,
        None => {
            let limit = std::env::var(TASK_MEMORY_LIMIT_ENV).ok().and_then(|v| v.parse().ok());
            // This process runs one task: its I/O buffers share that task's memory.
            let buffer = task.job.map_buffer_bytes as u64;
            crate::memory::set_task_memory(limit.unwrap_or(4 * buffer));
            crate::memory::fit_allocator_to(limit.unwrap_or(4 * buffer));
            limit
        }
    };
    let mut settings = task.job.task_settings(&job);
    (settings.run_budget, settings.map_buffer_bytes) =
        given_by_worker(settings.run_budget, settings.map_buffer_bytes, worker_limit);
    let store = Arc::new(RunStore::new(spill, settings.run_budget));
    let progress = Arc::new(Progress::default());
    // This attempt's own: the driver sums the bad records of the job's map tasks.
    let bad_records = BadRecords::new(settings.max_bad_records);
    let resources = TaskResources {
        io: &io,
        job_id: &job_id,
        attempt: AttemptId(task.attempt),
        bad_records: &bad_records,
        store: Some(&store),
        progress: &progress,
    };
    let env = settings.env(&job, &resources)?;
    let live = Arc::new(LiveSources::default());
    with_live_counters(&task.work_dir, &progress, &store, &live, || {
        if task.is_map { run_map(&job, &env, task) } else { run_reduce(&job, &env, task, &live) }
    })
}

fn run_map<J: Job>(job: &J, env: &TaskEnv<'_>, task: &TaskFile) -> Result<TaskResult> {
    let map_split = task.split.clone().ok_or_else(|| Error::Internal("a map task without a split".into()))?;
    let inputs = job.inputs();
    let spec = match inputs.get(map_split.input) {
        Some(input) => input.spec.clone(),
        None => job.input(),
    };
    let split = env.io.block_on(Split::from_spec(map_split.split, &spec, &task.job.storage_options))?;
    let map_task = MapTask { index: task.index as usize, input: map_split.input, split };
    if is_map_only(job) {
        let output = OutputDir::new(Location::parse_with(&task.job.output, &task.job.storage_options)?);
        let (parts, mut counters) = run_map_only_task(job, env, &map_task, &output)?;
        let bad_records = take_bad_records(env, &mut counters);
        return Ok(part_written(parts, &env.layout, &counters, bad_records));
    }
    let output = run_map_task(job, env, &map_task)?;
    let keyed = job.map_output();
    let files = MapOutputFiles::new(&task.shuffle_dir, env.job_id, &task.job_secret, task.index, env.attempt);
    let merge = env.merge_space();
    let compress = !task.map_output_stays_on_host;
    let index =
        write_map_output(&files, keyed.schema(), &keyed.key_indices()?, output.runs, &merge, compress)?;
    let mut counters = output.counters;
    counters.add(SPILLED_BYTES, env.store.spilled_bytes());
    let bad_records = take_bad_records(env, &mut counters);
    Ok(TaskResult::MapDone { output_bytes: index.bytes(), counters: to_map(&counters), bad_records })
}

/// The bad records the attempt's split held, counted in `counters` when they are allowed.
fn take_bad_records(env: &TaskEnv<'_>, counters: &mut Counters) -> Vec<crate::input::BadRecord> {
    if env.bad_records.max() == 0 {
        return Vec::new();
    }
    let rows = env.bad_records.take();
    counters.add(BAD_RECORDS, rows.len() as u64);
    rows
}

fn run_reduce<J: Job>(job: &J, env: &TaskEnv<'_>, task: &TaskFile, live: &LiveSources) -> Result<TaskResult> {
    let fetch_dir = task.work_dir.join("fetched");
    std::fs::create_dir_all(&fetch_dir).map_err(|e| Error::local_disk(fetch_dir.display().to_string(), e))?;
    let fetched =
        tracing::info_span!("fetch").in_scope(|| env.io.block_on(fetch_all(env.job_id, task, &fetch_dir)));
    let segments = match fetched {
        Ok(segments) => segments,
        Err(FetchFailure::Remote(FetchError { map_task, worker, message })) => {
            return Ok(TaskResult::FetchFailed { map_task, worker, message });
        }
        Err(FetchFailure::Local(e)) => return Err(e),
    };
    let local_bytes: u64 = segments.iter().filter(|s| s.host_local).map(|s| s.len).sum();
    let fetched_bytes: u64 = segments.iter().filter(|s| !s.host_local).map(|s| s.len).sum();
    live.shuffle_fetched_bytes.store(fetched_bytes, std::sync::atomic::Ordering::Relaxed);
    let runs = segments
        .iter()
        .filter(|segment| segment.len > 0)
        .map(|s| Run::Segment {
            path: Arc::new(s.path.clone()),
            offset: s.offset,
            len: s.len,
            crc32: s.crc32,
        })
        .collect();
    let output = OutputDir::new(Location::parse_with(&task.job.output, &task.job.storage_options)?);
    let (parts, mut counters) = match run_reduce_task(job, env, task.index as usize, runs, &output) {
        Ok(done) => done,
        Err(e) => return corrupt_map_output(&e, &segments, task).ok_or(e),
    };
    counters.add(SHUFFLE_FETCHED_BYTES, fetched_bytes);
    counters.add(SHUFFLE_HOST_LOCAL_BYTES, local_bytes);
    Ok(part_written(parts, &env.layout, &counters, Vec::new()))
}

/// The report of an attempt that wrote `parts`: the one part file, or, partitioned, each
/// of them (the summary fields then name none).
fn part_written(
    parts: Vec<PartFile>,
    layout: &OutputLayout,
    counters: &Counters,
    bad_records: Vec<crate::input::BadRecord>,
) -> TaskResult {
    if layout.partition_by.is_empty()
        && let [part] = &parts[..]
    {
        return TaskResult::PartWritten {
            part_file: part.name.clone(),
            rows: part.rows,
            bytes: part.bytes,
            staged: part.staged.clone(),
            counters: to_map(counters),
            files: Vec::new(),
            bad_records,
        };
    }
    TaskResult::PartWritten {
        part_file: String::new(),
        rows: parts.iter().map(|p| p.rows).sum(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        staged: crate::output::Staged::LocalFile,
        counters: to_map(counters),
        files: parts
            .into_iter()
            .map(|p| WrittenFile { name: p.name, rows: p.rows, bytes: p.bytes, staged: p.staged })
            .collect(),
        bad_records,
    }
}

/// Where one map output's partition is to be read: a byte range of a file.
struct PartitionBytes {
    path: PathBuf,
    offset: u64,
    len: u64,
    /// Read in place from a worker on this host, not fetched.
    host_local: bool,
    /// The checksum to verify while reading: map output read in place only (fetched copies
    /// are verified on arrival).
    crc32: Option<u32>,
}

/// A reduce that failed on map output read in place that did not match its checksum is a
/// fetch failure of that map: its output is recomputed, as a corrupt fetched copy's is.
fn corrupt_map_output(error: &Error, segments: &[PartitionBytes], task: &TaskFile) -> Option<TaskResult> {
    if error.kind() != crate::error::ErrorKind::CorruptMapOutput {
        return None;
    }
    let text = error.to_string();
    let (_, source) = segments
        .iter()
        .zip(&task.map_outputs)
        .find(|(segment, _)| segment.host_local && text.contains(&segment.path.display().to_string()))?;
    // Not the path: it names the job's shuffle directory, which stays out of logs.
    let message = format!("map task {}'s output read in place failed its CRC-32 check", source.map_task);
    Some(TaskResult::FetchFailed { map_task: source.map_task, worker: source.worker.clone(), message })
}

/// Finds this reducer's partition of every map output: in place, for map output of a worker
/// on this host, or fetched into `dir`, a few at a time.
async fn fetch_all(
    job: &JobId,
    task: &TaskFile,
    dir: &Path,
) -> std::result::Result<Vec<PartitionBytes>, FetchFailure> {
    use futures::StreamExt;
    let fetches = task.map_outputs.iter().map(|source| {
        let path = dir.join(format!("m{:06}-a{}.arrows", source.map_task, source.attempt));
        async move {
            if let Some(segment) = host_local_segment(job, &task.job_secret, source, task.index) {
                return Ok(segment);
            }
            let len = fetch_partition(job, &task.job_secret, source, task.index, &path).await?;
            Ok::<_, FetchFailure>(PartitionBytes { path, offset: 0, len, host_local: false, crc32: None })
        }
    });
    futures::stream::iter(fetches).buffered(4).collect::<Vec<_>>().await.into_iter().collect()
}

/// Partition `partition` of `source`'s map output, in place, when `source` is a worker on
/// this host and its output is complete (its index is written last). Anything else is
/// fetched: the worker may be gone, or its directory on another file system after all.
/// The output is looked for in the directory `secret` names: a task of another job, with
/// another secret, finds nothing there.
fn host_local_segment(
    job: &JobId,
    secret: &JobSecret,
    source: &MapOutputSource,
    partition: u32,
) -> Option<PartitionBytes> {
    let dir = source.local_dir.as_ref()?;
    let files = MapOutputFiles::new(dir, job, secret, source.map_task, AttemptId(source.attempt));
    let found = match files.read_index() {
        Ok(index) => {
            index.partitions.get(partition as usize).copied().ok_or("it has no such partition".into())
        }
        // The cause alone: the path names the job's directory, which stays out of logs.
        Err(Error::Shuffle { cause, .. }) => Err(cause),
        Err(e) => Err(e.to_string()),
    };
    match found {
        Ok(segment) => Some(PartitionBytes {
            path: files.data,
            offset: segment.offset,
            len: segment.len,
            host_local: true,
            crc32: Some(segment.crc32),
        }),
        Err(cause) => {
            tracing::info!(
                map_task = source.map_task,
                attempt = source.attempt,
                %cause,
                "reading map output on this host failed; fetching it instead"
            );
            None
        }
    }
}

fn to_map(counters: &Counters) -> BTreeMap<String, u64> {
    counters.iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_the_worker_gives_decides_the_budget_not_the_submitter_s() {
        let job = super::RunBudget { owned: 8 << 30, mapped: 16 << 30 };
        let (budget, buffer) = super::given_by_worker(job, 256 << 20, Some(1 << 30));
        assert_eq!((budget.owned, budget.mapped, buffer), (512 << 20, 1 << 30, 256 << 20));
        let small = super::RunBudget { owned: 1 << 20, mapped: 2 << 20 };
        let (budget, buffer) = super::given_by_worker(small, 4 << 20, Some(1 << 30));
        assert_eq!((budget.owned, budget.mapped, buffer), (512 << 20, 1 << 30, 256 << 20));
        let (budget, _) = super::given_by_worker(job, 1, None);
        assert_eq!(budget.owned, 8 << 30, "no worker limit: the job's own");
    }

    use super::*;
    use crate::shuffle::{MapOutputIndex, Segment};

    fn source(local_dir: &Path) -> MapOutputSource {
        MapOutputSource {
            map_task: 2,
            attempt: 0,
            worker: "w-1".into(),
            address: "127.0.0.1:9".into(),
            local_dir: Some(local_dir.to_owned()),
        }
    }

    #[test]
    fn host_local_reads_find_only_their_own_job_s_output() {
        let root = tempfile::tempdir().unwrap();
        let job = JobId::from_string("job-a".into());
        let (secret, other) = (JobSecret::generate(), JobSecret::generate());
        let files = MapOutputFiles::new(root.path(), &job, &secret, 2, AttemptId(0));
        std::fs::create_dir_all(files.data.parent().unwrap()).unwrap();
        std::fs::write(&files.data, b"0123456789").unwrap();
        let segments = vec![Segment::default(), Segment { offset: 4, len: 6, crc32: 0, rows: 1 }];
        std::fs::write(&files.index, serde_json::to_vec(&MapOutputIndex { partitions: segments }).unwrap())
            .unwrap();

        let found =
            host_local_segment(&job, &secret, &source(root.path()), 1).expect("found with the secret");
        assert_eq!((found.path, found.offset, found.len, found.host_local), (files.data.clone(), 4, 6, true));
        assert!(
            host_local_segment(&job, &other, &source(root.path()), 1).is_none(),
            "another secret finds nothing"
        );
        assert!(
            host_local_segment(&job, &JobSecret::from_string(String::new()), &source(root.path()), 1)
                .is_none()
        );
        assert!(host_local_segment(&job, &secret, &source(root.path()), 7).is_none(), "no such partition");
    }

    #[test]
    fn task_specs_come_whole_from_stdin_and_never_from_a_file() {
        let task = TaskFile {
            job_id: "job-a".into(),
            job_secret: JobSecret::from_string("the-secret".into()),
            is_map: true,
            index: 0,
            attempt: 0,
            job: serde_json::from_value(serde_json::json!({
                "job_name": "wordcount", "job": {}, "num_partitions": 1, "replace_invalid_utf8": false,
                "map_buffer_bytes": 1, "run_budget": {"owned": 1, "mapped": 1}, "output": "/o",
                "storage_options": [["aws_secret_access_key", "key-secret"]], "range_split_points": null
            }))
            .unwrap(),
            split: None,
            map_outputs: Vec::new(),
            shuffle_dir: "/s".into(),
            work_dir: "/w".into(),
            result_file: "/w/result.json".into(),
            trace_parent: None,
            map_output_stays_on_host: false,
        };
        let read = read_task_from(&task.to_json().unwrap()[..]).unwrap();
        assert_eq!(read.job_secret.expose(), "the-secret");
        assert_eq!(read.job.job_name, "wordcount");
        assert_eq!(
            read.job.storage_options.iter().collect::<Vec<_>>(),
            [("aws_secret_access_key", "key-secret")]
        );
        let shown = format!("{read:?}");
        assert!(!shown.contains("the-secret") && !shown.contains("key-secret"), "{shown}");
        assert!(read_task(OsStr::new("/w/task.json")).is_err(), "a path is refused");
        assert!(read_task_from(&b"{"[..]).is_err());
        // A worker that froze before writing it all: the process does not wait for good.
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut writer, &task.to_json().unwrap()[..40]).unwrap();
        let error = read_task_within(reader, std::time::Duration::from_millis(200)).unwrap_err();
        assert!(error.contains("no whole task spec"), "{error}");
        let whole = read_task_within(
            std::io::Cursor::new(task.to_json().unwrap()),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(whole.unwrap().job_id, "job-a");
    }
}
