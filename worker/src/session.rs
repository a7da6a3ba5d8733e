//! The worker's session with the driver: register, then heartbeats and task reports go
//! up while task commands come down, over one bidirectional stream. When the stream
//! breaks, the worker kills its attempts (the driver has given them to others) and
//! attaches again as a fresh worker, for as long as `driver_timeout` allows.
//!
//! The first SIGTERM (or SIGINT, or a drain command from the driver) drains the worker: it
//! tells the driver, which gives it no new tasks, lets its running attempts finish (for up
//! to `--drain-timeout`) and releases it once no running job needs its map output; the
//! worker serves its shuffle data until then, and exits. A second signal stops it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gristmill::cluster::binary::BinaryStore;
use gristmill::cluster::rpc::{DriverEndpoint, connect_driver};
use gristmill::cluster::shuffle_service::ShuffleService;
use gristmill::cluster::task_logs::TaskLogService;
use gristmill::security::{ClientTls, Protocol};
use gristmill_proto::v1::binary_peer_server::BinaryPeerServer;
use gristmill_proto::v1::shuffle_server::ShuffleServer;
use gristmill_proto::v1::task_logs_server::TaskLogsServer;
use gristmill_proto::v1::{
    Draining, DriverMessage, Heartbeat, HeldMapOutput, Register, WorkerMessage, driver_message,
    worker_message,
};
use gristmill_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::binaries::BinaryCache;
use crate::observe::{Observed, StatusServer, resources};
use crate::peer::PeerBinaries;
use crate::tasks::{Dirs, Tasks};
use crate::{WorkerConfig, WorkerError};

/// Why a session ended.
enum SessionEnd {
    /// SIGTERM or SIGINT (a second one while draining), or released after draining: stop.
    Shutdown,
    /// The stream broke: attach again.
    Lost(String),
}

/// Serves the shuffle service and keeps a session with the driver until shutdown.
pub async fn serve(mut config: WorkerConfig) -> Result<(), WorkerError> {
    let setup = |what: String| move |e: std::io::Error| WorkerError::Setup { what, cause: e.to_string() };
    // Absolute: task processes run in their own directories, and exec cached binaries by path.
    config.data_dir = std::path::absolute(&config.data_dir)
        .map_err(setup(format!("resolving {}", config.data_dir.display())))?;
    let mut dirs = Dirs {
        shuffle: config.data_dir.join("shuffle"),
        secrets: gristmill::cluster::shuffle_service::JobSecrets::new(),
        tasks: config.data_dir.join("tasks"),
        // No host id: no worker's output is read host-locally here, nor this one's elsewhere.
        host_id: if config.host_local_shuffle { gristmill::cluster::host_id() } else { String::new() },
        // Absolute: task processes run in their own directories.
        certs_dir: config
            .security
            .certs_dir
            .as_ref()
            .map(|dir| std::fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_owned())),
        otlp_endpoint: config.otlp_endpoint.clone(),
        observed: Observed::new(config.slots),
        logs: config.data_dir.join("logs"),
        log_secrets: gristmill::cluster::shuffle_service::JobSecrets::new(),
        log_retention: config.log_retention,
        task_memory_limit: config.memory_limit / u64::from(config.slots.max(1)),
        executors: None,
    };
    if config.task_isolation == crate::TaskIsolation::Executor {
        dirs.executors =
            Some(crate::executors::Executors::new(dirs.observed.metrics.clone(), config.memory_limit));
    }
    // Only this worker may read its data (job binaries, map output, task scratch space, logs).
    for dir in [&config.data_dir, &dirs.shuffle, &dirs.tasks, &dirs.logs] {
        gristmill::security::certs::create_private_dir(dir).map_err(|e| WorkerError::Setup {
            what: format!("creating {}", dir.display()),
            cause: e.to_string(),
        })?;
    }
    // Absolute: reducers in other workers' processes read map output from it.
    dirs.shuffle = std::fs::canonicalize(&dirs.shuffle)
        .map_err(setup(format!("resolving {}", dirs.shuffle.display())))?;
    let store = BinaryStore::open(config.data_dir.join("binaries"))
        .map_err(|e| WorkerError::Setup { what: "the binary cache".into(), cause: e.to_string() })?;
    let driver = driver_endpoint(&config)?;
    let listener = config.security.bind(&config.listen, Protocol::Grpc).await.map_err(|e| {
        WorkerError::Setup { what: "starting the shuffle service".into(), cause: e.to_string() }
    })?;
    let bound = listener.local_addr();
    let advertise = config.advertise.clone().unwrap_or_else(|| bound.to_string());
    let served = dirs.observed.metrics.shuffle_served();
    let shuffle = ShuffleService::new(dirs.shuffle.clone(), dirs.secrets.clone()).with_served_bytes(served);
    let shuffle = ShuffleServer::new(shuffle)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    gristmill::cluster::task_logs::sweep_expired_logs(&dirs.logs, config.log_retention);
    let logs = TaskLogsServer::new(TaskLogService::new(dirs.logs.clone(), dirs.log_secrets.clone()))
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let binaries =
        Arc::new(BinaryCache::new(store, driver.clone()).with_metrics(dirs.observed.metrics.clone()));
    let peer = PeerBinaries::new(binaries.clone(), dirs.observed.metrics.binary_served());
    let peer = BinaryPeerServer::new(peer).max_encoding_message_size(MAX_MESSAGE_BYTES);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(shuffle)
            .add_service(logs)
            .add_service(peer)
            .serve_with_incoming(listener.into_incoming()),
    );
    tracing::info!(shuffle = %advertise, data_dir = %config.data_dir.display(), slots = config.slots, "worker started");
    if let Some(addr) = &config.http {
        let status = StatusServer {
            addr: addr.clone(),
            security: config.security.clone(),
            metrics: dirs.observed.metrics.clone(),
            tasks: dirs.observed.live.clone(),
            shuffle_dir: dirs.shuffle.clone(),
            data_dir: config.data_dir.clone(),
            ready: dirs.observed.ready.clone(),
        };
        let bound = status.start().await?;
        tracing::info!(http = %bound, "serving /metrics, /healthz and /readyz");
    }

    let (signals_tx, signals) = watch::channel(0u32);
    tokio::spawn(count_signals(signals_tx));
    let mut unreachable_since: Option<Instant> = None;
    let result = loop {
        match session(&config, &driver, &advertise, &binaries, &dirs, signals.clone()).await {
            Ok(SessionEnd::Shutdown) => break Ok(()),
            Ok(SessionEnd::Lost(why)) => {
                tracing::warn!(%why, "session with the driver ended; attaching again");
                unreachable_since = None;
            }
            Err(why) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= config.driver_timeout {
                    break Err(WorkerError::Driver(why));
                }
                tracing::warn!(%why, "cannot attach to the driver; retrying");
            }
        }
        // Not attached: there is no one to drain to; a signal stops the worker at once.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = signalled(signals.clone()) => break Ok(()),
        }
    };
    server.abort();
    result
}

/// One session: `Err` if it could not be established.
async fn session(
    config: &WorkerConfig,
    driver: &DriverEndpoint,
    advertise: &str,
    binaries: &Arc<BinaryCache>,
    dirs: &Dirs,
    mut signals: watch::Receiver<u32>,
) -> Result<SessionEnd, String> {
    if *signals.borrow_and_update() > 0 {
        return Ok(SessionEnd::Shutdown);
    }
    let mut client = connect_driver(driver).await.map_err(|e| e.to_string())?;
    let (up, up_rx) = mpsc::channel::<WorkerMessage>(64);
    let register = Register {
        protocol_version: PROTOCOL_VERSION,
        slots: config.slots,
        shuffle_address: advertise.to_owned(),
        host: hostname(),
        pid: std::process::id(),
        shuffle_dir: dirs.shuffle.display().to_string(),
        host_id: dirs.host_id.clone(),
        held_map_outputs: held_map_outputs(dirs),
        memory_bytes: config.memory_limit,
    };
    up.send(WorkerMessage { body: Some(worker_message::Body::Register(register)) })
        .await
        .map_err(|e| e.to_string())?;
    let mut down = client
        .attach(ReceiverStream::new(up_rx))
        .await
        .map_err(|s| format!("attaching: {}", s.message()))?
        .into_inner();
    let registered = match down.message().await.map_err(|s| s.message().to_owned())? {
        Some(DriverMessage { body: Some(driver_message::Body::Registered(r)) }) => r,
        _ => return Err("the driver did not answer the registration".into()),
    };
    tracing::info!(worker = %registered.worker_id, "registered with the driver");
    dirs.observed.ready.set(true);
    dirs.observed.metrics.set_attached(true);
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut fetched = binaries.subscribe();
    // The binaries the driver heard of on this session: one already cached is announced
    // once, not with every attempt that finds it here.
    let mut announced = std::collections::HashSet::new();
    let mut tasks = Tasks::new(binaries.clone(), dirs.clone(), reports_tx);
    let mut heartbeat =
        tokio::time::interval(Duration::from_millis(registered.heartbeat_interval_ms.max(100) as u64));
    let mut draining = false;
    let end = loop {
        tokio::select! {
            message = down.message() => match message {
                Ok(Some(message)) => match handle(&mut tasks, message) {
                    Command::None => {}
                    Command::Drain => {
                        if !draining && !start_draining(config, dirs, &up).await {
                            break SessionEnd::Lost("the session's upstream closed".into());
                        }
                        draining = true;
                    }
                    Command::Released => {
                        tracing::info!("drained: no running job needs this worker's data; exiting");
                        break SessionEnd::Shutdown;
                    }
                },
                // A draining worker does not attach again: it would only be drained anew.
                Ok(None) if draining => break SessionEnd::Shutdown,
                Ok(None) => break SessionEnd::Lost("the driver closed the session".into()),
                Err(_) if draining => break SessionEnd::Shutdown,
                Err(status) => break SessionEnd::Lost(status.message().to_owned()),
            },
            Some(finished) = reports.recv() => {
                if let Some(attempt) = &finished.report.attempt {
                    tasks.finished(attempt);
                }
                let message = WorkerMessage { body: Some(worker_message::Body::Report(finished.report.clone())) };
                if up.send(message).await.is_err() {
                    finished.undelivered().await;
                    break SessionEnd::Lost("the session's upstream closed".into());
                }
            }
            Ok(notice) = fetched.recv() => {
                if !announced.insert(notice.digest.clone()) && notice.source == crate::binaries::CACHED {
                    continue;
                }
                // The driver then names this worker as a source for others.
                if up.send(WorkerMessage { body: Some(worker_message::Body::BinaryFetched(notice)) }).await.is_err() {
                    break SessionEnd::Lost("the session's upstream closed".into());
                }
            }
            _ = heartbeat.tick() => {
                let beat = Heartbeat {
                    running: tasks.running(),
                    progress: tasks.progress(),
                    resources: Some(wire_resources(resources(&dirs.observed.live, &dirs.shuffle, &config.data_dir))),
                };
                if up.send(WorkerMessage { body: Some(worker_message::Body::Heartbeat(beat)) }).await.is_err() {
                    break SessionEnd::Lost("the session's upstream closed".into());
                }
            }
            Ok(()) = signals.changed() => {
                if draining || config.drain_timeout.is_zero() {
                    break SessionEnd::Shutdown;
                }
                if !start_draining(config, dirs, &up).await {
                    break SessionEnd::Lost("the session's upstream closed".into());
                }
                draining = true;
            }
        }
    };
    dirs.observed.ready.set(false);
    dirs.observed.metrics.set_attached(false);
    tasks.kill_all();
    // Reports that did not go out: their staged parts cannot be committed by anyone.
    reports.close();
    while let Some(finished) = reports.recv().await {
        finished.undelivered().await;
    }
    Ok(end)
}

/// The complete map outputs of the jobs whose secret this worker still knows (so it can
/// serve them): a restarted driver adopts them instead of running their maps again.
fn held_map_outputs(dirs: &Dirs) -> Vec<HeldMapOutput> {
    let held = gristmill::shuffle::held_map_outputs(&dirs.shuffle, |job| dirs.secrets.contains(job));
    if !held.is_empty() {
        tracing::info!(outputs = held.len(), "reporting the map outputs this worker holds");
    }
    held.into_iter()
        .map(|h| HeldMapOutput { job_id: h.job_id, map_task: h.map_task, attempt: h.attempt })
        .collect()
}

/// The driver, reached with the node certificate when the worker has certificates.
fn driver_endpoint(config: &WorkerConfig) -> Result<DriverEndpoint, WorkerError> {
    let setup =
        |e: gristmill::Error| WorkerError::Setup { what: "reaching the driver".into(), cause: e.to_string() };
    let tls = match &config.security.certs_dir {
        Some(dir) => Some(ClientTls::node(dir).map_err(|e| setup(e.into()))?),
        None => None,
    };
    DriverEndpoint::new(&config.driver, tls).map_err(setup)
}

/// What a driver message asks of the session itself.
enum Command {
    None,
    Drain,
    Released,
}

fn handle(tasks: &mut Tasks, message: DriverMessage) -> Command {
    match message.body {
        Some(driver_message::Body::Run(run)) => tasks.start(run),
        Some(driver_message::Body::Kill(attempt)) => tasks.kill(&attempt),
        Some(driver_message::Body::DropJob(drop)) => tasks.drop_job(&drop.job_id),
        Some(driver_message::Body::Drain(_)) => return Command::Drain,
        Some(driver_message::Body::Released(_)) => return Command::Released,
        Some(driver_message::Body::Registered(_)) | None => {}
    }
    Command::None
}

/// Tells the driver this worker is leaving and stops answering /readyz with 200 (a load
/// balancer or Kubernetes stops counting on it). False if the session is gone.
async fn start_draining(config: &WorkerConfig, dirs: &Dirs, up: &mpsc::Sender<WorkerMessage>) -> bool {
    tracing::info!(timeout = ?config.drain_timeout, "draining: no new tasks; running ones finish, map output is served until released");
    dirs.observed.ready.set(false);
    let timeout_ms = config.drain_timeout.as_millis().min(u128::from(u64::MAX)) as u64;
    let draining = Draining { timeout_ms };
    up.send(WorkerMessage { body: Some(worker_message::Body::Draining(draining)) }).await.is_ok()
}

/// Resolves once a signal came.
async fn signalled(mut signals: watch::Receiver<u32>) {
    let _ = signals.wait_for(|n| *n > 0).await;
}

/// Counts SIGTERM and SIGINT into `signals`, for as long as the worker runs. The streams
/// are made once, so a second signal right after the first is not missed.
async fn count_signals(signals: watch::Sender<u32>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            signals.send_modify(|n| *n += 1);
        }
    }
    #[cfg(not(unix))]
    while tokio::signal::ctrl_c().await.is_ok() {
        signals.send_modify(|n| *n += 1);
    }
}

/// What the worker uses, as the heartbeat carries it.
fn wire_resources(r: gristmill::metrics::WorkerResources) -> gristmill_proto::v1::WorkerResources {
    gristmill_proto::v1::WorkerResources {
        slots_busy: r.slots_busy,
        cpu_seconds: r.cpu_seconds,
        rss_bytes: r.rss_bytes,
        tasks_cpu_seconds: r.tasks_cpu_seconds,
        tasks_rss_bytes: r.tasks_rss_bytes,
        shuffle_disk_free_bytes: r.shuffle_disk_free_bytes,
        data_dir_bytes: r.data_dir_bytes,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}
