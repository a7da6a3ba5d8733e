//! TLS configurations from a certificates directory: servers present `node.crt` and verify
//! clients against `ca.crt`; clients verify servers against `ca.crt` and present their own
//! certificate (`node.crt` for workers and tasks, `client.USER.crt` for users).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::certs::{CertsDir, read_file};
use super::{SecurityError, SecurityResult};

/// Whether a server insists on a client certificate during the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// gRPC: no certificate, no connection.
    Required,
    /// The HTTP status pages: a certificate, or a bearer token checked per request.
    Optional,
}

/// A server's TLS setup: the node certificate, and the CA its clients must chain to.
#[derive(Clone)]
pub struct ServerTls {
    /// The rustls configuration (ALPN set for the protocol served).
    pub config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Loads `node.crt`, `node.key` and `ca.crt` from `dir`; `alpn` names the protocol
    /// (`h2` for gRPC, `http/1.1` for the status pages).
    pub fn load(dir: &CertsDir, auth: ClientAuth, alpn: &[u8]) -> SecurityResult<ServerTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(root_store(dir)?);
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let builder = match auth {
            ClientAuth::Required => builder,
            ClientAuth::Optional => builder.allow_unauthenticated(),
        };
        let verifier = builder.build().map_err(tls_error("building the client verifier"))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error("choosing TLS versions"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&dir.node_cert())?, key(&dir.node_key())?)
            .map_err(tls_error(format!("using {}", dir.node_cert().display())))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(ServerTls { config: Arc::new(config) })
    }
}

/// A client's TLS setup: the CA to verify servers with and the certificate to present.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    /// Who the certificate says we are (for messages).
    pub name: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls({})", self.name)
    }
}

impl ClientTls {
    /// A driver or worker (or a task on a worker): `node.crt`.
    pub fn node(dir: &CertsDir) -> SecurityResult<ClientTls> {
        Self::load(dir, &dir.node_cert(), &dir.node_key(), "node")
    }

    /// A user: `client.USER.crt`.
    pub fn user(dir: &CertsDir, user: &str) -> SecurityResult<ClientTls> {
        let cert = dir.client_cert(user);
        if !cert.is_file() {
            return Err(SecurityError::File {
                path: cert.display().to_string(),
                cause: format!(
                    "no client certificate for user {user} (create one: gristmill cert create-client {user} \
                     --certs-dir {})",
                    dir.path().display()
                ),
            });
        }
        Self::load(dir, &cert, &dir.client_key(user), user)
    }

    fn load(
        dir: &CertsDir,
        cert: &std::path::Path,
        key: &std::path::Path,
        name: &str,
    ) -> SecurityResult<ClientTls> {
        Ok(ClientTls {
            ca_pem: read_file(&dir.ca_cert())?,
            cert_pem: read_file(cert)?,
            key_pem: read_file(key)?,
            name: name.to_owned(),
        })
    }

    /// The tonic configuration (gRPC over HTTP/2).
    pub fn tonic(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// A rustls client configuration presenting this certificate (for HTTPS clients).
    pub fn rustls(&self) -> SecurityResult<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in pem_certs(&self.ca_pem, "the CA certificate")? {
            roots.add(cert).map_err(tls_error("adding the CA certificate"))?;
        }
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(tls_error("reading the key"))?;
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error("choosing TLS versions"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(pem_certs(&self.cert_pem, "the certificate")?, key)
            .map_err(tls_error("using the certificate"))
    }
}

fn root_store(dir: &CertsDir) -> SecurityResult<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&dir.ca_cert())? {
        roots.add(cert).map_err(tls_error(format!("using {}", dir.ca_cert().display())))?;
    }
    Ok(roots)
}

fn certs(path: &std::path::Path) -> SecurityResult<Vec<CertificateDer<'static>>> {
    pem_certs(&read_file(path)?, &path.display().to_string())
}

fn pem_certs(pem: &str, what: &str) -> SecurityResult<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(tls_error(format!("reading {what}")))?;
    if certs.is_empty() {
        return Err(SecurityError::File { path: what.to_owned(), cause: "no PEM certificate in it".into() });
    }
    Ok(certs)
}

fn key(path: &std::path::Path) -> SecurityResult<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(read_file(path)?.as_bytes())
        .map_err(tls_error(format!("reading {}", path.display())))
}

fn tls_error<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> SecurityError {
    let what = what.into();
    move |e| SecurityError::Certificate { what, cause: e.to_string() }
}
