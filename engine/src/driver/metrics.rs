//! The driver's `/metrics` (Prometheus text format; see [`crate::metrics::DriverMetrics`]):
//! its counters and histograms are bumped where things happen, its gauges set from the
//! scheduler's views at each scrape. Mounted behind the status pages' authentication;
//! `/healthz` and `/readyz` are mounted beside it without ([`crate::metrics::routes`]).

use std::sync::Arc;
use std::time::Instant;

use super::state::DriverState;
use crate::metrics::SchedulerGauges;
use crate::metrics::routes::metrics_router;

/// `GET /metrics` of the driver.
pub fn router(state: Arc<DriverState>) -> axum::Router {
    metrics_router(Arc::new(move || {
        let now = Instant::now();
        let gauges = state.read(|s| SchedulerGauges::of(&s.jobs(now), &s.workers(now)));
        state.metrics.render(&gauges)
    }))
}
