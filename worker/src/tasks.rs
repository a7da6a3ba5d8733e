//! Running attempts as child processes of job binaries (`<binary> __gristmill-task -`),
//! one scratch directory each, and turning how they ended into reports.
//!
//! A task gets its spec ([`TaskFile`]: the job's settings, storage options and secret) on
//! its stdin, written into a pipe and closed, never in a file. The worker records the
//! secret of every job it runs a task of in its [`JobSecrets`], against which its shuffle
//! service serves the job's map output, and forgets it when the job's data is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use gristmill::cluster::TASK_ROLE_ARG;
use gristmill::cluster::payload::{JobPayload, MapOutputSource, MapSplit, TaskFile, TaskResult};
use gristmill::cluster::rpc::CERTS_DIR_ENV;
use gristmill::cluster::shuffle_service::{JobSecrets, is_safe_id};
use gristmill::cluster::task::TASK_SPEC_FROM_STDIN;
use gristmill::cluster::task_logs::{
    LOG_BYTES_LIMIT, Stream, keep_bounded, log_path, log_tail, remove_job_logs,
};
use gristmill::error::ErrorKind;
use gristmill::output::{STAGED_NOTES_ENV, Staged, StagedNote, read_staged_notes};
use gristmill::security::JobSecret;
use gristmill::shuffle::{remove_job_shuffle_dirs, restrict_shuffle_root};
use gristmill::storage::{Location, StorageOptions};
use gristmill_proto::v1::{
    AttemptKey, AttemptProgress, FailureKind, MapDone, ReduceDone, RunTask, StagedFile, TaskFailed, TaskKind,
    TaskReport, task_report,
};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::binaries::BinaryCache;
use crate::executors::{ExecutorAttempt, Executors, run_in_executor};
use crate::observe::{LiveTask, Observed};

/// The file in an attempt's work directory where its task process notes staged parts.
pub(crate) const STAGED_NOTES_FILE: &str = "staged-parts.jsonl";

/// Bytes of a task's stderr kept for a failure report.
pub(crate) const STDERR_TAIL_BYTES: usize = 4096;

type Key = (String, i32, u32, u32);

fn key_of(a: &AttemptKey) -> Key {
    (a.job_id.clone(), a.kind, a.index, a.attempt)
}

/// The worker's directories, and the secrets guarding the jobs' directories in its shuffle
/// directory.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// Map output served by the shuffle service (an absolute path), a directory per job
    /// named after its secret ([`gristmill::shuffle::job_shuffle_dir`]).
    pub shuffle: PathBuf,
    /// The secrets of the jobs this worker runs tasks of; give the same registry to the
    /// shuffle service ([`gristmill::cluster::shuffle_service::ShuffleService::new`]).
    pub secrets: JobSecrets,
    /// Per-attempt scratch directories.
    pub tasks: PathBuf,
    /// This host's id ([`gristmill::cluster::host_id`]).
    pub host_id: String,
    /// The certificates directory, given to task processes (`GRISTMILL_CERTS_DIR`) so
    /// reducers fetch over mutual TLS with the node certificate.
    pub certs_dir: Option<PathBuf>,
    /// Where task processes export their spans (`OTEL_EXPORTER_OTLP_ENDPOINT`), if anywhere.
    pub otlp_endpoint: Option<String>,
    /// Metrics, running task processes, readiness.
    pub observed: Observed,
    /// Each attempt's stdout and stderr, a directory per job
    /// ([`gristmill::cluster::task_logs`]).
    pub logs: PathBuf,
    /// The secrets of the jobs whose logs are kept (longer than their map output): give
    /// the same registry to the task log service.
    pub log_secrets: JobSecrets,
    /// How long a job's logs are kept after its data is dropped.
    pub log_retention: std::time::Duration,
    /// Memory one task process may keep in buffers and runs (the worker's limit over its
    /// slots), given to it as `GRISTMILL_TASK_MEMORY_LIMIT`.
    pub task_memory_limit: u64,
    /// The job executors attempts run in, or none: a task process per attempt
    /// (`--task-isolation process`).
    pub executors: Option<Executors>,
}

/// A finished attempt's report, with the part files it staged, if any: the parts are
/// discarded when the report never reaches a driver (the session ended first), so an
/// attempt the driver never heard of leaves no staging file or open upload behind.
pub struct Finished {
    /// What goes to the driver.
    pub report: TaskReport,
    staged: Vec<StagedOutput>,
}

/// Where a finished attempt's part file is staged.
struct StagedOutput {
    output: String,
    options: StorageOptions,
    name: String,
    staged: Staged,
}

impl Finished {
    /// The report could not be delivered: discards the staged parts. Best effort, logged.
    pub async fn undelivered(self) {
        for staged in self.staged {
            staged.discard().await;
        }
    }
}

impl StagedOutput {
    /// Deletes the staging file or aborts the upload. Best effort, logged.
    async fn discard(self) {
        let StagedOutput { output, options, name, staged } = self;
        let discarded = match Location::parse_with(&output, &options) {
            Ok(dir) => match dir.descendant(&name) {
                Ok(target) => gristmill::output::discard(&target, &staged).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match discarded {
            Ok(()) => tracing::info!(part = %name, "discarded a staged part nobody will commit"),
            Err(e) => tracing::warn!(part = %name, error = %e, "could not discard a staged part"),
        }
    }
}

struct Running {
    job_id: String,
    attempt: AttemptKey,
    kill: Option<oneshot::Sender<()>>,
}

/// The attempts this worker runs.
pub struct Tasks {
    running: HashMap<Key, Running>,
    /// Each job's settings, as its first attempt on this session brought them (later ones
    /// carry none), kept until the job's data is dropped.
    payloads: HashMap<String, Arc<JobPayload>>,
    binaries: Arc<BinaryCache>,
    dirs: Dirs,
    reports: mpsc::UnboundedSender<Finished>,
}

impl Tasks {
    /// No attempts yet; finished attempts' reports go to `reports`. The shuffle directory
    /// is made unlistable by other users ([`restrict_shuffle_root`]).
    pub fn new(binaries: Arc<BinaryCache>, dirs: Dirs, reports: mpsc::UnboundedSender<Finished>) -> Self {
        if let Err(e) = restrict_shuffle_root(&dirs.shuffle) {
            tracing::warn!(dir = %dirs.shuffle.display(), error = %e, "cannot restrict the shuffle directory");
        }
        Tasks { running: HashMap::new(), payloads: HashMap::new(), binaries, dirs, reports }
    }

    /// The attempts running now.
    pub fn running(&self) -> Vec<AttemptKey> {
        self.running.values().map(|r| r.attempt.clone()).collect()
    }

    /// The live counters the running attempts' task processes last wrote.
    pub fn progress(&self) -> Vec<AttemptProgress> {
        if !gristmill::cluster::live::enabled() {
            return Vec::new();
        }
        let live = self.dirs.observed.live.all().into_iter();
        live.filter_map(|task| {
            let counters = gristmill::cluster::live::read_live_counters(&task.work_dir)?;
            Some(AttemptProgress { attempt: Some(task.attempt), counters: counters.into_iter().collect() })
        })
        .collect()
    }

    /// Starts an attempt, recording its job's secret for the shuffle service.
    pub fn start(&mut self, run: RunTask) {
        let Some(attempt) = run.attempt.clone() else { return };
        if !is_safe_id(&attempt.job_id) {
            tracing::warn!(job = %attempt.job_id, "refusing a task with a malformed job id");
            return;
        }
        let job = self.job_payload(&attempt.job_id, &run.job_payload);
        let secret = JobSecret::from_string(run.job_secret.clone());
        self.dirs.secrets.insert(&attempt.job_id, &secret);
        self.dirs.log_secrets.insert(&attempt.job_id, &secret);
        let (kill_tx, kill_rx) = oneshot::channel();
        let key = key_of(&attempt);
        let running =
            Running { job_id: attempt.job_id.clone(), attempt: attempt.clone(), kill: Some(kill_tx) };
        self.running.insert(key, running);
        self.dirs.observed.metrics.attempt_started();
        let (binaries, dirs, reports) = (self.binaries.clone(), self.dirs.clone(), self.reports.clone());
        tokio::spawn(async move {
            let finished = run_attempt(run, job, &binaries, &dirs, kill_rx).await;
            if let Some(finished) = finished
                && let Err(closed) = reports.send(finished)
            {
                closed.0.undelivered().await;
            }
        });
    }

    /// The settings of job `job_id`: those `payload` holds (its first attempt here), else
    /// those kept from its first attempt.
    fn job_payload(&mut self, job_id: &str, payload: &[u8]) -> Result<Arc<JobPayload>, String> {
        if payload.is_empty() {
            let kept = self.payloads.get(job_id).cloned();
            return kept.ok_or_else(|| format!("the driver sent no settings of job {job_id} to this worker"));
        }
        self.dirs.observed.metrics.job_payload_received();
        let job: JobPayload =
            serde_json::from_slice(payload).map_err(|e| format!("the job payload does not parse: {e}"))?;
        let job = Arc::new(job);
        self.payloads.insert(job_id.to_owned(), job.clone());
        Ok(job)
    }

    /// Forgets an attempt whose report went out.
    pub fn finished(&mut self, attempt: &AttemptKey) {
        self.running.remove(&key_of(attempt));
    }

    /// Kills an attempt (no report follows).
    pub fn kill(&mut self, attempt: &AttemptKey) {
        if let Some(mut running) = self.running.remove(&key_of(attempt)) {
            running.kill.take().map(|k| k.send(()));
        }
    }

    /// Forgets a job's secret (its map output is served no more), kills its attempts and
    /// removes its map output and scratch space.
    pub fn drop_job(&mut self, job_id: &str) {
        if !is_safe_id(job_id) {
            return;
        }
        self.dirs.secrets.remove(job_id);
        self.payloads.remove(job_id);
        if let Some(executors) = &self.dirs.executors {
            executors.drop_job(job_id);
        }
        let doomed: Vec<AttemptKey> =
            self.running.values().filter(|r| r.job_id == job_id).map(|r| r.attempt.clone()).collect();
        for attempt in doomed {
            self.kill(&attempt);
        }
        if let Err(e) = remove_job_shuffle_dirs(&self.dirs.shuffle, job_id) {
            tracing::warn!(job = %job_id, error = %e, "could not remove a job's map output");
        }
        let scratch = self.dirs.tasks.join(job_id);
        if let Err(e) = std::fs::remove_dir_all(&scratch)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %scratch.display(), error = %e, "could not remove a job's data");
        }
        self.expire_logs(job_id);
    }

    /// Removes the job's task logs (and forgets its secret for them) after the retention
    /// time, unless another of its tasks ran here meanwhile.
    fn expire_logs(&self, job_id: &str) {
        let (dirs, job) = (self.dirs.clone(), job_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(dirs.log_retention).await;
            let fresh = std::fs::metadata(dirs.logs.join(&job))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age < dirs.log_retention);
            if !fresh {
                dirs.log_secrets.remove(&job);
                remove_job_logs(&dirs.logs, &job);
            }
        });
    }

    /// Kills every attempt (the session ended or the worker stops).
    pub fn kill_all(&mut self) {
        let all: Vec<AttemptKey> = self.running.values().map(|r| r.attempt.clone()).collect();
        for attempt in all {
            self.kill(&attempt);
        }
        if let Some(executors) = &self.dirs.executors {
            executors.kill_all();
        }
    }
}

/// Runs one attempt to its end; `None` if it was killed.
async fn run_attempt(
    run: RunTask,
    job: Result<Arc<JobPayload>, String>,
    binaries: &BinaryCache,
    dirs: &Dirs,
    kill: oneshot::Receiver<()>,
) -> Option<Finished> {
    let attempt = run.attempt.clone()?;
    let kind = if attempt.kind == TaskKind::Map as i32 { "m" } else { "r" };
    let work_dir =
        dirs.tasks.join(&attempt.job_id).join(format!("{kind}{:06}-a{}", attempt.index, attempt.attempt));
    let span = tracing::info_span!("worker attempt", job = %attempt.job_id, kind, index = attempt.index, attempt = attempt.attempt);
    gristmill::telemetry::adopt_parent(&span, Some(&run.trace_parent));
    let job = job.as_deref();
    let outcome = launch(&run, job, &attempt, binaries, dirs, &work_dir, kill).instrument(span).await;
    dirs.observed.live.ended(&attempt);
    let finished = match outcome {
        Ok(Some((result, tail))) => {
            let staged = job.map(|job| staged_outputs(job, &result)).unwrap_or_default();
            Some(Finished { report: report_of(&attempt, result, tail), staged })
        }
        Ok(None) => None,
        Err((message, stderr_tail)) => {
            // The worker's own failure to run the task (binary, spawn): no typed kind.
            let failed = TaskResult::Failed { retryable: true, kind: None, message };
            Some(Finished { report: report_of(&attempt, failed, stderr_tail), staged: Vec::new() })
        }
    };
    let metrics = &dirs.observed.metrics;
    match finished.as_ref().map(|f| (&f.report.result, &f.report.counters)) {
        None => metrics.attempt_finished("killed", &Default::default()),
        Some((Some(task_report::Result::Failed(_)), counters)) => {
            metrics.attempt_finished("failed", counters)
        }
        Some((_, counters)) => metrics.attempt_finished("succeeded", counters),
    }
    let reported: Vec<&str> =
        finished.iter().flat_map(|f| f.staged.iter()).map(|s| s.name.as_str()).collect();
    if let Ok(job) = job {
        discard_unreported(job, &work_dir, &reported).await;
    }
    let _ = tokio::fs::remove_dir_all(&work_dir).await;
    finished
}

/// Discards the part files the attempt noted as staged but did not report (it was killed,
/// crashed, or failed after staging): nobody else knows of them.
async fn discard_unreported(job: &JobPayload, work_dir: &Path, reported: &[&str]) {
    let notes = read_staged_notes(&work_dir.join(STAGED_NOTES_FILE));
    let orphans: Vec<StagedNote> =
        notes.into_iter().filter(|n| !reported.contains(&n.name.as_str())).collect();
    for StagedNote { name, staged } in orphans {
        let (output, options) = (job.output.clone(), job.storage_options.clone());
        StagedOutput { output, options, name, staged }.discard().await;
    }
}

/// The part files `result` says the attempt staged, and where.
fn staged_outputs(job: &JobPayload, result: &TaskResult) -> Vec<StagedOutput> {
    let TaskResult::PartWritten { part_file, staged, files, .. } = result else { return Vec::new() };
    let one = |name: &str, staged: &Staged| StagedOutput {
        output: job.output.clone(),
        options: job.storage_options.clone(),
        name: name.to_owned(),
        staged: staged.clone(),
    };
    if part_file.is_empty() {
        files.iter().map(|f| one(&f.name, &f.staged)).collect()
    } else {
        vec![one(part_file, staged)]
    }
}

type Failure = (String, String);

async fn launch(
    run: &RunTask,
    job: Result<&JobPayload, &String>,
    attempt: &AttemptKey,
    binaries: &BinaryCache,
    dirs: &Dirs,
    work_dir: &Path,
    kill: oneshot::Receiver<()>,
) -> Result<Option<(TaskResult, String)>, Failure> {
    let plain = |e: String| (e, String::new());
    let job = job.map_err(|e| plain(e.clone()))?;
    let binary = binaries.get(&run.binary_digest, &run.binary_sources).await.map_err(plain)?;
    // A task process runs in its work directory; an executor's attempt makes it when it
    // needs it (a map attempt mostly does not: see gristmill::cluster::task).
    if dirs.executors.is_none() {
        tokio::fs::create_dir_all(work_dir)
            .await
            .map_err(|e| plain(format!("{}: {e}", work_dir.display())))?;
    }
    let task_file = task_file(run, job, attempt, dirs, work_dir).map_err(plain)?;
    let stderr_path =
        log_path(&dirs.logs, attempt, Stream::Stderr).ok_or_else(|| plain("bad job id".into()))?;
    let log_dir = stderr_path.parent().unwrap_or(&dirs.logs).to_owned();
    tokio::fs::create_dir_all(&log_dir).await.map_err(|e| plain(format!("{}: {e}", log_dir.display())))?;
    // The memory the driver reserved for this attempt; 0 (a driver that did not say): the
    // share of a slot.
    let memory = if run.memory_bytes > 0 { run.memory_bytes } else { dirs.task_memory_limit };
    if let Some(executors) = &dirs.executors {
        let run = ExecutorAttempt { binary: &binary, task: task_file, stderr_log: stderr_path, dirs, memory };
        return run_in_executor(executors, run, attempt, kill).await;
    }
    let spec = task_file.to_json().map_err(plain)?;
    let mut child = match spawn_task(&binary, dirs, work_dir, memory) {
        Ok(child) => child,
        Err(e) => {
            return match crate::exec_error::diagnose(&binary, &e) {
                Some(message) => {
                    let failed =
                        TaskResult::Failed { retryable: false, kind: Some(ErrorKind::InvalidJob), message };
                    Ok(Some((failed, String::new())))
                }
                None => Err(plain(format!("cannot start {}: {e}", binary.display()))),
            };
        }
    };
    if let Some(pid) = child.id() {
        let work_dir = work_dir.to_owned();
        dirs.observed.live.started(LiveTask { attempt: attempt.clone(), pid, work_dir });
    }
    let stdin = child.stdin.take();
    let copiers = keep_logs(&mut child, dirs, attempt);
    let status = tokio::select! {
        status = async {
            feed_spec(stdin, spec).await;
            child.wait().await
        } => status.map_err(|e| plain(e.to_string()))?,
        _ = kill => {
            let _ = child.kill().await;
            return Ok(None);
        }
    };
    // The pipes end with the process (unless it left a child holding them: then not waited for).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), futures::future::join_all(copiers)).await;
    let tail = log_tail(&stderr_path, STDERR_TAIL_BYTES);
    match std::fs::read(&task_file.result_file) {
        Ok(bytes) if status.success() => match serde_json::from_slice(&bytes) {
            Ok(result) => Ok(Some((result, tail))),
            Err(e) => Err((format!("the task's result does not parse: {e}"), tail)),
        },
        _ => {
            let message = format!("the task process {}", describe_exit(status));
            let crashed = TaskResult::Failed { retryable: true, kind: Some(ErrorKind::Crashed), message };
            Ok(Some((crashed, tail)))
        }
    }
}

/// Copies the task's stdout and stderr into its bounded logs, until the pipes close.
fn keep_logs(child: &mut Child, dirs: &Dirs, attempt: &AttemptKey) -> Vec<tokio::task::JoinHandle<()>> {
    let mut copiers = Vec::new();
    if let (Some(out), Some(path)) = (child.stdout.take(), log_path(&dirs.logs, attempt, Stream::Stdout)) {
        copiers.push(tokio::spawn(keep_bounded(out, path, LOG_BYTES_LIMIT)));
    }
    if let (Some(err), Some(path)) = (child.stderr.take(), log_path(&dirs.logs, attempt, Stream::Stderr)) {
        copiers.push(tokio::spawn(keep_bounded(err, path, LOG_BYTES_LIMIT)));
    }
    copiers
}

/// Starts `<binary> __gristmill-task -` in `work_dir`, stdin, stdout and stderr pipes; the
/// task logs in the worker's format.
fn spawn_task(binary: &Path, dirs: &Dirs, work_dir: &Path, memory: u64) -> std::io::Result<Child> {
    task_process_command(binary, dirs, work_dir)
        .arg(TASK_ROLE_ARG)
        .arg(TASK_SPEC_FROM_STDIN)
        .env(STAGED_NOTES_ENV, work_dir.join(STAGED_NOTES_FILE))
        .env(gristmill::cluster::task::TASK_MEMORY_LIMIT_ENV, memory.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// `binary` run in `work_dir` with what every process of a job binary the worker starts
/// gets: the certificates directory, the OTLP endpoint, the worker's log format.
pub(crate) fn task_process_command(binary: &Path, dirs: &Dirs, work_dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .current_dir(work_dir)
        .env_remove(CERTS_DIR_ENV)
        .envs(dirs.certs_dir.iter().map(|dir| (CERTS_DIR_ENV, dir.as_os_str())))
        .envs(
            dirs.otlp_endpoint
                .iter()
                .map(|url| (gristmill::telemetry::ENDPOINT_ENV, std::ffi::OsStr::new(url))),
        )
        .env(gristmill::logging::LOG_FORMAT_ENV, gristmill::logging::format().as_str());
    command
}

/// Writes the task spec into the task's stdin and closes it. A task that exits without
/// reading it all is reported by its exit status, not here.
async fn feed_spec(stdin: Option<ChildStdin>, spec: Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let Some(mut stdin) = stdin else { return };
    if let Err(e) = stdin.write_all(&spec).await {
        tracing::debug!(error = %e, "the task did not read its spec");
    }
    // Dropping `stdin` closes the pipe: the task reads to its end.
}

fn task_file(
    run: &RunTask,
    job: &JobPayload,
    attempt: &AttemptKey,
    dirs: &Dirs,
    work_dir: &Path,
) -> Result<TaskFile, String> {
    let is_map = attempt.kind == TaskKind::Map as i32;
    let split: Option<MapSplit> = if is_map {
        Some(
            serde_json::from_slice(&run.split_payload)
                .map_err(|e| format!("the split does not parse: {e}"))?,
        )
    } else {
        None
    };
    let on_this_host = |host: &str| !host.is_empty() && host == dirs.host_id;
    let map_outputs = run
        .map_outputs
        .iter()
        .map(|m| MapOutputSource {
            map_task: m.map_task,
            attempt: m.attempt,
            worker: m.worker_id.clone(),
            address: m.shuffle_address.clone(),
            local_dir: on_this_host(&m.host_id).then(|| m.shuffle_dir.clone().into()),
        })
        .collect();
    Ok(TaskFile {
        job_id: attempt.job_id.clone(),
        job_secret: JobSecret::from_string(run.job_secret.clone()),
        is_map,
        index: attempt.index,
        attempt: attempt.attempt,
        job: job.clone(),
        split,
        map_outputs,
        shuffle_dir: dirs.shuffle.clone(),
        work_dir: work_dir.to_owned(),
        result_file: work_dir.join("result.json"),
        // The task's spans are children of this worker's (or, not exporting, the driver's).
        trace_parent: gristmill::telemetry::traceparent(&tracing::Span::current())
            .or_else(|| Some(run.trace_parent.clone()).filter(|t| !t.is_empty())),
        map_output_stays_on_host: run.map_output_stays_on_host,
    })
}

pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code} without a result"),
        None => "ended without a result".to_owned(),
    }
}

/// A staged part as the report carries it: an upload's id and part ids, or nothing for a
/// local staging file.
fn upload_of(staged: Staged) -> (String, Vec<String>) {
    match staged {
        Staged::LocalFile => (String::new(), Vec::new()),
        Staged::Upload { id, parts } => (id, parts),
    }
}

fn report_of(attempt: &AttemptKey, result: TaskResult, stderr_tail: String) -> TaskReport {
    let mut bad_records = Vec::new();
    let (result, counters) = match result {
        TaskResult::MapDone { output_bytes, counters, bad_records: bad } => {
            bad_records = bad;
            (task_report::Result::MapDone(MapDone { output_bytes }), counters)
        }
        TaskResult::PartWritten { part_file, rows, bytes, staged, counters, files, bad_records: bad } => {
            bad_records = bad;
            let (upload_id, upload_parts) = upload_of(staged);
            let files = files
                .into_iter()
                .map(|f| {
                    let (upload_id, upload_parts) = upload_of(f.staged);
                    StagedFile { name: f.name, rows: f.rows, bytes: f.bytes, upload_id, upload_parts }
                })
                .collect();
            let done = ReduceDone { part_file, rows, bytes, upload_id, upload_parts, files };
            (task_report::Result::ReduceDone(done), counters)
        }
        TaskResult::Failed { retryable, kind: error_kind, message } => {
            let kind = if retryable { FailureKind::Retryable } else { FailureKind::Fatal };
            let error_kind = error_kind.map(|k| k.as_str().to_owned()).unwrap_or_default();
            let failed =
                TaskFailed { kind: kind as i32, message, stderr_tail, error_kind, ..Default::default() };
            (task_report::Result::Failed(failed), Default::default())
        }
        TaskResult::FetchFailed { map_task, worker, message } => {
            let failed = TaskFailed {
                kind: FailureKind::FetchFailed as i32,
                message,
                stderr_tail,
                fetch_map_task: map_task,
                fetch_worker: worker,
                error_kind: String::new(),
            };
            (task_report::Result::Failed(failed), Default::default())
        }
    };
    // A JSON array of records the task process itself serialized once: it cannot fail.
    let bad_records = if bad_records.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&bad_records).unwrap_or_default()
    };
    TaskReport {
        attempt: Some(attempt.clone()),
        result: Some(result),
        counters: counters.into_iter().collect(),
        bad_records,
    }
}

#[cfg(test)]
mod tests {
    use gristmill::cluster::binary::BinaryStore;
    use gristmill::cluster::rpc::DriverEndpoint;
    use gristmill::ids::{AttemptId, JobId};
    use gristmill::shuffle::MapOutputFiles;

    use super::*;

    fn dirs(root: &Path) -> Dirs {
        let dirs = Dirs {
            shuffle: root.join("shuffle"),
            secrets: JobSecrets::new(),
            tasks: root.join("tasks"),
            host_id: String::new(),
            certs_dir: None,
            otlp_endpoint: None,
            observed: Observed::new(2),
            logs: root.join("logs"),
            log_secrets: JobSecrets::new(),
            log_retention: std::time::Duration::from_secs(3600),
            task_memory_limit: 1 << 30,
            executors: None,
        };
        std::fs::create_dir_all(&dirs.shuffle).unwrap();
        std::fs::create_dir_all(&dirs.tasks).unwrap();
        dirs
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_spec_goes_through_stdin_and_never_into_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let (dirs, work_dir) = (dirs(root.path()), root.path().join("work"));
        std::fs::create_dir_all(&work_dir).unwrap();
        // A stand-in job binary: records its arguments and what came on its stdin.
        let binary = root.path().join("job");
        let script = format!(
            "#!/bin/sh\necho \"$@\" > {0}/args\ncat > {0}/stdin\n",
            root.path().join("seen").display()
        );
        std::fs::create_dir(root.path().join("seen")).unwrap();
        std::fs::write(&binary, script).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();

        // (Retried while another test thread's fork still holds the script open for writing.)
        let mut tries = 0;
        let mut child = loop {
            match spawn_task(&binary, &dirs, &work_dir, 1 << 30) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => tries += 1,
                started => break started.unwrap(),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let spec = br#"{"job_secret":"not-in-any-file"}"#.to_vec();
        feed_spec(child.stdin.take(), spec.clone()).await;
        assert!(child.wait().await.unwrap().success());

        let seen = root.path().join("seen");
        assert_eq!(std::fs::read_to_string(seen.join("args")).unwrap().trim(), "__gristmill-task -");
        assert_eq!(std::fs::read(seen.join("stdin")).unwrap(), spec, "the whole spec, then end of input");
        let files: Vec<_> = std::fs::read_dir(&work_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(files.is_empty(), "nothing in the task's directory: {files:?}");
    }

    #[test]
    fn a_failure_report_carries_the_error_s_kind() {
        let attempt = AttemptKey { job_id: "job-a".into(), kind: TaskKind::Map as i32, index: 0, attempt: 0 };
        let corrupt = TaskResult::Failed {
            retryable: false,
            kind: Some(ErrorKind::CorruptInput),
            message: "a.parquet".into(),
        };
        let Some(task_report::Result::Failed(failed)) = report_of(&attempt, corrupt, "tail".into()).result
        else {
            panic!("not a failure")
        };
        assert_eq!((failed.kind(), failed.error_kind.as_str()), (FailureKind::Fatal, "corrupt_input"));
        assert_eq!((failed.message.as_str(), failed.stderr_tail.as_str()), ("a.parquet", "tail"));
        let old = TaskResult::Failed { retryable: true, kind: None, message: "m".into() };
        let Some(task_report::Result::Failed(failed)) = report_of(&attempt, old, String::new()).result else {
            panic!("not a failure")
        };
        assert_eq!((failed.kind(), failed.error_kind.as_str()), (FailureKind::Retryable, ""));
    }

    #[tokio::test]
    async fn a_job_s_secret_is_recorded_with_its_tasks_and_forgotten_with_its_data() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let store = BinaryStore::open(root.path().join("binaries")).unwrap();
        let binaries =
            Arc::new(BinaryCache::new(store, DriverEndpoint::new("http://127.0.0.1:9", None).unwrap()));
        let (reports, _reports) = mpsc::unbounded_channel();
        let mut tasks = Tasks::new(binaries, dirs.clone(), reports);
        let secret = JobSecret::generate();
        let attempt = AttemptKey { job_id: "job-a".into(), kind: TaskKind::Map as i32, index: 0, attempt: 0 };
        tasks.start(RunTask {
            attempt: Some(attempt),
            job_secret: secret.expose().to_owned(),
            ..Default::default()
        });
        assert!(dirs.secrets.verify("job-a", secret.expose()).is_ok(), "recorded as the task starts");
        assert!(dirs.secrets.verify("job-a", "another secret").is_err());

        let files =
            MapOutputFiles::new(&dirs.shuffle, &JobId::from_string("job-a".into()), &secret, 0, AttemptId(0));
        std::fs::create_dir_all(files.data.parent().unwrap()).unwrap();
        std::fs::write(&files.data, b"map output").unwrap();
        tasks.drop_job("job-a");
        assert!(!dirs.secrets.contains("job-a"), "forgotten when the job's data is dropped");
        assert!(!files.data.exists());
        assert_eq!(std::fs::read_dir(&dirs.shuffle).unwrap().count(), 0);
    }
}
