//! The driver's journal: an append-only log in `<data-dir>/journal` of what a restarted
//! driver needs to carry on: submitted jobs (their requests and secrets sealed: see the
//! `seal` module), completed map outputs (which worker holds them), ended jobs, and epochs
//! (one per start).
//!
//! Each record is `length (u32 LE) | CRC-32 of the body (u32 LE) | JSON body`, appended and
//! flushed to disk (`sync_data`) before the change it records is acted on; completed map
//! outputs, a hint that only saves work, are appended without a sync of their own. A crash can leave
//! a torn last record: replay reads up to the first short or bad record, truncates the file
//! there and warns. The log is never compacted yet; every job stays in it.

mod seal;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use gristmill_proto::v1::SubmitJobRequest;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::ids::JobId;
use crate::output::Staged;
use crate::security::JobSecret;
pub use seal::SealingKey;

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "journal";
/// The sealing key's file name in the data directory.
pub const KEY_FILE: &str = "journal.key";
/// Larger lengths are garbage (a torn or overwritten header), not records.
const MAX_RECORD_BYTES: usize = 1 << 30;
const HEADER_BYTES: usize = 8;

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or syncing the log failed.
    #[error("driver journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sealing key is missing, malformed or does not open a record.
    #[error("driver journal key {path}: {cause}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        cause: String,
    },
    /// A record could not be encoded or decoded.
    #[error("driver journal record of job {job}: {cause}")]
    Record {
        /// The job it is about.
        job: String,
        /// What is wrong.
        cause: String,
    },
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A driver started with this epoch (one more than the last).
    Epoch {
        /// The epoch.
        n: u64,
    },
    /// A job was accepted.
    JobSubmitted(SubmittedJob),
    /// A map task's output was accepted (the latest record of a task stands).
    MapDone(MapDone),
    /// An attempt staged a part file: a restarted driver discards it unless a commit
    /// lists it (its attempt is fenced off and can never win).
    PartStaged(PartStaged),
    /// A job's commit began: a restarted driver finishes it (or, failing that, rolls it back).
    CommitBegun(CommitBegun),
    /// A job ended.
    JobEnded(EndedJob),
}

/// An accepted job; its request is sealed (storage options and job settings may hold
/// credentials), the rest is in the clear for people reading the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmittedJob {
    /// The job's id.
    pub id: String,
    /// Who submitted it.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// Its output.
    pub output: String,
    /// When it was accepted (ms since the Unix epoch).
    pub submitted_at_ms: u64,
    /// The protobuf `SubmitJobRequest`, sealed with the journal key, hex.
    pub sealed_request: String,
    /// The job's secret, sealed, hex: a resumed job keeps it, so the map outputs workers
    /// hold under it stay readable. Empty in records of older drivers.
    #[serde(default)]
    pub sealed_secret: String,
}

/// A map task's accepted output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapDone {
    /// The job's id.
    pub job: String,
    /// The map task.
    pub map_task: u32,
    /// The attempt whose output won.
    pub attempt: u32,
    /// The shuffle address of the worker holding it.
    pub worker: String,
    /// The attempt's counters (the job's totals need them when the output is adopted).
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// The rows of its split it skipped as bad (`--max-bad-records`), adopted with it:
    /// sealed like a request (they are input data), hex; empty when there were none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed_bad_records: String,
}

/// A staged part file of one attempt, as the commit needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournaledPart {
    /// The partition.
    pub partition: u32,
    /// Its name in the output directory.
    pub name: String,
    /// Rows (0 in journals of drivers that recorded them for winners only).
    #[serde(default)]
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// How it waits for the commit (an upload's id and part ids are not secrets).
    pub staged: Staged,
}

/// A part file an attempt staged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartStaged {
    /// The job's id.
    pub job: String,
    /// The part.
    pub part: JournaledPart,
}

/// The start of a job's commit: what it publishes and what it discards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitBegun {
    /// The job's id.
    pub job: String,
    /// The winning parts, in partition order.
    pub winners: Vec<JournaledPart>,
    /// Every other staged part.
    pub losers: Vec<JournaledPart>,
    /// The counters of the winning attempts (for the manifest).
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndState {
    /// Committed.
    Succeeded,
    /// Failed (see the message).
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

/// A job's end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndedJob {
    /// The job's id.
    pub id: String,
    /// How it ended.
    pub state: EndState,
    /// Why it failed; empty otherwise.
    pub message: String,
    /// Rows committed.
    pub rows: u64,
    /// Part files committed.
    pub files: u32,
    /// The counters of the winning attempts.
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// When it ended (ms since the Unix epoch).
    pub ended_at_ms: u64,
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    key: SealingKey,
}

impl Journal {
    /// Opens (or creates) the journal in `data_dir` and replays it: the records up to the
    /// first torn or bad one, which is cut off with a warning.
    pub fn open(data_dir: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let path = data_dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io { path: path.clone(), source };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let key = SealingKey::open_or_create(&data_dir.join(KEY_FILE))?;
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, valid) = parse(&bytes);
        if valid < bytes.len() {
            tracing::warn!(journal = %path.display(), kept = valid, dropped = bytes.len() - valid, "the journal ends in a torn or bad record (a crash while appending): cut off");
            file.set_len(valid as u64).and_then(|()| file.sync_all()).map_err(io)?;
        }
        Ok((Journal { path, file: Mutex::new(file), key }, records))
    }

    /// Appends `record` and flushes it to disk.
    pub fn append(&self, record: &Record) -> Result<(), JournalError> {
        self.write(record, true)
    }

    /// Appends `record` without waiting for the disk: for records whose loss in a crash
    /// costs only work, never correctness (a [`Record::MapDone`] lost makes a restarted
    /// driver run that map again). It reaches the disk with the next [`Journal::append`]
    /// (a sync flushes the whole file) or when the OS writes it back. One sync per map task
    /// (milliseconds each on our disks) held a worker's reports back: see bench/README.md,
    /// "Many small tasks".
    pub fn append_lazily(&self, record: &Record) -> Result<(), JournalError> {
        self.write(record, false)
    }

    fn write(&self, record: &Record, sync: bool) -> Result<(), JournalError> {
        let body = serde_json::to_vec(record)
            .map_err(|e| JournalError::Record { job: record.job().to_owned(), cause: e.to_string() })?;
        let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        // A poisoned lock: the file itself is fine, an append is whole or torn either way.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| JournalError::Io { path: self.path.clone(), source };
        file.write_all(&frame).map_err(io)?;
        if sync {
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// The record of an accepted job, its request sealed.
    pub fn submitted(
        &self,
        id: &JobId,
        owner: &str,
        request: &SubmitJobRequest,
        secret: &JobSecret,
    ) -> Result<Record, JournalError> {
        let sealed = self.key.seal(id.as_str(), &request.encode_to_vec())?;
        let sealed_secret = self.key.seal(&secret_context(id.as_str()), secret.expose().as_bytes())?;
        Ok(Record::JobSubmitted(SubmittedJob {
            id: id.to_string(),
            owner: owner.to_owned(),
            name: request.name.clone(),
            output: request.output.clone(),
            submitted_at_ms: now_ms(),
            sealed_request: seal::to_hex(&sealed),
            sealed_secret: seal::to_hex(&sealed_secret),
        }))
    }

    /// The secret of a journaled job; `None` in a record of an older driver.
    pub fn secret(&self, job: &SubmittedJob) -> Result<Option<JobSecret>, JournalError> {
        if job.sealed_secret.is_empty() {
            return Ok(None);
        }
        let bad = |cause: &str| JournalError::Record { job: job.id.clone(), cause: cause.into() };
        let sealed = seal::from_hex(&job.sealed_secret).ok_or_else(|| bad("the sealed secret is not hex"))?;
        let plain = self.key.open(&secret_context(&job.id), &sealed)?;
        let text = String::from_utf8(plain).map_err(|_| bad("the secret is not UTF-8"))?;
        Ok(Some(JobSecret::from_string(text)))
    }

    /// `rows`, the bad records of a map output of `job`, sealed for a [`MapDone`] record
    /// (empty when there are none).
    pub fn seal_bad_records(
        &self,
        job: &str,
        rows: &[crate::input::BadRecord],
    ) -> Result<String, JournalError> {
        if rows.is_empty() {
            return Ok(String::new());
        }
        let json = serde_json::to_vec(rows)
            .map_err(|e| JournalError::Record { job: job.into(), cause: e.to_string() })?;
        Ok(seal::to_hex(&self.key.seal(&bad_records_context(job), &json)?))
    }

    /// The bad records a [`MapDone`] record holds.
    pub fn bad_records(&self, done: &MapDone) -> Result<Vec<crate::input::BadRecord>, JournalError> {
        if done.sealed_bad_records.is_empty() {
            return Ok(Vec::new());
        }
        let bad = |cause: String| JournalError::Record { job: done.job.clone(), cause };
        let sealed = seal::from_hex(&done.sealed_bad_records)
            .ok_or_else(|| bad("the bad records are not hex".into()))?;
        let plain = self.key.open(&bad_records_context(&done.job), &sealed)?;
        serde_json::from_slice(&plain).map_err(|e| bad(e.to_string()))
    }

    /// The request of a journaled job.
    pub fn request(&self, job: &SubmittedJob) -> Result<SubmitJobRequest, JournalError> {
        let bad = |cause: String| JournalError::Record { job: job.id.clone(), cause };
        let sealed =
            seal::from_hex(&job.sealed_request).ok_or_else(|| bad("the sealed request is not hex".into()))?;
        let plain = self.key.open(&job.id, &sealed)?;
        SubmitJobRequest::decode(plain.as_slice()).map_err(|e| bad(e.to_string()))
    }
}

impl Record {
    fn job(&self) -> &str {
        match self {
            Record::Epoch { .. } => "-",
            Record::JobSubmitted(job) => &job.id,
            Record::MapDone(done) => &done.job,
            Record::PartStaged(staged) => &staged.job,
            Record::CommitBegun(commit) => &commit.job,
            Record::JobEnded(job) => &job.id,
        }
    }
}

/// What a job's bad records are sealed to.
fn bad_records_context(job: &str) -> String {
    format!("{job}/bad-records")
}

/// What a job's secret is sealed to: a sealed request cannot pass for a secret.
fn secret_context(job: &str) -> String {
    format!("{job}/secret")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The records of `bytes` up to the first torn or bad one, and the bytes they span.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, next)) = parse_one(bytes, at) {
        records.push(record);
        at = next;
    }
    (records, at)
}

fn parse_one(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let header = bytes.get(at..at + HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let body = bytes.get(at + HEADER_BYTES..at + HEADER_BYTES + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let record = serde_json::from_slice(body).ok()?;
    Some((record, at + HEADER_BYTES + len))
}
