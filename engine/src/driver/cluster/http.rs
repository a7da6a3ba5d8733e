//! The driver's JSON status pages: `/api/jobs`, `/api/jobs/{id}`, `/api/workers`.
//!
//! On a secured driver they are served over HTTPS and answer only a peer with a certificate
//! of the cluster CA or a bearer token (`gristmill cert create-token USER`); in plaintext
//! (loopback) anyone may read them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::state::DriverState;
use crate::ids::JobId;
use crate::security::certs::CertsDir;

/// The status pages' routes; `certs_dir` holds the tokens of a secured driver.
pub fn router(state: Arc<DriverState>, certs_dir: Option<CertsDir>) -> axum::Router {
    let router = axum::Router::new()
        .route("/", get(index))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/workers", get(workers))
        .with_state(state.clone())
        .merge(super::metrics::router(state));
    crate::security::http_auth::require_auth(router, certs_dir)
}

async fn index() -> &'static str {
    "Gristmill driver. JSON status: /api/jobs, /api/jobs/{id}, /api/workers\n"
}

/// This run's jobs in submit order, then those that ended in earlier runs, newest first.
async fn jobs(State(state): State<Arc<DriverState>>) -> impl IntoResponse {
    let mut jobs = state.read(|s| s.jobs(std::time::Instant::now()));
    jobs.extend(state.history_views());
    Json(jobs)
}

async fn job(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> axum::response::Response {
    let job_id = JobId::from_string(id.clone());
    let live = state.job_view(&job_id);
    match live.or_else(|| state.history_views().into_iter().find(|v| v.id == job_id)) {
        Some(view) => Json(view).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job {id}\n")).into_response(),
    }
}

async fn workers(State(state): State<Arc<DriverState>>) -> impl IntoResponse {
    Json(state.read(|s| s.workers(std::time::Instant::now())))
}
