//! Job binaries by content: SHA-256 digests, and a directory that stores each binary
//! under its digest (the driver's store and each worker's cache).
//!
//! A binary enters a [`BinaryStore`] through a [`BinaryWriter`]: written to a hidden
//! temporary file in the store's directory while it is hashed, bounded in size, and renamed
//! into place only once complete with the expected digest. A refused or abandoned write
//! leaves nothing behind. The store's directory is private (mode 0700, ours), so what sits
//! in it under a digest was put there by this process's user.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gristmill::cluster::binary::{BinaryStore, bytes_digest};
//! let store = BinaryStore::open("/var/lib/gristmill/binaries".into())?;
//! let digest = bytes_digest(b"#!/bin/sh\n");
//! let mut writer = store.writer(&digest, Some(1 << 30))?;
//! writer.write(b"#!/bin/sh\n")?;
//! let path = writer.finish()?;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::private_dir::{create_private_dir, user_cache_dir};
use super::shuffle_service::is_safe_id;
use crate::error::{Error, Result};

/// Why a binary could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    /// The binary is larger than the store accepts.
    #[error("the job binary is larger than the limit of {limit} bytes ({} MiB)", limit >> 20)]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The bytes do not hash to the digest they were sent under.
    #[error("the job binary's content does not have the digest {digest}")]
    DigestMismatch {
        /// The expected digest.
        digest: String,
    },
    /// Not 64 hex digits.
    #[error("{digest:?} is not a job binary digest (64 hex digits)")]
    InvalidDigest {
        /// What was given.
        digest: String,
    },
    /// Reading or writing the store's files failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BinaryError {
    /// The [`BinaryError::Io`] of `what` on `path`, as an error mapper.
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> BinaryError + 'a {
        move |source| BinaryError::Io { what, path: path.to_owned(), source }
    }
}

impl From<BinaryError> for Error {
    fn from(e: BinaryError) -> Error {
        Error::Rpc { what: "storing a job binary".into(), cause: e.to_string() }
    }
}

/// The SHA-256 of a file, lower-case hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let fail =
        |e: std::io::Error| Error::Rpc { what: format!("hashing {}", path.display()), cause: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// [`file_digest`], remembered per (path, size, modification time) in the user's own cache
/// directory (`$XDG_CACHE_HOME/gristmill/digests` or `~/.cache/gristmill/digests`, mode
/// 0700), so a job binary submitted again is not hashed again. Never in a shared
/// directory: another user could plant a digest there for a binary of theirs.
pub fn cached_file_digest(path: &Path) -> Result<String> {
    let cache = user_cache_dir().and_then(|dir| digest_cache_file(&dir.join("digests"), path));
    if let Some(digest) = cache.as_ref().and_then(|c| std::fs::read_to_string(c).ok())
        && is_digest(digest.trim())
    {
        return Ok(digest.trim().to_owned());
    }
    let digest = file_digest(path)?;
    if let Some(cache) = cache
        && let Some(dir) = cache.parent()
        && create_private_dir(dir).is_ok()
    {
        let tmp = cache.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::write(&tmp, &digest).and_then(|_| std::fs::rename(&tmp, &cache));
    }
    Ok(digest)
}

/// The file in `cache_dir` remembering the digest of `path` as it is now.
fn digest_cache_file(cache_dir: &Path, path: &Path) -> Option<PathBuf> {
    let m = std::fs::metadata(path).ok()?;
    let modified = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    let key = format!("{}|{}|{}", path.display(), m.len(), modified.as_nanos());
    Some(cache_dir.join(bytes_digest(key.as_bytes())))
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn bytes_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for a well-formed digest (64 hex digits).
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) && is_safe_id(text)
}

/// A private directory of binaries named by their digests, with a record of when each was
/// last used (for [`BinaryStore::evict`]).
#[derive(Clone, Debug)]
pub struct BinaryStore {
    dir: PathBuf,
    recency: Arc<Mutex<Recency>>,
}

/// Use order of stored binaries: a larger tick is more recent.
#[derive(Debug, Default)]
struct Recency {
    ticks: HashMap<String, u64>,
    next: u64,
}

impl Recency {
    fn touch(&mut self, digest: &str) {
        self.next += 1;
        self.ticks.insert(digest.to_owned(), self.next);
    }
}

/// Suffix of the temporary files of writes in progress.
const TMP_SUFFIX: &str = ".tmp";

impl BinaryStore {
    /// A store in `dir`: created private (mode 0700; one of another user is refused);
    /// temporary files of writes a crash interrupted are removed.
    pub fn open(dir: PathBuf) -> Result<Self> {
        create_private_dir(&dir)?;
        let store = BinaryStore { dir, recency: Arc::default() };
        let mut stored = Vec::new();
        for (name, meta) in store.entries()? {
            if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(store.dir.join(&name));
            } else if is_digest(&name) {
                stored.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), name));
            }
        }
        stored.sort();
        let mut recency = store.recency();
        for (_, digest) in stored {
            recency.touch(&digest);
        }
        drop(recency);
        Ok(store)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the binary with `digest` is (or would be).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// True if the binary is stored.
    pub fn contains(&self, digest: &str) -> bool {
        is_digest(digest) && self.path(digest).is_file()
    }

    /// Notes that the binary was used (asked for, fetched, submitted with), so eviction
    /// takes it last.
    pub fn touch(&self, digest: &str) {
        if is_digest(digest) {
            self.recency().touch(digest);
        }
    }

    /// Starts writing the binary with `digest`, refusing more than `limit` bytes.
    pub fn writer(&self, digest: &str, limit: Option<u64>) -> Result<BinaryWriter, BinaryError> {
        if !is_digest(digest) {
            return Err(BinaryError::InvalidDigest { digest: digest.to_owned() });
        }
        self.open_writer(digest, limit)
    }

    /// Starts writing a binary this process makes (a stripped copy), whose digest is known
    /// only at its end: [`BinaryWriter::finish_as_written`] stores it under the digest of
    /// what was written.
    pub fn content_writer(&self) -> Result<BinaryWriter, BinaryError> {
        self.open_writer("", None)
    }

    /// A writer of the binary that must have `digest` (empty: whatever it has).
    fn open_writer(&self, digest: &str, limit: Option<u64>) -> Result<BinaryWriter, BinaryError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{digest}.{}.{n}{TMP_SUFFIX}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(BinaryError::io("creating", &tmp))?;
        Ok(BinaryWriter {
            store: self.clone(),
            digest: digest.to_owned(),
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            limit,
        })
    }

    /// Stores `bytes` if their digest is `digest` (a [`BinaryWriter`] in one go).
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, BinaryError> {
        let mut writer = self.writer(digest, None)?;
        writer.write(bytes)?;
        writer.finish()
    }

    /// True if the stored file of `digest` still hashes to it.
    pub fn verify(&self, digest: &str) -> Result<bool> {
        Ok(is_digest(digest) && file_digest(&self.path(digest))? == digest)
    }

    /// Removes the binary with `digest` (if stored), with its compressed copy.
    pub fn remove(&self, digest: &str) -> Result<(), BinaryError> {
        let path = self.path(digest);
        self.recency().ticks.remove(digest);
        let _ = std::fs::remove_file(super::binary_transfer::compressed_path(self, digest));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BinaryError::io("removing", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes least recently used binaries not in `in_use` until at most `keep` remain
    /// (fewer cannot be kept when more are in use); returns the removed digests.
    pub fn evict(&self, keep: usize, in_use: &HashSet<String>) -> Result<Vec<String>, BinaryError> {
        let mut stored: Vec<String> =
            self.entries()?.into_iter().map(|(name, _)| name).filter(|n| is_digest(n)).collect();
        if stored.len() <= keep {
            return Ok(Vec::new());
        }
        let excess = stored.len() - keep;
        {
            let recency = self.recency();
            stored.sort_by_key(|d| recency.ticks.get(d).copied().unwrap_or(0));
        }
        let mut evicted = Vec::new();
        for digest in stored.into_iter().filter(|d| !in_use.contains(d)).take(excess) {
            self.remove(&digest)?;
            evicted.push(digest);
        }
        Ok(evicted)
    }

    fn entries(&self) -> Result<Vec<(String, std::fs::Metadata)>, BinaryError> {
        let listing = std::fs::read_dir(&self.dir).map_err(BinaryError::io("listing", &self.dir))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry.map_err(BinaryError::io("listing", &self.dir))?;
            if let (Ok(name), Ok(meta)) = (entry.file_name().into_string(), entry.metadata()) {
                entries.push((name, meta));
            }
        }
        Ok(entries)
    }

    fn recency(&self) -> std::sync::MutexGuard<'_, Recency> {
        self.recency.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A binary being written into a [`BinaryStore`]: hashed as it comes, bounded, renamed
/// into place by [`BinaryWriter::finish`] only if complete with the right digest. Dropped
/// unfinished (a refused, failed or abandoned write), it removes its temporary file.
///
/// Its methods do blocking file I/O: call them off async runtime threads.
#[derive(Debug)]
pub struct BinaryWriter {
    store: BinaryStore,
    digest: String,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    hasher: Sha256,
    written: u64,
    limit: Option<u64>,
}

impl BinaryWriter {
    /// The digest the content must have.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`; refuses it (and the whole binary) past the limit.
    pub fn write(&mut self, data: &[u8]) -> Result<(), BinaryError> {
        let total = self.written + data.len() as u64;
        if let Some(limit) = self.limit.filter(|&limit| total > limit) {
            return Err(BinaryError::TooLarge { limit });
        }
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        file.write_all(data).map_err(BinaryError::io("writing", &self.tmp))?;
        self.hasher.update(data);
        self.written = total;
        Ok(())
    }

    /// Checks the digest, makes the file executable and renames it into place; returns
    /// where it is.
    pub fn finish(mut self) -> Result<PathBuf, BinaryError> {
        let digest = hex(&std::mem::take(&mut self.hasher).finalize());
        if digest != self.digest {
            return Err(BinaryError::DigestMismatch { digest: self.digest.clone() });
        }
        self.put_in_place()
    }

    /// Stores what was written (by a [`BinaryStore::content_writer`]) under its digest;
    /// returns the digest.
    pub fn finish_as_written(mut self) -> Result<String, BinaryError> {
        self.digest = hex(&std::mem::take(&mut self.hasher).finalize());
        self.put_in_place()?;
        Ok(self.digest.clone())
    }

    /// Makes the file executable and renames it to its digest.
    fn put_in_place(&mut self) -> Result<PathBuf, BinaryError> {
        let Some(file) = self.file.take() else { unreachable!("a writer is finished once") };
        file.sync_all().map_err(BinaryError::io("writing", &self.tmp))?;
        drop(file);
        set_executable(&self.tmp).map_err(BinaryError::io("making executable", &self.tmp))?;
        let path = self.store.path(&self.digest);
        std::fs::rename(&self.tmp, &path).map_err(BinaryError::io("renaming into place", &path))?;
        self.store.touch(&self.digest);
        Ok(path)
    }
}

impl Drop for BinaryWriter {
    fn drop(&mut self) {
        // Finished writers renamed it: removing fails harmlessly.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A store in a fresh temporary directory.
    pub(crate) fn store() -> (tempfile::TempDir, BinaryStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BinaryStore::open(dir.path().join("binaries")).unwrap();
        (dir, store)
    }

    fn listing(store: &BinaryStore) -> Vec<String> {
        let mut names: Vec<String> = store.entries().unwrap().into_iter().map(|(n, _)| n).collect();
        names.sort();
        names
    }

    #[test]
    fn a_binary_written_in_chunks_is_stored_under_its_digest() {
        let (_dir, store) = store();
        let bytes = vec![7u8; 3000];
        let digest = bytes_digest(&bytes);
        let mut writer = store.writer(&digest, Some(3000)).unwrap();
        for chunk in bytes.chunks(1000) {
            writer.write(chunk).unwrap();
        }
        let path = writer.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(store.contains(&digest));
        assert!(store.verify(&digest).unwrap());
        assert_eq!(listing(&store), vec![digest]);
    }

    #[test]
    fn a_binary_over_the_limit_is_refused_and_leaves_nothing() {
        let (_dir, store) = store();
        let bytes = vec![1u8; 2048];
        let digest = bytes_digest(&bytes);
        let mut writer = store.writer(&digest, Some(2000)).unwrap();
        writer.write(&bytes[..1024]).unwrap();
        let refused = writer.write(&bytes[1024..]).unwrap_err();
        assert!(matches!(refused, BinaryError::TooLarge { limit: 2000 }), "{refused}");
        assert!(refused.to_string().contains("limit of 2000 bytes"), "{refused}");
        drop(writer);
        assert!(listing(&store).is_empty(), "{:?}", listing(&store));
        assert!(!store.contains(&digest));
    }

    #[test]
    fn a_wrong_digest_is_refused_and_leaves_nothing() {
        let (_dir, store) = store();
        let digest = bytes_digest(b"the real thing");
        let refused = store.put(&digest, b"something else").unwrap_err();
        assert!(matches!(refused, BinaryError::DigestMismatch { .. }), "{refused}");
        assert!(listing(&store).is_empty(), "{:?}", listing(&store));
        assert!(matches!(store.writer("../etc", None), Err(BinaryError::InvalidDigest { .. })));
    }

    #[test]
    fn eviction_takes_the_least_recently_used_binaries_not_in_use() {
        let (_dir, store) = store();
        let digests: Vec<String> = (0..5u8)
            .map(|i| {
                let bytes = vec![i; 10];
                store.put(&bytes_digest(&bytes), &bytes).unwrap();
                bytes_digest(&bytes)
            })
            .collect();
        store.touch(&digests[1]);
        let in_use: HashSet<String> = [digests[0].clone()].into();
        let evicted = store.evict(2, &in_use).unwrap();
        assert_eq!(evicted, vec![digests[2].clone(), digests[3].clone(), digests[4].clone()]);
        let mut kept = vec![digests[0].clone(), digests[1].clone()];
        kept.sort();
        assert_eq!(listing(&store), kept, "the one in use and the most recently used stay");

        let all_in_use: HashSet<String> = kept.iter().cloned().collect();
        assert!(store.evict(0, &all_in_use).unwrap().is_empty(), "binaries in use are never evicted");
    }

    #[test]
    fn reopening_removes_interrupted_writes_and_keeps_use_order() {
        let (dir, store) = store();
        let old = store.put(&bytes_digest(b"old"), b"old").unwrap();
        let stale = store.dir().join(format!(".{}.1.0{TMP_SUFFIX}", bytes_digest(b"x")));
        std::fs::write(&stale, b"partial").unwrap();
        let new = store.put(&bytes_digest(b"new"), b"new").unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(past).unwrap();

        let reopened = BinaryStore::open(dir.path().join("binaries")).unwrap();
        assert!(!stale.exists());
        let evicted = reopened.evict(1, &HashSet::new()).unwrap();
        assert_eq!(evicted, vec![bytes_digest(b"old")]);
        assert!(new.exists());
    }

    #[test]
    fn the_digest_cache_file_depends_on_the_files_identity() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("binary");
        std::fs::write(&file, b"one").unwrap();
        let first = digest_cache_file(dir.path(), &file).unwrap();
        std::fs::write(&file, b"three").unwrap();
        assert_ne!(digest_cache_file(dir.path(), &file).unwrap(), first, "a new size is a new key");
        assert!(digest_cache_file(dir.path(), &dir.path().join("missing")).is_none());
    }
}
