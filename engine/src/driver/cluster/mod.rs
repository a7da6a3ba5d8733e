//! The cluster driver: a tokio shell around the pure [`Scheduler`](crate::scheduler).
//!
//! * [`service`]: the gRPC `Driver` service: worker sessions, binaries, job submission,
//!   status, cancel;
//! * [`state`]: what the driver holds (the scheduler, worker links, jobs, binaries) and
//!   how it carries out the scheduler's actions;
//! * [`commit`]: the single committer of each job's output (`_SUCCESS` written last);
//! * [`http`]: the JSON status pages (`/api/jobs`, `/api/jobs/{id}`, `/api/workers`).
//!
//! ```text
//! gristmill driver --listen 127.0.0.1:7077 --http 127.0.0.1:8080
//! ```

pub mod commit;
pub mod http;
pub mod service;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::driver_server::DriverServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::error::{Error, Result};
use crate::scheduler::SchedulerConfig;

pub use service::DriverService;
pub use state::DriverState;

/// How a driver runs.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Where the gRPC service listens.
    pub listen: String,
    /// Where the JSON status pages are served, if anywhere.
    pub http: Option<String>,
    /// Where job binaries are stored.
    pub data_dir: PathBuf,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// Retries, heartbeat timeout, speculation.
    pub scheduler: SchedulerConfig,
}

/// Addresses a started driver listens on.
#[derive(Clone, Copy, Debug)]
pub struct DriverAddrs {
    /// The gRPC service.
    pub grpc: SocketAddr,
    /// The HTTP status pages.
    pub http: Option<SocketAddr>,
}

/// Runs a driver until the process ends; `on_ready` gets the bound addresses.
pub async fn serve(config: DriverConfig, on_ready: impl FnOnce(DriverAddrs)) -> Result<()> {
    let bind = |what: &str, addr: &str, e: std::io::Error| Error::Rpc {
        what: format!("listening for {what} on {addr}"),
        cause: e.to_string(),
    };
    let grpc = TcpListener::bind(&config.listen).await.map_err(|e| bind("gRPC", &config.listen, e))?;
    let grpc_addr = grpc.local_addr().map_err(|e| bind("gRPC", &config.listen, e))?;
    let http = match &config.http {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| bind("HTTP", addr, e))?),
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let status_base = http_addr.map(|a| format!("http://{a}"));
    let state = Arc::new(DriverState::new(&config, status_base)?);
    on_ready(DriverAddrs { grpc: grpc_addr, http: http_addr });
    tokio::spawn(state::tick_loop(state.clone()));
    if let Some(listener) = http {
        let router = http::router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the HTTP status server stopped");
            }
        });
    }
    let service = DriverServer::new(DriverService::new(state))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming(TcpListenerStream::new(grpc))
        .await
        .map_err(|e| Error::Rpc { what: format!("serving on {grpc_addr}"), cause: e.to_string() })
}
