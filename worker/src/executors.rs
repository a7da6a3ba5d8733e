//! Executors: one long-lived process per job on this worker (`<binary> __gristmill-executor`,
//! [`gristmill::cluster::executor`]) running the job's attempts on its threads. The first
//! attempt of a job here starts it; each attempt is then a frame written into its stdin,
//! answered by a frame with the attempt's result.
//!
//! * An executor that dies (crash, `kill -9`) fails the attempts it was running as a
//!   crashed task process would (retryable); the job's next attempt starts a new one.
//! * Killing one attempt (a backup's loser, preemption, cancel) asks it to stop; it checks
//!   between batches. One that has not stopped after [`KILL_GRACE`] (it is stuck in user
//!   code) takes its executor down with it: the job's other attempts here then fail and are
//!   retried. Stopping a thread from outside is not possible in Rust, and waiting longer
//!   would hold the slot the scheduler just freed.
//! * The worker closes an executor's stdin when the job's data is dropped (the job ended)
//!   or after [`IDLE_CLOSE`] without attempts; it exits once its running attempts end (or on
//!   its own when its worker is gone or frozen: see the executor's idle timeout).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use gristmill::cluster::executor::protocol::{
    AttemptRef, FromExecutor, RunAttempt, ToExecutor, encode, read_frame_async,
};
use gristmill::cluster::executor::{EXECUTOR_MEMORY_LIMIT_ENV, EXECUTOR_ROLE_ARG};
use gristmill::cluster::payload::{TaskFile, TaskResult};
use gristmill::cluster::task_logs::{LOG_BYTES_LIMIT, keep_bounded, log_tail};
use gristmill::error::ErrorKind;
use gristmill::job::Broadcasts;
use gristmill::metrics::WorkerMetrics;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Notify, oneshot};

use crate::observe::LiveTask;
use crate::tasks::{Dirs, STAGED_NOTES_FILE, STDERR_TAIL_BYTES, describe_exit, task_process_command};

/// How long a killed attempt has to stop before its executor is killed.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// How long an executor without attempts is kept before the worker closes it.
pub const IDLE_CLOSE: Duration = Duration::from_secs(5);

/// How an attempt sent to an executor ended.
#[derive(Debug)]
enum Ended {
    Finished(TaskResult),
    /// The executor died (or could not be reached) first: why.
    Crashed(String),
}

type Table = Mutex<HashMap<String, Arc<Executor>>>;

/// The executors of this worker, one per job at most. Clones share them.
#[derive(Clone, Debug)]
pub struct Executors {
    table: Arc<Table>,
    metrics: WorkerMetrics,
    /// The most the worker may give one job's attempts together (all of its memory): the
    /// executor fits its allocator to it.
    memory: u64,
}

/// One job's executor process.
#[derive(Debug)]
struct Executor {
    job_id: String,
    binary: PathBuf,
    pid: u32,
    stdin: tokio::sync::Mutex<Pipe>,
    pending: Mutex<HashMap<AttemptRef, oneshot::Sender<Ended>>>,
    active: AtomicUsize,
    uses: AtomicU64,
    kill: Notify,
    /// Set when the worker kills it on purpose (its job ended, an attempt would not stop).
    killed: std::sync::atomic::AtomicBool,
    stderr_log: PathBuf,
    table: Weak<Table>,
    metrics: WorkerMetrics,
}

/// The executor's stdin, and whether the job's broadcast values went down it yet.
#[derive(Debug)]
struct Pipe {
    /// `None` once closed.
    stdin: Option<ChildStdin>,
    broadcasts_sent: bool,
}

impl Executors {
    /// No executors yet; each one started is counted in `metrics`. `memory` is the
    /// worker's, the most one job's attempts here may be given together.
    pub fn new(metrics: WorkerMetrics, memory: u64) -> Self {
        Executors { table: Arc::default(), metrics, memory }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Executor>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's executor, started now if it has none (or one of another binary).
    fn get_or_start(&self, job_id: &str, binary: &Path, dirs: &Dirs) -> std::io::Result<Arc<Executor>> {
        let mut table = self.lock();
        if let Some(executor) = table.get(job_id).filter(|e| e.binary == binary) {
            // Counted under the table's lock, so an idle close cannot take it from here.
            executor.uses.fetch_add(1, Ordering::SeqCst);
            return Ok(executor.clone());
        }
        let mut child = task_process_command(binary, dirs, &dirs.tasks)
            .arg(EXECUTOR_ROLE_ARG)
            .env(EXECUTOR_MEMORY_LIMIT_ENV, self.memory.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        let stderr_log = dirs.logs.join(job_id).join(format!("executor-{pid}.stderr"));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(keep_bounded(stderr, stderr_log.clone(), LOG_BYTES_LIMIT));
        }
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let executor = Arc::new(Executor {
            job_id: job_id.to_owned(),
            binary: binary.to_owned(),
            pid,
            stdin: tokio::sync::Mutex::new(Pipe { stdin, broadcasts_sent: false }),
            pending: Mutex::default(),
            active: AtomicUsize::new(0),
            uses: AtomicU64::new(0),
            kill: Notify::new(),
            killed: std::sync::atomic::AtomicBool::new(false),
            stderr_log,
            table: Arc::downgrade(&self.table),
            metrics: self.metrics.clone(),
        });
        self.metrics.executor_started();
        tracing::info!(job = %job_id, pid, "started an executor");
        tokio::spawn(monitor(executor.clone(), child, stdout));
        if let Some(old) = table.insert(job_id.to_owned(), executor.clone()) {
            tokio::spawn(async move { old.close().await });
        }
        Ok(executor)
    }

    /// The job ended here: its executor is killed (its attempts were killed before).
    pub fn drop_job(&self, job_id: &str) {
        if let Some(executor) = self.lock().remove(job_id) {
            executor.kill_now();
        }
    }

    /// Kills every executor (the session ended or the worker stops).
    pub fn kill_all(&self) {
        for (_, executor) in self.lock().drain() {
            executor.kill_now();
        }
    }
}

impl Executor {
    /// Sends the attempt (the job's broadcast values go only with the executor's first);
    /// the receiver tells how it ended.
    async fn submit(self: &Arc<Self>, mut request: RunAttempt) -> oneshot::Receiver<Ended> {
        let attempt = AttemptRef::of(&request.task);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(attempt, tx);
        self.active.fetch_add(1, Ordering::SeqCst);
        let broadcasts = std::mem::take(&mut request.task.job.broadcasts);
        if let Err(message) = self.send_run(request, broadcasts).await {
            self.ended(
                attempt,
                Ended::Crashed(format!("cannot send the attempt to its executor: {message}")),
            );
        }
        rx
    }

    async fn send(&self, message: &ToExecutor) -> Result<(), String> {
        let frame = encode(message).map_err(|e| e.to_string())?;
        let mut pipe = self.stdin.lock().await;
        let stdin = pipe.stdin.as_mut().ok_or("the executor is closing")?;
        stdin.write_all(&frame).await.map_err(|e| e.to_string())
    }

    /// Sends an attempt, after the job's `broadcasts` if this executor has not had them.
    async fn send_run(&self, request: RunAttempt, broadcasts: Broadcasts) -> Result<(), String> {
        let frame = encode(&ToExecutor::Run(Box::new(request))).map_err(|e| e.to_string())?;
        let mut pipe = self.stdin.lock().await;
        let Pipe { stdin, broadcasts_sent } = &mut *pipe;
        let stdin = stdin.as_mut().ok_or("the executor is closing")?;
        if !*broadcasts_sent {
            let first = encode(&ToExecutor::Broadcasts(broadcasts)).map_err(|e| e.to_string())?;
            stdin.write_all(&first).await.map_err(|e| e.to_string())?;
            *broadcasts_sent = true;
            self.metrics.broadcast_sent(first.len() as u64);
        }
        stdin.write_all(&frame).await.map_err(|e| e.to_string())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptRef, oneshot::Sender<Ended>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `attempt` ended: tells its waiter; with no attempt left, the executor may go idle.
    fn ended(self: &Arc<Self>, attempt: AttemptRef, how: Ended) {
        let Some(waiter) = self.lock_pending().remove(&attempt) else { return };
        let _ = waiter.send(how);
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            let (executor, uses) = (self.clone(), self.uses.load(Ordering::SeqCst));
            tokio::spawn(async move {
                tokio::time::sleep(IDLE_CLOSE).await;
                let idle = || {
                    executor.uses.load(Ordering::SeqCst) == uses
                        && executor.active.load(Ordering::SeqCst) == 0
                };
                if executor.forget_if(idle) {
                    executor.close().await;
                }
            });
        }
    }

    /// No new attempts go to this executor.
    fn forget(self: &Arc<Self>) {
        self.forget_if(|| true);
    }

    /// Forgets it if `condition` holds, checked under the table's lock (which new attempts
    /// take to find it); true if it was forgotten here.
    fn forget_if(self: &Arc<Self>, condition: impl FnOnce() -> bool) -> bool {
        let Some(table) = self.table.upgrade() else { return false };
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        let listed = table.get(&self.job_id).is_some_and(|e| Arc::ptr_eq(e, self));
        let forget = listed && condition();
        if forget {
            table.remove(&self.job_id);
        }
        forget
    }

    /// Kills the process (its monitor fails the attempts it leaves).
    fn kill_now(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill.notify_one();
    }

    /// Closes its stdin: it exits once its running attempts end.
    async fn close(&self) {
        self.stdin.lock().await.stdin.take();
    }
}

/// Reads the executor's answers until its stdout ends (or it is to be killed), then waits
/// for it and fails the attempts it left unanswered.
async fn monitor(executor: Arc<Executor>, mut child: Child, stdout: Option<ChildStdout>) {
    let reading = async {
        let Some(mut stdout) = stdout else { return };
        loop {
            match read_frame_async::<FromExecutor>(&mut stdout).await {
                Ok(Some(FromExecutor::Finished { attempt, result })) => {
                    executor.ended(attempt, Ended::Finished(result))
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job = %executor.job_id, pid = executor.pid, error = %e, "an executor's answer is unreadable; killing it");
                    let _ = child.start_kill();
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = reading => {}
        () = executor.kill.notified() => {}
    }
    let _ = child.start_kill();
    let status = child.wait().await;
    executor.forget();
    let message = match status {
        Ok(status) => format!("the executor process {}", describe_exit(status)),
        Err(e) => format!("the executor process could not be waited for: {e}"),
    };
    let orphans: Vec<AttemptRef> = executor.lock_pending().keys().copied().collect();
    if !orphans.is_empty() && !executor.killed.load(Ordering::SeqCst) {
        tracing::warn!(job = %executor.job_id, pid = executor.pid, attempts = orphans.len(), %message, "an executor ended with attempts running");
    }
    for attempt in orphans {
        executor.ended(attempt, Ended::Crashed(message.clone()));
    }
}

/// What [`run_in_executor`] runs.
pub struct ExecutorAttempt<'a> {
    /// The job binary.
    pub binary: &'a Path,
    /// The attempt's spec.
    pub task: TaskFile,
    /// Its log (created by the executor with its first line, if any).
    pub stderr_log: PathBuf,
    /// The worker's directories.
    pub dirs: &'a Dirs,
    /// The memory the driver reserved for the attempt: its budget on the executor's thread.
    pub memory: u64,
}

/// Runs an attempt in its job's executor (started if needed): its result and the tail of
/// its stderr log; `None` if it was killed; an error the worker itself hit.
pub async fn run_in_executor(
    executors: &Executors,
    run: ExecutorAttempt<'_>,
    key: &gristmill_proto::v1::AttemptKey,
    kill: oneshot::Receiver<()>,
) -> Result<Option<(TaskResult, String)>, (String, String)> {
    let ExecutorAttempt { binary, task, stderr_log, dirs, memory } = run;
    let executor = match executors.get_or_start(&task.job_id, binary, dirs) {
        Ok(executor) => executor,
        Err(e) => {
            return match crate::exec_error::diagnose(binary, &e) {
                Some(message) => {
                    let failed =
                        TaskResult::Failed { retryable: false, kind: Some(ErrorKind::InvalidJob), message };
                    Ok(Some((failed, String::new())))
                }
                None => Err((format!("cannot start {}: {e}", binary.display()), String::new())),
            };
        }
    };
    let work_dir = task.work_dir.clone();
    dirs.observed.live.started(LiveTask {
        attempt: key.clone(),
        pid: executor.pid,
        work_dir: work_dir.clone(),
    });
    let attempt = AttemptRef::of(&task);
    let request = RunAttempt {
        task,
        memory_limit: Some(memory),
        staged_notes: work_dir.join(STAGED_NOTES_FILE),
        stderr_log: stderr_log.clone(),
    };
    let mut ended = executor.submit(request).await;
    let how = tokio::select! {
        how = &mut ended => how.unwrap_or_else(|_| Ended::Crashed("the executor's monitor ended".into())),
        _ = kill => {
            stop(&executor, attempt, ended).await;
            return Ok(None);
        }
    };
    let tail = log_tail(&stderr_log, STDERR_TAIL_BYTES);
    match how {
        Ended::Finished(result) => Ok(Some((result, tail))),
        Ended::Crashed(message) => {
            // The executor's own stderr holds what its threads printed outside any attempt.
            let tail = if tail.is_empty() { log_tail(&executor.stderr_log, STDERR_TAIL_BYTES) } else { tail };
            let crashed = TaskResult::Failed { retryable: true, kind: Some(ErrorKind::Crashed), message };
            Ok(Some((crashed, tail)))
        }
    }
}

/// Asks the attempt to stop; kills its executor when it does not within [`KILL_GRACE`].
/// Returns once the attempt no longer runs.
async fn stop(executor: &Arc<Executor>, attempt: AttemptRef, mut ended: oneshot::Receiver<Ended>) {
    if let Err(e) = executor.send(&ToExecutor::Cancel(attempt)).await {
        tracing::debug!(error = %e, "could not ask an attempt to stop");
    }
    if tokio::time::timeout(KILL_GRACE, &mut ended).await.is_ok() {
        return;
    }
    tracing::warn!(
        job = %executor.job_id,
        pid = executor.pid,
        "a killed attempt did not stop in time; killing its executor (its other attempts here are retried)"
    );
    executor.forget();
    executor.kill_now();
    let _ = ended.await;
}
