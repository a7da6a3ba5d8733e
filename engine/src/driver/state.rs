//! What the driver holds, and how it carries out the scheduler's [`Action`]s.
//!
//! Every change goes the same way: lock the scheduler, feed it the event, take its actions,
//! carry them out (send commands to workers, start commits, wake job watchers). Sends never
//! block: each worker link is an unbounded channel drained by its gRPC stream.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::Instrument;

use gristmill_proto::v1::{
    AttemptKey, BinarySource, Drain, DriverMessage, DropJob, JobState, JobStatus, MapOutputLocation,
    Released, RunTask, SubmitJobRequest, TaskKind as WireTaskKind, binary_source, driver_message,
};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::DriverConfig;
use super::bad_rows::JobBadRecords;
use super::binaries::DriverBinaries;
use super::commit::{CommitSpec, commit, storage_options_of, unlock_output};
use super::events::{Event, EventLog, task_name};
use super::journal::{CommitBegun, Journal, JournaledPart, MapDone, PartStaged, Record};
use super::recovery::{Ended, HistoryLimits, Recovered, attempt_base, beyond_limits, end_record, recover};
use super::settle::journaled;
use super::staging::{StagedPart, StagedParts, discard_all};
use crate::cluster::payload::JobPayload;
use crate::error::Result;
use crate::ids::{JobId, TaskKind, WorkerId};
use crate::input::BadRecord;
use crate::job::Counters;
use crate::output::PartFile;
use crate::scheduler::{Action, AttemptOutcome, AttemptRef, JobView, Scheduler, WorkerState};
use crate::security::JobSecret;

mod resume;

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
    /// The jobs whose settings (`RunTask.job_payload`, with their broadcast values) went
    /// to it on this session: its later attempts of them carry none (the worker keeps them
    /// until it drops the job's data).
    pub payloads_sent: HashSet<JobId>,
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
    /// A failed or cancelled job whose staged parts, part files and output lock are still
    /// being removed: followers hear of its end once they are gone.
    pub cleaning: bool,
    /// Bumped on every change, for watchers.
    pub changes: watch::Sender<u64>,
    /// A resumed job: the map outputs an earlier driver accepted, by task (adopted from
    /// the workers that still hold them).
    pub recovered_maps: HashMap<u32, MapDone>,
    /// A resumed job: the shuffle addresses of workers holding its map outputs that have
    /// not re-attached yet (it is held until none is left, or the grace period ends).
    pub awaiting: HashSet<String>,
    /// The rows its map tasks skipped as bad, for `_bad_records/`.
    pub bad_records: JobBadRecords,
    /// The job's open spans.
    pub trace: super::job_trace::JobTrace,
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
    /// The job could not be journaled: a restarted driver would lose it.
    #[error("cannot journal the job: {0}")]
    Journal(String),
}

impl From<SubmitRefused> for Status {
    fn from(refused: SubmitRefused) -> Status {
        match refused {
            SubmitRefused::OutputInUse { .. } => Status::failed_precondition(refused.to_string()),
            SubmitRefused::Invalid(message) => Status::invalid_argument(message),
            SubmitRefused::Journal(_) => Status::unavailable(refused.to_string()),
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
    /// Which worker fetches which binary from where.
    placement: Mutex<super::placement::BinaryPlacement>,
    /// How often workers send heartbeats.
    pub heartbeat_interval: Duration,
    /// `http(s)://host:port` of the status pages.
    pub status_base: Option<String>,
    /// Most slots a worker may advertise.
    pub max_worker_slots: u32,
    next_worker: AtomicU64,
    /// Submitted jobs and their ends, for a restarted driver.
    journal: Journal,
    /// This driver's run: one more than the last run's (see [`recovery`](super::recovery)).
    epoch: u64,
    /// Ended jobs replayed from the journal, oldest first.
    history: Mutex<VecDeque<Ended>>,
    history_limits: HistoryLimits,
    /// The driver's Prometheus metrics (`/metrics`).
    pub metrics: crate::metrics::DriverMetrics,
    /// Running attempts' latest counters, from heartbeats.
    live: super::live::LiveCounters,
    /// Each job's event log (see [`events`](super::events)).
    pub events: EventLog,
    /// The node certificate the driver presents to workers (reading task logs).
    pub node_tls: Option<crate::security::ClientTls>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is a bug; the state behind it is still the best we have.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DriverState {
    /// A driver without workers, carrying on the jobs its journal in `data_dir` holds: a new
    /// epoch, unfinished jobs queued again from scratch, ended ones kept as history.
    pub fn new(config: &DriverConfig, status_base: Option<String>) -> Result<Self> {
        let (journal, recovered) = replay(config)?;
        Self::carry_on(config, status_base, journal, recovered)
    }

    /// [`new`](Self::new), first ending as succeeded the jobs whose commit had finished
    /// before the last driver stopped (see [`settle_commits`](super::settle::settle_commits)).
    pub async fn open(config: &DriverConfig, status_base: Option<String>) -> Result<Self> {
        let (journal, mut recovered) = replay(config)?;
        super::settle::settle_commits(&journal, &mut recovered).await;
        Self::carry_on(config, status_base, journal, recovered)
    }

    fn carry_on(
        config: &DriverConfig,
        status_base: Option<String>,
        journal: Journal,
        recovered: Recovered,
    ) -> Result<Self> {
        let journal_error = |e: super::journal::JournalError| crate::error::Error::Config(e.to_string());
        journal.append(&Record::Epoch { n: recovered.epoch }).map_err(journal_error)?;
        let first_attempt = attempt_base(recovered.epoch);
        let state = DriverState {
            scheduler: Mutex::new(Scheduler::new(config.scheduler.clone().with_first_attempt(first_attempt))),
            workers: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            binaries: DriverBinaries::open(config.data_dir.join("binaries"), config.binaries)?
                .with_remote_store(config.distribution.store.as_deref())?,
            placement: Mutex::new(super::placement::BinaryPlacement::new(config.distribution.peer_fanout)),
            heartbeat_interval: config.heartbeat_interval,
            status_base,
            max_worker_slots: config.max_worker_slots,
            next_worker: AtomicU64::new(1),
            journal,
            epoch: recovered.epoch,
            history: Mutex::new(VecDeque::new()),
            history_limits: config.history,
            metrics: crate::metrics::DriverMetrics::new(),
            live: super::live::LiveCounters::default(),
            events: EventLog::open(config.data_dir.join("events")).map_err(|e| {
                crate::error::Error::local_disk(config.data_dir.join("events").display().to_string(), e)
            })?,
            node_tls: match &config.security.certs_dir {
                Some(dir) => Some(
                    crate::security::ClientTls::node(dir)
                        .map_err(|e| crate::error::Error::Config(format!("the node certificate: {e}")))?,
                ),
                None => None,
            },
        };
        state.resume(recovered);
        // Event logs of jobs no longer in the history go with them.
        let mut kept: HashSet<String> = lock(&state.jobs).keys().map(|id| id.to_string()).collect();
        kept.extend(lock(&state.history).iter().map(|e| e.status.job_id.clone()));
        state.events.retain(&kept);
        Ok(state)
    }

    /// Ends a journaled job that cannot run again (kept as failed history).
    fn end_unresumable(&self, job: super::recovery::Unfinished, why: &str) {
        tracing::error!(job = %job.job.id, why, "cannot resume the job");
        let end = super::journal::EndedJob {
            id: job.job.id.clone(),
            state: super::journal::EndState::Failed,
            message: format!("the driver restarted and could not resume the job: {why}"),
            rows: 0,
            files: 0,
            counters: BTreeMap::new(),
            ended_at_ms: super::journal::now_ms(),
        };
        let status = super::recovery::ended_status(&job.job, &job.request, &end);
        self.journal_end(&status);
        let secret = job.secret.clone();
        lock(&self.history).push_back(Ended { status, ended_at_ms: end.ended_at_ms, secret });
    }

    /// Forgets ended jobs beyond the history limits (count and age), this run's and earlier
    /// runs'; they stay in the journal. Also drops records of jobs the scheduler forgot.
    pub fn trim_ended(&self) {
        let now = Instant::now();
        let now_ms = super::journal::now_ms();
        let mut ages: Vec<(String, Duration)> = lock(&self.jobs)
            .iter()
            .filter_map(|(id, r)| r.ended.map(|at| (id.to_string(), now.saturating_duration_since(at))))
            .collect();
        let history = lock(&self.history);
        ages.extend(
            history.iter().map(|e| {
                (e.status.job_id.clone(), Duration::from_millis(now_ms.saturating_sub(e.ended_at_ms)))
            }),
        );
        drop(history);
        let doomed = beyond_limits(&ages, self.history_limits);
        for job in &doomed {
            self.events.remove(job);
        }
        lock(&self.history).retain(|e| !doomed.contains(&e.status.job_id));
        let mut scheduler = lock(&self.scheduler);
        lock(&self.jobs).retain(|id, r| {
            let forget = r.ended.is_some() && (doomed.contains(id.as_str()) || !scheduler.has_job(id));
            if forget {
                scheduler.forget(id);
            }
            !forget
        });
    }

    /// This driver's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The first attempt number of this epoch: reports of lower ones come from attempts an
    /// earlier driver launched, and are refused.
    pub fn attempt_base(&self) -> u32 {
        attempt_base(self.epoch)
    }

    /// Feeds the scheduler one event and carries out what follows.
    pub fn update(self: &Arc<Self>, event: impl FnOnce(&mut Scheduler, Instant)) {
        let now = Instant::now();
        let (actions, events) = {
            let mut scheduler = lock(&self.scheduler);
            event(&mut scheduler, now);
            (scheduler.take_actions(), scheduler.take_attempt_events())
        };
        self.observe(&events, now);
        let preempted = events.iter().filter_map(|e| match e {
            crate::scheduler::AttemptEvent::Ended { attempt, outcome: AttemptOutcome::Preempted, .. } => {
                Some(attempt)
            }
            _ => None,
        });
        let preempted: HashSet<&AttemptRef> = preempted.collect();
        self.carry_out(actions, &preempted);
    }

    /// Counts attempt events in the metrics; ended attempts' live counters and spans go.
    fn observe(&self, events: &[crate::scheduler::AttemptEvent], now: Instant) {
        self.metrics.observe(events, now);
        for event in events {
            if let crate::scheduler::AttemptEvent::Ended { attempt, worker, outcome, .. } = event {
                if *outcome == crate::scheduler::AttemptOutcome::Lost {
                    // No report comes from a lost worker: the event log hears it from here.
                    let task = task_name(attempt.task.kind, attempt.task.index);
                    let lost = Event::TaskFailed {
                        task,
                        attempt: attempt.attempt.0,
                        worker: worker.to_string(),
                        error: format!("worker {worker} was lost while the attempt ran"),
                        kind: "worker_lost".into(),
                    };
                    self.events.append(attempt.job.as_str(), lost);
                }
                self.live.forget_attempt(attempt);
                if let Some(record) = lock(&self.jobs).get_mut(&attempt.job) {
                    record.trace.attempt_ended(attempt);
                }
            }
        }
    }

    /// A heartbeat of `worker`: the latest counters of its running attempts (those the
    /// scheduler says run there) and what it uses now.
    pub fn heartbeat_stats(
        &self,
        worker: &WorkerId,
        progress: Vec<(AttemptRef, crate::scheduler::Counters)>,
        resources: Option<crate::metrics::WorkerResources>,
    ) {
        // Under the scheduler's lock: an attempt that ended meanwhile is not recorded again.
        let mut scheduler = lock(&self.scheduler);
        if let Some(resources) = resources {
            scheduler.record_resources(worker, resources);
        }
        for (attempt, counters) in progress {
            if scheduler.attempt_worker(&attempt) == Some(worker) {
                self.live.record(&attempt, counters);
            }
        }
    }

    /// Sets a running job's live counters in its `view` (finished winners and the
    /// furthest running attempt of every other task).
    pub fn add_live_counters(&self, view: &mut JobView) {
        if !view.state.is_terminal() {
            view.live_counters = self.live.overlay(&view.id, &view.counters);
        }
    }

    /// Reads the scheduler.
    pub fn read<T>(&self, read: impl FnOnce(&Scheduler) -> T) -> T {
        read(&lock(&self.scheduler))
    }

    /// A fresh worker id.
    pub fn next_worker_id(&self, shuffle_address: &str) -> WorkerId {
        WorkerId(format!("w{}-{shuffle_address}", self.next_worker.fetch_add(1, Ordering::Relaxed)))
    }

    /// Adds an attached worker with `slots` task slots and `memory` bytes for its tasks
    /// (0: not bounded).
    pub fn attach(self: &Arc<Self>, id: WorkerId, link: WorkerLink, slots: u32, memory: u64) {
        lock(&self.workers).insert(id.clone(), link);
        let memory = if memory == 0 { u64::MAX } else { memory };
        self.update(|s, now| s.add_worker_with_memory(now, id, slots, memory));
    }

    /// A worker's session ended.
    /// The scheduler ignores workers it already knows are lost, so this may come twice
    /// (a broken send, then the stream's end).
    pub fn detach(self: &Arc<Self>, id: &WorkerId, reason: &str) {
        if lock(&self.workers).remove(id).is_some() {
            tracing::warn!(worker = %id, reason, "worker lost");
        }
        lock(&self.placement).forget_worker(id);
        self.update(|s, now| s.worker_lost(now, id, reason));
    }

    /// Records a job and hands it to the scheduler; refuses it when a job that has not ended
    /// writes the same output (checked and recorded under one lock, so of two concurrent
    /// submissions to one output only one is accepted).
    pub fn submit(self: &Arc<Self>, submission: Submission) -> std::result::Result<(), SubmitRefused> {
        let Submission { id, owner, request, output_key } = submission;
        let spec = job_spec(&id, &owner, &request);
        let submitted = Event::Submitted {
            name: request.name.clone(),
            owner: owner.clone(),
            priority: request.priority,
            queue: queue_name(&request.queue),
            binary_digest: request.binary_digest.clone(),
            output: request.output.clone(),
            maps: request.map_tasks.len(),
            reducers: request.reducers,
            input_files: request.input_files,
            input_bytes: request.input_bytes,
        };
        let secret = JobSecret::generate();
        let journaled = self.journal.submitted(&id, &owner, &request, &secret);
        let record = JobRecord::new(&id, request, output_key, owner, secret);
        self.record_sole_writer(id.clone(), record)?;
        // Journaled before it is accepted: a job the submitter heard of survives a crash.
        if let Err(e) = journaled.and_then(|record| self.journal.append(&record)) {
            lock(&self.jobs).remove(&id);
            return Err(SubmitRefused::Journal(e.to_string()));
        }
        // Logged before the scheduler launches any of its tasks.
        self.events.append(id.as_str(), submitted);
        let mut refused = None;
        self.update(|s, now| refused = s.submit(now, spec).err());
        if refused.is_none() {
            self.metrics.job_submitted();
        }
        if let Some(e) = refused {
            self.events.append(id.as_str(), Event::Failed { error: e.to_string() });
            lock(&self.jobs).remove(&id);
            let status = JobStatus {
                job_id: id.to_string(),
                state: JobState::Failed as i32,
                error: e.to_string(),
                ..JobStatus::default()
            };
            self.journal_end(&status);
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

    /// True for a job this driver (or an earlier run on its journal) ran and that has ended.
    pub fn has_ended(&self, job: &JobId) -> bool {
        lock(&self.jobs).get(job).is_some_and(|r| r.ended.is_some()) || self.ended_status(job).is_some()
    }

    /// The final status of a job ended in an earlier run, if it is still in the history.
    fn ended_status(&self, job: &JobId) -> Option<JobStatus> {
        lock(&self.history).iter().find(|e| e.status.job_id == job.as_str()).map(|e| e.status.clone())
    }

    /// Status-page views of the ended jobs of earlier runs this run does not know, newest first.
    pub fn history_views(&self) -> Vec<JobView> {
        let now_ms = super::journal::now_ms();
        let known = |e: &&Ended| self.read(|s| s.has_job(&JobId::from_string(e.status.job_id.clone())));
        let history = lock(&self.history);
        history.iter().rev().filter(|e| !known(e)).map(|e| super::recovery::ended_view(e, now_ms)).collect()
    }

    /// Journals a job's end (logged if that fails: the job would run again after a restart).
    fn journal_end(&self, status: &JobStatus) {
        if let Err(e) = self.journal.append(&Record::JobEnded(end_record(status))) {
            tracing::error!(job = %status.job_id, error = %e, "cannot journal the job's end: a restarted driver would run it again");
        }
    }

    /// True while an ended job's output is being cleaned up.
    pub fn is_cleaning(&self, job: &JobId) -> bool {
        lock(&self.jobs).get(job).is_some_and(|r| r.cleaning)
    }

    /// An ended job's cleanup is over: its followers may hear of its end.
    fn cleaned(&self, job: &JobId) {
        if let Some(record) = lock(&self.jobs).get_mut(job) {
            record.cleaning = false;
            record.changes.send_modify(|n| *n += 1);
        }
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

    /// Keeps the part files an attempt staged for `partition` (one, or with Hive
    /// partitioning any number) for the job's commit; discards them at once when they can
    /// no longer be committed (the job is committing or ended, or `wanted` is false: the
    /// attempt is not running any more).
    pub fn stage_parts(
        &self,
        job: &JobId,
        partition: u32,
        attempt: u32,
        parts: Vec<StagedPart>,
        wanted: bool,
    ) {
        // Journaled first: a restarted driver discards them if no commit of this run lists them.
        for part in &parts {
            let record = Record::PartStaged(PartStaged { job: job.to_string(), part: journaled(part) });
            if let Err(e) = self.journal.append(&record) {
                tracing::warn!(job = %job, part = %part.name, error = %e, "cannot journal a staged part");
            }
        }
        let mut jobs = lock(&self.jobs);
        let Some(record) = jobs.get_mut(job) else {
            return tracing::warn!(job = %job, parts = parts.len(), "staged parts of an unknown job are left alone");
        };
        let refused = if wanted { record.staged.offer(partition, attempt, parts) } else { parts };
        if !refused.is_empty() {
            tracing::info!(job = %job, parts = refused.len(), "discarding parts staged too late to commit");
            let (output, options) = (record.request.output.clone(), storage_options_of(&record.request));
            tokio::spawn(async move { discard_all(&output, &options, refused).await });
        }
    }

    /// Keeps the bad records map task `task` of `job` reported; the error to fail the
    /// attempt with when the job now has more than it allows.
    pub fn offer_bad_records(&self, job: &JobId, task: u32, rows: Vec<BadRecord>) -> Result<()> {
        match lock(&self.jobs).get_mut(job) {
            Some(record) => record.bad_records.offer(task, rows),
            None => Ok(()),
        }
    }

    /// Subscribes to a job's changes (a job of the history never changes).
    pub fn watch(&self, job: &JobId) -> Option<watch::Receiver<u64>> {
        let live = lock(&self.jobs).get(job).map(|r| r.changes.subscribe());
        live.or_else(|| self.ended_status(job).map(|_| watch::channel(0).1))
    }

    /// A job's status for clients.
    pub fn status(&self, job: &JobId) -> Option<JobStatus> {
        let live = self.read(|s| s.job(Instant::now(), job)).and_then(|view| {
            let jobs = lock(&self.jobs);
            jobs.get(job).map(|record| status_of(&view, record))
        });
        live.or_else(|| self.ended_status(job))
    }

    /// Every job's status, newest first (this run's, then the history's).
    pub fn statuses(&self) -> Vec<JobStatus> {
        let views = self.read(|s| s.jobs(Instant::now()));
        let jobs = lock(&self.jobs);
        let mut out: Vec<(Instant, JobStatus)> =
            views.iter().filter_map(|v| jobs.get(&v.id).map(|r| (r.submitted, status_of(v, r)))).collect();
        out.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        let history = lock(&self.history);
        let earlier =
            history.iter().rev().filter(|e| !jobs.contains_key(&JobId::from_string(e.status.job_id.clone())));
        out.into_iter().map(|(_, s)| s).chain(earlier.map(|e| e.status.clone())).collect()
    }

    /// Carries out the scheduler's actions.
    fn carry_out(self: &Arc<Self>, actions: Vec<Action>, preempted: &HashSet<&AttemptRef>) {
        let mut unreachable = Vec::new();
        for action in actions {
            match action {
                Action::Launch { worker, attempt, memory, map_outputs } => {
                    self.log_launch(&worker, &attempt);
                    let message = self.run_task(&worker, &attempt, &map_outputs).map(|run| RunTask {
                        // A worker that did not bound its memory gets `u64::MAX / slots`: 0 lets
                        // it use its own share.
                        memory_bytes: if memory >= u64::MAX / 1024 { 0 } else { memory },
                        ..run
                    });
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
                    let (task, number) =
                        (task_name(attempt.task.kind, attempt.task.index), attempt.attempt.0);
                    let worker_name = worker.to_string();
                    let killed = if preempted.contains(&attempt) {
                        Event::TaskPreempted { task, attempt: number, worker: worker_name }
                    } else {
                        Event::TaskKilled { task, attempt: number, worker: worker_name }
                    };
                    self.events.append(attempt.job.as_str(), killed);
                    self.send(&worker, driver_message::Body::Kill(attempt_key(&attempt)));
                }
                Action::ReleaseWorker { worker } => {
                    self.send(&worker, driver_message::Body::Released(Released {}));
                }
                Action::DropJobData { worker, job } => {
                    // The worker forgets the job's settings with its data: sent again if needed.
                    if let Some(link) = lock(&self.workers).get_mut(&worker) {
                        link.payloads_sent.remove(&job);
                    }
                    self.send(&worker, driver_message::Body::DropJob(DropJob { job_id: job.to_string() }));
                }
                Action::Commit { job, winners } => self.start_commit(job, winners),
                Action::JobEnded { job, state } => {
                    tracing::info!(job = %job, state = ?state, "job ended");
                    self.metrics.job_ended(&state);
                    self.live.forget_job(&job);
                    if let Some(status) = self.status(&job) {
                        self.journal_end(&status);
                        self.events.append(job.as_str(), end_event(&status));
                    }
                    let succeeded = matches!(state, crate::scheduler::JobState::Succeeded);
                    let output = lock(&self.jobs).get_mut(&job).map(|record| {
                        record.ended = Some(Instant::now());
                        record.trace.end();
                        record.cleaning = !succeeded;
                        let staged = record.staged.close();
                        (record.request.output.clone(), storage_options_of(&record.request), staged)
                    });
                    // A committed job cleaned up and unlocked before it ended.
                    if let (Some((output, options, staged)), false) = (output, succeeded) {
                        let driver = self.clone();
                        tokio::spawn(async move {
                            discard_all(&output, &options, staged).await;
                            remove_attempt_files(job.clone(), output.clone(), options.clone()).await;
                            unlock_output(&output, &options, &job).await;
                            driver.cleaned(&job);
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

    /// Logs an attempt's launch with its worker's address (where its task logs are read).
    fn log_launch(&self, worker: &WorkerId, attempt: &AttemptRef) {
        let address = lock(&self.workers).get(worker).map(|l| l.shuffle_address.clone()).unwrap_or_default();
        let task = task_name(attempt.task.kind, attempt.task.index);
        let launched =
            Event::TaskLaunched { task, attempt: attempt.attempt.0, worker: worker.to_string(), address };
        self.events.append(attempt.job.as_str(), launched);
    }

    /// A job's owner and secret, while the driver remembers it (this run's jobs, and the
    /// history of earlier runs'), for reading its task logs.
    pub fn owner_and_secret(&self, job: &JobId) -> Option<(String, JobSecret)> {
        let live = lock(&self.jobs).get(job).map(|r| (r.owner.clone(), r.secret.clone()));
        live.or_else(|| {
            let history = lock(&self.history);
            let ended = history.iter().find(|e| e.status.job_id == job.as_str())?;
            Some((ended.status.owner.clone(), ended.secret.clone()?))
        })
    }

    /// Asks a worker to start draining; false if it is not attached.
    pub(super) fn ask_to_drain(&self, worker: &WorkerId) -> bool {
        self.send(worker, driver_message::Body::Drain(Drain {}))
    }

    fn send(&self, worker: &WorkerId, body: driver_message::Body) -> bool {
        let workers = lock(&self.workers);
        match workers.get(worker) {
            // Full: the worker stopped reading its session; it is dropped as unreachable.
            Some(link) => link.downlink.try_send(Ok(DriverMessage { body: Some(body) })).is_ok(),
            None => false,
        }
    }

    /// A worker verified a job binary: it serves it to others from now on.
    pub fn binary_fetched(&self, worker: &WorkerId, fetched: &gristmill_proto::v1::BinaryFetched) {
        lock(&self.placement).fetched(&fetched.digest, worker);
        if fetched.source == "cache" {
            return;
        }
        let source = if fetched.source.is_empty() { "the driver" } else { fetched.source.as_str() };
        tracing::info!(worker = %worker, digest = %fetched.digest, source, failed_sources = fetched.failed_sources, "worker fetched a job binary");
    }

    /// A worker started draining: no fetcher is sent to it any more (it exits once released).
    pub fn binary_holder_leaving(&self, worker: &WorkerId) {
        lock(&self.placement).leaving(worker);
    }

    /// Where `worker` fetches `digest` from besides the driver: the binary store, or peers.
    fn binary_sources(&self, worker: &WorkerId, digest: &str) -> Vec<BinarySource> {
        if let Some(url) = self.binaries.remote_url(digest) {
            return vec![BinarySource { location: Some(binary_source::Location::Url(url)) }];
        }
        let peers = lock(&self.placement).sources(digest, worker);
        let workers = lock(&self.workers);
        peers
            .iter()
            .filter_map(|peer| workers.get(peer))
            .map(|link| BinarySource {
                location: Some(binary_source::Location::Peer(link.shuffle_address.clone())),
            })
            .collect()
    }

    fn run_task(
        &self,
        worker: &WorkerId,
        attempt: &AttemptRef,
        map_outputs: &[crate::scheduler::MapOutputRef],
    ) -> Option<RunTask> {
        let mut jobs = lock(&self.jobs);
        let record = jobs.get_mut(&attempt.job)?;
        let trace_parent = record.trace.attempt_started(attempt).unwrap_or_default();
        let request = &record.request;
        let split_payload = match attempt.task.kind {
            TaskKind::Map => request.map_tasks.get(attempt.task.index as usize)?.split_payload.clone(),
            TaskKind::Reduce => Vec::new(),
        };
        let mut workers = lock(&self.workers);
        // The job's settings go with its first attempt on the worker's session only.
        let first_here = workers.get_mut(worker).is_none_or(|l| l.payloads_sent.insert(attempt.job.clone()));
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
        let map_output_stays_on_host = attempt.task.kind == TaskKind::Map && all_on_host_of(&workers, worker);
        let job_payload = if first_here { request.job_payload.clone() } else { Vec::new() };
        let binary_digest = request.binary_digest.clone();
        let job_secret = record.secret.expose().to_owned();
        drop(workers);
        drop(jobs);
        let binary_sources = self.binary_sources(worker, &binary_digest);
        Some(RunTask {
            attempt: Some(attempt_key(attempt)),
            binary_digest,
            job_payload,
            split_payload,
            map_outputs,
            job_secret,
            trace_parent,
            memory_bytes: 0,
            binary_sources,
            map_output_stays_on_host,
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
                codec: JobPayload::parquet_codec_of(&record.request.job_payload),
                bad_records: record.bad_records.take(),
            }
        };
        let state = self.clone();
        let (output, options) = (spec.output.clone(), spec.storage_options.clone());
        let (losers, counters) = (spec.losers.clone(), spec.counters.clone());
        let span = lock(&self.jobs).get(&job).map_or_else(tracing::Span::none, |r| r.trace.commit());
        tokio::spawn(async move {
            let begun = |parts: &[PartFile]| state.journal_commit(&job, parts, &losers, &counters);
            let started = Instant::now();
            let result = commit(spec, begun).instrument(span).await;
            state.metrics.commit_took(started.elapsed());
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

    /// Journals the start of a commit: a restarted driver finishes it.
    fn journal_commit(&self, job: &JobId, winners: &[PartFile], losers: &[StagedPart], counters: &Counters) {
        let winners = winners
            .iter()
            .map(|p| JournaledPart {
                partition: p.partition.0,
                name: p.name.clone(),
                rows: p.rows,
                bytes: p.bytes,
                staged: p.staged.clone(),
            })
            .collect();
        let begun = CommitBegun {
            job: job.to_string(),
            winners,
            losers: losers.iter().map(journaled).collect(),
            counters: counters.iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        if let Err(e) = self.journal.append(&Record::CommitBegun(begun)) {
            tracing::error!(job = %job, error = %e, "cannot journal the commit's start: a restarted driver would run the job again");
        }
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

impl JobRecord {
    /// A job just accepted (or resumed) with its secret.
    fn new(
        id: &JobId,
        request: SubmitJobRequest,
        output_key: String,
        owner: String,
        secret: JobSecret,
    ) -> Self {
        JobRecord {
            trace: super::job_trace::JobTrace::new(id, &request.name, &owner),
            output_key,
            owner,
            secret,
            submitted: Instant::now(),
            ended: None,
            committed: None,
            staged: StagedParts::default(),
            cleaning: false,
            changes: watch::channel(0).0,
            recovered_maps: HashMap::new(),
            awaiting: HashSet::new(),
            bad_records: JobBadRecords::new(JobPayload::max_bad_records_of(&request.job_payload)),
            request,
        }
    }
}

/// Opens the journal in the data dir and reads it.
fn replay(config: &DriverConfig) -> Result<(Journal, Recovered)> {
    let journal_error = |e: super::journal::JournalError| crate::error::Error::Config(e.to_string());
    let (journal, records) = Journal::open(&config.data_dir).map_err(journal_error)?;
    let recovered = recover(&journal, records, config.history).map_err(journal_error)?;
    Ok((journal, recovered))
}

/// What the scheduler needs of a submission.
fn job_spec(id: &JobId, owner: &str, request: &SubmitJobRequest) -> crate::scheduler::JobSpec {
    crate::scheduler::JobSpec {
        id: id.clone(),
        name: request.name.clone(),
        priority: request.priority,
        owner: owner.to_owned(),
        queue: queue_name(&request.queue),
        map_tasks: request.map_tasks.iter().map(|t| t.description.clone()).collect(),
        reducers: request.reducers,
        // 0: the worker's share per slot, decided where the attempt runs.
        task_memory: (request.task_memory_bytes > 0).then_some(request.task_memory_bytes),
    }
}

/// The queue a submission names; `default` when it names none.
pub(crate) fn queue_name(requested: &str) -> String {
    if requested.is_empty() { crate::scheduler::DEFAULT_QUEUE.to_owned() } else { requested.to_owned() }
}

/// Locks the outputs of the jobs that have not ended (at start: the resumed ones) again: the
/// lock may name the former driver process, or be gone if it crashed while releasing it. A
/// job whose output another job locked meanwhile is cancelled (its lock stays).
pub async fn relock_resumed(state: Arc<DriverState>) {
    let unfinished: Vec<(JobId, String, SubmitJobRequest)> = lock(&state.jobs)
        .iter()
        .filter(|(_, r)| r.ended.is_none())
        .map(|(id, r)| (id.clone(), r.owner.clone(), r.request.clone()))
        .collect();
    for (id, owner, request) in unfinished {
        let own = id.to_string();
        if let Err(e) = super::commit::lock_output(&request, &id, &owner, |holder| holder == own).await {
            tracing::error!(job = %id, error = %e.message(), "cannot lock the resumed job's output again: cancelling the job");
            state.update(|s, now| {
                s.cancel(now, &id);
            });
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
        state.trim_ended();
    }
}

/// True when `worker` and every other attached worker share a host whose map output they
/// read in place (the same non-empty host id): no byte of a map output written there then
/// crosses hosts. Stops at the first worker elsewhere, so a multi-host cluster pays for one
/// or two comparisons, a one-host cluster for one per worker.
fn all_on_host_of(workers: &HashMap<WorkerId, WorkerLink>, worker: &WorkerId) -> bool {
    let Some(host) = workers.get(worker).map(|link| &link.host_id).filter(|host| !host.is_empty()) else {
        return false;
    };
    workers.values().all(|link| &link.host_id == host)
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

/// The event a job's end is logged as.
fn end_event(status: &JobStatus) -> Event {
    match status.state() {
        JobState::Succeeded => Event::Committed { files: status.files, rows: status.rows },
        JobState::Cancelled => Event::Cancelled,
        _ => Event::Failed { error: status.error.clone() },
    }
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
        queue: view.queue.clone(),
        preempted_attempts: view.preempted_attempts as u32,
    }
}
