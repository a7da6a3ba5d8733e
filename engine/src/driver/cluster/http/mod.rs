//! The driver's web UI and JSON API on its `--http` address.
//!
//! HTML pages (module `pages`, server-rendered with `maud`, which escapes every interpolated
//! string; a little inline JavaScript refreshes them and sorts tables): `/` (workers and
//! jobs), `/jobs/{id}` (phases, counters, "why is it slow", the timeline, the task table),
//! `/workers/{id}`. Each has a JSON twin under `/api/` (module `api`): `/api/cluster`,
//! `/api/jobs/{id}`, `/api/workers/{id}`, besides `/api/jobs` and `/api/workers`; the
//! OpenAPI 3 document of them is `/api/openapi.json` (module `openapi`).
//!
//! On a secured driver they are served over HTTPS and answer only a peer with a certificate
//! of the cluster CA or a bearer token (`gristmill cert create-token USER`); in plaintext
//! (loopback) anyone may read them.

mod api;
mod openapi;
mod pages;

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::state::DriverState;
use crate::security::PeerInfo;
use crate::security::certs::CertsDir;
use crate::security::tokens::verify_token;

/// The UI's and API's routes; `certs_dir` holds the tokens of a secured driver.
pub fn router(state: Arc<DriverState>, certs_dir: Option<CertsDir>) -> axum::Router {
    routes().with_state(state).layer(middleware::from_fn_with_state(Arc::new(certs_dir), authenticate))
}

/// Every route (the `openapi` module's test reads the `/api/` ones here: each must be documented).
fn routes() -> axum::Router<Arc<DriverState>> {
    axum::Router::new()
        .route("/", get(pages::index))
        .route("/jobs/{id}", get(pages::job))
        .route("/workers/{id}", get(pages::worker))
        .route("/api/cluster", get(api::cluster))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/workers", get(api::workers))
        .route("/api/workers/{id}", get(api::worker))
        .route("/api/openapi.json", get(openapi::document))
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
