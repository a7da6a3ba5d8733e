//! Authentication of the HTTP servers (the driver's status pages and `/metrics`, a worker's
//! `/metrics`): a peer whose client certificate the TLS handshake verified against the
//! cluster CA, or a request with a bearer token (`gristmill cert create-token USER`); in
//! plaintext (loopback only) anyone.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use super::PeerInfo;
use super::certs::CertsDir;
use super::tokens::verify_token;

/// `router` behind [`authenticate`]; `certs_dir` holds the tokens of a secured server.
pub fn require_auth<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    certs_dir: Option<CertsDir>,
) -> axum::Router<S> {
    router.layer(middleware::from_fn_with_state(Arc::new(certs_dir), authenticate))
}

/// Lets through a peer whose certificate was verified in the handshake (or any peer in
/// plaintext), or a request with a valid bearer token; answers 401 otherwise.
pub async fn authenticate(
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
            tracing::debug!(%user, peer = %peer.addr, "HTTP: bearer token accepted");
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
