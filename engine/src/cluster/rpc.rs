//! Connecting to a driver or a worker's shuffle service (mutual TLS when certificates are
//! given, plaintext otherwise), and the few conversions between wire enums and text.

use std::time::Duration;

use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::JobState;
use gristmill_proto::v1::driver_client::DriverClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::security::ClientTls;
use crate::security::certs::CertsDir;

/// How to reach the driver: its URL and, for a secured cluster (`https://`), the TLS
/// setup to present.
#[derive(Clone, Debug)]
pub struct DriverEndpoint {
    /// `https://host:port` (secured) or `http://host:port` (plaintext, loopback).
    pub url: String,
    /// The CA and certificate to use; `None` for plaintext.
    pub tls: Option<ClientTls>,
}

impl DriverEndpoint {
    /// The driver at `url` (a bare `host:port` gets the scheme `tls` implies). An `https`
    /// URL without certificates, or certificates with an `http` URL, is refused: the user
    /// meant one or the other.
    pub fn new(url: &str, tls: Option<ClientTls>) -> Result<Self> {
        Ok(DriverEndpoint { url: url_with_scheme(url, tls.is_some())?, tls })
    }
}

/// `address` as a URL with the scheme the security settings imply.
pub fn url_with_scheme(address: &str, secured: bool) -> Result<String> {
    let scheme = if secured { "https" } else { "http" };
    let Some((given, _)) = address.split_once("://") else { return Ok(format!("{scheme}://{address}")) };
    let mismatch =
        |why: &str| Err(Error::Rpc { what: format!("connecting to {address}"), cause: why.to_owned() });
    match (given, secured) {
        ("https", true) | ("http", false) => Ok(address.to_owned()),
        ("http", true) => mismatch("with --certs-dir the URL is https://HOST:PORT"),
        ("https", false) => mismatch(
            "a secured driver needs --certs-dir DIR (or GRISTMILL_CERTS_DIR) with ca.crt and a certificate",
        ),
        _ => mismatch("the URL must start with https:// or http://"),
    }
}

/// A channel to `url` (`http`/`https`, matching `tls`), connected.
pub async fn connect(url: &str, tls: Option<&ClientTls>, connect_timeout: Duration) -> Result<Channel> {
    let fail = |cause: String| Error::Rpc { what: format!("connecting to {url}"), cause };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        crate::security::install_crypto_provider();
        endpoint = endpoint.tls_config(tls.tonic()).map_err(|e| fail(e.to_string()))?;
    }
    endpoint.connect().await.map_err(|e| fail(describe_connect_error(&e)))
}

/// A client of the driver.
pub async fn connect_driver(driver: &DriverEndpoint) -> Result<DriverClient<Channel>> {
    let channel =
        connect(&driver.url, driver.tls.as_ref(), Duration::from_secs(5)).await.map_err(|e| match e {
            Error::Rpc { cause, .. } => Error::Rpc {
                what: format!("connecting to the driver at {}", driver.url),
                cause: format!("{cause} (is the driver running?)"),
            },
            other => other,
        })?;
    Ok(DriverClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// The whole chain of a transport error: tonic's top level says only "transport error",
/// the TLS reason (unknown CA, expired certificate) is in its sources.
fn describe_connect_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The TLS setup of processes on a node (workers, and the task processes they start, which
/// inherit `GRISTMILL_CERTS_DIR`): the node certificate, or `None` without a certificates
/// directory.
pub fn node_tls_from_env() -> Result<Option<ClientTls>> {
    match std::env::var_os(CERTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => ClientTls::node(&CertsDir::new(dir))
            .map(Some)
            .map_err(|e| Error::Rpc { what: "loading the node certificate".into(), cause: e.to_string() }),
        _ => Ok(None),
    }
}

/// The environment variable naming the certificates directory.
pub const CERTS_DIR_ENV: &str = "GRISTMILL_CERTS_DIR";

/// A job state as users read it.
pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => "unknown",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Committing => "committing",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// True for a state a job never leaves.
pub fn is_final(state: JobState) -> bool {
    matches!(state, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
}

/// Turns a gRPC status into an error naming what was attempted.
pub fn status_error(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> Error {
    let what = what.into();
    move |status| Error::Rpc { what, cause: status.message().to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_follows_the_security_settings() {
        assert_eq!(url_with_scheme("127.0.0.1:7077", true).unwrap(), "https://127.0.0.1:7077");
        assert_eq!(url_with_scheme("127.0.0.1:7077", false).unwrap(), "http://127.0.0.1:7077");
        assert!(url_with_scheme("http://h:1", true).unwrap_err().to_string().contains("https://"));
        assert!(url_with_scheme("https://h:1", false).unwrap_err().to_string().contains("--certs-dir"));
    }
}
