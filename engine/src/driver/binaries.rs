//! The driver's job binaries: uploads (zstd-compressed or plain) streamed to disk while
//! hashed (never whole in memory), bounded in size and in how many arrive at once, verified
//! before they are renamed into place; fetches streamed from disk, compressed; a bounded
//! store that evicts the least recently used binaries no live job needs.
//!
//! An uploaded binary is kept whole (debug info included, for symbolized backtraces) and a
//! copy stripped of its debug info is made for shipping: jobs run the stripped binary, under
//! its own digest, which workers verify (see [`DriverBinaries::shipping_digest`]). With a
//! binary store (`--binary-store URL`) the stripped binary is also put there, compressed,
//! once, for workers to fetch from.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use gristmill_proto::v1::BinaryChunk;
use object_store::ObjectStoreExt;
use tokio::sync::Semaphore;
use tonic::Status;

use crate::cluster::binary::{BinaryError, BinaryStore, is_digest};
use crate::cluster::binary_transfer::{
    IncomingBinary, compressed_name, compressed_path, prepare_shipped, send_chunks,
};
use crate::error::Result;
use crate::storage::Location;

/// The default of [`BinaryLimits::max_binary_bytes`]: 1 GiB.
pub const DEFAULT_MAX_BINARY_BYTES: u64 = 1 << 30;
/// The default of [`BinaryLimits::max_stored_binaries`].
pub const DEFAULT_MAX_STORED_BINARIES: usize = 64;
/// The default of [`BinaryLimits::concurrent_uploads`].
pub const DEFAULT_CONCURRENT_UPLOADS: usize = 4;

/// How long an upload waits for a free slot before it is refused.
const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(2);
/// How long an upload may go without a chunk before it is dropped.
const CHUNK_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounds on the driver's job binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryLimits {
    /// Largest binary accepted, in bytes.
    pub max_binary_bytes: u64,
    /// Binaries kept; past it the least recently used one no live job uses is removed.
    pub max_stored_binaries: usize,
    /// Uploads received at once; more are refused.
    pub concurrent_uploads: usize,
}

impl Default for BinaryLimits {
    fn default() -> Self {
        BinaryLimits {
            max_binary_bytes: DEFAULT_MAX_BINARY_BYTES,
            max_stored_binaries: DEFAULT_MAX_STORED_BINARIES,
            concurrent_uploads: DEFAULT_CONCURRENT_UPLOADS,
        }
    }
}

/// The default of [`BinaryDistribution::peer_fanout`].
pub const DEFAULT_PEER_FANOUT: usize = 4;

/// How job binaries reach the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryDistribution {
    /// An object-store URL (`s3://bucket/prefix`) the stripped, compressed binaries are put
    /// in once, for workers to fetch from; `None`: workers fetch from each other.
    pub store: Option<String>,
    /// Fetches one source (a worker holding the binary, or the driver) serves at once
    /// before fetchers are sent elsewhere.
    pub peer_fanout: usize,
}

impl Default for BinaryDistribution {
    fn default() -> Self {
        BinaryDistribution { store: None, peer_fanout: DEFAULT_PEER_FANOUT }
    }
}

/// Suffix of the file naming the shipped (stripped) binary of an uploaded one.
const SHIPS_SUFFIX: &str = ".ships";

/// The driver's store of job binaries and the bounds on it.
#[derive(Debug)]
pub struct DriverBinaries {
    store: BinaryStore,
    limits: BinaryLimits,
    uploads: Arc<Semaphore>,
    /// Where shipped binaries are put for workers, if anywhere.
    remote: Option<Location>,
}

impl DriverBinaries {
    /// The store in `dir` (created private).
    pub fn open(dir: PathBuf, limits: BinaryLimits) -> Result<Self> {
        let store = BinaryStore::open(dir)?;
        let uploads = Arc::new(Semaphore::new(limits.concurrent_uploads));
        Ok(DriverBinaries { store, limits, uploads, remote: None })
    }

    /// Puts shipped binaries in the object store at `url` too.
    pub fn with_remote_store(self, url: Option<&str>) -> Result<Self> {
        let remote = url.map(Location::parse).transpose()?;
        Ok(DriverBinaries { remote, ..self })
    }

    /// The store.
    pub fn store(&self) -> &BinaryStore {
        &self.store
    }

    /// True if the binary is stored with its shipped copy; then both count as just used
    /// (eviction takes them last).
    pub fn contains(&self, digest: &str) -> bool {
        let Some(shipped) = self.shipping_digest(digest) else { return false };
        let present = self.store.contains(digest) && self.store.contains(&shipped);
        if present {
            self.store.touch(digest);
            self.store.touch(&shipped);
        }
        present
    }

    /// The digest of the binary workers run for the uploaded binary `digest`: its stripped
    /// copy's (or its own, when there was nothing to strip or it was stored before).
    pub fn shipping_digest(&self, digest: &str) -> Option<String> {
        if !is_digest(digest) {
            return None;
        }
        let recorded = std::fs::read_to_string(self.ships_file(digest)).ok();
        Some(
            recorded
                .map(|d| d.trim().to_owned())
                .filter(|d| is_digest(d))
                .unwrap_or_else(|| digest.to_owned()),
        )
    }

    /// The object-store URL of the shipped binary `digest` (compressed), with a binary store.
    pub fn remote_url(&self, shipped: &str) -> Option<String> {
        self.remote.as_ref().map(|remote| remote.child(&compressed_name(shipped)).display())
    }

    fn ships_file(&self, digest: &str) -> PathBuf {
        self.store.dir().join(format!("{digest}{SHIPS_SUFFIX}"))
    }

    /// Makes the shipped copy of the stored binary `digest` (stripped and compressed in
    /// one pass, put in the binary store): the only time it is stripped or compressed;
    /// returns its digest.
    async fn ship(&self, digest: &str) -> Result<String, Status> {
        let (store, owned) = (self.store.clone(), digest.to_owned());
        let ships = self.ships_file(digest);
        let shipped = blocking(move || {
            let shipped = prepare_shipped(&store, &owned)?;
            std::fs::write(&ships, &shipped).map_err(BinaryError::io("writing", &ships))?;
            Ok(shipped)
        })
        .await?;
        if let Some(remote) = &self.remote {
            self.put_remote(remote, &shipped).await?;
        }
        Ok(shipped)
    }

    /// Puts the compressed binary `shipped` in the binary store unless it is there.
    async fn put_remote(&self, remote: &Location, shipped: &str) -> Result<(), Status> {
        let target = remote.child(&compressed_name(shipped));
        let fail = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!("putting the job binary in {}: {e}", target.display()))
        };
        if target.store().head(target.path()).await.is_ok() {
            return Ok(());
        }
        let path = compressed_path(&self.store, shipped);
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| fail(&e))?;
        let mut upload =
            object_store::buffered::BufWriter::new(target.store().clone(), target.path().clone());
        tokio::io::copy(&mut file, &mut upload).await.map_err(|e| fail(&e))?;
        tokio::io::AsyncWriteExt::shutdown(&mut upload).await.map_err(|e| fail(&e))?;
        tracing::info!(digest = %shipped, url = %target.display(), "job binary put in the binary store");
        Ok(())
    }

    /// Receives an upload: the digest (first chunk), then the bytes. Refuses it when
    /// `concurrent_uploads` are already arriving, when it is larger than the limit (from
    /// the first chunk's `total_bytes`, or as the bytes come), and when its content has
    /// another digest; a refused upload leaves no file. Once stored, binaries beyond the
    /// cap are evicted, except those `in_use` names (asked for after the store).
    pub async fn receive<S>(
        &self,
        chunks: S,
        in_use: impl FnOnce() -> HashSet<String>,
    ) -> Result<String, Status>
    where
        S: Stream<Item = Result<BinaryChunk, Status>> + Unpin,
    {
        let _slot = tokio::time::timeout(UPLOAD_SLOT_WAIT, self.uploads.clone().acquire_owned())
            .await
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "the driver is already receiving {} job binaries; try again shortly",
                    self.limits.concurrent_uploads
                ))
            })?
            .map_err(|_| Status::unavailable("the driver is stopping"))?;
        let (mut writer, declared) = self.receive_bytes(chunks).await?;
        writer = blocking(move || writer.flush().map(|()| writer)).await?;
        if declared != 0 && declared != writer.written() {
            return Err(Status::invalid_argument(format!(
                "the upload ended after {} of the {declared} bytes it announced",
                writer.written()
            )));
        }
        let digest = writer.digest().to_owned();
        let size = writer.written();
        blocking(move || writer.finish()).await?;
        tracing::info!(%digest, bytes = size, "job binary stored");
        let shipped = self.ship(&digest).await?;
        let mut keep = in_use();
        keep.insert(digest.clone());
        keep.insert(shipped);
        self.evict(keep).await;
        Ok(digest)
    }

    /// Writes the chunks to a new [`IncomingBinary`]; returns it with the announced size.
    async fn receive_bytes<S>(&self, mut chunks: S) -> Result<(IncomingBinary, u64), Status>
    where
        S: Stream<Item = Result<BinaryChunk, Status>> + Unpin,
    {
        let limit = self.limits.max_binary_bytes;
        let first =
            next_chunk(&mut chunks).await?.ok_or_else(|| Status::invalid_argument("an empty upload"))?;
        if first.total_bytes > limit {
            return Err(binary_status(BinaryError::TooLarge { limit }));
        }
        let store = self.store.clone();
        let digest = first.digest;
        let zstd = first.zstd;
        let mut writer = blocking(move || IncomingBinary::new(&store, &digest, Some(limit), zstd)).await?;
        let mut data = first.data;
        loop {
            writer = blocking(move || writer.write(&data).map(|()| writer)).await?;
            match next_chunk(&mut chunks).await? {
                Some(chunk) => data = chunk.data,
                None => return Ok((writer, first.total_bytes)),
            }
        }
    }

    /// Removes binaries beyond the cap, least recently used first, keeping `keep`.
    async fn evict(&self, keep: HashSet<String>) {
        let (store, cap) = (self.store.clone(), self.limits.max_stored_binaries);
        match blocking(move || store.evict(cap, &keep)).await {
            Ok(evicted) if !evicted.is_empty() => {
                tracing::info!(evicted = ?evicted, kept = cap, "removed least recently used job binaries")
            }
            Ok(_) => {}
            Err(status) => tracing::warn!(error = %status.message(), "could not evict job binaries"),
        }
    }

    /// The chunks of the binary with `digest`, compressed, read from its file as they
    /// are sent.
    pub async fn send(
        &self,
        digest: String,
    ) -> Result<impl Stream<Item = Result<BinaryChunk, Status>> + Send + 'static, Status> {
        send_chunks(&self.store, digest).await
    }
}

/// The next chunk, or `None` at the end; a stalled upload is dropped.
async fn next_chunk<S>(chunks: &mut S) -> Result<Option<BinaryChunk>, Status>
where
    S: Stream<Item = Result<BinaryChunk, Status>> + Unpin,
{
    match tokio::time::timeout(CHUNK_IDLE_TIMEOUT, chunks.next()).await {
        Ok(next) => next.transpose(),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "the upload sent nothing for {} s",
            CHUNK_IDLE_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs store I/O off the runtime's threads. If the caller goes away meanwhile, `f` still
/// completes and drops what it holds (an unfinished writer removes its file).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, BinaryError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(e.to_string()))?.map_err(binary_status)
}

/// The status a client gets for `error`.
fn binary_status(error: BinaryError) -> Status {
    match error {
        BinaryError::TooLarge { .. } => Status::resource_exhausted(error.to_string()),
        BinaryError::DigestMismatch { .. } | BinaryError::InvalidDigest { .. } => {
            Status::invalid_argument(error.to_string())
        }
        BinaryError::Io { .. } => Status::internal(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::binary::bytes_digest;

    fn binaries(limits: BinaryLimits) -> (tempfile::TempDir, DriverBinaries) {
        let dir = tempfile::tempdir().unwrap();
        let binaries = DriverBinaries::open(dir.path().join("binaries"), limits).unwrap();
        (dir, binaries)
    }

    /// `bytes` as an upload of `digest` in chunks of `size`, the first announcing `total`.
    fn upload(digest: &str, bytes: &[u8], size: usize, total: u64) -> Vec<Result<BinaryChunk, Status>> {
        bytes
            .chunks(size)
            .enumerate()
            .map(|(i, data)| {
                Ok(BinaryChunk {
                    digest: if i == 0 { digest.to_owned() } else { String::new() },
                    data: data.to_vec(),
                    total_bytes: if i == 0 { total } else { 0 },
                    zstd: false,
                })
            })
            .collect()
    }

    fn files(binaries: &DriverBinaries) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(binaries.store().dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| is_digest(name) || name.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    async fn receive(
        binaries: &DriverBinaries,
        chunks: Vec<Result<BinaryChunk, Status>>,
    ) -> Result<String, Status> {
        binaries.receive(futures::stream::iter(chunks), HashSet::new).await
    }

    #[tokio::test]
    async fn an_upload_is_stored_under_its_digest_and_sent_back_in_chunks() {
        let (_dir, binaries) = binaries(BinaryLimits::default());
        let bytes: Vec<u8> = (0..(2 << 20) + 10).map(|i| i as u8).collect();
        let digest = bytes_digest(&bytes);
        let stored = receive(&binaries, upload(&digest, &bytes, 1000, bytes.len() as u64)).await.unwrap();
        assert_eq!(stored, digest);
        assert_eq!(files(&binaries), vec![digest.clone()]);

        let sent: Vec<BinaryChunk> =
            binaries.send(digest.clone()).await.unwrap().map(|c| c.unwrap()).collect().await;
        assert!(sent[0].zstd, "sent compressed");
        assert_eq!(sent[0].total_bytes, bytes.len() as u64);
        assert_eq!(zstd::decode_all(&sent.concat_data()[..]).unwrap(), bytes);
        let missing = binaries.send(bytes_digest(b"nothing")).await.err().unwrap();
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    trait ConcatData {
        fn concat_data(&self) -> Vec<u8>;
    }

    impl ConcatData for Vec<BinaryChunk> {
        fn concat_data(&self) -> Vec<u8> {
            self.iter().flat_map(|c| c.data.iter().copied()).collect()
        }
    }

    #[tokio::test]
    async fn an_upload_over_the_limit_is_refused_and_leaves_nothing() {
        let limits = BinaryLimits { max_binary_bytes: 4000, ..BinaryLimits::default() };
        let (_dir, binaries) = binaries(limits);
        let bytes = vec![3u8; 5000];
        let digest = bytes_digest(&bytes);

        let announced = receive(&binaries, upload(&digest, &bytes, 1000, 5000)).await.unwrap_err();
        assert_eq!(announced.code(), tonic::Code::ResourceExhausted);
        assert!(announced.message().contains("limit of 4000 bytes"), "{}", announced.message());
        assert!(!announced.message().contains('\n'));

        let unannounced = receive(&binaries, upload(&digest, &bytes, 1000, 0)).await.unwrap_err();
        assert_eq!(unannounced.code(), tonic::Code::ResourceExhausted, "{}", unannounced.message());
        assert!(files(&binaries).is_empty(), "{:?}", files(&binaries));
    }

    #[tokio::test]
    async fn a_wrong_digest_or_a_short_upload_is_refused_and_leaves_nothing() {
        let (_dir, binaries) = binaries(BinaryLimits::default());
        let bytes = vec![5u8; 3000];
        let wrong =
            receive(&binaries, upload(&bytes_digest(b"other"), &bytes, 1000, 3000)).await.unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
        assert!(wrong.message().contains("digest"), "{}", wrong.message());

        let short = receive(&binaries, upload(&bytes_digest(&bytes), &bytes, 1000, 4000)).await.unwrap_err();
        assert_eq!(short.code(), tonic::Code::InvalidArgument);

        let mut broken = upload(&bytes_digest(&bytes), &bytes, 1000, 3000);
        broken[2] = Err(Status::cancelled("the client went away"));
        assert_eq!(receive(&binaries, broken).await.unwrap_err().code(), tonic::Code::Cancelled);
        assert!(files(&binaries).is_empty(), "{:?}", files(&binaries));
    }

    #[tokio::test]
    async fn uploads_beyond_the_concurrent_limit_are_refused() {
        let limits = BinaryLimits { concurrent_uploads: 1, ..BinaryLimits::default() };
        let (_dir, binaries) = binaries(limits);
        let bytes = vec![9u8; 100];
        let digest = bytes_digest(&bytes);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(upload(&digest, &bytes, 100, 100).remove(0)).unwrap();
        let stalled =
            binaries.receive(tokio_stream::wrappers::UnboundedReceiverStream::new(rx), HashSet::new);
        tokio::pin!(stalled);
        assert!(futures::poll!(stalled.as_mut()).is_pending(), "the first upload holds the only slot");

        let refused = receive(&binaries, upload(&digest, &bytes, 100, 100)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        drop(tx);
        assert_eq!(stalled.await.unwrap(), digest);
        assert_eq!(
            receive(&binaries, upload(&digest, &bytes, 100, 100)).await.unwrap(),
            digest,
            "the slot is free again"
        );
    }

    #[tokio::test]
    async fn storing_past_the_cap_evicts_the_least_recently_used_binary_not_in_use() {
        let limits = BinaryLimits { max_stored_binaries: 2, ..BinaryLimits::default() };
        let (_dir, binaries) = binaries(limits);
        let digests: Vec<String> = (0..3u8).map(|i| bytes_digest(&[i; 10])).collect();
        for i in 0..2u8 {
            receive(&binaries, upload(&digests[i as usize], &[i; 10], 10, 10)).await.unwrap();
        }
        // The oldest is in use by a running job: the younger one goes instead.
        let in_use: HashSet<String> = [digests[0].clone()].into();
        binaries
            .receive(futures::stream::iter(upload(&digests[2], &[2; 10], 10, 10)), || in_use)
            .await
            .unwrap();
        let mut expected = vec![digests[0].clone(), digests[2].clone()];
        expected.sort();
        assert_eq!(files(&binaries), expected);

        // Asked for (touched), the first is kept when the next upload evicts.
        assert!(binaries.contains(&digests[0]));
        receive(&binaries, upload(&digests[1], &[1; 10], 10, 10)).await.unwrap();
        let mut expected = vec![digests[0].clone(), digests[1].clone()];
        expected.sort();
        assert_eq!(files(&binaries), expected);
    }
}
