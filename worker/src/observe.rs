//! What a worker shows of itself: `--http ADDR` serves `/metrics` (Prometheus, behind the
//! same authentication as the driver's pages: a client certificate of the cluster CA or a
//! bearer token, over HTTPS with the node certificate on a secured cluster), `/healthz` and
//! `/readyz` (200 while attached to the driver, 503 before); and the [`WorkerResources`]
//! its heartbeats carry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gristmill::metrics::process::{ProcessStats, dir_bytes, disk_free_bytes, own_stats, process_stats};
use gristmill::metrics::routes::{Readiness, health_router, metrics_router};
use gristmill::metrics::{WorkerMetrics, WorkerResources};
use gristmill::security::{PeerInfo, Protocol, ServerSecurity};
use gristmill_proto::v1::AttemptKey;

use crate::WorkerError;

/// A running task process: its pid and work directory.
#[derive(Clone, Debug)]
pub struct LiveTask {
    /// The attempt it runs.
    pub attempt: AttemptKey,
    /// Its process id.
    pub pid: u32,
    /// Its work directory, where it writes its live counters.
    pub work_dir: PathBuf,
}

/// An attempt as a map key: job, kind, index, attempt.
type Key = (String, i32, u32, u32);

/// The task processes running now, by attempt. Clones share the table.
#[derive(Clone, Debug, Default)]
pub struct LiveTasks(Arc<Mutex<HashMap<Key, LiveTask>>>);

impl LiveTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, LiveTask>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(a: &AttemptKey) -> Key {
        (a.job_id.clone(), a.kind, a.index, a.attempt)
    }

    /// A task process started.
    pub fn started(&self, task: LiveTask) {
        self.lock().insert(Self::key(&task.attempt), task);
    }

    /// A task process ended.
    pub fn ended(&self, attempt: &AttemptKey) {
        self.lock().remove(&Self::key(attempt));
    }

    /// The running task processes.
    pub fn all(&self) -> Vec<LiveTask> {
        self.lock().values().cloned().collect()
    }
}

/// What the worker uses now: its own process, its task processes, its shuffle disk and its
/// data directory.
pub fn resources(
    tasks: &LiveTasks,
    shuffle_dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> WorkerResources {
    let running = tasks.all();
    // Attempts in one executor share its process: each process counts once.
    let pids: std::collections::BTreeSet<u32> = running.iter().map(|t| t.pid).collect();
    let sum = pids.into_iter().filter_map(process_stats).fold(ProcessStats::default(), |a, b| a + b);
    let own = own_stats();
    WorkerResources {
        slots_busy: running.len() as u32,
        cpu_seconds: own.cpu_seconds,
        rss_bytes: own.rss_bytes,
        tasks_cpu_seconds: sum.cpu_seconds,
        tasks_rss_bytes: sum.rss_bytes,
        shuffle_disk_free_bytes: disk_free_bytes(shuffle_dir).unwrap_or(0),
        data_dir_bytes: data_dir_bytes(data_dir),
    }
}

/// [`dir_bytes`] of the data directory, walked again only when the last walk is more than
/// 20 times its own duration old (and at least a second): it stats every file, and a
/// worker that ran thousands of small attempts keeps thousands of log files, which a
/// walk every heartbeat (on the session's loop) would spend most of its time on.
fn data_dir_bytes(data_dir: &std::path::Path) -> u64 {
    use std::time::{Duration, Instant};
    struct Walked {
        dir: PathBuf,
        at: Instant,
        took: Duration,
        bytes: u64,
    }
    static LAST: Mutex<Option<Walked>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = last.as_ref().filter(|w| w.dir == data_dir)
        && w.at.elapsed() < (w.took * 20).max(Duration::from_secs(1))
    {
        return w.bytes;
    }
    let at = Instant::now();
    let bytes = dir_bytes(data_dir);
    *last = Some(Walked { dir: data_dir.to_owned(), at, took: at.elapsed(), bytes });
    bytes
}

/// What the worker observes of itself, shared by its session, its tasks and its status
/// server.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Its metrics.
    pub metrics: WorkerMetrics,
    /// Its task processes.
    pub live: LiveTasks,
    /// Set while attached to the driver.
    pub ready: Readiness,
}

impl Observed {
    /// Nothing observed yet, for a worker with `slots` slots.
    pub fn new(slots: u32) -> Self {
        Observed {
            metrics: WorkerMetrics::new(slots),
            live: LiveTasks::default(),
            ready: Readiness::default(),
        }
    }
}

/// What the status server needs.
pub struct StatusServer {
    /// Where to listen.
    pub addr: String,
    /// TLS with the node certificate and the tokens of its certificates directory, or
    /// plaintext on loopback.
    pub security: ServerSecurity,
    /// The worker's metrics.
    pub metrics: WorkerMetrics,
    /// Its task processes.
    pub tasks: LiveTasks,
    /// Its shuffle directory (for the free space of its disk).
    pub shuffle_dir: PathBuf,
    /// Its data directory (for the bytes it holds).
    pub data_dir: PathBuf,
    /// Set while attached to the driver.
    pub ready: Readiness,
}

impl StatusServer {
    /// Binds the address and serves in the background; the bound address.
    pub async fn start(self) -> Result<std::net::SocketAddr, WorkerError> {
        let listener =
            self.security.bind(&self.addr, Protocol::Http).await.map_err(|e| WorkerError::Setup {
                what: format!("starting the status server on {}", self.addr),
                cause: e.to_string(),
            })?;
        let bound = listener.local_addr();
        let StatusServer { metrics, tasks, shuffle_dir, data_dir, ready, security, .. } = self;
        let render = Arc::new(move || metrics.render(&resources(&tasks, &shuffle_dir, &data_dir)));
        let metrics =
            gristmill::security::http_auth::require_auth(metrics_router(render), security.certs_dir);
        let router = metrics.merge(health_router(ready));
        tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<PeerInfo>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "the status server stopped");
            }
        });
        Ok(bound)
    }
}
