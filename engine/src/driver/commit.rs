//! The driver as the single committer: once every partition has a winning attempt, it
//! publishes those attempts' staged part files (renames locally, completes the multipart
//! uploads on object stores), writes the `_SUCCESS` manifest listing exactly them (written
//! last, so readers see all or nothing), then discards every other staged part (losing,
//! backup and killed attempts) and deletes those of the result it overwrote; other jobs'
//! files stay.
//!
//! Before accepting a job it checks the output itself ([`check_output`]): a committed
//! result is replaced only when the submission asks to overwrite it, whatever the
//! submitting client checked on its side; and one job at a time writes an output (the
//! driver compares their [`output_key`]s).
//!
//! It reaches the output with the job's own storage options (from its submission), never
//! with another job's or a process-wide setting.

use std::time::{Duration, Instant};

use gristmill_proto::v1::SubmitJobRequest;
use tonic::Status;

use super::staging::{StagedPart, discard_all};
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId};
use crate::input::BadRecord;
use crate::job::Counters;
use crate::output::{Codec, LOCK_FILE, Lock, LockHolder, Manifest, OutputDir, PartFile, write_bad_records};
use crate::storage::{Location, StorageOptions};

/// What the committer needs to know of a job.
pub struct CommitSpec {
    /// The job's name.
    pub name: String,
    /// Its id.
    pub job_id: String,
    /// The output directory.
    pub output: String,
    /// The job's object-store options.
    pub storage_options: StorageOptions,
    /// The part files of each partition's winning attempt (one, or with Hive partitioning
    /// any number), in partition order; an error if a winner's staged parts are unknown.
    pub winners: std::result::Result<Vec<PartFile>, String>,
    /// Every other staged part of the job, to discard.
    pub losers: Vec<StagedPart>,
    /// The counters of the winning attempts.
    pub counters: Counters,
    /// The codec of the job's Parquet part files, if its payload says.
    pub codec: Option<Codec>,
    /// The rows its map tasks skipped as bad: written to `_bad_records/` and committed
    /// with the part files.
    pub bad_records: Vec<BadRecord>,
}

/// Stages the bad records, tells `begun` every file the commit publishes (for the journal:
/// a restarted driver finishes the commit from them), publishes them, writes `_SUCCESS`,
/// discards the losers and removes stray part files; returns (rows, files). On failure,
/// every staged part is discarded (the job fails).
pub async fn commit(spec: CommitSpec, begun: impl FnOnce(&[PartFile])) -> Result<(u64, u32)> {
    let CommitSpec {
        name,
        job_id,
        output,
        storage_options,
        winners,
        mut losers,
        counters,
        codec,
        bad_records,
    } = spec;
    let mut staged_bad = None;
    let committed = async {
        let dir = OutputDir::new(Location::parse_with_options_only(&output, &storage_options)?);
        let mut parts = winners.clone().map_err(Error::Internal)?;
        staged_bad = stage_bad_records(&dir, &job_id, bad_records).await?;
        parts.extend(staged_bad.clone());
        begun(&parts);
        let mut manifest = Manifest::new(&name, &job_id, &parts, counters);
        if let Some(codec) = codec {
            manifest = manifest.with_parquet_codec(codec);
        }
        commit_with_retries(&dir, &manifest, &parts).await?;
        Ok((manifest.rows, parts.len() as u32))
    }
    .await;
    if committed.is_err() {
        let winners = winners.unwrap_or_default().into_iter().chain(staged_bad);
        losers.extend(winners.map(|p| StagedPart {
            partition: p.partition.0,
            name: p.name,
            rows: p.rows,
            bytes: p.bytes,
            staged: p.staged,
        }));
    }
    discard_all(&output, &storage_options, losers).await;
    committed
}

/// Writes the job's bad records as a staged file in `dir` (see
/// [`crate::output::write_bad_records`]); `None` when there are none.
async fn stage_bad_records(dir: &OutputDir, job_id: &str, rows: Vec<BadRecord>) -> Result<Option<PartFile>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let (dir, job) = (dir.clone(), JobId::from_string(job_id.to_owned()));
    let io = tokio::runtime::Handle::current();
    // Encoding and writing are blocking work: off the runtime's threads.
    tokio::task::spawn_blocking(move || write_bad_records(&io, &dir, &job, AttemptId(0), &rows))
        .await
        .map_err(|e| Error::Internal(format!("writing the bad records failed: {e}")))?
}

/// How long the committer retries a commit an object store failed transiently (it was
/// unreachable or overloaded): publishing and `_SUCCESS` are idempotent, so a retry
/// finishes what the last try began instead of failing a job whose work is all done.
const COMMIT_RETRY_FOR: Duration = Duration::from_secs(120);
/// The longest pause between two tries.
const COMMIT_RETRY_MAX_PAUSE: Duration = Duration::from_secs(8);

/// Publishes the winners and writes `_SUCCESS`; on an object store, retries transient
/// failures for up to [`COMMIT_RETRY_FOR`] (a local file system's failures are not
/// transient: a missing staging file stays missing).
async fn commit_with_retries(dir: &OutputDir, manifest: &Manifest, parts: &[PartFile]) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    let on_object_store = !dir.location().is_local();
    loop {
        let tried = async {
            paced_publish(dir, parts).await?;
            dir.commit(manifest, parts).await
        }
        .await;
        match tried {
            Err(e) if on_object_store && e.is_retryable() && started.elapsed() + pause < COMMIT_RETRY_FOR => {
                tracing::warn!(job = %manifest.job_id, error = %e, retry_in = ?pause, "the commit failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(COMMIT_RETRY_MAX_PAUSE);
            }
            other => return other,
        }
    }
}

/// Fault injection for chaos tests: with this set (milliseconds), the driver publishes the
/// winners one at a time, pausing before each and before `_SUCCESS`, so a test can kill it,
/// or stop the object store, in the middle of a commit. Unset in production.
pub const COMMIT_PAUSE_ENV: &str = "GRISTMILL_CHAOS_COMMIT_PAUSE_MS";

/// Publishes the winners slowly when [`COMMIT_PAUSE_ENV`] asks for it (the commit then
/// publishes them again, which is idempotent).
async fn paced_publish(dir: &OutputDir, parts: &[PartFile]) -> Result<()> {
    let pause = std::env::var(COMMIT_PAUSE_ENV).ok().and_then(|ms| ms.parse().ok());
    let Some(pause) = pause.map(Duration::from_millis) else { return Ok(()) };
    for part in parts {
        tokio::time::sleep(pause).await;
        crate::output::publish(&dir.file_location(&part.name)?, &part.staged).await?;
        tracing::warn!(part = %part.name, "chaos: published a winner mid-commit");
    }
    tokio::time::sleep(pause).await;
    Ok(())
}

/// The object-store options a job was submitted with.
pub fn storage_options_of(request: &gristmill_proto::v1::SubmitJobRequest) -> StorageOptions {
    StorageOptions::new(&request.storage_options)
}

/// Refuses a submission whose output already holds a committed result (`_SUCCESS`) unless
/// it asks to overwrite it (`already_exists`, naming the directory); reaches the output with
/// the job's own storage options.
pub async fn check_output(request: &SubmitJobRequest) -> std::result::Result<(), Status> {
    let location = Location::parse_with_options_only(&request.output, &storage_options_of(request))
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    OutputDir::new(location).prepare(request.overwrite).await.map_err(|e| match e {
        Error::OutputExists { .. } => Status::already_exists(e.to_string()),
        Error::AccessDenied { .. } => Status::permission_denied(e.to_string()),
        e if !e.is_retryable() => Status::invalid_argument(e.to_string()),
        e => Status::unavailable(e.to_string()),
    })
}

/// Takes the output's lock for `job` ([`OutputDir::lock`]): refused (`failed_precondition`,
/// naming the holder) while another job, of this driver or another, writes it.
/// A lock held by a job for which `ended` is true (one of this driver's, whose release is
/// still under way or failed) is taken over.
pub async fn lock_output(
    request: &SubmitJobRequest,
    job: &JobId,
    owner: &str,
    ended: impl Fn(&str) -> bool,
) -> std::result::Result<(), Status> {
    let location = Location::parse_with_options_only(&request.output, &storage_options_of(request))
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let dir = OutputDir::new(location);
    let holder = LockHolder::new(job.as_str(), owner);
    match dir.lock(&holder).await {
        Ok(Lock::Acquired) => Ok(()),
        Ok(Lock::HeldBy(Some(gone))) if ended(&gone.job_id) => dir
            .take_lock(&holder)
            .await
            .map_err(|e| Status::unavailable(format!("cannot lock the output: {e}"))),
        Ok(Lock::HeldBy(holder)) => {
            let by = holder.map_or_else(
                || "another job".to_owned(),
                |h| format!("job {} of {} (driver {})", h.job_id, h.owner, h.driver),
            );
            Err(Status::failed_precondition(format!(
                "output {} is being written by {by}; wait for it to end, or, if its driver is gone, \
                 delete {}/{LOCK_FILE}",
                dir.location().display(),
                dir.location().display()
            )))
        }
        Err(e) => Err(Status::unavailable(format!("cannot lock the output: {e}"))),
    }
}

/// Releases the output's lock `job` holds. Best effort: a failure is logged.
pub async fn unlock_output(output: &str, options: &StorageOptions, job: &JobId) {
    let unlocked = match Location::parse_with_options_only(output, options) {
        Ok(location) => OutputDir::new(location).unlock(job.as_str()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = unlocked {
        tracing::warn!(job = %job, error = %e, "could not release the output's lock");
    }
}

/// The submission's output as the driver compares outputs: one spelling per directory (an
/// absolute path or a URL without user info, no trailing slash), so that no two jobs that
/// have not ended write the same output however each submission wrote it.
pub fn output_key(request: &SubmitJobRequest) -> std::result::Result<String, Status> {
    Location::parse_with_options_only(&request.output, &storage_options_of(request))
        .map(|location| location.display())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(output: &std::path::Path, overwrite: bool) -> SubmitJobRequest {
        SubmitJobRequest { output: output.display().to_string(), overwrite, ..Default::default() }
    }

    #[tokio::test]
    async fn a_committed_output_is_refused_unless_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        check_output(&request(&out, false)).await.expect("a missing output is fine");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(crate::output::SUCCESS_FILE), b"{}").unwrap();

        let refused = check_output(&request(&out, false)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::AlreadyExists);
        assert!(refused.message().contains(&out.display().to_string()), "{}", refused.message());
        check_output(&request(&out, true)).await.expect("overwrite allows it");
    }

    #[test]
    fn output_keys_spell_a_directory_one_way() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let key = |output: String| output_key(&SubmitJobRequest { output, ..Default::default() }).unwrap();
        let plain = key(out.display().to_string());
        assert_eq!(plain, out.display().to_string());
        assert_eq!(key(format!("{}/", out.display())), plain, "a trailing slash");
        assert_eq!(key(format!("file://{}/", out.display())), plain, "a file URL");
        assert_ne!(key(dir.path().join("other").display().to_string()), plain);
    }
}
