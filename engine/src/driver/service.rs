//! The driver's gRPC service.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use gristmill_proto::PROTOCOL_VERSION;
use gristmill_proto::v1::driver_server::Driver;
use gristmill_proto::v1::{
    AttemptKey, BinaryChunk, BinaryRef, DrainWorkerReply, DrainWorkerRequest, DriverMessage, FailureKind,
    HasBinaryReply, JobRef, JobStatus, ListJobsReply, ListJobsRequest, ReduceDone, Register, Registered,
    SubmitJobReply, SubmitJobRequest, TaskFailed, TaskKind as WireTaskKind, TaskLogReply, TaskLogRequest,
    TaskReport, WorkerMessage, driver_message, task_report, worker_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::events::{Event, task_name};
use super::staging::StagedPart;
use super::state::{DriverState, Submission, SubmitRefused, WorkerLink};
use crate::cluster::rpc::is_final;
use crate::error::ErrorKind;
use crate::ids::{AttemptId, JobId, PartitionId, TaskId, TaskKind, WorkerId};
use crate::input::BadRecord;
use crate::output::{Staged, is_part_name_of};
use crate::scheduler::{AttemptRef, FailureKind as Kind, TaskFailure, TaskOutcome};
use crate::security::identity::ADMIN_USER;
use crate::security::{Role, authorize};

/// Commands queued for one worker before it counts as stuck (and is dropped).
const DOWNLINK_CAPACITY: usize = 4096;

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
        authorize(&request, Role::Node, "attach as a worker")?;
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
        validate_register(&register, self.state.max_worker_slots)?;
        let id = self.state.next_worker_id(&register.shuffle_address);
        let (downlink, rx) = mpsc::channel(DOWNLINK_CAPACITY);
        let registered = Registered {
            worker_id: id.to_string(),
            heartbeat_interval_ms: self.state.heartbeat_interval.as_millis() as u32,
        };
        let _ =
            downlink.try_send(Ok(DriverMessage { body: Some(driver_message::Body::Registered(registered)) }));
        tracing::info!(worker = %id, slots = register.slots, pid = register.pid, "worker attached");
        let link = WorkerLink {
            downlink,
            shuffle_address: register.shuffle_address.clone(),
            shuffle_dir: register.shuffle_dir.clone(),
            host_id: register.host_id.clone(),
            payloads_sent: Default::default(),
        };
        self.state.attach(id.clone(), link, register.slots, register.memory_bytes);
        self.state.adopt_held(&id, &register.shuffle_address, &register.held_map_outputs);
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn has_binary(&self, request: Request<BinaryRef>) -> Result<Response<HasBinaryReply>, Status> {
        authorize(&request, Role::Client, "upload job binaries")?;
        let digest = request.into_inner().digest;
        Ok(Response::new(HasBinaryReply { present: self.state.binaries.contains(&digest) }))
    }

    async fn upload_binary(
        &self,
        request: Request<Streaming<BinaryChunk>>,
    ) -> Result<Response<BinaryRef>, Status> {
        authorize(&request, Role::Client, "upload job binaries")?;
        let state = self.state.clone();
        let digest =
            self.state.binaries.receive(request.into_inner(), move || state.binaries_in_use()).await?;
        Ok(Response::new(BinaryRef { digest }))
    }

    type FetchBinaryStream = BoxStream<BinaryChunk>;

    async fn fetch_binary(
        &self,
        request: Request<BinaryRef>,
    ) -> Result<Response<Self::FetchBinaryStream>, Status> {
        authorize(&request, Role::Node, "fetch job binaries")?;
        let chunks = self.state.binaries.send(request.into_inner().digest).await?;
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobReply>, Status> {
        let owner = authorize(&request, Role::Client, "submit jobs")?.user().to_owned();
        let mut request = request.into_inner();
        if request.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "the job binary speaks protocol version {}, the driver {PROTOCOL_VERSION}",
                request.protocol_version
            )));
        }
        if !self.state.binaries.contains(&request.binary_digest) {
            return Err(Status::failed_precondition("upload the job binary before submitting"));
        }
        // Workers run (and verify) the binary shipped for it, stripped of its debug info.
        if let Some(shipped) = self.state.binaries.shipping_digest(&request.binary_digest) {
            request.binary_digest = shipped;
        }
        super::commit::check_output(&request).await?;
        let output_key = super::commit::output_key(&request)?;
        let mut id = JobId::generate();
        for _ in 0..100 {
            if self.state.watch(&id).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            id = JobId::generate();
        }
        let status_url =
            self.state.status_base.as_ref().map(|b| format!("{b}/jobs/{id}")).unwrap_or_default();
        let (name, maps) = (request.name.clone(), request.map_tasks.len());
        // This driver's own writer is named first; the lock object then guards the output
        // against every other driver (and against a concurrent submission here).
        if let Some(writer) = self.state.writer_of(&output_key) {
            return Err(SubmitRefused::OutputInUse { output: output_key, job: writer }.into());
        }
        let ended = |job: &str| self.state.has_ended(&JobId::from_string(job.to_owned()));
        super::commit::lock_output(&request, &id, &owner, ended).await?;
        let (output, options) = (request.output.clone(), super::commit::storage_options_of(&request));
        if let Err(refused) = self.state.submit(Submission { id: id.clone(), owner, request, output_key }) {
            super::commit::unlock_output(&output, &options, &id).await;
            return Err(refused.into());
        }
        tracing::info!(job = %id, name = %name, maps, "job submitted");
        Ok(Response::new(SubmitJobReply { job_id: id.to_string(), status_url }))
    }

    type WatchJobStream = BoxStream<JobStatus>;

    async fn watch_job(&self, request: Request<JobRef>) -> Result<Response<Self::WatchJobStream>, Status> {
        authorize(&request, Role::Client, "follow jobs")?;
        let id = JobId::from_string(request.into_inner().job_id);
        let mut changes = self.state.watch(&id).ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        let state = self.state.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(status) = state.status(&id) {
                let done = is_final(status.state());
                // The end of a failed job is told once its output is cleaned up, so the
                // submitter exits to an output without its files or lock.
                let settling = done && state.is_cleaning(&id);
                if !settling && (tx.send(Ok(status)).await.is_err() || done) {
                    break;
                }
                // Changes wake the watcher; the timeout refreshes the elapsed time.
                let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_job(&self, request: Request<JobRef>) -> Result<Response<JobStatus>, Status> {
        authorize(&request, Role::Client, "see jobs")?;
        let id = JobId::from_string(request.into_inner().job_id);
        self.state.status(&id).map(Response::new).ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    async fn list_jobs(&self, request: Request<ListJobsRequest>) -> Result<Response<ListJobsReply>, Status> {
        authorize(&request, Role::Client, "list jobs")?;
        Ok(Response::new(ListJobsReply { jobs: self.state.statuses() }))
    }

    async fn cancel_job(&self, request: Request<JobRef>) -> Result<Response<JobStatus>, Status> {
        let identity = authorize(&request, Role::Client, "cancel jobs")?;
        let id = JobId::from_string(request.into_inner().job_id);
        let Some(status) = self.state.status(&id) else {
            return Err(Status::not_found(format!("no job {id}")));
        };
        if !identity.may_cancel(&status.owner) {
            return Err(Status::permission_denied(format!(
                "{identity} may not cancel job {id} of user {}: only its owner or {ADMIN_USER} may",
                status.owner
            )));
        }
        self.state.update(|s, now| {
            s.cancel(now, &id);
        });
        self.state.status(&id).map(Response::new).ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    async fn get_task_log(&self, request: Request<TaskLogRequest>) -> Result<Response<TaskLogReply>, Status> {
        let identity = authorize(&request, Role::Client, "read task logs")?;
        let logs = super::task_logs::task_logs(&self.state, &identity, &request.into_inner()).await?;
        Ok(Response::new(TaskLogReply { logs }))
    }

    async fn drain_worker(
        &self,
        request: Request<DrainWorkerRequest>,
    ) -> Result<Response<DrainWorkerReply>, Status> {
        let identity = authorize(&request, Role::Client, "drain workers")?;
        let worker = WorkerId(request.into_inner().worker_id);
        super::drain::ask_to_drain(&self.state, &identity, &worker).map(Response::new)
    }
}

/// Refuses a registration whose slots, shuffle address or directory are not plausible: a
/// worker must not claim the whole cluster's work, nor point reducers elsewhere.
fn validate_register(register: &Register, max_slots: u32) -> Result<(), Status> {
    if register.slots == 0 || register.slots > max_slots {
        return Err(Status::invalid_argument(format!(
            "the worker advertises {} slots; the driver allows 1 to {max_slots} (--max-worker-slots)",
            register.slots
        )));
    }
    let address_ok = url::Url::parse(&format!("http://{}", register.shuffle_address)).is_ok_and(|u| {
        u.host_str().is_some_and(|h| !h.is_empty())
            && u.port().is_some_and(|p| p > 0)
            && u.path() == "/"
            && u.username().is_empty()
            && u.query().is_none()
    });
    if !address_ok {
        return Err(Status::invalid_argument(format!(
            "the worker's shuffle address {:?} is not HOST:PORT",
            register.shuffle_address
        )));
    }
    let dir = std::path::Path::new(&register.shuffle_dir);
    let dir_ok = register.shuffle_dir.is_empty()
        || (dir.is_absolute()
            && !dir.components().any(|c| matches!(c, std::path::Component::ParentDir))
            && !register.shuffle_dir.contains('\0'));
    if !dir_ok || register.host_id.len() > 512 {
        return Err(Status::invalid_argument("the worker's shuffle directory must be an absolute path"));
    }
    Ok(())
}

fn on_worker_message(state: &Arc<DriverState>, worker: &WorkerId, message: WorkerMessage) {
    match message.body {
        Some(worker_message::Body::Heartbeat(beat)) => {
            let mut known = false;
            state.update(|s, now| known = s.heartbeat(now, worker));
            if !known {
                state.detach(worker, "it is no longer known");
                return;
            }
            let progress = beat
                .progress
                .into_iter()
                .filter_map(|p| Some((attempt_ref(p.attempt.as_ref()?)?, p.counters.into_iter().collect())))
                .collect();
            state.heartbeat_stats(worker, progress, beat.resources.map(resources_of));
        }
        Some(worker_message::Body::Report(report)) => on_report(state, worker, report),
        Some(worker_message::Body::BinaryFetched(fetched)) => state.binary_fetched(worker, &fetched),
        Some(worker_message::Body::Draining(draining)) => {
            let timeout = Duration::from_millis(draining.timeout_ms);
            state.binary_holder_leaving(worker);
            state.update(|s, now| {
                s.drain_worker(now, worker, timeout);
            });
        }
        Some(worker_message::Body::Register(_)) | None => {}
    }
}

fn on_report(state: &Arc<DriverState>, worker: &WorkerId, report: TaskReport) {
    let (Some(key), Some(result)) = (report.attempt, report.result) else { return };
    let Some(attempt) = attempt_ref(&key) else { return };
    // Fenced: an attempt an earlier driver launched (its job runs again from scratch).
    let fenced = attempt.attempt.0 < state.attempt_base();
    if fenced {
        tracing::warn!(worker = %worker, job = %attempt.job, task = %attempt.task, attempt = %attempt.attempt, "refused a report of an attempt of an earlier driver epoch");
    }
    let runs_it = !fenced && state.read(|s| s.attempt_worker(&attempt) == Some(worker));
    if let task_report::Result::ReduceDone(done) = &result {
        // Its staged parts are kept for the commit, or discarded if it cannot win any more.
        match staged_parts(&attempt, done) {
            Some(parts) => {
                state.stage_parts(&attempt.job, attempt.task.index, attempt.attempt.0, parts, runs_it)
            }
            None => {
                tracing::warn!(worker = %worker, job = %attempt.job, part = %done.part_file, "ignored a report of a part file that is not the attempt's own");
                return;
            }
        }
    }
    if !runs_it {
        // A late report of a killed attempt, or a worker reporting what it never ran.
        tracing::warn!(worker = %worker, job = %attempt.job, task = %attempt.task, attempt = %attempt.attempt, "ignored a report for an attempt this worker does not run");
        return;
    }
    let bad_records = match bad_records_of(&report.bad_records) {
        Ok(rows) => rows,
        Err(failure) => return state.update(|s, now| s.task_failed(now, &attempt, failure)),
    };
    if let task_report::Result::MapDone(_) = &result {
        // Journaled before it is acted on: a restarted driver adopts it from the worker.
        let done = (&report.counters, &bad_records[..]);
        state.journal_map_done(&attempt.job, attempt.task.index, attempt.attempt.0, worker, done);
    }
    if attempt.task.kind == TaskKind::Map
        && !matches!(result, task_report::Result::Failed(_))
        && let Err(e) = state.offer_bad_records(&attempt.job, attempt.task.index, bad_records)
    {
        tracing::warn!(worker = %worker, task = %attempt.task, attempt = %attempt.attempt, cause = %e, "too many bad records");
        let failure = TaskFailure {
            kind: Kind::Fatal,
            error: Some(e.kind()),
            message: e.to_string(),
            stderr_tail: String::new(),
        };
        return state.update(|s, now| s.task_failed(now, &attempt, failure));
    }
    let counters: std::collections::BTreeMap<String, u64> = report.counters.into_iter().collect();
    log_attempt_end(state, worker, &attempt, &result, &counters);
    match result {
        task_report::Result::MapDone(done) => state.update(|s, now| {
            s.note_map_output(&attempt, done.output_bytes);
            s.task_succeeded(now, &attempt, TaskOutcome::MapDone, counters);
        }),
        task_report::Result::ReduceDone(done) => {
            let outcome = TaskOutcome::PartWritten { part_file: done.part_file, rows: done.rows };
            state.update(|s, now| s.task_succeeded(now, &attempt, outcome, counters));
        }
        task_report::Result::Failed(failed) => {
            let error = ErrorKind::from_name(&failed.error_kind);
            let kind = failure_kind(&failed, error);
            tracing::warn!(worker = %worker, task = %attempt.task, attempt = %attempt.attempt, error_kind = %failed.error_kind, cause = %failed.message, "attempt failed");
            let failure =
                TaskFailure { kind, error, message: failed.message, stderr_tail: failed.stderr_tail };
            state.update(|s, now| s.task_failed(now, &attempt, failure));
        }
    }
}

/// Logs how an attempt ended in its job's event log.
fn log_attempt_end(
    state: &DriverState,
    worker: &WorkerId,
    attempt: &AttemptRef,
    result: &task_report::Result,
    counters: &std::collections::BTreeMap<String, u64>,
) {
    let (task, number, worker) =
        (task_name(attempt.task.kind, attempt.task.index), attempt.attempt.0, worker.to_string());
    let event = match result {
        task_report::Result::Failed(failed) => Event::TaskFailed {
            task,
            attempt: number,
            worker,
            error: failed.message.clone(),
            kind: failed.error_kind.clone(),
        },
        _ => Event::TaskFinished { task, attempt: number, worker, counters: counters.clone() },
    };
    state.events.append(attempt.job.as_str(), event);
}

/// The bad records a finished map attempt reports (a JSON array); the failure to fail it
/// with when they do not parse.
fn bad_records_of(json: &[u8]) -> Result<Vec<BadRecord>, TaskFailure> {
    match json {
        [] => Ok(Vec::new()),
        json => serde_json::from_slice(json).map_err(|e| TaskFailure {
            kind: Kind::Retryable,
            error: None,
            message: format!("the attempt's bad records do not parse: {e}"),
            stderr_tail: String::new(),
        }),
    }
}

/// The staged parts a finished attempt reports: its part file, or with Hive partitioning
/// each of its files (possibly none); `None` if a name is not one this attempt writes (a
/// worker cannot make the driver publish or discard another attempt's file).
fn staged_parts(attempt: &AttemptRef, done: &ReduceDone) -> Option<Vec<StagedPart>> {
    let partition = PartitionId(attempt.task.index);
    let staged = |upload_id: &str, upload_parts: &[String]| match upload_id {
        "" => Staged::LocalFile,
        id => Staged::Upload { id: id.to_owned(), parts: upload_parts.to_vec() },
    };
    let files: Vec<StagedPart> = if done.part_file.is_empty() {
        done.files
            .iter()
            .map(|f| StagedPart {
                partition: partition.0,
                name: f.name.clone(),
                rows: f.rows,
                bytes: f.bytes,
                staged: staged(&f.upload_id, &f.upload_parts),
            })
            .collect()
    } else {
        vec![StagedPart {
            partition: partition.0,
            name: done.part_file.clone(),
            rows: done.rows,
            bytes: done.bytes,
            staged: staged(&done.upload_id, &done.upload_parts),
        }]
    };
    let own = files.iter().all(|f| is_part_name_of(&f.name, partition, &attempt.job, attempt.attempt));
    own.then_some(files)
}

/// How the scheduler reacts to a failure: a fetch failure re-runs the map; otherwise the
/// error's typed kind decides, and a report without one (an older worker) its coarse class.
fn failure_kind(failed: &TaskFailed, error: Option<ErrorKind>) -> Kind {
    match (failed.kind(), error) {
        (FailureKind::FetchFailed, _) => Kind::FetchFailed {
            map_task: failed.fetch_map_task,
            worker: WorkerId(failed.fetch_worker.clone()),
        },
        (_, Some(error)) if error.is_retryable() => Kind::Retryable,
        (_, Some(_)) | (FailureKind::Fatal, None) => Kind::Fatal,
        (FailureKind::Retryable | FailureKind::Unspecified, None) => Kind::Retryable,
    }
}

/// What a worker's heartbeat says it uses.
fn resources_of(r: gristmill_proto::v1::WorkerResources) -> crate::metrics::WorkerResources {
    crate::metrics::WorkerResources {
        slots_busy: r.slots_busy,
        cpu_seconds: r.cpu_seconds,
        rss_bytes: r.rss_bytes,
        tasks_cpu_seconds: r.tasks_cpu_seconds,
        tasks_rss_bytes: r.tasks_rss_bytes,
        shuffle_disk_free_bytes: r.shuffle_disk_free_bytes,
        data_dir_bytes: r.data_dir_bytes,
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
mod failure_kind_tests {
    use super::*;

    fn failed(kind: FailureKind, error_kind: &str) -> TaskFailed {
        TaskFailed { kind: kind as i32, error_kind: error_kind.into(), ..Default::default() }
    }

    #[test]
    fn the_typed_kind_decides_and_older_reports_fall_back_to_their_class() {
        let judge = |f: TaskFailed| failure_kind(&f, ErrorKind::from_name(&f.error_kind));
        assert_eq!(judge(failed(FailureKind::Fatal, "corrupt_input")), Kind::Fatal);
        // A kind the driver knows to be fatal wins over a worker that said retryable.
        assert_eq!(judge(failed(FailureKind::Retryable, "missing_column")), Kind::Fatal);
        assert_eq!(judge(failed(FailureKind::Retryable, "disk_full")), Kind::Retryable);
        assert_eq!(judge(failed(FailureKind::Retryable, "panic")), Kind::Retryable);
        assert_eq!(judge(failed(FailureKind::Fatal, "")), Kind::Fatal);
        assert_eq!(judge(failed(FailureKind::Unspecified, "a-newer-kind")), Kind::Retryable);
        let fetch = TaskFailed {
            fetch_map_task: 3,
            fetch_worker: "w2".into(),
            ..failed(FailureKind::FetchFailed, "")
        };
        assert_eq!(judge(fetch), Kind::FetchFailed { map_task: 3, worker: WorkerId("w2".into()) });
    }
}
