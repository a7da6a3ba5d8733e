//! The commit protocol of an output directory.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{debug, warn};

use super::{Manifest, PartFile, SUCCESS_FILE, is_part_name, is_part_of};
use crate::error::{Error, Result};
use crate::ids::JobId;
use crate::storage::Location;

/// Part files published at once (renames, or upload completions on an object store).
const PUBLISHING: usize = 16;

/// A job's output directory and its commit protocol.
///
/// 1. [`OutputDir::prepare`] refuses a directory that already holds a committed result
///    unless the user allows overwriting.
/// 2. Reduce attempts stage attempt-unique part files ([`super::part_name`]; with Hive
///    partitioning, one below each `COL=value/` directory they write to).
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

    /// Where the part file at `name` (a path relative to the directory, as
    /// [`PartFile::name`]; a bad records file is `_bad_records/NAME`) is.
    pub fn file_location(&self, name: &str) -> Result<Location> {
        self.location.descendant(name)
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
                async move { super::publish(&target?, &staged).await }
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
                let doomed = is_part_of(file_name(name), job) || replaced.contains(name);
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
        self.delete_parts(|name| is_part_of(file_name(name), job.as_str())).await
    }

    /// Deletes the part files (direct children, or below Hive partition directories) whose
    /// path relative to the directory is `doomed`; on the local file system, partition
    /// directories left empty go too.
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
            let relative = crate::storage::relative_to(&prefix, &meta.location);
            let (dirs, name) = relative.rsplit_once('/').unwrap_or(("", relative));
            let ours =
                dirs.is_empty() || dirs == super::BAD_RECORDS_DIR || super::hive::is_partition_path(dirs);
            if ours && is_part_name(name) && doomed(relative) {
                victims.push(meta.location);
            }
        }
        for path in &victims {
            match store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::write(
                        self.location.with_path(path.clone()).display(),
                        Box::new(source),
                    ));
                }
            }
        }
        self.remove_empty_dirs(&victims);
        Ok(())
    }

    /// Removes the local partition directories of `deleted` files that are now empty
    /// (object stores have no directories). Best effort.
    fn remove_empty_dirs(&self, deleted: &[object_store::path::Path]) {
        let Some(root) = self.location.local_file() else { return };
        for path in deleted {
            let Some(mut dir) = self.location.with_path(path.clone()).local_file() else { continue };
            while dir.pop() && dir.starts_with(&root) && dir != root {
                if std::fs::remove_dir(&dir).is_err() {
                    break;
                }
            }
        }
    }
}

/// The last name of a relative path.
fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ids::{AttemptId, PartitionId};
    use crate::job::Counters;
    use crate::output::OutputLayout;

    const THIS: &str = "job-20260101T000000-0001";
    const OTHER: &str = "job-20260101T000000-0002";

    fn part(partition: u32, job: &str, attempt: u32) -> PartFile {
        let job = JobId::from_string(job.to_owned());
        let name = super::super::part_name(
            PartitionId(partition),
            &job,
            AttemptId(attempt),
            &OutputLayout::default(),
        );
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
    async fn partitioned_winners_are_published_and_losers_and_their_empty_directories_go() {
        let dir = tempfile::tempdir().unwrap();
        let in_dir = |d: &str, p: &PartFile| PartFile { name: format!("{d}/{}", p.name), ..p.clone() };
        let winners = [in_dir("k=a%2Fb", &part(0, THIS, 1)), in_dir("k=c", &part(0, THIS, 1))];
        let losers = [in_dir("k=a%2Fb", &part(0, THIS, 0)), in_dir("k=lost", &part(0, THIS, 0))];
        for p in winners.iter().chain(&losers) {
            let (sub, name) = p.name.split_once('/').unwrap();
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            touch(&dir.path().join(sub), &crate::storage::staging_name(name));
        }
        commit(dir.path(), THIS, &winners).await;
        assert_eq!(names(dir.path()), [SUCCESS_FILE, "k=a%2Fb", "k=c"], "the losers' directory is gone");
        let (sub, name) = winners[0].name.split_once('/').unwrap();
        assert_eq!(
            names(&dir.path().join(sub)),
            [name],
            "the winner published, the loser's staging file gone"
        );
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.path().join(SUCCESS_FILE)).unwrap()).unwrap();
        let listed: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(listed, [winners[0].name.as_str(), winners[1].name.as_str()]);

        let output = OutputDir::new(Location::parse(dir.path().to_str().unwrap()).unwrap());
        output.abort(&JobId::from_string(THIS.to_owned())).await.unwrap();
        assert_eq!(names(dir.path()), [SUCCESS_FILE], "an abort removes partitioned files and directories");
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
