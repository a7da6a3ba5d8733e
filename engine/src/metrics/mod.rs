//! Prometheus metrics (text exposition format, `prometheus-client`): one [`Registry`] per
//! process, served at `/metrics` next to `/healthz` (alive) and `/readyz` (ready).
//!
//! * [`DriverMetrics`]: jobs, tasks, attempts by outcome, workers, scheduling latency, commit
//!   duration; counters and histograms are bumped where the events happen (the driver's
//!   state, its commits, the scheduler's [`AttemptEvent`](crate::scheduler::AttemptEvent)s),
//!   gauges are set from the scheduler's views at each scrape.
//! * [`WorkerMetrics`]: slots, attempts, shuffle bytes served and fetched, spill bytes, the
//!   shuffle disk's free space, CPU and memory of the worker and of its task processes.
//! * [`process`]: CPU time and resident memory of a process, free space of a file system.
//! * [`routes`]: the `/metrics`, `/healthz` and `/readyz` handlers both servers mount.
//!
//! ```
//! use gristmill::metrics::WorkerMetrics;
//! let metrics = WorkerMetrics::new(4);
//! metrics.attempt_started();
//! let text = metrics.render(&Default::default());
//! assert!(text.contains("gristmill_worker_attempts_started_total 1"));
//! ```

pub mod driver;
pub mod process;
pub mod routes;
pub mod worker;

pub use driver::{DriverMetrics, SchedulerGauges};
pub use prometheus_client::registry::Registry;
pub use worker::{WorkerMetrics, WorkerResources};

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of durations in seconds, from 5 ms to about 45 minutes.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.5, 15)
}

/// The registry in the text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}
