//! The output lock: one job at a time writes an output directory, across drivers. The
//! driver creates `_GRISTMILL_LOCK` in the output with a conditional put
//! (`PutMode::Create`, an `If-None-Match: *` PUT on S3) before accepting a job, and
//! deletes it when the job ends. Of two drivers racing for one output, the store lets
//! exactly one create it. (Within one driver, the scheduler's own check comes first and
//! names the running job.)

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::OutputDir;
use crate::error::{Error, Result};

/// The lock object's name in the output directory (hidden from input listings by its `_`).
pub const LOCK_FILE: &str = "_GRISTMILL_LOCK";

/// Who holds an output's lock: written into the lock object, shown to whoever is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The job writing the output.
    pub job_id: String,
    /// Who submitted it.
    pub owner: String,
    /// The driver that runs it (`host:pid`).
    pub driver: String,
    /// When it took the lock (milliseconds since the Unix epoch).
    pub since_ms: u64,
}

impl LockHolder {
    /// A holder for `job_id` of `owner`, run by this process, from now.
    pub fn new(job_id: &str, owner: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        LockHolder {
            job_id: job_id.to_owned(),
            owner: owner.to_owned(),
            driver: format!("{host}:{}", std::process::id()),
            since_ms: now.as_millis() as u64,
        }
    }
}

/// What [`OutputDir::lock`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lock {
    /// The lock is ours now.
    Acquired,
    /// Another job holds it (its holder, if the lock object could be read).
    HeldBy(Option<LockHolder>),
}

impl OutputDir {
    /// Takes the output's lock for `holder`, unless another job holds it.
    pub async fn lock(&self, holder: &LockHolder) -> Result<Lock> {
        let lock = self.location().child(LOCK_FILE);
        let json = serde_json::to_vec(holder).map_err(|e| Error::Internal(e.to_string()))?;
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match lock.store().put_opts(lock.path(), PutPayload::from(json), create).await {
            Ok(_) => Ok(Lock::Acquired),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Lock::HeldBy(self.lock_holder().await))
            }
            Err(source) => Err(Error::write(lock.display(), Box::new(source))),
        }
    }

    /// Takes the lock from a holder known to be gone (a job of this driver that ended
    /// before its lock was released).
    pub async fn take_lock(&self, holder: &LockHolder) -> Result<()> {
        let lock = self.location().child(LOCK_FILE);
        let json = serde_json::to_vec(holder).map_err(|e| Error::Internal(e.to_string()))?;
        lock.store()
            .put(lock.path(), PutPayload::from(json))
            .await
            .map(|_| ())
            .map_err(|source| Error::write(lock.display(), Box::new(source)))
    }

    /// Releases the lock if `job_id` holds it; a lock of another job stays.
    pub async fn unlock(&self, job_id: &str) -> Result<()> {
        if self.lock_holder().await.is_none_or(|holder| holder.job_id != job_id) {
            return Ok(());
        }
        let lock = self.location().child(LOCK_FILE);
        match lock.store().delete(lock.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::write(lock.display(), Box::new(source))),
        }
    }

    /// The lock's holder, if there is a readable lock.
    async fn lock_holder(&self) -> Option<LockHolder> {
        let lock = self.location().child(LOCK_FILE);
        let bytes = lock.store().get(lock.path()).await.ok()?.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Location;

    async fn lock_both(output: &OutputDir) {
        let first = LockHolder::new("job-1", "alice");
        assert_eq!(output.lock(&first).await.unwrap(), Lock::Acquired);
        let refused = output.lock(&LockHolder::new("job-2", "bob")).await.unwrap();
        assert_eq!(refused, Lock::HeldBy(Some(first)), "one writer at a time");
        output.unlock("job-2").await.unwrap();
        assert!(matches!(output.lock(&LockHolder::new("job-3", "bob")).await.unwrap(), Lock::HeldBy(_)));
        output.take_lock(&LockHolder::new("job-4", "carol")).await.unwrap();
        output.unlock("job-1").await.unwrap();
        assert!(matches!(output.lock(&LockHolder::new("job-5", "bob")).await.unwrap(), Lock::HeldBy(_)));
        output.unlock("job-4").await.unwrap();
        assert_eq!(output.lock(&LockHolder::new("job-2", "bob")).await.unwrap(), Lock::Acquired);
    }

    #[tokio::test]
    async fn one_job_holds_a_local_output_until_it_unlocks() {
        let dir = tempfile::tempdir().unwrap();
        lock_both(&OutputDir::new(Location::parse(dir.path().join("out").to_str().unwrap()).unwrap())).await;
    }

    #[tokio::test]
    async fn one_job_holds_an_object_store_output_until_it_unlocks() {
        lock_both(&OutputDir::new(Location::parse("memory:///lock-tests/out").unwrap())).await;
    }
}
