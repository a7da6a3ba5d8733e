//! How a server (the driver, a worker's shuffle service) is secured, and binding its
//! listeners accordingly.

use super::certs::CertsDir;
use super::listener::{ListenerLimits, SecureListener};
use super::tls::{ClientAuth, ServerTls};
use super::{SecurityError, SecurityResult, check_listen_address};

/// A server's security settings.
#[derive(Clone, Debug, Default)]
pub struct ServerSecurity {
    /// Certificates (`ca.crt`, `node.crt`, `node.key`): mutual TLS. `None`: plaintext.
    pub certs_dir: Option<CertsDir>,
    /// Allow plaintext off loopback.
    pub insecure: bool,
    /// Connection bounds.
    pub limits: ListenerLimits,
}

/// What a listener serves: gRPC wants a client certificate in the handshake; the status
/// pages take a certificate or a bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC over HTTP/2.
    Grpc,
    /// HTTP/1.1 status pages.
    Http,
}

impl ServerSecurity {
    /// True with certificates.
    pub fn is_secured(&self) -> bool {
        self.certs_dir.is_some()
    }

    /// The URL scheme clients use.
    pub fn scheme(&self) -> &'static str {
        if self.is_secured() { "https" } else { "http" }
    }

    /// Binds `addr` for `protocol` (refusing plaintext off loopback without `--insecure`).
    pub async fn bind(&self, addr: &str, protocol: Protocol) -> SecurityResult<SecureListener> {
        check_listen_address(addr, self.is_secured(), self.insecure)?;
        let tls = match &self.certs_dir {
            None => None,
            Some(dir) => Some(match protocol {
                Protocol::Grpc => ServerTls::load(dir, ClientAuth::Required, b"h2")?,
                Protocol::Http => ServerTls::load(dir, ClientAuth::Optional, b"http/1.1")?,
            }),
        };
        let fail = |e: std::io::Error| SecurityError::File {
            path: format!("listening on {addr}"),
            cause: e.to_string(),
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(fail)?;
        SecureListener::new(listener, tls, self.limits).map_err(fail)
    }
}
