//! The worker's cache of job binaries: fetched once per digest, streamed to disk while
//! decompressed and hashed, stored executable under the digest in a private directory
//! (mode 0700, ours), and verified before every run.
//!
//! A fetch tries the sources the driver named for the attempt in order (another worker's
//! [`BinaryPeer`](gristmill_proto::v1::binary_peer_server::BinaryPeer) service, or the
//! object-store URL of the driver's binary store), then the driver itself: a source that
//! fails, or serves bytes without the digest, is passed over. The compressed bytes are
//! kept beside the binary, so this worker serves it on to others ([`crate::peer`]).
//!
//! Verifying means hashing the file, unless it was hashed before and has not changed since:
//! the same inode, size, modification and change times. The change time moves with every
//! write or `chmod` and cannot be set back, and the directory is ours alone, so an
//! unchanged file is still the one that was hashed. A file that no longer hashes to its
//! digest is removed and fetched again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use gristmill::cluster::binary::BinaryStore;
use gristmill::cluster::binary_transfer::{IncomingBinary, object_chunks};
use gristmill::cluster::private_dir::is_private_dir;
use gristmill::cluster::rpc::{DriverEndpoint, connect, connect_driver, url_with_scheme};
use gristmill::metrics::WorkerMetrics;
use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::binary_peer_client::BinaryPeerClient;
use gristmill_proto::v1::{BinaryChunk, BinaryFetched, BinaryRef, BinarySource, binary_source};
use tokio::sync::{Mutex, broadcast};
use tonic::Status;

/// The source of a [`BinaryFetched`] for a binary that was already here.
pub const CACHED: &str = "cache";
/// How long connecting to a peer may take.
const PEER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a fetch may go without a chunk (a peer waits for its own fetch before it
/// answers) before its source is given up.
const CHUNK_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(150);

/// Cached job binaries.
pub struct BinaryCache {
    store: BinaryStore,
    driver: DriverEndpoint,
    /// One lock per digest, so concurrent tasks of one job fetch it once.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The files hashed to their digests, as they were then.
    verified: std::sync::Mutex<HashMap<String, FileStamp>>,
    /// The user owning the store's directory, if it was private (0700, ours) when opened:
    /// only then is an unchanged file trusted without hashing it again.
    private_owner: Option<u32>,
    /// Counts fetches by source.
    metrics: Option<WorkerMetrics>,
    /// Each binary fetched, for the session to tell the driver.
    fetched: broadcast::Sender<BinaryFetched>,
}

/// What identifies a file's content without reading it, as far as its owner can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileStamp {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
        Some(FileStamp {
            device: m.dev(),
            inode: m.ino(),
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// Without inodes and change times nothing vouches for a file: never trusted unhashed.
    #[cfg(not(unix))]
    fn of(_: &Path) -> Option<FileStamp> {
        None
    }
}

impl BinaryCache {
    /// A cache in `store`, fetching from `driver`.
    pub fn new(store: BinaryStore, driver: DriverEndpoint) -> Self {
        let private_owner = private_owner(store.dir());
        if private_owner.is_none() {
            tracing::warn!(dir = %store.dir().display(), "the binary cache is not private: every run hashes its binary");
        }
        BinaryCache {
            store,
            driver,
            fetching: Mutex::new(HashMap::new()),
            verified: std::sync::Mutex::new(HashMap::new()),
            private_owner,
            metrics: None,
            fetched: broadcast::channel(64).0,
        }
    }

    /// Counts fetches in `metrics`.
    pub fn with_metrics(self, metrics: WorkerMetrics) -> Self {
        BinaryCache { metrics: Some(metrics), ..self }
    }

    /// The store.
    pub fn store(&self) -> &BinaryStore {
        &self.store
    }

    /// Every binary fetched from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BinaryFetched> {
        self.fetched.subscribe()
    }

    /// The path of the binary with `digest`, verified, fetching it first if needed: from
    /// `sources` in order, then from the driver.
    pub async fn get(&self, digest: &str, sources: &[BinarySource]) -> Result<PathBuf, String> {
        let lock = self.fetching.lock().await.entry(digest.to_owned()).or_default().clone();
        let _guard = lock.lock().await;
        if let Some(path) = self.cached(digest).await? {
            // The driver may count this worker as fetching it (a warm cache after a restart).
            let _ = self.fetched.send(BinaryFetched {
                digest: digest.to_owned(),
                source: CACHED.into(),
                failed_sources: 0,
            });
            return Ok(path);
        }
        let mut failed = Vec::new();
        for source in sources.iter().filter_map(|s| s.location.as_ref()) {
            let (kind, name) = match source {
                binary_source::Location::Peer(address) => ("peer", address),
                binary_source::Location::Url(url) => ("store", url),
            };
            match self.fetch_from(digest, source).await {
                Ok(path) => return Ok(self.fetched_from(digest, kind, name, failed.len(), path)),
                Err(e) => {
                    tracing::warn!(%digest, source = %name, error = %e, "fetching the job binary failed; trying the next source");
                    self.count(|m| m.binary_fetch_failed(kind));
                    failed.push(format!("{name}: {e}"));
                }
            }
        }
        match self.fetch_from_driver(digest).await {
            Ok(path) => Ok(self.fetched_from(digest, "driver", "", failed.len(), path)),
            Err(e) => {
                self.count(|m| m.binary_fetch_failed("driver"));
                failed.push(e);
                Err(failed.join("; "))
            }
        }
    }

    /// Counts and announces a fetch from `source` (`kind`: driver, peer or store).
    fn fetched_from(
        &self,
        digest: &str,
        kind: &'static str,
        source: &str,
        failed: usize,
        path: PathBuf,
    ) -> PathBuf {
        self.count(|m| m.binary_fetched(kind));
        let notice = BinaryFetched {
            digest: digest.to_owned(),
            source: source.to_owned(),
            failed_sources: failed as u32,
        };
        // Nobody listening (between sessions): the driver simply does not learn of it.
        let _ = self.fetched.send(notice);
        path
    }

    fn count(&self, f: impl FnOnce(&WorkerMetrics)) {
        if let Some(metrics) = &self.metrics {
            f(metrics);
        }
    }

    async fn fetch_from_driver(&self, digest: &str) -> Result<PathBuf, String> {
        let fail = |s: Status| format!("fetching job binary {digest} from the driver: {}", s.message());
        let mut client = connect_driver(&self.driver).await.map_err(|e| e.to_string())?;
        let stream =
            client.fetch_binary(BinaryRef { digest: digest.to_owned() }).await.map_err(fail)?.into_inner();
        self.store_fetched(digest, stream).await
    }

    async fn fetch_from(&self, digest: &str, source: &binary_source::Location) -> Result<PathBuf, String> {
        match source {
            binary_source::Location::Peer(address) => {
                let tls = self.driver.tls.as_ref();
                let url = url_with_scheme(address, tls.is_some()).map_err(|e| e.to_string())?;
                let channel = connect(&url, tls, PEER_CONNECT_TIMEOUT).await.map_err(|e| e.to_string())?;
                let mut client = BinaryPeerClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
                let request = BinaryRef { digest: digest.to_owned() };
                let stream = tokio::time::timeout(CHUNK_IDLE_TIMEOUT, client.fetch_binary(request))
                    .await
                    .map_err(|_| "no answer".to_owned())?
                    .map_err(|s| s.message().to_owned())?
                    .into_inner();
                self.store_fetched(digest, stream).await
            }
            binary_source::Location::Url(url) => {
                self.store_fetched(digest, object_chunks(url).await.map_err(|e| e.to_string())?).await
            }
        }
    }

    /// The binary with `digest` if this worker has it, verified, waiting for a fetch of it
    /// in progress (or about to start: the driver named this worker as a source as it
    /// sent it the attempt) for up to `wait`.
    pub async fn held(&self, digest: &str, wait: std::time::Duration) -> Option<PathBuf> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let lock = self.fetching.lock().await.get(digest).cloned();
            if let Some(lock) = lock {
                let _guard = tokio::time::timeout_at(deadline, lock.lock()).await.ok()?;
                return self.cached(digest).await.ok().flatten();
            }
            if let Ok(Some(path)) = self.cached(digest).await {
                return Some(path);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The cached binary with `digest` if it still has that digest; a tampered or
    /// damaged one is removed.
    async fn cached(&self, digest: &str) -> Result<Option<PathBuf>, String> {
        let path = self.store.path(digest);
        let Some(stamp) = FileStamp::of(&path) else { return Ok(None) };
        if self.trusted(digest, stamp) {
            return Ok(Some(path));
        }
        let store = self.store.clone();
        let owned = digest.to_owned();
        let intact = tokio::task::spawn_blocking(move || store.verify(&owned))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if intact {
            self.remember(digest, stamp);
            return Ok(Some(path));
        }
        tracing::warn!(%digest, path = %path.display(), "a cached job binary does not match its digest; fetching it again");
        self.forget(digest);
        self.store.remove(digest).map_err(|e| e.to_string())?;
        Ok(None)
    }

    /// Stores the fetched `chunks` of the binary with `digest` (plain, or zstd when the
    /// first says so): streamed to a temporary file while hashed, renamed into place only
    /// if the digest matches.
    pub async fn store_fetched<S>(&self, digest: &str, mut chunks: S) -> Result<PathBuf, String>
    where
        S: Stream<Item = Result<BinaryChunk, Status>> + Unpin,
    {
        let Some(first) = next_chunk(&mut chunks, digest).await? else {
            return Err(format!("fetching job binary {digest}: the source sent nothing"));
        };
        let (store, owned, zstd) = (self.store.clone(), digest.to_owned(), first.zstd);
        let mut writer = blocking(move || IncomingBinary::new(&store, &owned, None, zstd)).await?;
        let mut data = first.data;
        loop {
            writer = blocking(move || writer.write(&data).map(|()| writer)).await?;
            match next_chunk(&mut chunks, digest).await? {
                Some(chunk) => data = chunk.data,
                None => break,
            }
        }
        let path = blocking(move || writer.finish()).await?;
        if let Some(stamp) = FileStamp::of(&path) {
            self.remember(digest, stamp);
        }
        Ok(path)
    }

    /// True if `digest` was hashed as it is now (`stamp`), in a directory still private.
    fn trusted(&self, digest: &str, stamp: FileStamp) -> bool {
        let known = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(digest) == Some(&stamp);
        known && still_private(self.store.dir(), self.private_owner)
    }

    fn remember(&self, digest: &str, stamp: FileStamp) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(digest.to_owned(), stamp);
    }

    fn forget(&self, digest: &str) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).remove(digest);
    }
}

/// The next chunk of a fetch, `None` at its end; a source silent for too long fails.
async fn next_chunk<S>(chunks: &mut S, digest: &str) -> Result<Option<BinaryChunk>, String>
where
    S: Stream<Item = Result<BinaryChunk, Status>> + Unpin,
{
    match tokio::time::timeout(CHUNK_IDLE_TIMEOUT, chunks.next()).await {
        Ok(next) => next.transpose().map_err(|s| format!("fetching job binary {digest}: {}", s.message())),
        Err(_) => Err(format!("fetching job binary {digest}: the source stalled")),
    }
}

/// The owner of `dir` if it is private to this process's user.
#[cfg(unix)]
fn private_owner(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    is_private_dir(dir).then(|| std::fs::metadata(dir).ok().map(|m| m.uid())).flatten()
}

#[cfg(not(unix))]
fn private_owner(_: &Path) -> Option<u32> {
    None
}

/// True if `dir` is still `owner`'s alone (a `stat`, no probe file).
#[cfg(unix)]
fn still_private(dir: &Path, owner: Option<u32>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir);
    owner.is_some_and(|uid| meta.is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0))
}

#[cfg(not(unix))]
fn still_private(_: &Path, _: Option<u32>) -> bool {
    false
}

/// Runs store I/O off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, gristmill::cluster::binary::BinaryError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use gristmill::cluster::binary::bytes_digest;

    use super::*;

    /// A cache in a fresh directory whose driver is unreachable: a fetch fails.
    fn cache(name: &str) -> (PathBuf, BinaryCache) {
        let root = std::env::temp_dir().join(format!("gristmill-binaries-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = BinaryStore::open(root.join("binaries")).unwrap();
        let driver = DriverEndpoint::new("http://127.0.0.1:1", None).unwrap();
        (root, BinaryCache::new(store, driver))
    }

    fn chunks(bytes: &[u8]) -> impl Stream<Item = Result<BinaryChunk, Status>> + Unpin + use<> {
        let chunks: Vec<_> = bytes
            .chunks(4)
            .map(|data| Ok(BinaryChunk { data: data.to_vec(), ..Default::default() }))
            .collect();
        futures::stream::iter(chunks)
    }

    #[tokio::test]
    async fn a_tampered_cached_binary_is_detected_removed_and_fetched_again() {
        let (root, cache) = cache("tampered");
        let bytes = b"#!/bin/sh\necho the real one\n".to_vec();
        let digest = bytes_digest(&bytes);
        let path = cache.store_fetched(&digest, chunks(&bytes)).await.unwrap();
        assert_eq!(cache.get(&digest, &[]).await.unwrap(), path, "a verified binary needs no driver");

        // Same length, modification time put back: only the content (and ctime) differ.
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let garbage = vec![b'x'; bytes.len()];
        std::fs::write(&path, &garbage).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
        let refused = cache.get(&digest, &[]).await.unwrap_err();
        assert!(refused.contains("127.0.0.1:1"), "it went to the driver for a fresh copy: {refused}");
        assert!(!path.exists(), "the tampered file is gone");

        cache.store_fetched(&digest, chunks(&bytes)).await.unwrap();
        assert_eq!(std::fs::read(cache.get(&digest, &[]).await.unwrap()).unwrap(), bytes);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_binary_tampered_before_the_cache_knew_it_is_refused() {
        let (root, cache) = cache("unknown");
        let digest = bytes_digest(b"expected");
        std::fs::write(cache.store.path(&digest), b"planted").unwrap();
        assert!(cache.get(&digest, &[]).await.is_err());
        assert!(!cache.store.path(&digest).exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn a_fetch_with_the_wrong_content_leaves_nothing() {
        let (root, cache) = cache("wrong");
        let digest = bytes_digest(b"expected");
        let refused = cache.store_fetched(&digest, chunks(b"something else")).await.unwrap_err();
        assert!(refused.contains("digest"), "{refused}");
        assert_eq!(std::fs::read_dir(cache.store.dir()).unwrap().count(), 0);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_cache_directory_opened_to_others_is_no_longer_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let (root, cache) = cache("opened");
        let bytes = b"binary".to_vec();
        let digest = bytes_digest(&bytes);
        cache.store_fetched(&digest, chunks(&bytes)).await.unwrap();
        assert!(cache.trusted(&digest, FileStamp::of(&cache.store.path(&digest)).unwrap()));
        std::fs::set_permissions(cache.store.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!cache.trusted(&digest, FileStamp::of(&cache.store.path(&digest)).unwrap()));
        assert!(cache.get(&digest, &[]).await.is_ok(), "hashed again, still intact");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_cache_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (root, cache) = cache("private");
        let mode = std::fs::metadata(cache.store.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(is_private_dir(cache.store.dir()));
        std::fs::remove_dir_all(root).unwrap();
    }
}
