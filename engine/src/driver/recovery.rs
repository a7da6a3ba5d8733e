//! Replaying the journal when a driver starts: the new epoch, the jobs to resume and the
//! history of ended jobs.
//!
//! Unfinished jobs are resumed under their own ids and secrets. Their reduces run again;
//! their maps run again unless a worker that re-attaches still holds the output the journal
//! names (the driver adopts it, see [`DriverState::adopt_held`](super::state::DriverState)).
//! Attempts of epoch `E` are numbered from `(E - 1) * ATTEMPTS_PER_EPOCH`, so part files of
//! the new run never take the name of one an attempt of an earlier run (perhaps still alive)
//! stages, and reports of earlier attempts are refused ([`attempt_base`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use gristmill_proto::v1::{JobState, JobStatus, SubmitJobRequest};

use super::journal::{
    CommitBegun, EndState, EndedJob, Journal, JournalError, JournaledPart, MapDone, Record, SubmittedJob,
    now_ms,
};
use crate::ids::JobId;
use crate::scheduler::{JobView, Phase, TaskCounts};
use crate::security::JobSecret;

/// Attempt numbers each driver epoch may use per task before reaching the next epoch's.
pub const ATTEMPTS_PER_EPOCH: u32 = 1000;

/// The first attempt number of `epoch` (epochs count from 1).
pub fn attempt_base(epoch: u64) -> u32 {
    let base = epoch.saturating_sub(1).saturating_mul(u64::from(ATTEMPTS_PER_EPOCH));
    u32::try_from(base).unwrap_or(u32::MAX - ATTEMPTS_PER_EPOCH)
}

/// How many ended jobs, and how old, the driver keeps in memory (all stay in the journal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most ended jobs kept.
    pub max_jobs: usize,
    /// Ended jobs older than this are dropped.
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits { max_jobs: 1000, max_age: Duration::from_secs(24 * 3600) }
    }
}

/// A job that had not ended when the last driver stopped.
pub struct Unfinished {
    /// Its journal record.
    pub job: SubmittedJob,
    /// Its request, unsealed.
    pub request: SubmitJobRequest,
    /// Its secret, unsealed (`None` from an older driver's record: a fresh one is made).
    pub secret: Option<JobSecret>,
    /// The accepted output of each map task that had one, by task.
    pub maps: HashMap<u32, MapDone>,
    /// The part files its attempts staged.
    pub staged: Vec<JournaledPart>,
    /// Its commit, if it had begun.
    pub commit: Option<CommitBegun>,
}

/// An ended job, as status pages show it.
#[derive(Clone, Debug)]
pub struct Ended {
    /// Its final status.
    pub status: JobStatus,
    /// When it ended (ms since the Unix epoch).
    pub ended_at_ms: u64,
    /// Its secret, to read its task logs from the workers (`None` if it does not unseal).
    pub secret: Option<JobSecret>,
}

/// What the journal says.
pub struct Recovered {
    /// This driver's epoch (one more than the last).
    pub epoch: u64,
    /// Jobs to resume, in submit order.
    pub unfinished: Vec<Unfinished>,
    /// Ended jobs within the history limits, oldest first.
    pub ended: Vec<Ended>,
}

/// Reads the replayed records; fails if an unfinished job's request cannot be unsealed
/// (another key): resuming without it would lose the job silently.
pub fn recover(
    journal: &Journal,
    records: Vec<Record>,
    limits: HistoryLimits,
) -> Result<Recovered, JournalError> {
    let mut epoch = 0;
    let mut submitted: Vec<SubmittedJob> = Vec::new();
    let mut ends: HashMap<String, EndedJob> = HashMap::new();
    let mut maps: HashMap<String, HashMap<u32, MapDone>> = HashMap::new();
    let mut staged: HashMap<String, Vec<JournaledPart>> = HashMap::new();
    let mut commits: HashMap<String, CommitBegun> = HashMap::new();
    for record in records {
        match record {
            Record::Epoch { n } => epoch = epoch.max(n),
            Record::JobSubmitted(job) => submitted.push(job),
            Record::MapDone(done) => {
                drop(maps.entry(done.job.clone()).or_default().insert(done.map_task, done))
            }
            Record::PartStaged(part) => staged.entry(part.job).or_default().push(part.part),
            Record::CommitBegun(commit) => drop(commits.insert(commit.job.clone(), commit)),
            Record::JobEnded(end) => drop(ends.insert(end.id.clone(), end)),
        }
    }
    let mut unfinished = Vec::new();
    let mut ended = Vec::new();
    for job in submitted {
        match ends.remove(&job.id) {
            None => unfinished.push(Unfinished {
                request: journal.request(&job)?,
                secret: journal.secret(&job)?,
                maps: maps.remove(&job.id).unwrap_or_default(),
                staged: staged.remove(&job.id).unwrap_or_default(),
                commit: commits.remove(&job.id),
                job,
            }),
            Some(end) => {
                // History only: a request that does not unseal leaves its counts at zero.
                let request = journal.request(&job).unwrap_or_default();
                let secret = journal.secret(&job).ok().flatten();
                let status = ended_status(&job, &request, &end);
                ended.push(Ended { status, ended_at_ms: end.ended_at_ms, secret });
            }
        }
    }
    ended.sort_by_key(|e| e.ended_at_ms);
    trim_history(&mut ended, limits, now_ms());
    Ok(Recovered { epoch: epoch + 1, unfinished, ended })
}

/// Drops the oldest ended jobs beyond `limits` (`ended` oldest first).
pub fn trim_history(ended: &mut Vec<Ended>, limits: HistoryLimits, now_ms: u64) {
    let ages: Vec<(String, Duration)> = ended
        .iter()
        .map(|e| (e.status.job_id.clone(), Duration::from_millis(now_ms.saturating_sub(e.ended_at_ms))))
        .collect();
    let doomed = beyond_limits(&ages, limits);
    ended.retain(|e| !doomed.contains(&e.status.job_id));
}

/// Of ended jobs and how long ago each ended, those to forget: older than the age limit,
/// or beyond the count limit (the oldest first).
pub fn beyond_limits(ended: &[(String, Duration)], limits: HistoryLimits) -> HashSet<String> {
    let mut by_age: Vec<&(String, Duration)> = ended.iter().collect();
    by_age.sort_by_key(|(_, age)| *age);
    by_age
        .into_iter()
        .enumerate()
        .filter(|(rank, (_, age))| *rank >= limits.max_jobs || *age > limits.max_age)
        .map(|(_, (id, _))| id.clone())
        .collect()
}

/// The final status of a journaled job.
pub fn ended_status(job: &SubmittedJob, request: &SubmitJobRequest, end: &EndedJob) -> JobStatus {
    let succeeded = end.state == EndState::Succeeded;
    let (maps, reduces) = (request.map_tasks.len() as u32, request.reducers);
    JobStatus {
        job_id: job.id.clone(),
        name: job.name.clone(),
        priority: request.priority,
        state: match end.state {
            EndState::Succeeded => JobState::Succeeded,
            EndState::Failed => JobState::Failed,
            EndState::Cancelled => JobState::Cancelled,
        } as i32,
        error: end.message.clone(),
        maps_total: maps,
        maps_done: if succeeded { maps } else { 0 },
        reduces_total: reduces,
        reduces_done: if succeeded { reduces } else { 0 },
        counters: end.counters.clone().into_iter().collect(),
        rows: end.rows,
        files: end.files,
        elapsed_seconds: end.ended_at_ms.saturating_sub(job.submitted_at_ms) as f64 / 1000.0,
        input_files: request.input_files,
        input_bytes: request.input_bytes,
        owner: job.owner.clone(),
        queue: super::state::queue_name(&request.queue),
        ..JobStatus::default()
    }
}

/// The status page's view of an ended job of an earlier run.
pub fn ended_view(ended: &Ended, now_ms: u64) -> JobView {
    use crate::scheduler::JobState as S;
    let status = &ended.status;
    let state = match status.state() {
        JobState::Succeeded => S::Succeeded,
        JobState::Cancelled => S::Cancelled,
        _ => S::Failed(status.error.clone()),
    };
    let counts = |total, done| TaskCounts { total, done, running: 0 };
    let ended_secs_ago = now_ms.saturating_sub(ended.ended_at_ms) as f64 / 1000.0;
    let counters: crate::scheduler::Counters = status.counters.iter().map(|(k, v)| (k.clone(), *v)).collect();
    JobView {
        id: JobId::from_string(status.job_id.clone()),
        name: status.name.clone(),
        priority: status.priority,
        owner: status.owner.clone(),
        queue: super::state::queue_name(&status.queue),
        state,
        phase: Phase::Ended,
        maps: counts(status.maps_total, status.maps_done),
        reduces: counts(status.reduces_total, status.reduces_done),
        attempts_launched: 0,
        failed_attempts: u64::from(status.failed_attempts),
        backups_launched: u64::from(status.backup_attempts),
        preempted_attempts: u64::from(status.preempted_attempts),
        live_counters: counters.clone(),
        counters,
        submitted_secs_ago: ended_secs_ago + status.elapsed_seconds,
        elapsed_secs: status.elapsed_seconds,
    }
}

/// The journal record of a job's end, from its final status.
pub fn end_record(status: &JobStatus) -> EndedJob {
    let state = match status.state() {
        JobState::Succeeded => EndState::Succeeded,
        JobState::Cancelled => EndState::Cancelled,
        _ => EndState::Failed,
    };
    EndedJob {
        id: status.job_id.clone(),
        state,
        message: status.error.clone(),
        rows: status.rows,
        files: status.files,
        counters: status.counters.iter().map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>(),
        ended_at_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(id: &str, ended_at_ms: u64) -> Ended {
        Ended { status: JobStatus { job_id: id.into(), ..JobStatus::default() }, ended_at_ms, secret: None }
    }

    #[test]
    fn history_keeps_the_youngest_within_count_and_age() {
        let limits = HistoryLimits { max_jobs: 2, max_age: Duration::from_secs(100) };
        let now = 1_000_000;
        let mut history = vec![
            ended("old", now - 200_000),
            ended("a", now - 50_000),
            ended("b", now - 40_000),
            ended("c", now - 1),
        ];
        trim_history(&mut history, limits, now);
        let ids: Vec<&str> = history.iter().map(|e| e.status.job_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "the oldest beyond the count and the one past the age are gone");
        let none = HistoryLimits { max_jobs: 0, ..limits };
        trim_history(&mut history, none, now);
        assert!(history.is_empty());
    }

    #[test]
    fn attempt_bases_leave_room_per_epoch_and_saturate() {
        assert_eq!(attempt_base(1), 0, "a first start numbers attempts as before");
        assert_eq!(attempt_base(2), ATTEMPTS_PER_EPOCH);
        assert!(attempt_base(u64::MAX) < u32::MAX);
    }
}
