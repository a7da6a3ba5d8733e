//! The driver's HTTP routes for a job's history and task logs (merged into the status
//! pages' router, behind the same authentication):
//!
//! * `/api/jobs/{id}/events`: the job's event log as a JSON array (see
//!   [`events`](super::events)), also for jobs that ended before a driver restart;
//! * `/jobs/{id}/tasks/{task}/attempts/{attempt}/log`: one attempt's stderr as text
//!   (`?stream=stdout` for its stdout), read from its worker; only for the job's owner or
//!   admin. `task` is `map 3`, `m3`, `reduce 0` or `r0`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use gristmill_proto::v1::TaskLogRequest;

use super::state::DriverState;
use crate::security::certs::CertsDir;
use crate::security::tokens::verify_token;
use crate::security::{Identity, PeerInfo};

/// The history routes; `certs_dir` holds the bearer tokens of a secured driver.
pub fn routes(certs_dir: Option<CertsDir>) -> Router<Arc<DriverState>> {
    Router::new()
        .route("/api/jobs/{id}/events", get(events))
        .route("/jobs/{id}/tasks/{task}/attempts/{attempt}/log", get(task_log))
        .layer(Extension(Arc::new(certs_dir)))
}

async fn events(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> Response {
    match state.events.read(&id).await {
        Some(events) => Json(events).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no event log for job {id}\n")).into_response(),
    }
}

async fn task_log(
    State(state): State<Arc<DriverState>>,
    Extension(certs_dir): Extension<Arc<Option<CertsDir>>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
    Path((id, task, attempt)): Path<(String, String, u32)>,
    RawQuery(query): RawQuery,
) -> Response {
    // The status pages' middleware let the request in; who it is decides what it may read.
    let Some(identity) = peer.identity.clone().or_else(|| bearer_user(&certs_dir, &headers)) else {
        return (StatusCode::UNAUTHORIZED, "who are you?\n").into_response();
    };
    let stdout = query.is_some_and(|q| q.split('&').any(|pair| pair == "stream=stdout"));
    let request = TaskLogRequest { job_id: id, task, attempt: Some(attempt), stdout };
    match super::task_logs::task_logs(&state, &identity, &request).await {
        Ok(logs) => {
            let mut body = Vec::new();
            for log in logs {
                if !log.error.is_empty() {
                    return (StatusCode::BAD_GATEWAY, format!("{}\n", log.error)).into_response();
                }
                body.extend_from_slice(&log.data);
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
        }
        Err(status) => {
            let code = match status.code() {
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                _ => StatusCode::NOT_FOUND,
            };
            (code, format!("{}\n", status.message())).into_response()
        }
    }
}

fn bearer_user(certs_dir: &Option<CertsDir>, headers: &HeaderMap) -> Option<Identity> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?.trim();
    verify_token(certs_dir.as_ref()?, token).map(Identity::Client)
}
