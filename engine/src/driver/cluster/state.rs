//! What the driver holds, and how it carries out the scheduler's [`Action`]s.
//!
//! Every change goes the same way: lock the scheduler, feed it the event, take its actions,
//! carry them out (send commands to workers, start commits, wake job watchers). Sends never
//! block: each worker link is an unbounded channel drained by its gRPC stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gristmill_proto::v1::{
    AttemptKey, DriverMessage, DropJob, JobState, JobStatus, MapOutputLocation, RunTask, SubmitJobRequest,
    TaskKind as WireTaskKind, driver_message,
};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::DriverConfig;
use super::binaries::DriverBinaries;
use super::commit::{CommitSpec, commit, storage_options_of, unlock_output};
use super::staging::{StagedPart, StagedParts, discard_all};
use crate::error::Result;
use crate::ids::{JobId, TaskKind, WorkerId};
use crate::job::Counters;
use crate::scheduler::{Action, AttemptRef, JobView, Scheduler, WorkerState};
use crate::security::JobSecret;

/// A message on a worker's session stream.
pub type Downlink = mpsc::Sender<Result<DriverMessage, Status>>;

/// How the driver reaches one attached worker.
pub struct WorkerLink {
    /// Its session stream.
    pub downlink: Downlink,
    /// Its shuffle service.
    pub shuffle_address: String,
    /// Its shuffle directory.
    pub shuffle_dir: String,
    /// Its host's id.
    pub host_id: String,
}

/// What the driver keeps of a submitted job besides the scheduler's view.
pub struct JobRecord {
    /// The submission (its storage options stay in memory only).
    pub request: SubmitJobRequest,
    /// Its output as [`output_key`](super::commit::output_key) spells it: no two jobs that
    /// have not ended share one.
    pub output_key: String,
    /// Who submitted it.
    pub owner: String,
    /// Given to the job's tasks only: workers serve its shuffle data against it.
    pub secret: JobSecret,
    /// When it came.
    pub submitted: Instant,
    /// When it ended.
    pub ended: Option<Instant>,
    /// Rows and files committed.
    pub committed: Option<(u64, u32)>,
    /// The part files its attempts staged.
    pub staged: StagedParts,
    /// Bumped on every change, for watchers.
    pub changes: watch::Sender<u64>,
}

/// Why the driver refused a submission.
#[derive(Debug, thiserror::Error)]
pub enum SubmitRefused {
    /// A job that has not ended writes the same output: the user waits or cancels it.
    #[error(
        "output {output} is being written by job {job}, which is still queued, running or committing; \
         wait for it to end or cancel it"
    )]
    OutputInUse {
        /// The output, as its key spells it.
        output: String,
        /// The job writing it.
        job: JobId,
    },
    /// The scheduler refused the job as submitted.
    #[error("{0}")]
    Invalid(String),
}

impl From<SubmitRefused> for Status {
    fn from(refused: SubmitRefused) -> Status {
        match refused {
            SubmitRefused::OutputInUse { .. } => Status::failed_precondition(refused.to_string()),
            SubmitRefused::Invalid(message) => Status::invalid_argument(message),
        }
    }
}

/// A submission the driver is to record.
pub struct Submission {
    /// The new job's id.
    pub id: JobId,
    /// Who submitted it.
    pub owner: String,
    /// What was submitted.
    pub request: SubmitJobRequest,
    /// Its output's [`output_key`](super::commit::output_key).
    pub output_key: String,
}

/// The driver's state.
pub struct DriverState {
    scheduler: Mutex<Scheduler>,
    workers: Mutex<HashMap<WorkerId, WorkerLink>>,
    jobs: Mutex<HashMap<JobId, JobRecord>>,
    /// Stored job binaries.
    pub binaries: DriverBinaries,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// `http(s)://host:port` of the status pages.
    pub status_base: Option<String>,
    /// Most slots a worker may advertise.
    pub max_worker_slots: u32,
    next_worker: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is a bug; the state behind it is still the best we have.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DriverState {
    /// A driver with no workers and no jobs.
    pub fn new(config: &DriverConfig, status_base: Option<String>) -> Result<Self> {
        Ok(DriverState {
            scheduler: Mutex::new(Scheduler::new(config.scheduler.clone())),
            workers: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            binaries: DriverBinaries::open(config.data_dir.join("binaries"), config.binaries)?,
            heartbeat_interval: config.heartbeat_interval,
            status_base,
            max_worker_slots: config.max_worker_slots,
            next_worker: AtomicU64::new(1),
        })
    }

    /// Feeds the scheduler one event and carries out what follows.
    pub fn update(self: &Arc<Self>, event: impl FnOnce(&mut Scheduler, Instant)) {
        let actions = {
            let mut scheduler = lock(&self.scheduler);
            event(&mut scheduler, Instant::now());
            scheduler.take_actions()
        };
        self.carry_out(actions);
    }

    /// Reads the scheduler.
    pub fn read<T>(&self, read: impl FnOnce(&Scheduler) -> T) -> T {
        read(&lock(&self.scheduler))
    }

    /// A fresh worker id.
    pub fn next_worker_id(&self, shuffle_address: &str) -> WorkerId {
        WorkerId(format!("w{}-{shuffle_address}", self.next_worker.fetch_add(1, Ordering::Relaxed)))
    }

    /// Adds an attached worker.
    pub fn attach(self: &Arc<Self>, id: WorkerId, link: WorkerLink, slots: u32) {
        lock(&self.workers).insert(id.clone(), link);
        self.update(|s, now| s.add_worker(now, id, slots));
    }

    /// A worker's session ended.
    /// The scheduler ignores workers it already knows are lost, so this may come twice
    /// (a broken send, then the stream's end).
    pub fn detach(self: &Arc<Self>, id: &WorkerId, reason: &str) {
        if lock(&self.workers).remove(id).is_some() {
            tracing::warn!(worker = %id, reason, "worker lost");
        }
        self.update(|s, now| s.worker_lost(now, id, reason));
    }

    /// Records a job and hands it to the scheduler; refuses it when a job that has not ended
    /// writes the same output (checked and recorded under one lock, so of two concurrent
    /// submissions to one output only one is accepted).
    pub fn submit(self: &Arc<Self>, submission: Submission) -> std::result::Result<(), SubmitRefused> {
        let Submission { id, owner, request, output_key } = submission;
        let spec = crate::scheduler::JobSpec {
            id: id.clone(),
            name: request.name.clone(),
            priority: request.priority,
            owner: owner.clone(),
            map_tasks: request.map_tasks.iter().map(|t| t.description.clone()).collect(),
            reducers: request.reducers,
        };
        let record = JobRecord {
            request,
            output_key,
            owner,
            secret: JobSecret::generate(),
            submitted: Instant::now(),
            ended: None,
            committed: None,
            staged: StagedParts::default(),
            changes: watch::channel(0).0,
        };
        self.record_sole_writer(id.clone(), record)?;
        let mut refused = None;
        self.update(|s, now| refused = s.submit(now, spec).err());
        if let Some(e) = refused {
            lock(&self.jobs).remove(&id);
            return Err(SubmitRefused::Invalid(e.to_string()));
        }
        Ok(())
    }

    /// The job that has not ended and writes the output `output_key`, if any.
    pub fn writer_of(&self, output_key: &str) -> Option<JobId> {
        lock(&self.jobs)
            .iter()
            .find(|(_, r)| r.ended.is_none() && r.output_key == output_key)
            .map(|(id, _)| id.clone())
    }

    /// True for a job this driver ran and that has ended.
    pub fn has_ended(&self, job: &JobId) -> bool {
        lock(&self.jobs).get(job).is_some_and(|r| r.ended.is_some())
    }

    /// Records `record` unless a job that has not ended writes its output.
    fn record_sole_writer(&self, id: JobId, record: JobRecord) -> std::result::Result<(), SubmitRefused> {
        let mut jobs = lock(&self.jobs);
        let writer = jobs.iter().find(|(_, r)| r.ended.is_none() && r.output_key == record.output_key);
        if let Some((job, _)) = writer {
            return Err(SubmitRefused::OutputInUse { output: record.output_key, job: job.clone() });
        }
        jobs.insert(id, record);
        Ok(())
    }

    /// The digests of the binaries of jobs that have not ended (never evicted).
    pub fn binaries_in_use(&self) -> std::collections::HashSet<String> {
        lock(&self.jobs)
            .values()
            .filter(|r| r.ended.is_none())
            .map(|r| r.request.binary_digest.clone())
            .collect()
    }

    /// Keeps the part file an attempt staged for the job's commit; discards it at once
    /// when it can no longer be committed (the job is committing or ended, or `wanted` is
    /// false: the attempt is not running any more).
    pub fn stage_part(&self, job: &JobId, attempt: u32, part: StagedPart, wanted: bool) {
        let mut jobs = lock(&self.jobs);
        let Some(record) = jobs.get_mut(job) else {
            return tracing::warn!(job = %job, part = %part.name, "a staged part of an unknown job is left alone");
        };
        let refused = if wanted { record.staged.offer(attempt, part) } else { Some(part) };
        if let Some(part) = refused {
            tracing::info!(job = %job, part = %part.name, "discarding a part staged too late to commit");
            let (output, options) = (record.request.output.clone(), storage_options_of(&record.request));
            tokio::spawn(async move { discard_all(&output, &options, vec![part]).await });
        }
    }

    /// Subscribes to a job's changes.
    pub fn watch(&self, job: &JobId) -> Option<watch::Receiver<u64>> {
        lock(&self.jobs).get(job).map(|r| r.changes.subscribe())
    }

    /// A job's status for clients.
    pub fn status(&self, job: &JobId) -> Option<JobStatus> {
        let view = self.read(|s| s.job(Instant::now(), job))?;
        let jobs = lock(&self.jobs);
        let record = jobs.get(job)?;
        Some(status_of(&view, record))
    }

    /// Every job's status, newest first.
    pub fn statuses(&self) -> Vec<JobStatus> {
        let views = self.read(|s| s.jobs(Instant::now()));
        let jobs = lock(&self.jobs);
        let mut out: Vec<(Instant, JobStatus)> =
            views.iter().filter_map(|v| jobs.get(&v.id).map(|r| (r.submitted, status_of(v, r)))).collect();
        out.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// Carries out the scheduler's actions.
    fn carry_out(self: &Arc<Self>, actions: Vec<Action>) {
        let mut unreachable = Vec::new();
        for action in actions {
            match action {
                Action::Launch { worker, attempt, map_outputs } => {
                    let message = self.run_task(&attempt, &map_outputs);
                    match message {
                        Some(run) => {
                            if !self.send(&worker, driver_message::Body::Run(run)) {
                                unreachable.push(worker);
                            }
                        }
                        None => tracing::error!(job = %attempt.job, "launch for an unknown job"),
                    }
                }
                Action::Kill { worker, attempt } => {
                    self.send(&worker, driver_message::Body::Kill(attempt_key(&attempt)));
                }
                Action::DropJobData { worker, job } => {
                    self.send(&worker, driver_message::Body::DropJob(DropJob { job_id: job.to_string() }));
                }
                Action::Commit { job, winners } => self.start_commit(job, winners),
                Action::JobEnded { job, state } => {
                    tracing::info!(job = %job, state = ?state, "job ended");
                    let output = lock(&self.jobs).get_mut(&job).map(|record| {
                        record.ended = Some(Instant::now());
                        let staged = record.staged.close();
                        (record.request.output.clone(), storage_options_of(&record.request), staged)
                    });
                    // A committed job cleaned up and unlocked before it ended.
                    if let (Some((output, options, staged)), false) =
                        (output, matches!(state, crate::scheduler::JobState::Succeeded))
                    {
                        tokio::spawn(async move {
                            discard_all(&output, &options, staged).await;
                            remove_attempt_files(job.clone(), output.clone(), options.clone()).await;
                            unlock_output(&output, &options, &job).await;
                        });
                    }
                }
            }
        }
        self.notify_all();
        for worker in unreachable {
            self.detach(&worker, "its session stream is closed");
        }
    }

    fn send(&self, worker: &WorkerId, body: driver_message::Body) -> bool {
        let workers = lock(&self.workers);
        match workers.get(worker) {
            // Full: the worker stopped reading its session; it is dropped as unreachable.
            Some(link) => link.downlink.try_send(Ok(DriverMessage { body: Some(body) })).is_ok(),
            None => false,
        }
    }

    fn run_task(
        &self,
        attempt: &AttemptRef,
        map_outputs: &[crate::scheduler::MapOutputRef],
    ) -> Option<RunTask> {
        let jobs = lock(&self.jobs);
        let record = jobs.get(&attempt.job)?;
        let request = &record.request;
        let split_payload = match attempt.task.kind {
            TaskKind::Map => request.map_tasks.get(attempt.task.index as usize)?.split_payload.clone(),
            TaskKind::Reduce => Vec::new(),
        };
        let workers = lock(&self.workers);
        let map_outputs = map_outputs
            .iter()
            .map(|m| {
                let link = workers.get(&m.worker);
                let field = |f: fn(&WorkerLink) -> &String| link.map(f).cloned().unwrap_or_default();
                MapOutputLocation {
                    map_task: m.map_task,
                    attempt: m.attempt.0,
                    worker_id: m.worker.to_string(),
                    shuffle_address: field(|l| &l.shuffle_address),
                    shuffle_dir: field(|l| &l.shuffle_dir),
                    host_id: field(|l| &l.host_id),
                }
            })
            .collect();
        Some(RunTask {
            attempt: Some(attempt_key(attempt)),
            binary_digest: request.binary_digest.clone(),
            job_payload: request.job_payload.clone(),
            split_payload,
            map_outputs,
            job_secret: record.secret.expose().to_owned(),
        })
    }

    fn start_commit(self: &Arc<Self>, job: JobId, winners: Vec<crate::scheduler::WinningPart>) {
        let counters =
            self.read(|s| s.job(Instant::now(), &job)).map(|v| counters_of(&v.counters)).unwrap_or_default();
        let spec = {
            let mut jobs = lock(&self.jobs);
            let Some(record) = jobs.get_mut(&job) else { return };
            let (winners, losers) = record.staged.close_for_commit(&winners);
            CommitSpec {
                name: record.request.name.clone(),
                job_id: job.to_string(),
                output: record.request.output.clone(),
                storage_options: storage_options_of(&record.request),
                winners,
                losers,
                counters,
            }
        };
        let state = self.clone();
        let (output, options) = (spec.output.clone(), spec.storage_options.clone());
        tokio::spawn(async move {
            let result = commit(spec).await;
            if let (Ok(done), Some(record)) = (&result, lock(&state.jobs).get_mut(&job)) {
                record.committed = Some(*done);
            }
            if result.is_ok() {
                // Before the job counts as ended: its output then holds just what it committed.
                unlock_output(&output, &options, &job).await;
            }
            let result = result.map(|_| ()).map_err(|e| format!("commit failed: {e}"));
            state.update(|s, now| s.commit_finished(now, &job, result));
        });
    }

    fn notify_all(&self) {
        for record in lock(&self.jobs).values() {
            record.changes.send_modify(|n| *n += 1);
        }
    }

    /// Drops links of workers the scheduler declared lost (heartbeat timeout), closing
    /// their sessions so they kill their attempts and attach again.
    fn close_lost_links(&self) {
        let lost: Vec<WorkerId> = self
            .read(|s| s.workers(Instant::now()))
            .into_iter()
            .filter(|w| matches!(w.state, WorkerState::Lost { .. }))
            .map(|w| w.id)
            .collect();
        let mut workers = lock(&self.workers);
        for id in lost {
            if workers.remove(&id).is_some() {
                tracing::warn!(worker = %id, "no heartbeat: worker declared lost");
            }
        }
    }
}

/// Removes the part files a failed or cancelled job's attempts wrote.
async fn remove_attempt_files(job: JobId, output: String, options: crate::storage::StorageOptions) {
    let removed = match crate::storage::Location::parse_with_options_only(&output, &options) {
        Ok(location) => crate::output::OutputDir::new(location).abort(&job).await,
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        tracing::warn!(job = %job, error = %e, "could not remove the job's part files");
    }
}

/// Ticks the scheduler: heartbeat timeouts, backup attempts, refreshed status.
pub async fn tick_loop(state: Arc<DriverState>) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    loop {
        interval.tick().await;
        state.update(|s, now| s.tick(now));
        state.close_lost_links();
    }
}

fn attempt_key(attempt: &AttemptRef) -> AttemptKey {
    AttemptKey {
        job_id: attempt.job.to_string(),
        kind: match attempt.task.kind {
            TaskKind::Map => WireTaskKind::Map,
            TaskKind::Reduce => WireTaskKind::Reduce,
        } as i32,
        index: attempt.task.index,
        attempt: attempt.attempt.0,
    }
}

fn counters_of(map: &BTreeMap<String, u64>) -> Counters {
    let mut counters = Counters::default();
    for (name, value) in map {
        counters.add(name, *value);
    }
    counters
}

fn status_of(view: &JobView, record: &JobRecord) -> JobStatus {
    use crate::scheduler::JobState as S;
    let (state, error) = match &view.state {
        S::Queued => (JobState::Queued, String::new()),
        S::Running => (JobState::Running, String::new()),
        S::Committing => (JobState::Committing, String::new()),
        S::Succeeded => (JobState::Succeeded, String::new()),
        S::Failed(message) => (JobState::Failed, message.clone()),
        S::Cancelled => (JobState::Cancelled, String::new()),
    };
    let elapsed = record.ended.unwrap_or_else(Instant::now).duration_since(record.submitted);
    let (rows, files) = record.committed.unwrap_or_default();
    JobStatus {
        job_id: view.id.to_string(),
        name: view.name.clone(),
        priority: view.priority,
        state: state as i32,
        error,
        maps_total: view.maps.total,
        maps_done: view.maps.done,
        reduces_total: view.reduces.total,
        reduces_done: view.reduces.done,
        failed_attempts: view.failed_attempts as u32,
        backup_attempts: view.backups_launched as u32,
        counters: view.counters.clone().into_iter().collect(),
        rows,
        files,
        elapsed_seconds: elapsed.as_secs_f64(),
        input_files: record.request.input_files,
        input_bytes: record.request.input_bytes,
        owner: record.owner.clone(),
    }
}
