//! The driver's JSON status pages: `/api/jobs`, `/api/jobs/{id}`, `/api/workers`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::state::DriverState;
use crate::ids::JobId;

/// The status pages' routes.
pub fn router(state: Arc<DriverState>) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/workers", get(workers))
        .with_state(state)
}

async fn index() -> &'static str {
    "Gristmill driver. JSON status: /api/jobs, /api/jobs/{id}, /api/workers\n"
}

async fn jobs(State(state): State<Arc<DriverState>>) -> impl IntoResponse {
    Json(state.read(|s| s.jobs(std::time::Instant::now())))
}

async fn job(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> axum::response::Response {
    match state.read(|s| s.job(std::time::Instant::now(), &JobId::from_string(id.clone()))) {
        Some(view) => Json(view).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job {id}\n")).into_response(),
    }
}

async fn workers(State(state): State<Arc<DriverState>>) -> impl IntoResponse {
    Json(state.read(|s| s.workers(std::time::Instant::now())))
}
