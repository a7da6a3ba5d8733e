//! The driver's gRPC service.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use gristmill_proto::v1::driver_server::Driver;
use gristmill_proto::v1::{
    AttemptKey, BinaryChunk, BinaryRef, DriverMessage, FailureKind, HasBinaryReply, JobRef, JobStatus,
    ListJobsReply, ListJobsRequest, Registered, SubmitJobReply, SubmitJobRequest, TaskKind as WireTaskKind,
    TaskReport, WorkerMessage, driver_message, task_report, worker_message,
};
use gristmill_proto::{CHUNK_BYTES, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::state::{DriverState, WorkerLink};
use crate::cluster::binary::is_digest;
use crate::cluster::rpc::is_final;
use crate::ids::{AttemptId, JobId, TaskId, TaskKind, WorkerId};
use crate::scheduler::{AttemptRef, FailureKind as Kind, TaskFailure, TaskOutcome};

/// Largest job binary the driver accepts.
const MAX_BINARY_BYTES: usize = 2 << 30;

/// The `Driver` service.
#[derive(Clone)]
pub struct DriverService {
    state: Arc<DriverState>,
}

impl DriverService {
    /// A service over `state`.
    pub fn new(state: Arc<DriverState>) -> Self {
        DriverService { state }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Driver for DriverService {
    type AttachStream = BoxStream<DriverMessage>;

    async fn attach(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("an empty session"))?;
        let Some(worker_message::Body::Register(register)) = first.body else {
            return Err(Status::invalid_argument("a session must start with Register"));
        };
        if register.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "the worker speaks protocol version {}, the driver {PROTOCOL_VERSION}",
                register.protocol_version
            )));
        }
        let id = self.state.next_worker_id(&register.shuffle_address);
        let (downlink, rx) = mpsc::unbounded_channel();
        let registered = Registered {
            worker_id: id.to_string(),
            heartbeat_interval_ms: self.state.heartbeat_interval.as_millis() as u32,
        };
        let _ = downlink.send(Ok(DriverMessage { body: Some(driver_message::Body::Registered(registered)) }));
        tracing::info!(worker = %id, slots = register.slots, pid = register.pid, "worker attached");
        let link = WorkerLink {
            downlink,
            shuffle_address: register.shuffle_address.clone(),
            shuffle_dir: register.shuffle_dir.clone(),
            host_id: register.host_id.clone(),
        };
        self.state.attach(id.clone(), link, register.slots.max(1));
        let state = self.state.clone();
        tokio::spawn(async move {
            let reason = loop {
                match inbound.message().await {
                    Ok(Some(message)) => on_worker_message(&state, &id, message),
                    Ok(None) => break "its session ended".to_owned(),
                    Err(status) => break format!("its session broke: {}", status.message()),
                }
            };
            state.detach(&id, &reason);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn has_binary(&self, request: Request<BinaryRef>) -> Result<Response<HasBinaryReply>, Status> {
        let digest = request.into_inner().digest;
        Ok(Response::new(HasBinaryReply { present: self.state.binaries.contains(&digest) }))
    }

    async fn upload_binary(
        &self,
        request: Request<Streaming<BinaryChunk>>,
    ) -> Result<Response<BinaryRef>, Status> {
        let mut chunks = request.into_inner();
        let mut digest = String::new();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            if digest.is_empty() {
                digest = chunk.digest;
            }
            if bytes.len() + chunk.data.len() > MAX_BINARY_BYTES {
                return Err(Status::resource_exhausted("the job binary is larger than 2 GiB"));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if !is_digest(&digest) {
            return Err(Status::invalid_argument("the upload names no valid digest"));
        }
        let store = self.state.binaries.clone();
        let stored = digest.clone();
        tokio::task::spawn_blocking(move || store.put(&stored, &bytes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(%digest, "job binary stored");
        Ok(Response::new(BinaryRef { digest }))
    }

    type FetchBinaryStream = BoxStream<BinaryChunk>;

    async fn fetch_binary(
        &self,
        request: Request<BinaryRef>,
    ) -> Result<Response<Self::FetchBinaryStream>, Status> {
        let digest = request.into_inner().digest;
        if !self.state.binaries.contains(&digest) {
            return Err(Status::not_found(format!("no job binary {digest}")));
        }
        let bytes = tokio::fs::read(self.state.binaries.path(&digest))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let chunks: Vec<Result<BinaryChunk, Status>> = bytes
            .chunks(CHUNK_BYTES)
            .map(|data| Ok(BinaryChunk { digest: digest.clone(), data: data.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobReply>, Status> {
        let request = request.into_inner();
        if request.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "the job binary speaks protocol version {}, the driver {PROTOCOL_VERSION}",
                request.protocol_version
            )));
        }
        if !self.state.binaries.contains(&request.binary_digest) {
            return Err(Status::failed_precondition("upload the job binary before submitting"));
        }
        let mut id = JobId::generate();
        for _ in 0..100 {
            if self.state.watch(&id).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            id = JobId::generate();
        }
        let status_url =
            self.state.status_base.as_ref().map(|b| format!("{b}/api/jobs/{id}")).unwrap_or_default();
        tracing::info!(job = %id, name = %request.name, maps = request.map_tasks.len(), "job submitted");
        self.state.submit(id.clone(), request).map_err(Status::invalid_argument)?;
        Ok(Response::new(SubmitJobReply { job_id: id.to_string(), status_url }))
    }

    type WatchJobStream = BoxStream<JobStatus>;

    async fn watch_job(&self, request: Request<JobRef>) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = JobId::from_string(request.into_inner().job_id);
        let mut changes = self.state.watch(&id).ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let state = self.state.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(status) = state.status(&id) {
                let done = is_final(status.state());
                if tx.send(Ok(status)).await.is_err() || done {
                    break;
                }
                // Changes wake the watcher; the timeout refreshes the elapsed time.
                let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_job(&self, request: Request<JobRef>) -> Result<Response<JobStatus>, Status> {
        let id = JobId::from_string(request.into_inner().job_id);
        self.state.status(&id).map(Response::new).ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    async fn list_jobs(&self, _: Request<ListJobsRequest>) -> Result<Response<ListJobsReply>, Status> {
        Ok(Response::new(ListJobsReply { jobs: self.state.statuses() }))
    }

    async fn cancel_job(&self, request: Request<JobRef>) -> Result<Response<JobStatus>, Status> {
        let id = JobId::from_string(request.into_inner().job_id);
        if self.state.status(&id).is_none() {
            return Err(Status::not_found(format!("no job {id}")));
        }
        self.state.update(|s, now| {
            s.cancel(now, &id);
        });
        self.state.status(&id).map(Response::new).ok_or_else(|| Status::not_found(format!("no job {id}")))
    }
}

fn on_worker_message(state: &Arc<DriverState>, worker: &WorkerId, message: WorkerMessage) {
    match message.body {
        Some(worker_message::Body::Heartbeat(_)) => {
            let mut known = false;
            state.update(|s, now| known = s.heartbeat(now, worker));
            if !known {
                state.detach(worker, "it is no longer known");
            }
        }
        Some(worker_message::Body::Report(report)) => on_report(state, worker, report),
        Some(worker_message::Body::Register(_)) | None => {}
    }
}

fn on_report(state: &Arc<DriverState>, worker: &WorkerId, report: TaskReport) {
    let (Some(key), Some(result)) = (report.attempt, report.result) else { return };
    let Some(attempt) = attempt_ref(&key) else { return };
    let counters = report.counters.into_iter().collect();
    match result {
        task_report::Result::MapDone(_) => {
            state.update(|s, now| s.task_succeeded(now, &attempt, TaskOutcome::MapDone, counters));
        }
        task_report::Result::ReduceDone(done) => {
            state.note_part_bytes(&attempt.job, key.index, key.attempt, done.bytes);
            let outcome = TaskOutcome::PartWritten { part_file: done.part_file, rows: done.rows };
            state.update(|s, now| s.task_succeeded(now, &attempt, outcome, counters));
        }
        task_report::Result::Failed(failed) => {
            let kind = match failed.kind() {
                FailureKind::Fatal => Kind::Fatal,
                FailureKind::FetchFailed => Kind::FetchFailed {
                    map_task: failed.fetch_map_task,
                    worker: WorkerId(failed.fetch_worker.clone()),
                },
                FailureKind::Retryable | FailureKind::Unspecified => Kind::Retryable,
            };
            tracing::warn!(worker = %worker, task = %attempt.task, attempt = %attempt.attempt, cause = %failed.message, "attempt failed");
            let failure = TaskFailure { kind, message: failed.message, stderr_tail: failed.stderr_tail };
            state.update(|s, now| s.task_failed(now, &attempt, failure));
        }
    }
}

fn attempt_ref(key: &AttemptKey) -> Option<AttemptRef> {
    let kind = match WireTaskKind::try_from(key.kind).ok()? {
        WireTaskKind::Map => TaskKind::Map,
        WireTaskKind::Reduce => TaskKind::Reduce,
        WireTaskKind::Unspecified => return None,
    };
    Some(AttemptRef {
        job: JobId::from_string(key.job_id.clone()),
        task: TaskId { kind, index: key.index },
        attempt: AttemptId(key.attempt),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gristmill_proto::v1::{Register, WorkerMessage, worker_message};

    use super::{PROTOCOL_VERSION, driver_message};
    use crate::cluster::rpc::connect_driver;
    use crate::driver::cluster::{DriverConfig, serve};
    use crate::scheduler::SchedulerConfig;

    async fn start_driver() -> String {
        let dir = std::env::temp_dir().join(format!("gristmill-driver-test-{}", std::process::id()));
        let config = DriverConfig {
            listen: "127.0.0.1:0".into(),
            http: None,
            data_dir: dir,
            heartbeat_interval: Duration::from_millis(100),
            scheduler: SchedulerConfig::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(config, move |addrs| {
            let _ = tx.send(addrs.grpc);
        }));
        format!("http://{}", rx.await.expect("the driver starts"))
    }

    fn register(version: u32) -> WorkerMessage {
        let register = Register {
            protocol_version: version,
            slots: 1,
            shuffle_address: "127.0.0.1:1".into(),
            ..Default::default()
        };
        WorkerMessage { body: Some(worker_message::Body::Register(register)) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_speaking_another_protocol_version_is_refused() {
        let url = start_driver().await;
        let mut client = connect_driver(&url).await.unwrap();
        let refused = client.attach(futures::stream::iter(vec![register(PROTOCOL_VERSION + 1)])).await;
        let Err(status) = refused else { panic!("another version is refused") };
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("protocol version"), "{}", status.message());

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(register(PROTOCOL_VERSION)).await.unwrap();
        let mut accepted =
            client.attach(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let first = accepted.message().await.unwrap().expect("a Registered message");
        assert!(matches!(first.body, Some(driver_message::Body::Registered(_))));
    }
}
