//! The commit protocol of an output directory.

use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Manifest, OutputFormat, PartFile, SUCCESS_FILE, is_part_name};
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId, PartitionId};
use crate::storage::Location;

/// A job's output directory and its commit protocol.
///
/// 1. [`OutputDir::prepare`] refuses a directory that already holds a committed result
///    unless the user allows overwriting.
/// 2. Reduce attempts write attempt-unique part files ([`OutputDir::part_location`]).
/// 3. [`OutputDir::commit`] writes `_SUCCESS` listing exactly one file per partition, then
///    deletes every other part file (losing attempts, an overwritten result, leftovers of
///    crashed runs). Readers see the old manifest or the new one, never a half-written one.
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

    /// Commits `parts` (one per partition) with `manifest`, then removes stray part files.
    pub async fn commit(&self, manifest: &Manifest, parts: &[PartFile]) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let success = self.location.child(SUCCESS_FILE);
        success
            .store()
            .put(success.path(), PutPayload::from(json))
            .await
            .map_err(|source| Error::write(success.display(), Box::new(source)))?;
        let keep: std::collections::HashSet<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        self.delete_parts(|name| !keep.contains(name)).await
    }

    /// Deletes the part files `job` wrote (after a failure); leaves everything else.
    pub async fn abort(&self, job: &JobId) -> Result<()> {
        let marker = format!("-{job}-");
        self.delete_parts(|name| name.contains(&marker)).await
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
            let Some(name) = meta.location.filename() else { continue };
            let direct_child =
                meta.location.prefix_match(&prefix).is_some_and(|mut rest| rest.nth(1).is_none());
            if direct_child && is_part_name(name) && doomed(name) {
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
