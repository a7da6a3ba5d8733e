//! The executor's loop: reads [`ToExecutor`] frames on stdin, runs each attempt on a
//! thread of its own with a lane (`Lane`: a CPU pool and an I/O runtime the executor
//! keeps and lends to one attempt at a time, in the attempt's [`super::scope`]), and
//! answers each with a [`FromExecutor::Finished`] frame.

use std::collections::HashMap;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::attempt_log::AttemptLog;
use super::protocol::{AttemptRef, FromExecutor, RunAttempt, ToExecutor, read_frame, write_frame};
use super::scope::{self, AttemptScope, LaneSlot};
use crate::cluster::payload::{TaskFile, TaskResult};
use crate::cluster::task_logs::LOG_BYTES_LIMIT;
use crate::error::ErrorKind;
use crate::job::Broadcasts;

/// Runs one attempt's spec in the calling thread (its result goes to the thread's
/// [`AttemptScope`]); false when the binary has no job of that name.
pub type RunTask = dyn Fn(&TaskFile) -> bool + Sync;

type Running = Arc<Mutex<HashMap<AttemptRef, Arc<AttemptScope>>>>;

/// An executor without attempts and without word from its worker for this long exits on
/// its own. Its worker closes it sooner (after a few seconds idle); this
/// is for a worker that froze (SIGSTOP) or hangs: its executor must not outlive it idle.
pub const IDLE_EXIT: Duration = Duration::from_secs(15);

/// Serves attempts until stdin ends (the worker dropped the job or went idle), then waits
/// for the running ones and exits.
pub fn serve(run: &RunTask) -> ExitCode {
    crate::cluster::task::exit_when_orphaned();
    // Attempts size their buffers by their own budgets (their scopes); the allocator is
    // the process's, fitted to what they may hold together.
    let memory = std::env::var(super::EXECUTOR_MEMORY_LIMIT_ENV).ok().and_then(|v| v.parse().ok());
    if let Some(bytes) = memory {
        crate::memory::fit_allocator_to(bytes);
    }
    let (mut input, output) = match protocol_pipes() {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!("error: cannot set up the executor's pipes: {e}");
            return ExitCode::from(2);
        }
    };
    let output = Mutex::new(output);
    let running: Running = Arc::default();
    let heard = Arc::new(Mutex::new(Instant::now()));
    exit_when_idle(running.clone(), heard.clone());
    tracing::info!(pid = std::process::id(), memory, "executor started");
    let lanes = Lanes::default();
    // The job's broadcast values: they come once, before the first attempt.
    let mut broadcasts = Broadcasts::default();
    let ended = std::thread::scope(|threads| {
        loop {
            let frame = read_frame::<ToExecutor>(&mut input);
            *heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            match frame {
                Ok(Some(ToExecutor::Broadcasts(values))) => broadcasts = values,
                Ok(Some(ToExecutor::Run(mut request))) => {
                    request.task.job.broadcasts = broadcasts.clone();
                    let (output, running, heard, lanes) = (&output, running.clone(), heard.clone(), &lanes);
                    let started = std::thread::Builder::new()
                        .name("gristmill-attempt".into())
                        .spawn_scoped(threads, move || {
                            attempt_thread(*request, run, lanes, output, &running, &heard)
                        });
                    if let Err(e) = started {
                        tracing::error!(error = %e, "cannot start an attempt's thread");
                        return ExitCode::from(2);
                    }
                }
                Ok(Some(ToExecutor::Cancel(attempt))) => {
                    if let Some(scope) = running.lock().unwrap_or_else(|e| e.into_inner()).get(&attempt) {
                        scope.cancelled.store(true, Ordering::Relaxed);
                    }
                }
                Ok(None) => return ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the worker's pipe failed");
                    return ExitCode::from(2);
                }
            }
        }
    });
    crate::telemetry::shutdown();
    ended
}

/// Exits the process when it has run no attempt and heard nothing for [`IDLE_EXIT`].
fn exit_when_idle(running: Running, heard: Arc<Mutex<Instant>>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let idle = running.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
            let quiet = heard.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
            if idle && quiet >= IDLE_EXIT {
                tracing::info!("executor idle; exiting");
                crate::telemetry::shutdown();
                std::process::exit(0);
            }
        }
    });
}

/// Stdin for frames from the worker; the pipe that was stdout for frames to it, with
/// stdout itself pointed at stderr so nothing else the process prints lands in a frame.
#[allow(unsafe_code)]
fn protocol_pipes() -> std::io::Result<(std::io::StdinLock<'static>, File)> {
    use std::os::fd::AsFd;
    let output = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    // SAFETY: dup2 on two descriptors open for the whole process (the worker starts it
    // with pipes); it only repoints fd 1, whose Rust handle (`Stdout`) keeps no state.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((std::io::stdin().lock(), output))
}

/// A CPU pool and an I/O runtime an executor keeps and lends to one attempt at a time,
/// rather than starting (and stopping) their threads for every attempt. Their threads
/// work for the attempt holding the lane ([`scope::join_lane`]).
struct Lane {
    slot: Arc<LaneSlot>,
    cpu: rayon::ThreadPool,
    io: tokio::runtime::Runtime,
}

impl Lane {
    fn start() -> Result<Lane, String> {
        let slot = Arc::new(LaneSlot::default());
        let join = {
            let slot = slot.clone();
            move || scope::join_lane(slot.clone())
        };
        let cpu = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("gristmill-cpu-{i}"))
            .start_handler({
                let join = join.clone();
                move |_| join()
            })
            .build()
            .map_err(|e| format!("cannot start a CPU pool: {e}"))?;
        let io = crate::local::io_runtime_builder()
            .on_thread_start(join)
            // An I/O thread may have slept through a change of attempt.
            .on_thread_unpark(scope::follow_lane)
            .build()
            .map_err(|e| format!("cannot start an I/O runtime: {e}"))?;
        Ok(Lane { slot, cpu, io })
    }

    /// The lane works for `scope` (`None`: nobody) from now on; the CPU pool's threads
    /// enter its log span now.
    fn lend(&self, scope: Option<Arc<AttemptScope>>) {
        self.slot.set(scope);
        self.cpu.broadcast(|_| scope::follow_lane());
    }
}

/// The lanes of an executor not lent to an attempt now; as many are started as attempts
/// run at once.
#[derive(Default)]
struct Lanes(Mutex<Vec<Lane>>);

impl Lanes {
    fn take(&self) -> Result<Lane, String> {
        let idle = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        idle.map_or_else(Lane::start, Ok)
    }

    fn give_back(&self, lane: Lane) {
        lane.lend(None);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
    }
}

fn attempt_thread(
    request: RunAttempt,
    run: &RunTask,
    lanes: &Lanes,
    output: &Mutex<File>,
    running: &Running,
    heard: &Mutex<Instant>,
) {
    let attempt = AttemptRef::of(&request.task);
    let lane = lanes.take();
    let scope = attempt_scope(&request, lane.as_ref().ok().map(|lane| lane.io.handle().clone()));
    running.lock().unwrap_or_else(|e| e.into_inner()).insert(attempt, scope.clone());
    let result = match lane {
        Ok(lane) => {
            let result = run_in_scope(&request.task, run, &lane, &scope);
            lanes.give_back(lane);
            result
        }
        Err(message) => TaskResult::Failed { retryable: true, kind: Some(ErrorKind::Crashed), message },
    };
    // Still counted as running until its answer is written, so an idle exit cannot cut it.
    let finished = FromExecutor::Finished { attempt, result };
    if let Err(e) = write_frame(&mut *output.lock().unwrap_or_else(|e| e.into_inner()), &finished) {
        tracing::error!(error = %e, "cannot report an attempt to the worker");
    }
    running.lock().unwrap_or_else(|e| e.into_inner()).remove(&attempt);
    *heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
}

fn attempt_scope(request: &RunAttempt, io: Option<tokio::runtime::Handle>) -> Arc<AttemptScope> {
    let task = &request.task;
    let kind = if task.is_map { "map" } else { "reduce" };
    let task_name = format!("{kind} {}", task.index);
    // Target `gristmill::logging`: a span for log lines only, never exported.
    let log_span = tracing::info_span!(target: "gristmill::logging", "task", job = %task.job_id, task = %task_name, attempt = task.attempt);
    Arc::new(AttemptScope {
        log_span,
        stderr: Arc::new(AttemptLog::create(request.stderr_log.clone(), LOG_BYTES_LIMIT)),
        staged_notes: request.staged_notes.clone(),
        memory_limit: request.memory_limit,
        cancelled: AtomicBool::new(false),
        result: Mutex::new(None),
        io,
    })
}

/// Runs the attempt on `lane`'s CPU pool, lent to `scope`; a panic that escapes the task
/// role fails the attempt (retryably, as a crashed task process would).
fn run_in_scope(task: &TaskFile, run: &RunTask, lane: &Lane, scope: &Arc<AttemptScope>) -> TaskResult {
    scope::enter(scope.clone());
    lane.lend(Some(scope.clone()));
    let ran = catch_unwind(AssertUnwindSafe(|| lane.cpu.install(|| run(task))))
        .map_err(|_| "the attempt panicked".to_owned());
    scope::leave();
    let failed = |retryable, kind, message| TaskResult::Failed { retryable, kind: Some(kind), message };
    match ran {
        Ok(true) => scope
            .take_result()
            .unwrap_or_else(|| failed(true, ErrorKind::Crashed, "the attempt ended without a result".into())),
        Ok(false) => failed(
            false,
            ErrorKind::InvalidJob,
            format!("the binary has no job named {:?} (see Pipeline::run_task)", task.job.job_name),
        ),
        Err(message) => failed(true, ErrorKind::Crashed, message),
    }
}
