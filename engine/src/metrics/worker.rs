//! A worker's metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::driver::raise_to;
use super::encode;

/// What a worker uses now: sent with each heartbeat, shown in `/api/workers` and its own
/// `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerResources {
    /// Slots with an attempt running.
    pub slots_busy: u32,
    /// CPU seconds the worker process used.
    pub cpu_seconds: f64,
    /// The worker process's resident memory.
    pub rss_bytes: u64,
    /// CPU seconds its running task processes used.
    pub tasks_cpu_seconds: f64,
    /// Its running task processes' resident memory.
    pub tasks_rss_bytes: u64,
    /// Free bytes on the file system of its shuffle directory.
    pub shuffle_disk_free_bytes: u64,
    /// Bytes in its data directory: cached job binaries, map output, task scratch space, logs.
    #[serde(default)]
    pub data_dir_bytes: u64,
}

type Label = [(&'static str, &'static str); 1];

/// A worker's registry and the metrics in it. Clones share the metrics.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    registry: std::sync::Arc<Registry>,
    slots: Gauge,
    slots_busy: Gauge,
    attached: Gauge,
    attempts_started: Counter,
    executors_started: Counter,
    job_payloads_received: Counter,
    broadcast_bytes_sent: Counter,
    attempts_finished: Family<Label, Counter>,
    shuffle_served: Counter,
    shuffle_fetched: Counter,
    binary_fetches: Family<Label, Counter>,
    binary_fetch_failures: Family<Label, Counter>,
    binary_served: Counter,
    spilled: Counter,
    disk_free: Gauge,
    data_dir_bytes: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    rss_bytes: Gauge,
    tasks_cpu_seconds: Gauge<f64, AtomicU64>,
    tasks_rss_bytes: Gauge,
}

impl WorkerMetrics {
    /// A fresh registry for a worker with `slots` slots.
    pub fn new(slots: u32) -> Self {
        let mut registry = Registry::default();
        let m = WorkerMetrics {
            registry: Default::default(),
            slots: Gauge::default(),
            slots_busy: Gauge::default(),
            attached: Gauge::default(),
            attempts_started: Counter::default(),
            executors_started: Counter::default(),
            job_payloads_received: Counter::default(),
            broadcast_bytes_sent: Counter::default(),
            attempts_finished: Family::default(),
            shuffle_served: Counter::default(),
            shuffle_fetched: Counter::default(),
            binary_fetches: Family::default(),
            binary_fetch_failures: Family::default(),
            binary_served: Counter::default(),
            spilled: Counter::default(),
            disk_free: Gauge::default(),
            data_dir_bytes: Gauge::default(),
            cpu_seconds: Counter::default(),
            rss_bytes: Gauge::default(),
            tasks_cpu_seconds: Gauge::default(),
            tasks_rss_bytes: Gauge::default(),
        };
        m.slots.set(i64::from(slots));
        let r = &mut registry;
        r.register("gristmill_worker_slots", "Task slots of the worker", m.slots.clone());
        r.register("gristmill_worker_slots_busy", "Slots with an attempt running", m.slots_busy.clone());
        r.register("gristmill_worker_attached", "1 while attached to the driver", m.attached.clone());
        r.register("gristmill_worker_attempts_started", "Attempts started", m.attempts_started.clone());
        r.register(
            "gristmill_worker_executors_started",
            "Executor processes started (one per job at a time, running its attempts)",
            m.executors_started.clone(),
        );
        r.register(
            "gristmill_worker_job_payloads_received",
            "Job settings received from the driver (once per job and session, not with every attempt)",
            m.job_payloads_received.clone(),
        );
        r.register(
            "gristmill_worker_broadcast_bytes_sent",
            "Bytes of jobs' broadcast values written to executors (once per executor)",
            m.broadcast_bytes_sent.clone(),
        );
        r.register(
            "gristmill_worker_attempts_finished",
            "Attempts that ended, by outcome (succeeded, failed, killed)",
            m.attempts_finished.clone(),
        );
        r.register(
            "gristmill_worker_shuffle_served_bytes",
            "Map output bytes the shuffle service sent to reducers",
            m.shuffle_served.clone(),
        );
        r.register(
            "gristmill_worker_shuffle_fetched_bytes",
            "Map output bytes the worker's finished reduce attempts fetched from other workers",
            m.shuffle_fetched.clone(),
        );
        r.register(
            "gristmill_worker_binary_fetches",
            "Job binaries the worker fetched and verified, by source: driver, peer (another worker) or store",
            m.binary_fetches.clone(),
        );
        r.register(
            "gristmill_worker_binary_fetch_failures",
            "Job binary fetches that failed (unreachable, or bytes without the digest), by source",
            m.binary_fetch_failures.clone(),
        );
        r.register(
            "gristmill_worker_binary_served_bytes",
            "Compressed job binary bytes the worker sent to other workers",
            m.binary_served.clone(),
        );
        r.register(
            "gristmill_worker_spilled_bytes",
            "Bytes the worker's finished attempts spilled to disk",
            m.spilled.clone(),
        );
        r.register(
            "gristmill_worker_shuffle_disk_free_bytes",
            "Free bytes on the file system of the shuffle directory",
            m.disk_free.clone(),
        );
        r.register(
            "gristmill_worker_data_dir_bytes",
            "Bytes in the data directory: cached job binaries, map output, task scratch space, logs",
            m.data_dir_bytes.clone(),
        );
        r.register(
            "gristmill_process_cpu_seconds",
            "CPU seconds of the worker process",
            m.cpu_seconds.clone(),
        );
        r.register(
            "gristmill_process_resident_memory_bytes",
            "Resident memory of the worker process",
            m.rss_bytes.clone(),
        );
        r.register(
            "gristmill_worker_tasks_cpu_seconds",
            "CPU seconds used by the running task processes",
            m.tasks_cpu_seconds.clone(),
        );
        r.register(
            "gristmill_worker_tasks_resident_memory_bytes",
            "Resident memory of the running task processes",
            m.tasks_rss_bytes.clone(),
        );
        WorkerMetrics { registry: std::sync::Arc::new(registry), ..m }
    }

    /// The counter of bytes the shuffle service sends.
    pub fn shuffle_served(&self) -> Counter {
        self.shuffle_served.clone()
    }

    /// A job binary was fetched and verified from `source` (`driver`, `peer` or `store`).
    pub fn binary_fetched(&self, source: &'static str) {
        self.binary_fetches.get_or_create(&[("source", source)]).inc();
    }

    /// A job binary fetch from `source` failed; another source is tried.
    pub fn binary_fetch_failed(&self, source: &'static str) {
        self.binary_fetch_failures.get_or_create(&[("source", source)]).inc();
    }

    /// The counter of job binary bytes served to other workers.
    pub fn binary_served(&self) -> Counter {
        self.binary_served.clone()
    }

    /// The session attached (`true`) or ended.
    pub fn set_attached(&self, attached: bool) {
        self.attached.set(i64::from(attached));
    }

    /// An attempt started.
    pub fn attempt_started(&self) {
        self.attempts_started.inc();
    }

    /// An executor process started for a job.
    pub fn executor_started(&self) {
        self.executors_started.inc();
    }

    /// A job's settings came from the driver (the first attempt of the job in a session).
    pub fn job_payload_received(&self) {
        self.job_payloads_received.inc();
    }

    /// A job's broadcast values, `bytes` of them, went to a new executor.
    pub fn broadcast_sent(&self, bytes: u64) {
        self.broadcast_bytes_sent.inc_by(bytes);
    }

    /// An attempt ended: `succeeded`, `failed` or `killed`, with its final counters.
    pub fn attempt_finished(&self, outcome: &'static str, counters: &std::collections::HashMap<String, u64>) {
        self.attempts_finished.get_or_create(&[("outcome", outcome)]).inc();
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
        self.shuffle_fetched.inc_by(counter(crate::exec::SHUFFLE_FETCHED_BYTES));
        self.spilled.inc_by(counter(crate::exec::SPILLED_BYTES));
    }

    /// The text format, with the gauges set to `now`.
    pub fn render(&self, now: &WorkerResources) -> String {
        self.slots_busy.set(i64::from(now.slots_busy));
        self.disk_free.set(now.shuffle_disk_free_bytes as i64);
        self.data_dir_bytes.set(now.data_dir_bytes as i64);
        raise_to(&self.cpu_seconds, now.cpu_seconds);
        self.rss_bytes.set(now.rss_bytes as i64);
        self.tasks_cpu_seconds.set(now.tasks_cpu_seconds);
        self.tasks_rss_bytes.set(now.tasks_rss_bytes as i64);
        encode(&self.registry)
    }
}
