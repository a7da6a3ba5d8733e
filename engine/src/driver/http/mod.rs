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

use axum::routing::get;

use super::state::DriverState;
use crate::security::certs::CertsDir;

/// The UI's and API's routes; `certs_dir` holds the tokens of a secured driver.
pub fn router(state: Arc<DriverState>, certs_dir: Option<CertsDir>) -> axum::Router {
    let router = routes()
        .merge(super::history_http::routes(certs_dir.clone()))
        .with_state(state.clone())
        .merge(super::metrics::router(state));
    crate::security::http_auth::require_auth(router, certs_dir)
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
