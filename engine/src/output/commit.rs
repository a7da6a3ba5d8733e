//! The commit protocol of an output directory.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{debug, warn};

use super::{Manifest, OutputFormat, PartFile, SUCCESS_FILE, is_part_name, is_part_of};
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId, PartitionId};
use crate::storage::Location;

/// Part files published at once (renames, or upload completions on an object store).
const PUBLISHING: usize = 16;

/// A job's output directory and its commit protocol.
///
/// 1. [`OutputDir::prepare`] refuses a directory that already holds a committed result
///    unless the user allows overwriting.
/// 2. Reduce attempts stage attempt-unique part files ([`OutputDir::part_location`]).
/// 3. [`OutputDir::commit`] publishes one staged file per partition, writes `_SUCCESS`
///    listing exactly those, then
///    deletes this job's other part files (losing and killed attempts) and the files the
///    overwritten `_SUCCESS` listed. Part files of other jobs are left alone: the directory
///    may be shared, and only what this job wrote or replaced is its to delete. Readers see
///    the old manifest or the new one, never a half-written one.
/// 4. [`OutputDir::abort`] deletes what this job wrote; no `_SUCCESS` is written.
#[derive(Clone, Debug)]
pub struct OutputDir {
    location: Location,
}

impl OutputDir {
    /// The output directory at `location`.
    pub fn new(location: Location) -> Self {
        OutputDir { location }
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Checks the directory may be written: no committed result there, unless `overwrite`.
    pub async fn prepare(&self, overwrite: bool) -> Result<()> {
        let success = self.location.child(SUCCESS_FILE);
        match success.store().head(success.path()).await {
            Ok(_) if !overwrite => Err(Error::OutputExists { path: self.location.display() }),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::read(success.display(), source)),
        }
    }

    /// The file `name` (a part file, or a bad records file `_bad_records/NAME`) in the
    /// directory.
    pub fn file_location(&self, name: &str) -> Location {
        name.split('/').fold(self.location.clone(), |at, part| at.child(part))
    }

    /// Where `attempt` of `job` writes the part file of `partition`.
    pub fn part_location(
        &self,
        job: &JobId,
        partition: PartitionId,
        attempt: AttemptId,
        format: OutputFormat,
    ) -> Location {
        self.location.child(&super::part_name(partition, job, attempt, format))
    }

    /// Commits `parts` (one per partition) with `manifest`: publishes each staged part,
    /// writes `_SUCCESS`, then removes the part files of `manifest.job_id` it does not list
    /// (staging files of attempts that died included), and those the replaced `_SUCCESS`
    /// listed. Staged uploads of other attempts are the caller's to [`discard`](super::discard):
    /// an open upload has no name to list.
    pub async fn commit(&self, manifest: &Manifest, parts: &[PartFile]) -> Result<()> {
        let replaced = self.committed_files().await?;
        // Owned futures: a stream of borrowing closures would not be `Send` for every
        // lifetime, which spawning the commit needs.
        let publishing: Vec<_> = parts
            .iter()
            .map(|part| {
                let (target, staged) = (self.file_location(&part.name), part.staged.clone());
                async move { super::publish(&target, &staged).await }
            })
            .collect();
        futures::stream::iter(publishing).buffer_unordered(PUBLISHING).try_collect::<()>().await?;
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let success = self.location.child(SUCCESS_FILE);
        success
            .store()
            .put(success.path(), PutPayload::from(json))
            .await
            .map_err(|source| Error::write(success.display(), Box::new(source)))?;
        // Committed: what follows is cleaning up, and its failure must not undo the commit.
        let keep: HashSet<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        let job = manifest.job_id.as_str();
        let cleaned = self
            .delete_parts(|name| {
                if keep.contains(name) {
                    return false;
                }
                let doomed = is_part_of(name, job) || replaced.contains(name);
                if !doomed {
                    debug!(file = name, "leaving a part file of another job in place");
                }
                doomed
            })
            .await;
        if let Err(e) = cleaned {
            warn!(output = %self.location.display(), error = %e, "committed, but stray part files remain");
        }
        Ok(())
    }

    /// The names the current `_SUCCESS` lists; none without one, or with one this engine
    /// did not write (another tool's empty marker, say).
    async fn committed_files(&self) -> Result<HashSet<String>> {
        let success = self.location.child(SUCCESS_FILE);
        let bytes = match success.store().get(success.path()).await {
            Ok(found) => found.bytes().await.map_err(|source| Error::read(success.display(), source))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(HashSet::new()),
            Err(source) => return Err(Error::read(success.display(), source)),
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(old) => Ok(old.all_files().map(|f| f.name.clone()).collect()),
            Err(e) => {
                warn!(path = %success.display(), error = %e, "the replaced _SUCCESS is not a manifest; only this job's files are removed");
                Ok(HashSet::new())
            }
        }
    }

    /// Deletes the part files `job` wrote (after a failure); leaves everything else.
    pub async fn abort(&self, job: &JobId) -> Result<()> {
        self.delete_parts(|name| is_part_of(name, job.as_str())).await
    }

    async fn delete_parts(&self, doomed: impl Fn(&str) -> bool) -> Result<()> {
        let store = self.location.store();
        let prefix = self.location.path().clone();
        let mut listing = store.list(Some(&prefix));
        let mut victims = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(source) => return Err(Error::read(self.location.display(), source)),
            };
            let Some(name) = name_within(&meta.location, &prefix) else { continue };
            if is_part_name(&name) && doomed(&name) {
                victims.push(meta.location);
            }
        }
        for path in victims {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::write(self.location.with_path(path).display(), Box::new(source)));
                }
            }
        }
        Ok(())
    }
}

/// The name of `path` within the output at `prefix`: a direct child's file name, or
/// `_bad_records/NAME`; `None` for anything else.
fn name_within(path: &object_store::path::Path, prefix: &object_store::path::Path) -> Option<String> {
    let rest: Vec<_> = path.prefix_match(prefix)?.collect();
    match rest.as_slice() {
        [name] => Some(name.as_ref().to_owned()),
        [dir, name] if dir.as_ref() == super::BAD_RECORDS_DIR => {
            Some(format!("{}/{}", super::BAD_RECORDS_DIR, name.as_ref()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::job::Counters;

    const THIS: &str = "job-20260101T000000-0001";
    const OTHER: &str = "job-20260101T000000-0002";

    fn part(partition: u32, job: &str, attempt: u32) -> PartFile {
        let job = JobId::from_string(job.to_owned());
        let name =
            super::super::part_name(PartitionId(partition), &job, AttemptId(attempt), OutputFormat::Parquet);
        PartFile {
            partition: PartitionId(partition),
            name,
            rows: 1,
            bytes: 1,
            staged: super::super::Staged::LocalFile,
        }
    }

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    async fn commit(dir: &Path, job: &str, parts: &[PartFile]) {
        let output = OutputDir::new(Location::parse(dir.to_str().unwrap()).unwrap());
        let manifest = Manifest::new("test", job, parts, Counters::default());
        output.commit(&manifest, parts).await.unwrap();
    }

    #[tokio::test]
    async fn commit_removes_this_jobs_losing_attempts_and_keeps_other_jobs_files() {
        let dir = tempfile::tempdir().unwrap();
        let (winner, loser, stray) = (part(0, THIS, 1), part(0, THIS, 0), part(0, OTHER, 0));
        let staging = crate::storage::staging_name(&part(1, THIS, 3).name);
        for name in [&winner.name, &loser.name, &stray.name, &staging, &"notes.txt".to_owned()] {
            touch(dir.path(), name);
        }
        commit(dir.path(), THIS, std::slice::from_ref(&winner)).await;
        let mut expected = vec![SUCCESS_FILE.to_owned(), winner.name, stray.name, "notes.txt".to_owned()];
        expected.sort();
        assert_eq!(names(dir.path()), expected);
    }

    #[tokio::test]
    async fn commit_publishes_staged_winners_and_deletes_staged_losers() {
        let dir = tempfile::tempdir().unwrap();
        let (winners, loser) = ([part(0, THIS, 2), part(1, THIS, 0)], part(0, THIS, 1));
        for p in winners.iter().chain([&loser]) {
            touch(dir.path(), &crate::storage::staging_name(&p.name));
        }
        assert!(
            OutputDir::new(Location::parse(dir.path().to_str().unwrap()).unwrap())
                .prepare(false)
                .await
                .is_ok()
        );
        commit(dir.path(), THIS, &winners).await;
        let mut expected = vec![SUCCESS_FILE.to_owned(), winners[0].name.clone(), winners[1].name.clone()];
        expected.sort();
        assert_eq!(names(dir.path()), expected, "winners renamed, the loser's staging file gone");
    }

    #[tokio::test]
    async fn a_commit_whose_winner_is_missing_fails_before_success() {
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::new(Location::parse(dir.path().to_str().unwrap()).unwrap());
        let lost = part(0, THIS, 0);
        let manifest = Manifest::new("test", THIS, std::slice::from_ref(&lost), Counters::default());
        let err = output.commit(&manifest, std::slice::from_ref(&lost)).await.unwrap_err();
        assert!(err.to_string().contains(&lost.name), "{err}");
        assert!(names(dir.path()).is_empty(), "no _SUCCESS without its files");
    }

    #[tokio::test]
    async fn an_overwrite_removes_the_files_of_the_replaced_manifest_only() {
        let dir = tempfile::tempdir().unwrap();
        let old = [part(0, OTHER, 0), part(1, OTHER, 0), part(2, OTHER, 0)];
        for p in &old {
            touch(dir.path(), &p.name);
        }
        commit(dir.path(), OTHER, &old).await;
        let unlisted = part(0, "job-20260101T000000-0003", 0);
        touch(dir.path(), &unlisted.name);
        let new = [part(0, THIS, 0), part(1, THIS, 0)];
        for p in &new {
            touch(dir.path(), &p.name);
        }

        commit(dir.path(), THIS, &new).await;
        let mut expected =
            vec![SUCCESS_FILE.to_owned(), new[0].name.clone(), new[1].name.clone(), unlisted.name];
        expected.sort();
        assert_eq!(
            names(dir.path()),
            expected,
            "the old manifest's files are gone, the unlisted stray stays"
        );
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.path().join(SUCCESS_FILE)).unwrap()).unwrap();
        assert_eq!(manifest.job_id, THIS);
    }

    #[tokio::test]
    async fn a_foreign_success_marker_is_replaced_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), SUCCESS_FILE);
        let stray = part(0, OTHER, 0);
        let mine = part(0, THIS, 0);
        touch(dir.path(), &stray.name);
        touch(dir.path(), &mine.name);
        commit(dir.path(), THIS, std::slice::from_ref(&mine)).await;
        let mut expected = vec![SUCCESS_FILE.to_owned(), mine.name, stray.name];
        expected.sort();
        assert_eq!(names(dir.path()), expected);
    }

    #[tokio::test]
    async fn abort_removes_only_this_jobs_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mine, stray) = (part(0, THIS, 0), part(0, OTHER, 0));
        touch(dir.path(), &mine.name);
        touch(dir.path(), &stray.name);
        let output = OutputDir::new(Location::parse(dir.path().to_str().unwrap()).unwrap());
        output.abort(&JobId::from_string(THIS.to_owned())).await.unwrap();
        assert_eq!(names(dir.path()), vec![stray.name]);
    }
}
