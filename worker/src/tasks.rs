//! Running attempts as child processes of job binaries (`<binary> __gristmill-task
//! task.json`), one scratch directory each, and turning how they ended into reports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use gristmill::cluster::TASK_ROLE_ARG;
use gristmill::cluster::payload::{JobPayload, MapOutputSource, MapSplit, TaskFile, TaskResult};
use gristmill::cluster::shuffle_service::is_safe_id;
use gristmill_proto::v1::{
    AttemptKey, FailureKind, MapDone, ReduceDone, RunTask, TaskFailed, TaskKind, TaskReport, task_report,
};
use tokio::sync::{mpsc, oneshot};

use crate::binaries::BinaryCache;

/// Bytes of a task's stderr kept for a failure report.
const STDERR_TAIL_BYTES: u64 = 4096;

type Key = (String, i32, u32, u32);

fn key_of(a: &AttemptKey) -> Key {
    (a.job_id.clone(), a.kind, a.index, a.attempt)
}

/// The worker's directories.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// Map output served by the shuffle service (an absolute path).
    pub shuffle: PathBuf,
    /// Per-attempt scratch directories.
    pub tasks: PathBuf,
    /// This host's id ([`gristmill::cluster::host_id`]).
    pub host_id: String,
}

struct Running {
    job_id: String,
    attempt: AttemptKey,
    kill: Option<oneshot::Sender<()>>,
}

/// The attempts this worker runs.
pub struct Tasks {
    running: HashMap<Key, Running>,
    binaries: Arc<BinaryCache>,
    dirs: Dirs,
    reports: mpsc::UnboundedSender<TaskReport>,
}

impl Tasks {
    /// No attempts yet; finished attempts' reports go to `reports`.
    pub fn new(binaries: Arc<BinaryCache>, dirs: Dirs, reports: mpsc::UnboundedSender<TaskReport>) -> Self {
        Tasks { running: HashMap::new(), binaries, dirs, reports }
    }

    /// The attempts running now.
    pub fn running(&self) -> Vec<AttemptKey> {
        self.running.values().map(|r| r.attempt.clone()).collect()
    }

    /// Starts an attempt.
    pub fn start(&mut self, run: RunTask) {
        let Some(attempt) = run.attempt.clone() else { return };
        if !is_safe_id(&attempt.job_id) {
            tracing::warn!(job = %attempt.job_id, "refusing a task with a malformed job id");
            return;
        }
        let (kill_tx, kill_rx) = oneshot::channel();
        let key = key_of(&attempt);
        let running =
            Running { job_id: attempt.job_id.clone(), attempt: attempt.clone(), kill: Some(kill_tx) };
        self.running.insert(key, running);
        let (binaries, dirs, reports) = (self.binaries.clone(), self.dirs.clone(), self.reports.clone());
        tokio::spawn(async move {
            let report = run_attempt(run, &binaries, &dirs, kill_rx).await;
            if let Some(report) = report {
                let _ = reports.send(report);
            }
        });
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

    /// Kills a job's attempts and removes its map output and scratch space.
    pub fn drop_job(&mut self, job_id: &str) {
        if !is_safe_id(job_id) {
            return;
        }
        let doomed: Vec<AttemptKey> =
            self.running.values().filter(|r| r.job_id == job_id).map(|r| r.attempt.clone()).collect();
        for attempt in doomed {
            self.kill(&attempt);
        }
        for dir in [self.dirs.shuffle.join(job_id), self.dirs.tasks.join(job_id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a job's data");
            }
        }
    }

    /// Kills every attempt (the session ended or the worker stops).
    pub fn kill_all(&mut self) {
        let all: Vec<AttemptKey> = self.running.values().map(|r| r.attempt.clone()).collect();
        for attempt in all {
            self.kill(&attempt);
        }
    }
}

/// Runs one attempt to its end; `None` if it was killed.
async fn run_attempt(
    run: RunTask,
    binaries: &BinaryCache,
    dirs: &Dirs,
    kill: oneshot::Receiver<()>,
) -> Option<TaskReport> {
    let attempt = run.attempt.clone()?;
    let kind = if attempt.kind == TaskKind::Map as i32 { "m" } else { "r" };
    let work_dir =
        dirs.tasks.join(&attempt.job_id).join(format!("{kind}{:06}-a{}", attempt.index, attempt.attempt));
    let outcome = launch(&run, &attempt, binaries, dirs, &work_dir, kill).await;
    let report = match outcome {
        Ok(Some((result, tail))) => Some(report_of(&attempt, result, tail)),
        Ok(None) => None,
        Err((message, stderr_tail)) => {
            Some(report_of(&attempt, TaskResult::Failed { retryable: true, message }, stderr_tail))
        }
    };
    let _ = tokio::fs::remove_dir_all(&work_dir).await;
    report
}

type Failure = (String, String);

async fn launch(
    run: &RunTask,
    attempt: &AttemptKey,
    binaries: &BinaryCache,
    dirs: &Dirs,
    work_dir: &Path,
    kill: oneshot::Receiver<()>,
) -> Result<Option<(TaskResult, String)>, Failure> {
    let plain = |e: String| (e, String::new());
    let binary = binaries.get(&run.binary_digest).await.map_err(plain)?;
    tokio::fs::create_dir_all(work_dir).await.map_err(|e| plain(format!("{}: {e}", work_dir.display())))?;
    let task_file = task_file(run, attempt, dirs, work_dir).map_err(plain)?;
    let spec_path = work_dir.join("task.json");
    let json = serde_json::to_vec(&task_file).map_err(|e| plain(e.to_string()))?;
    tokio::fs::write(&spec_path, json).await.map_err(|e| plain(format!("{}: {e}", spec_path.display())))?;
    let stderr_path = work_dir.join("stderr.log");
    let stderr =
        std::fs::File::create(&stderr_path).map_err(|e| plain(format!("{}: {e}", stderr_path.display())))?;
    let mut child = tokio::process::Command::new(&binary)
        .arg(TASK_ROLE_ARG)
        .arg(&spec_path)
        .current_dir(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| plain(format!("cannot start {}: {e}", binary.display())))?;
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| plain(e.to_string()))?,
        _ = kill => {
            let _ = child.kill().await;
            return Ok(None);
        }
    };
    let tail = stderr_tail(&stderr_path);
    match std::fs::read(&task_file.result_file) {
        Ok(bytes) if status.success() => match serde_json::from_slice(&bytes) {
            Ok(result) => Ok(Some((result, tail))),
            Err(e) => Err((format!("the task's result does not parse: {e}"), tail)),
        },
        _ => Err((format!("the task process {}", describe_exit(status)), tail)),
    }
}

fn task_file(run: &RunTask, attempt: &AttemptKey, dirs: &Dirs, work_dir: &Path) -> Result<TaskFile, String> {
    let job: JobPayload = serde_json::from_slice(&run.job_payload)
        .map_err(|e| format!("the job payload does not parse: {e}"))?;
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
        is_map,
        index: attempt.index,
        attempt: attempt.attempt,
        job,
        split,
        map_outputs,
        shuffle_dir: dirs.shuffle.clone(),
        work_dir: work_dir.to_owned(),
        result_file: work_dir.join("result.json"),
    })
}

fn describe_exit(status: std::process::ExitStatus) -> String {
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

/// The last few KiB of a task's stderr, from a line start.
fn stderr_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(STDERR_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = if start > 0 { text.split_once('\n').map_or(&*text, |(_, rest)| rest) } else { &text };
    text.trim_end().to_owned()
}

fn report_of(attempt: &AttemptKey, result: TaskResult, stderr_tail: String) -> TaskReport {
    let (result, counters) = match result {
        TaskResult::MapDone { output_bytes, counters } => {
            (task_report::Result::MapDone(MapDone { output_bytes }), counters)
        }
        TaskResult::PartWritten { part_file, rows, bytes, counters } => {
            (task_report::Result::ReduceDone(ReduceDone { part_file, rows, bytes }), counters)
        }
        TaskResult::Failed { retryable, message } => {
            let kind = if retryable { FailureKind::Retryable } else { FailureKind::Fatal };
            let failed = TaskFailed { kind: kind as i32, message, stderr_tail, ..Default::default() };
            (task_report::Result::Failed(failed), Default::default())
        }
        TaskResult::FetchFailed { map_task, worker, message } => {
            let failed = TaskFailed {
                kind: FailureKind::FetchFailed as i32,
                message,
                stderr_tail,
                fetch_map_task: map_task,
                fetch_worker: worker,
            };
            (task_report::Result::Failed(failed), Default::default())
        }
    };
    TaskReport {
        attempt: Some(attempt.clone()),
        result: Some(result),
        counters: counters.into_iter().collect(),
    }
}
