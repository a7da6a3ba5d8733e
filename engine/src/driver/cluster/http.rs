//! The driver's JSON status pages: `/api/jobs`, `/api/jobs/{id}`, `/api/workers`.
//!
//! On a secured driver they are served over HTTPS and answer only a peer with a certificate
//! of the cluster CA or a bearer token (`gristmill cert create-token USER`); in plaintext
//! (loopback) anyone may read them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::state::DriverState;
use crate::ids::JobId;
use crate::security::PeerInfo;
use crate::security::certs::CertsDir;
use crate::security::tokens::verify_token;

/// The status pages' routes; `certs_dir` holds the tokens of a secured driver.
pub fn router(state: Arc<DriverState>, certs_dir: Option<CertsDir>) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/workers", get(workers))
        .merge(super::history_http::routes(certs_dir.clone()))
        .with_state(state)
        .layer(middleware::from_fn_with_state(Arc::new(certs_dir), authenticate))
}

/// Lets through a peer whose certificate was verified in the handshake (or any peer in
/// plaintext), or a request with a valid bearer token; answers 401 otherwise.
async fn authenticate(
    State(certs_dir): State<Arc<Option<CertsDir>>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    request: Request,
    next: Next,
) -> Response {
    if peer.identity.is_some() {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let user = match (certs_dir.as_ref(), token) {
        (Some(dir), Some(token)) => verify_token(dir, token),
        _ => None,
    };
    match user {
        Some(user) => {
            tracing::debug!(%user, peer = %peer.addr, "status pages: bearer token accepted");
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a client certificate of the cluster CA or a bearer token (gristmill cert create-token USER) is required\n",
        )
            .into_response(),
    }
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
    let live = state.read(|s| s.job(std::time::Instant::now(), &job_id));
    match live.or_else(|| state.history_views().into_iter().find(|v| v.id == job_id)) {
        Some(view) => Json(view).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job {id}\n")).into_response(),
    }
}

async fn workers(State(state): State<Arc<DriverState>>) -> impl IntoResponse {
    Json(state.read(|s| s.workers(std::time::Instant::now())))
}
