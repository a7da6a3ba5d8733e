//! The cluster driver: a tokio shell around the pure [`Scheduler`](crate::scheduler).
//!
//! * [`service`]: the gRPC `Driver` service: worker sessions, binaries, job submission,
//!   status, cancel;
//! * [`state`]: what the driver holds (the scheduler, worker links, jobs, binaries) and
//!   how it carries out the scheduler's actions;
//! * [`drain`]: `gristmill worker drain`: an operator drains a worker;
//! * [`binaries`]: job binaries: bounded, streamed, verified uploads and a bounded store;
//! * [`placement`]: which worker fetches a job binary from which peer;
//! * [`commit`]: the single committer of each job's output (`_SUCCESS` written last);
//! * [`http`]: the web UI (`/`, `/jobs/{id}`, `/workers/{id}`) and its JSON twins under `/api/`.
//! * [`metrics`]: `/metrics` (Prometheus), beside `/healthz` and `/readyz`;
//! * [`live`]: live counters of running attempts, from the workers' heartbeats.
//!
//! ```text
//! gristmill driver --listen 127.0.0.1:7077 --http 127.0.0.1:8080
//! ```

pub mod bad_rows;
pub mod binaries;
pub mod commit;
pub mod drain;
pub mod events;
pub mod history_http;
pub mod http;
pub mod job_trace;
pub mod journal;
pub mod live;
pub mod metrics;
pub mod placement;
pub mod recovery;
#[cfg(test)]
mod recovery_tests;
pub mod service;
pub mod settle;
pub mod staging;
pub mod state;
pub mod task_logs;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::driver_server::DriverServer;

use crate::error::{Error, Result};
use crate::scheduler::SchedulerConfig;
use crate::security::{PeerInfo, Protocol, SecurityError, ServerSecurity};

pub use binaries::{BinaryDistribution, BinaryLimits, DEFAULT_MAX_BINARY_BYTES, DEFAULT_PEER_FANOUT};
pub use recovery::HistoryLimits;
pub use service::DriverService;
pub use state::DriverState;

/// How a driver runs.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Where the gRPC service listens.
    pub listen: String,
    /// Where the JSON status pages are served, if anywhere.
    pub http: Option<String>,
    /// Where job binaries and the journal (see [`journal`]) are stored: a driver restarted
    /// on the same directory resumes the jobs that had not ended.
    pub data_dir: PathBuf,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// Retries, heartbeat timeout, speculation.
    pub scheduler: SchedulerConfig,
    /// Certificates (mutual TLS) or plaintext on loopback, and connection bounds.
    pub security: ServerSecurity,
    /// Most task slots one worker may advertise.
    pub max_worker_slots: u32,
    /// Bounds on job binaries: size, number stored, uploads at once.
    pub binaries: BinaryLimits,
    /// How job binaries reach the workers: from each other, or from an object store.
    pub distribution: BinaryDistribution,
    /// How many ended jobs, and how old, stay in memory for the status pages.
    pub history: HistoryLimits,
}

/// The default of [`DriverConfig::max_worker_slots`].
pub const DEFAULT_MAX_WORKER_SLOTS: u32 = 256;

/// How long one gRPC request may take to be answered (streams' bodies excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

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
    let security = &config.security;
    let bind_error =
        |e: SecurityError| Error::Rpc { what: "starting the driver".into(), cause: e.to_string() };
    let grpc = security.bind(&config.listen, Protocol::Grpc).await.map_err(bind_error)?;
    let grpc_addr = grpc.local_addr();
    let http = match &config.http {
        Some(addr) => Some(security.bind(addr, Protocol::Http).await.map_err(bind_error)?),
        None => None,
    };
    let http_addr = http.as_ref().map(|l| l.local_addr());
    let status_base = http_addr.map(|a| format!("{}://{a}", security.scheme()));
    let state = Arc::new(DriverState::open(&config, status_base).await?);
    on_ready(DriverAddrs { grpc: grpc_addr, http: http_addr });
    let ready = crate::metrics::routes::Readiness::default();
    tokio::spawn(state::relock_resumed(state.clone()));
    tokio::spawn(state::tick_loop(state.clone()));
    if let Some(listener) = http {
        let health = crate::metrics::routes::health_router(ready.clone());
        let router = http::router(state.clone(), security.certs_dir.clone()).merge(health);
        tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<PeerInfo>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "the HTTP status server stopped");
            }
        });
    }
    let service = DriverServer::new(DriverService::new(state))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // The journal is loaded and the service starts: ready.
    ready.set(true);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .timeout(REQUEST_TIMEOUT)
        .add_service(service)
        .serve_with_incoming(grpc.into_incoming())
        .await
        .map_err(|e| Error::Rpc { what: format!("serving on {grpc_addr}"), cause: e.to_string() })
}
