//! Security: who may talk to whom, proven by certificates of one cluster CA.
//!
//! * [`certs`]: `gristmill cert create-ca|create-node|create-client|create-token`, the files
//!   named as CockroachDB names them (`ca.crt`, `node.crt`, `client.USER.crt`, keys 0600);
//! * [`identity`]: what a verified peer certificate says: a [`Node`](Identity::Node) (driver
//!   or worker) or a [`Client`](Identity::Client) user, and what each [`Role`] may do;
//! * [`tls`]: the rustls server configurations (mutual TLS) and the tonic client
//!   configurations, loaded from a certificates directory;
//! * [`listener`]: the one accept loop of every server (gRPC and HTTP): a bound on
//!   connections per peer, the TLS handshake with a deadline, and the peer's identity handed
//!   to the handlers as a [`PeerInfo`];
//! * [`tokens`]: bearer tokens for the HTTP status pages, stored hashed;
//! * [`secret`]: per-job secrets (never printed, compared in constant time).
//!
//! Without a certificates directory a process speaks plaintext, and only on loopback
//! ([`check_listen_address`]) unless the operator passes `--insecure`.

pub mod certs;
pub mod http_auth;
pub mod identity;
pub mod listener;
pub mod secret;
pub mod server;
pub mod tls;
pub mod tokens;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

pub use identity::{Identity, Role};
pub use listener::{ListenerLimits, PeerInfo, SecureListener};
pub use secret::JobSecret;
pub use server::{Protocol, ServerSecurity};
pub use tls::{ClientTls, ServerTls};

/// What went wrong setting up or checking security.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A certificate, key or token file could not be read or written.
    #[error("{path}: {cause}")]
    File {
        /// The file.
        path: String,
        /// Why.
        cause: String,
    },
    /// A file exists and `--overwrite` was not given.
    #[error("{path} exists; pass --overwrite to replace it")]
    Exists {
        /// The file.
        path: String,
    },
    /// Certificates could not be made or parsed.
    #[error("{what}: {cause}")]
    Certificate {
        /// What was attempted.
        what: String,
        /// Why it failed.
        cause: String,
    },
    /// Plaintext on a non-loopback address without `--insecure`.
    #[error(
        "refusing to serve plaintext on {addr}: anyone who reaches it could run code on every worker. \
         Create certificates (gristmill cert create-ca --certs-dir DIR; gristmill cert create-node HOST... \
         --certs-dir DIR) and pass --certs-dir DIR, or listen on 127.0.0.1, or pass --insecure"
    )]
    PlaintextOffLoopback {
        /// The listening address.
        addr: String,
    },
    /// A URL and the security settings disagree.
    #[error("{0}")]
    Url(String),
}

/// Result of security setup.
pub type SecurityResult<T> = std::result::Result<T, SecurityError>;

/// Checks a server may listen on `addr`: always with TLS, in plaintext only on loopback
/// unless `insecure`. `--insecure` warns on every start.
pub fn check_listen_address(addr: &str, secured: bool, insecure: bool) -> SecurityResult<()> {
    if insecure && !secured {
        tracing::warn!(
            %addr,
            "--insecure: serving plaintext without authentication; anyone who reaches this port can \
             run code on every worker"
        );
    }
    if secured || insecure || is_loopback(addr) {
        return Ok(());
    }
    Err(SecurityError::PlaintextOffLoopback { addr: addr.to_owned() })
}

/// True when every address `addr` resolves to is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    let resolved: Vec<SocketAddr> = match addr.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(_) => return false,
    };
    !resolved.is_empty() && resolved.iter().all(|a| is_loopback_ip(a.ip()))
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The caller of a gRPC request, if it may act in `role` (`what` names the action in the
/// refusal): the identity its certificate proved in the handshake.
pub fn authorize<T>(request: &tonic::Request<T>, role: Role, what: &str) -> Result<Identity, tonic::Status> {
    let identity = request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|peer| peer.identity.clone())
        .ok_or_else(|| tonic::Status::unauthenticated("no verified client certificate"))?;
    identity.require(role, what).map_err(tonic::Status::permission_denied)?;
    Ok(identity)
}

/// The client certificate a user presents: `user`'s, or when none is named, the only
/// `client.*.crt` in `dir`, else `$USER`'s.
pub fn client_tls(dir: &certs::CertsDir, user: Option<&str>) -> SecurityResult<ClientTls> {
    let user = match user {
        Some(user) => user.to_owned(),
        None => match dir.client_users().as_slice() {
            [only] => only.clone(),
            _ => std::env::var("USER").unwrap_or_default(),
        },
    };
    ClientTls::user(dir, &user)
}

/// Installs ring as rustls's process-wide crypto provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_refused_off_loopback_unless_insecure() {
        assert!(check_listen_address("127.0.0.1:0", false, false).is_ok());
        assert!(check_listen_address("[::1]:0", false, false).is_ok());
        assert!(check_listen_address("localhost:0", false, false).is_ok());
        let refused = check_listen_address("0.0.0.0:7077", false, false).unwrap_err().to_string();
        assert!(refused.contains("0.0.0.0:7077") && refused.contains("--certs-dir"), "{refused}");
        assert!(check_listen_address("0.0.0.0:7077", true, false).is_ok());
        assert!(check_listen_address("0.0.0.0:7077", false, true).is_ok());
    }
}
