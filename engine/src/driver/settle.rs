//! What a restarted driver settles before it resumes anything: commits the last driver
//! began, and the part files its attempts staged.
//!
//! * A job whose `_SUCCESS` names it had committed: it ends as succeeded (a rerun that
//!   failed would delete the files that manifest lists, leaving half a result).
//! * A job whose commit had begun is committed now from the journaled winners (publishing
//!   is idempotent). If that fails, the commit is rolled back (its published parts are
//!   removed, nothing is visible) and the job runs again: never half a result.
//! * Every other part an earlier attempt staged is discarded: those attempts are fenced
//!   and can never win.

use std::collections::BTreeMap;

use super::commit::{CommitSpec, commit, storage_options_of, unlock_output};
use super::journal::{CommitBegun, EndState, EndedJob, Journal, JournaledPart, Record, now_ms};
use super::recovery::{Ended, Recovered, Unfinished, ended_status};
use super::staging::{StagedPart, discard_all};
use crate::ids::{JobId, PartitionId};
use crate::job::Counters;
use crate::output::{Manifest, OutputDir, PartFile, SUCCESS_FILE};
use crate::storage::Location;

/// Settles every unfinished job of `recovered`: those that end here move to its history.
pub async fn settle_commits(journal: &Journal, recovered: &mut Recovered) {
    let mut unfinished = Vec::new();
    for mut job in std::mem::take(&mut recovered.unfinished) {
        let commit = job.commit.take();
        let staged = std::mem::take(&mut job.staged);
        let committed = match committed_manifest(&job).await {
            Some(manifest) => Some((manifest.rows, manifest.files.len() as u32)),
            None => match commit {
                Some(commit) => finish_commit(&job, commit).await,
                None => None,
            },
        };
        // Discarded once its commit is settled: a finished commit published its winners.
        discard_old_parts(&job, staged).await;
        match committed {
            Some((rows, files)) => recovered.ended.push(end_committed(journal, &job, rows, files).await),
            None => unfinished.push(job),
        }
    }
    recovered.unfinished = unfinished;
}

/// Finishes a commit the last driver began: (rows, files), or `None` after rolling it back.
async fn finish_commit(job: &Unfinished, begun: CommitBegun) -> Option<(u64, u32)> {
    let mut counters = Counters::default();
    for (name, value) in &begun.counters {
        counters.add(name, *value);
    }
    let winners: Vec<PartFile> = begun.winners.iter().map(part_file).collect();
    let spec = CommitSpec {
        name: job.request.name.clone(),
        job_id: job.job.id.clone(),
        output: job.request.output.clone(),
        storage_options: storage_options_of(&job.request),
        winners: Ok(winners),
        losers: begun.losers.iter().map(staged_part).collect(),
        counters,
        codec: crate::cluster::payload::JobPayload::parquet_codec_of(&job.request.job_payload),
        bad_records: Vec::new(),
    };
    // Its bad records file, if any, is among the journaled winners.
    match commit(spec, |_| {}).await {
        Ok(done) => {
            tracing::info!(job = %job.job.id, "finished the commit the last driver began");
            Some(done)
        }
        Err(e) => {
            tracing::warn!(job = %job.job.id, error = %e, "cannot finish the commit the last driver began: rolled back, the job runs again");
            roll_back(job).await;
            None
        }
    }
}

/// Removes the part files a half-finished commit published (its staged parts were
/// discarded by the failed commit).
async fn roll_back(job: &Unfinished) {
    let options = storage_options_of(&job.request);
    let id = JobId::from_string(job.job.id.clone());
    let removed = match Location::parse_with_options_only(&job.request.output, &options) {
        Ok(location) => OutputDir::new(location).abort(&id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        tracing::warn!(job = %id, error = %e, "could not remove the part files of a rolled-back commit");
    }
}

/// Discards the staged parts of an earlier driver's attempts (none can be committed now).
async fn discard_old_parts(job: &Unfinished, parts: Vec<JournaledPart>) {
    if parts.is_empty() {
        return;
    }
    tracing::info!(job = %job.job.id, parts = parts.len(), "discarding the parts the last driver's attempts staged");
    let parts = parts.iter().map(staged_part).collect();
    discard_all(&job.request.output, &storage_options_of(&job.request), parts).await;
}

/// Journals a job that committed as succeeded and releases its output.
async fn end_committed(journal: &Journal, job: &Unfinished, rows: u64, files: u32) -> Ended {
    tracing::info!(job = %job.job.id, "the job had committed before the driver stopped: it ends as succeeded");
    let end = EndedJob {
        id: job.job.id.clone(),
        state: EndState::Succeeded,
        message: String::new(),
        rows,
        files,
        counters: BTreeMap::new(),
        ended_at_ms: now_ms(),
    };
    if let Err(e) = journal.append(&Record::JobEnded(end.clone())) {
        tracing::error!(job = %job.job.id, error = %e, "cannot journal the job's end");
    }
    let options = storage_options_of(&job.request);
    unlock_output(&job.request.output, &options, &JobId::from_string(end.id.clone())).await;
    let status = ended_status(&job.job, &job.request, &end);
    Ended { status, ended_at_ms: end.ended_at_ms, secret: job.secret.clone() }
}

/// The manifest in the job's output, if it names the job.
async fn committed_manifest(job: &Unfinished) -> Option<Manifest> {
    use object_store::ObjectStoreExt;
    let options = storage_options_of(&job.request);
    let location = Location::parse_with_options_only(&job.request.output, &options).ok()?;
    let success = location.child(SUCCESS_FILE);
    let bytes = success.store().get(success.path()).await.ok()?.bytes().await.ok()?;
    let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
    (manifest.job_id == job.job.id).then_some(manifest)
}

/// A journaled winner as the committer publishes it.
fn part_file(part: &JournaledPart) -> PartFile {
    PartFile {
        partition: PartitionId(part.partition),
        name: part.name.clone(),
        rows: part.rows,
        bytes: part.bytes,
        staged: part.staged.clone(),
    }
}

/// A journaled part as the committer discards it.
pub fn staged_part(part: &JournaledPart) -> StagedPart {
    StagedPart {
        partition: part.partition,
        name: part.name.clone(),
        rows: part.rows,
        bytes: part.bytes,
        staged: part.staged.clone(),
    }
}

/// A staged part as the journal keeps it.
pub fn journaled(part: &StagedPart) -> JournaledPart {
    JournaledPart {
        partition: part.partition,
        name: part.name.clone(),
        rows: part.rows,
        bytes: part.bytes,
        staged: part.staged.clone(),
    }
}
