//! The JSON API: the twins of the HTML pages, and the original `/api/jobs`, `/api/workers`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::super::state::DriverState;
use crate::ids::{JobId, WorkerId};
use crate::scheduler::{JobDetail, JobView, WorkerDetail, WorkerView};

/// The cluster at a glance: the twin of `/`.
#[derive(Serialize)]
pub struct ClusterView {
    /// Every worker the scheduler knows (lost ones included), by id.
    pub workers: Vec<WorkerView>,
    /// This run's jobs in submit order, then those that ended in earlier runs, newest first.
    pub jobs: Vec<JobView>,
    /// Pending and running tasks and the slots wanted, for an autoscaler.
    pub demand: crate::metrics::driver::Demand,
}

/// A job as the job page shows it: in detail while the scheduler remembers it, else (a job
/// that ended in an earlier run of the driver) its summary alone.
#[derive(Serialize)]
#[serde(untagged)]
pub enum JobPage {
    /// Tasks, attempts, phases and diagnosis.
    Detail(Box<JobDetail>),
    /// The summary of a job ended in an earlier run.
    History(Box<JobView>),
}

/// This run's jobs in submit order, then those that ended in earlier runs, newest first.
pub fn all_jobs(state: &DriverState) -> Vec<JobView> {
    let mut jobs = state.read(|s| s.jobs(Instant::now()));
    jobs.extend(state.history_views());
    jobs
}

/// The cluster view (workers and jobs).
pub fn cluster_view(state: &DriverState) -> ClusterView {
    let (workers, jobs) = (state.read(|s| s.workers(Instant::now())), all_jobs(state));
    let demand = crate::metrics::driver::SchedulerGauges::of(&jobs, &workers).demand;
    ClusterView { workers, jobs, demand }
}

/// The job page's data, if the job is known.
pub fn job_page(state: &DriverState, id: &str) -> Option<JobPage> {
    let job_id = JobId::from_string(id.to_owned());
    if let Some(mut detail) = state.read(|s| s.job_detail(Instant::now(), &job_id)) {
        state.add_live_counters(&mut detail.job);
        return Some(JobPage::Detail(Box::new(detail)));
    }
    state.history_views().into_iter().find(|v| v.id == job_id).map(|v| JobPage::History(Box::new(v)))
}

/// The worker page's data, if the worker is known.
pub fn worker_page(state: &DriverState, id: &str) -> Option<WorkerDetail> {
    state.read(|s| s.worker_detail(Instant::now(), &WorkerId(id.to_owned())))
}

fn not_found(what: &str, id: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no {what} {id}\n")).into_response()
}

pub async fn cluster(State(state): State<Arc<DriverState>>) -> Json<ClusterView> {
    Json(cluster_view(&state))
}

pub async fn jobs(State(state): State<Arc<DriverState>>) -> Json<Vec<JobView>> {
    Json(all_jobs(&state))
}

pub async fn job(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> Response {
    match job_page(&state, &id) {
        Some(page) => Json(page).into_response(),
        None => not_found("job", &id),
    }
}

pub async fn workers(State(state): State<Arc<DriverState>>) -> Json<Vec<WorkerView>> {
    Json(state.read(|s| s.workers(Instant::now())))
}

pub async fn worker(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> Response {
    match worker_page(&state, &id) {
        Some(page) => Json(page).into_response(),
        None => not_found("worker", &id),
    }
}
