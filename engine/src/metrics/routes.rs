//! `/metrics`, `/healthz` and `/readyz`, as the driver's and the workers' HTTP servers mount
//! them. `/metrics` sits behind the server's authentication (a client certificate of the
//! cluster CA or a bearer token, so a Prometheus scraper with a token reads it); the health
//! endpoints tell nothing but alive and ready, and answer anyone (load balancers and
//! orchestrators probe them without credentials).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::CONTENT_TYPE;

/// Whether a server is ready: false until [`set`](Self::set). Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets the flag.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// The flag.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Renders the metrics at a scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /metrics`: what `render` gives, in the Prometheus text format.
pub fn metrics_router(render: Render) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                // Reading /proc and statvfs blocks briefly: off the async threads.
                match tokio::task::spawn_blocking(move || render()).await {
                    Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
                }
            }
        }),
    )
}

/// `GET /healthz` (200 while the process serves) and `GET /readyz` (200 once `ready` is
/// set, 503 before).
pub fn health_router(ready: Readiness) -> axum::Router {
    axum::Router::new().route("/healthz", get(|| async { "ok\n" })).route(
        "/readyz",
        get(move || {
            let ready = ready.is_ready();
            async move {
                if ready {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
        }),
    )
}
