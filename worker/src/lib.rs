//! # gristmill-worker
//!
//! The worker daemon of cluster mode. It knows no user code: it
//!
//! 1. serves the map output on its disk to reducers ([`gristmill::cluster::shuffle_service`]);
//! 2. attaches to the driver ([`session`]): registers, sends heartbeats, receives tasks;
//! 3. fetches each job binary by digest from the driver, verifies it and caches it
//!    ([`binaries`]);
//! 4. runs every attempt as a child process of its own ([`tasks`]), or, with
//!    `--task-isolation executor`, in its job's executor, one child process of the job
//!    binary per job ([`executors`]), so a crashing task never takes the worker down, and
//!    reports how it ended (a binary it cannot execute, with why: [`exec_error`]);
//! 5. with `--http ADDR`, serves `/metrics`, `/healthz` and `/readyz` ([`observe`]);
//! 6. on SIGTERM, drains: takes no new tasks, lets its running ones finish (up to
//!    `--drain-timeout`), serves its map output until the driver releases it, then exits;
//!    a second SIGTERM (or `--drain-timeout 0`) kills its tasks and exits at once.
//!
//! ```text
//! gristmill-worker --driver http://127.0.0.1:7077 --slots 4 --data-dir /var/lib/gristmill
//! ```

pub mod binaries;
pub mod exec_error;
pub mod executors;
pub mod observe;
pub mod peer;
pub mod session;
pub mod tasks;

use std::path::PathBuf;
use std::time::Duration;

/// What can stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Its directories or listener could not be set up.
    #[error("{what}: {cause}")]
    Setup {
        /// What was attempted.
        what: String,
        /// Why it failed.
        cause: String,
    },
    /// The driver refused or could not be reached.
    #[error("{0}")]
    Driver(String),
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The driver's URL (`https://` with certificates).
    pub driver: String,
    /// Certificates (mutual TLS for the session, binary fetches and the shuffle service) or
    /// plaintext on loopback.
    pub security: gristmill::security::ServerSecurity,
    /// Where the shuffle service listens.
    pub listen: String,
    /// The address reducers use to reach the shuffle service, if not the listening one.
    pub advertise: Option<String>,
    /// Tasks run at once.
    pub slots: u32,
    /// Binaries, map output, task scratch space.
    pub data_dir: PathBuf,
    /// Give up after this long without reaching the driver.
    pub driver_timeout: Duration,
    /// Reducers read map output of workers on this host from their shuffle directories
    /// (false: everything is fetched through the shuffle services).
    pub host_local_shuffle: bool,
    /// Where this worker's task processes export their spans (OTLP base URL), if anywhere.
    pub otlp_endpoint: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub http: Option<String>,
    /// How long a job's task logs are kept after its data is dropped.
    pub log_retention: Duration,
    /// Memory the task processes may use together (each gets `memory_limit / slots`).
    pub memory_limit: u64,
    /// How long running attempts may still run once the worker drains (zero: no drain,
    /// SIGTERM stops at once).
    pub drain_timeout: Duration,
    /// Where attempts run: in one executor process per job, or a process each.
    pub task_isolation: TaskIsolation,
}

/// Where a worker runs attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskIsolation {
    /// One long-lived executor process per job on this worker runs the job's attempts on
    /// its threads: launching an attempt is a message.
    Executor,
    /// A new process of the job binary per attempt (the default until executors are as fast
    /// as issue #23 asks; see bench/README.md "Many small tasks").
    #[default]
    Process,
}

/// Runs the worker until SIGTERM, or until the driver is unreachable for too long.
pub fn run(config: WorkerConfig) -> Result<(), WorkerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gristmill-worker")
        .enable_all()
        .build()
        .map_err(|e| WorkerError::Setup { what: "starting the runtime".into(), cause: e.to_string() })?;
    runtime.block_on(session::serve(config))
}
