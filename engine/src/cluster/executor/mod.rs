//! The executor role of a job binary (`<job> __gristmill-executor`): one long-lived
//! process per (job, worker) that runs that job's attempts on its threads, as Spark's
//! executors do. Launching an attempt is a message, not an exec: the worker starts the
//! executor with the job's first attempt on it, then writes each attempt's spec into its
//! stdin as a frame ([`protocol`]); the executor answers with each attempt's
//! [`TaskResult`](super::payload::TaskResult). The job's broadcast values come once, in
//! the executor's first frame, not with every attempt.
//!
//! What is per process in a task process is per attempt here ([`scope`]): the attempt's
//! log lines go to its own log file ([`attempt_log`]), keyed by the threads doing its work
//! (its own thread, CPU pool and I/O runtime); its staged-part notes, live counters and
//! scratch space are files in its own work directory; its memory budget comes with its
//! spec; the worker cancels it with a message, checked between batches.
//!
//! Jobs stay isolated from each other and from the worker (one process per job); an
//! executor crash fails the attempts it was running, which the driver retries.

pub mod attempt_log;
pub mod protocol;
pub mod runner;
pub mod scope;

/// The argument that puts a job binary in executor role.
pub const EXECUTOR_ROLE_ARG: &str = "__gristmill-executor";

/// The memory the worker may give this executor's attempts together (bytes): the
/// executor fits its allocator to it ([`crate::memory::fit_allocator_to`]), as a task
/// process does to its own task's.
pub const EXECUTOR_MEMORY_LIMIT_ENV: &str = "GRISTMILL_EXECUTOR_MEMORY_LIMIT";

/// True when this process was started in executor role.
pub fn executor_role() -> bool {
    std::env::args_os().nth(1).is_some_and(|role| role == EXECUTOR_ROLE_ARG)
}
