//! Staged part files: an attempt's output, written in full but invisible until the
//! committer publishes it, so that an attempt that loses, dies or finishes late can never
//! make a file appear in the output.
//!
//! * On the local file system the part file is the hidden `.NAME.inprogress` beside its
//!   final name ([`staging_name`]); publishing renames it.
//! * On object stores it is a multipart upload the attempt does not complete
//!   ([`StagedUpload`]); publishing completes it, discarding aborts it. No object exists
//!   under the part's name before then, and no copy or rename is needed (S3 has neither
//!   cheaply).
//!
//! Both are idempotent, so a committer that crashed half-way can publish again.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::storage::{Location, staging_name};

/// Where a written part file waits for the commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Staged {
    /// The hidden local file [`staging_name`] in the output directory.
    LocalFile,
    /// An open multipart upload of the part's object.
    Upload {
        /// The upload's id.
        id: MultipartId,
        /// Its parts' ids (ETags), in order.
        parts: Vec<String>,
    },
}

/// Names the file where a task process notes each part file it stages (set by the worker
/// for its task processes): a process killed or crashed before it reported cannot discard
/// its own, so its worker discards what the notes list.
pub const STAGED_NOTES_ENV: &str = "GRISTMILL_STAGED_NOTES";

/// One part file a task process staged, as noted in [`STAGED_NOTES_ENV`]'s file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedNote {
    /// The part file's name in the output directory.
    pub name: String,
    /// How it is staged (an upload's parts are not noted: aborting needs none).
    pub staged: Staged,
}

/// Notes a part file as staged, when this process runs as a worker's task. Best effort:
/// a failure is logged.
///
/// In an executor, the notes file is the attempt's own
/// ([`crate::cluster::executor::scope`]).
pub(super) fn note_staged(name: &str, staged: Staged) {
    let path = match crate::cluster::executor::scope::current() {
        Some(scope) => scope.staged_notes.clone().into_os_string(),
        None => match std::env::var_os(STAGED_NOTES_ENV) {
            Some(path) => path,
            None => return,
        },
    };
    let noted = serde_json::to_string(&StagedNote { name: name.to_owned(), staged })
        .map_err(io::Error::other)
        .and_then(|line| {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            io::Write::write_all(&mut file, format!("{line}\n").as_bytes())
        });
    if let Err(e) = noted {
        tracing::warn!(part = name, error = %e, "could not note a staged part file");
    }
}

/// The part files noted in `path` (none if it does not exist; bad lines are skipped).
pub fn read_staged_notes(path: &std::path::Path) -> Vec<StagedNote> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Makes the staged part file at `target` visible under its name. Publishing twice is
/// fine: a part already in place counts as published.
pub async fn publish(target: &Location, staged: &Staged) -> Result<()> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| Error::write(target.display(), e);
    match staged {
        Staged::LocalFile => {
            let (staging, path) = local_paths(target)?;
            match std::fs::rename(&staging, &path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && path.exists() => Ok(()),
                other => other.map_err(|e| failed(Box::new(e))),
            }
        }
        Staged::Upload { id, parts } => {
            let store = multipart_of(target)?;
            let parts = parts.iter().map(|p| PartId { content_id: p.clone() }).collect();
            match store.complete_multipart(target.path(), id, parts).await {
                Ok(_) => Ok(()),
                // Completed before (the upload is gone and the object there).
                Err(e) if target.store().head(target.path()).await.is_ok() => {
                    tracing::debug!(path = %target.display(), error = %e, "upload completed before");
                    Ok(())
                }
                Err(e) => Err(failed(Box::new(e))),
            }
        }
    }
}

/// Deletes the staged part file at `target` without publishing it; one already gone is fine.
pub async fn discard(target: &Location, staged: &Staged) -> Result<()> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| Error::write(target.display(), e);
    match staged {
        Staged::LocalFile => match std::fs::remove_file(local_paths(target)?.0) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(failed(Box::new(e))),
            _ => Ok(()),
        },
        Staged::Upload { id, .. } => match multipart_of(target)?.abort_multipart(target.path(), id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(Box::new(e))),
        },
    }
}

/// The staging file and the final file of a local part.
fn local_paths(target: &Location) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let path = target.local_file().ok_or_else(|| {
        Error::Internal(format!("{}: a local staging file reported for an object store", target.display()))
    })?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    Ok((path.with_file_name(staging_name(name)), path))
}

fn multipart_of(target: &Location) -> Result<&Arc<dyn MultipartStore>> {
    target.multipart().ok_or_else(|| {
        Error::Internal(format!("{}: an upload reported for the local file system", target.display()))
    })
}

/// Bytes per uploaded part: S3 wants at least 5 MiB (but for the last), and allows 10,000
/// parts, so a part file may reach 80 GB.
const PART_BYTES: usize = 8 << 20;
/// Parts uploading at once per file.
const IN_FLIGHT: usize = 4;

/// A part file written as a multipart upload that is left open (see the module
/// documentation). Implements [`io::Write`] for writers on CPU threads: parts upload on the
/// runtime behind `io`, a few at a time. Dropped before [`StagedUpload::finish`] (its task
/// failed), it aborts the upload.
pub struct StagedUpload {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    io: Handle,
    buffer: Vec<u8>,
    uploading: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    /// Ids of the parts uploaded, in order.
    parts: Vec<String>,
    started: usize,
    len: u64,
    /// Set by `finish`: the upload now belongs to the committer.
    handed_over: bool,
}

impl StagedUpload {
    /// Starts the upload of the object at `target`.
    pub fn create(io: &Handle, target: &Location) -> io::Result<Self> {
        let store = target.multipart().cloned().ok_or_else(|| io::Error::other("not an object store"))?;
        let path = target.path().clone();
        let id = io.block_on(store.create_multipart(&path)).map_err(io::Error::other)?;
        Ok(StagedUpload {
            store,
            path,
            id,
            io: io.clone(),
            buffer: Vec::with_capacity(PART_BYTES),
            uploading: VecDeque::new(),
            parts: Vec::new(),
            started: 0,
            len: 0,
            handed_over: false,
        })
    }

    /// The upload's id.
    pub fn id(&self) -> &MultipartId {
        &self.id
    }

    /// Uploads what is buffered and waits for every part; the upload stays open for the
    /// committer. Returns the bytes written and how to publish them.
    pub fn finish(mut self) -> io::Result<(u64, Staged)> {
        if !self.buffer.is_empty() || self.started == 0 {
            self.send_part()?;
        }
        while !self.uploading.is_empty() {
            self.wait_oldest()?;
        }
        self.handed_over = true;
        Ok((self.len, Staged::Upload { id: self.id.clone(), parts: std::mem::take(&mut self.parts) }))
    }

    fn send_part(&mut self) -> io::Result<()> {
        while self.uploading.len() >= IN_FLIGHT {
            self.wait_oldest()?;
        }
        let data = PutPayload::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES)));
        let (store, path, id, index) = (self.store.clone(), self.path.clone(), self.id.clone(), self.started);
        self.uploading.push_back(self.io.spawn(async move { store.put_part(&path, &id, index, data).await }));
        self.started += 1;
        Ok(())
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        let Some(part) = self.uploading.pop_front() else { return Ok(()) };
        let part = self.io.block_on(part).map_err(io::Error::other)?.map_err(io::Error::other)?;
        self.parts.push(part.content_id);
        Ok(())
    }
}

impl io::Write for StagedUpload {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(PART_BYTES - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..n]);
        self.len += n as u64;
        if self.buffer.len() == PART_BYTES {
            self.send_part()?;
        }
        Ok(n)
    }

    /// Parts are sent when full: a flush does not cut a short part (S3 would refuse it).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StagedUpload {
    /// Aborts an upload that was not handed over. Best effort: a failure is logged, and a
    /// store's lifecycle rule for incomplete uploads is the backstop.
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        let (store, path, id) = (self.store.clone(), self.path.clone(), self.id.clone());
        let abort = async move {
            if let Err(e) = store.abort_multipart(&path, &id).await {
                tracing::warn!(%path, error = %e, "could not abort the upload of a failed part file");
            }
        };
        if Handle::try_current().is_ok() {
            // On a runtime thread (never in the engine's own use): cannot block here.
            self.io.spawn(abort);
        } else {
            self.io.block_on(abort);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::output::{OutputDir, PartFile};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    fn memory(path: &str) -> Location {
        Location::parse(&format!("memory:///staged-tests/{path}")).unwrap()
    }

    #[test]
    fn an_upload_is_invisible_until_published_and_published_once() {
        let rt = runtime();
        let target = memory("a/part-00000.dat");
        let mut upload = StagedUpload::create(rt.handle(), &target).unwrap();
        let data: Vec<u8> = (0..PART_BYTES * 2 + 77).map(|i| (i % 251) as u8).collect();
        upload.write_all(&data).unwrap();
        let (len, staged) = upload.finish().unwrap();
        assert_eq!(len, data.len() as u64);
        let Staged::Upload { parts, .. } = &staged else { panic!("{staged:?}") };
        assert_eq!(parts.len(), 3);
        assert!(rt.block_on(target.store().head(target.path())).is_err(), "not visible before publish");

        rt.block_on(publish(&target, &staged)).unwrap();
        let got =
            rt.block_on(async { target.store().get(target.path()).await.unwrap().bytes().await.unwrap() });
        assert_eq!(&got[..], &data[..]);
        rt.block_on(publish(&target, &staged)).expect("publishing again is fine");
    }

    #[test]
    fn a_discarded_or_dropped_upload_never_appears() {
        let rt = runtime();
        let target = memory("b/part-00000.dat");
        let mut upload = StagedUpload::create(rt.handle(), &target).unwrap();
        upload.write_all(b"lost").unwrap();
        let (_, staged) = upload.finish().unwrap();
        rt.block_on(discard(&target, &staged)).unwrap();
        assert!(rt.block_on(publish(&target, &staged)).is_err(), "an aborted upload cannot be published");

        let dropped = memory("b/part-00001.dat");
        let mut upload = StagedUpload::create(rt.handle(), &dropped).unwrap();
        upload.write_all(b"failed task").unwrap();
        drop(upload);
        assert!(rt.block_on(dropped.store().head(dropped.path())).is_err());
    }

    #[test]
    fn a_local_staging_file_is_renamed_or_deleted() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::new(Location::parse(dir.path().to_str().unwrap()).unwrap());
        let part = |name: &str| PartFile {
            partition: crate::ids::PartitionId(0),
            name: name.to_owned(),
            rows: 1,
            bytes: 1,
            staged: Staged::LocalFile,
        };
        for name in ["win.dat", "lose.dat"] {
            std::fs::write(dir.path().join(staging_name(name)), name).unwrap();
        }
        let win = part("win.dat");
        rt.block_on(publish(&output.location().child(&win.name), &win.staged)).unwrap();
        rt.block_on(publish(&output.location().child(&win.name), &win.staged)).expect("idempotent");
        rt.block_on(discard(&output.location().child("lose.dat"), &Staged::LocalFile)).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["win.dat"]);
        assert_eq!(std::fs::read(dir.path().join("win.dat")).unwrap(), b"win.dat");
    }
}
