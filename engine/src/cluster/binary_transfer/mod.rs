//! Job binaries on the wire: stripped of their debug info and zstd-compressed once, then
//! sent as they are.
//!
//! * The submitter uploads its executable zstd-compressed ([`UPLOAD_ZSTD_LEVEL`]).
//! * [`IncomingBinary`] receives a binary, plain or as a zstd stream, into a
//!   [`BinaryStore`]: decompressed and hashed as it comes, with the compressed bytes kept
//!   beside it (`<digest>.zst`) so it is served on without compressing it again.
//! * [`prepare_shipped`] runs once per upload, on the driver: it drops the `.debug_*`
//!   sections of an ELF binary with `object`'s ELF builder and writes the result through
//!   one pass into the store (hashed: workers run and verify this digest) and into its
//!   compressed copy. The driver keeps the unstripped upload beside it.
//! * [`send_chunks`] streams a stored binary's compressed copy as it is, to every fetcher
//!   (the driver's and each worker's peer service alike); [`ensure_compressed`] makes one
//!   only for a binary stored without it (stored before, or uploaded plain).

mod incoming;
mod shipping;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use gristmill_proto::CHUNK_BYTES;
use gristmill_proto::v1::BinaryChunk;
use tokio::io::AsyncReadExt;
use tonic::Status;

use super::binary::{BinaryError, BinaryStore};

pub use incoming::IncomingBinary;
pub use shipping::{prepare_shipped, strip_debug_info};

/// The zstd level of an upload: its debug info is dropped once it arrives, so the fastest
/// level (it still shrinks a debug build about five times).
pub const UPLOAD_ZSTD_LEVEL: i32 = 1;

/// The zstd level of a shipped binary's compressed copy: made once, sent to every worker,
/// so a little more effort than the upload.
pub const SHIPPED_ZSTD_LEVEL: i32 = 3;

/// Suffix of a stored binary's compressed copy.
const COMPRESSED_SUFFIX: &str = ".zst";

/// Where the compressed copy of the binary with `digest` is (or would be).
pub fn compressed_path(store: &BinaryStore, digest: &str) -> PathBuf {
    store.dir().join(format!("{digest}{COMPRESSED_SUFFIX}"))
}

/// The name of the compressed copy of the binary with `digest` in an object store.
pub fn compressed_name(digest: &str) -> String {
    format!("{digest}{COMPRESSED_SUFFIX}")
}

/// Makes the compressed copy of the stored binary `digest` unless it exists; returns its
/// path. Blocking. Copies are made one at a time in this process, so fetchers arriving
/// together for a binary without one wait for a single compression rather than each
/// making their own.
pub fn ensure_compressed(store: &BinaryStore, digest: &str) -> Result<PathBuf, BinaryError> {
    static COMPRESSING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let target = compressed_path(store, digest);
    if target.is_file() {
        return Ok(target);
    }
    let _one_at_a_time = COMPRESSING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if target.is_file() {
        return Ok(target);
    }
    let source = store.path(digest);
    let input = std::fs::File::open(&source).map_err(BinaryError::io("opening", &source))?;
    let mut copy = CompressedCopy::create(store, digest)?;
    zstd::stream::copy_encode(input, &mut copy, SHIPPED_ZSTD_LEVEL)
        .map_err(BinaryError::io("compressing", &source))?;
    copy.finish(&target)?;
    tracing::info!(%digest, "made the compressed copy of a stored job binary");
    Ok(target)
}

/// The chunks of the stored binary `digest`, zstd-compressed (the first one says so and
/// gives the binary's length), read from its compressed copy as they are sent.
pub async fn send_chunks(
    store: &BinaryStore,
    digest: String,
) -> Result<impl Stream<Item = Result<BinaryChunk, Status>> + Send + 'static, Status> {
    if !store.contains(&digest) {
        return Err(Status::not_found(format!("no job binary {digest}")));
    }
    store.touch(&digest);
    let total = std::fs::metadata(store.path(&digest)).map(|m| m.len()).unwrap_or(0);
    let (owned, name) = (store.clone(), digest.clone());
    let path = tokio::task::spawn_blocking(move || ensure_compressed(&owned, &name))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Status::not_found(format!("no job binary {digest}")),
        _ => Status::internal(format!("opening {}: {e}", path.display())),
    })?;
    let state = (file, digest, Some(total));
    Ok(futures::stream::try_unfold(state, |(mut file, digest, first)| async move {
        let data =
            read_chunk(&mut file).await.map_err(|e| Status::internal(format!("reading {digest}: {e}")))?;
        if data.is_empty() && first.is_none() {
            return Ok(None);
        }
        let chunk = match first {
            Some(total_bytes) => BinaryChunk { digest: digest.clone(), data, total_bytes, zstd: true },
            None => BinaryChunk { data, ..Default::default() },
        };
        Ok(Some((chunk, (file, digest, None))))
    }))
}

/// The chunks of the compressed binary at the object-store `url` (the driver's binary
/// store), read with this process's own object-store credentials, as they arrive.
pub async fn object_chunks(
    url: &str,
) -> crate::Result<impl Stream<Item = Result<BinaryChunk, Status>> + Unpin + Send + 'static> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let location = crate::storage::Location::parse(url)?;
    let object =
        location.store().get(location.path()).await.map_err(|e| crate::Error::read(location.display(), e))?;
    Ok(object.into_stream().map(|bytes| match bytes {
        Ok(data) => Ok(BinaryChunk { data: data.to_vec(), zstd: true, ..Default::default() }),
        Err(e) => Err(Status::unavailable(e.to_string())),
    }))
}

/// Up to [`CHUNK_BYTES`] of `file`; empty at its end.
async fn read_chunk(file: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(CHUNK_BYTES);
    (&mut *file).take(CHUNK_BYTES as u64).read_to_end(&mut data).await?;
    Ok(data)
}

/// A compressed copy being written: a hidden temporary file renamed into place by
/// [`CompressedCopy::finish`], removed if dropped before.
struct CompressedCopy {
    tmp: PathBuf,
    file: std::fs::File,
}

impl CompressedCopy {
    /// A new temporary file in `store` (`name` tells whose copy it is, in its name only).
    fn create(store: &BinaryStore, name: &str) -> Result<Self, BinaryError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A dot name ending in `.tmp`: a store reopened after a crash removes it.
        let tmp = store.dir().join(format!(".{name}{COMPRESSED_SUFFIX}.{}.{n}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(BinaryError::io("creating", &tmp))?;
        Ok(CompressedCopy { tmp, file })
    }

    /// Syncs the copy and renames it to `target`.
    fn finish(self, target: &Path) -> Result<(), BinaryError> {
        self.file.sync_all().map_err(BinaryError::io("writing", &self.tmp))?;
        std::fs::rename(&self.tmp, target).map_err(BinaryError::io("renaming into place", target))
    }
}

impl std::io::Write for CompressedCopy {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for CompressedCopy {
    fn drop(&mut self) {
        // Finished copies were renamed: removing fails harmlessly.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::cluster::binary::bytes_digest;
    use crate::cluster::binary::tests::store;

    #[tokio::test]
    async fn a_binary_sent_compressed_arrives_whole_with_its_compressed_copy() {
        let (_a, sender) = store();
        let (_b, receiver) = store();
        let bytes: Vec<u8> = (0..3 * CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
        let digest = bytes_digest(&bytes);
        sender.put(&digest, &bytes).unwrap();
        let chunks: Vec<BinaryChunk> =
            send_chunks(&sender, digest.clone()).await.unwrap().map(|c| c.unwrap()).collect().await;
        assert!(chunks[0].zstd && chunks[0].total_bytes == bytes.len() as u64);
        let sent: usize = chunks.iter().map(|c| c.data.len()).sum();
        assert!(sent < bytes.len(), "{sent} bytes sent for {}", bytes.len());

        let mut incoming = IncomingBinary::new(&receiver, &digest, None, true).unwrap();
        for chunk in &chunks {
            incoming.write(&chunk.data).unwrap();
        }
        incoming.flush().unwrap();
        assert_eq!(incoming.written(), bytes.len() as u64);
        let path = incoming.finish().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), bytes);
        assert_eq!(
            std::fs::read(compressed_path(&receiver, &digest)).unwrap(),
            std::fs::read(compressed_path(&sender, &digest)).unwrap(),
            "the receiver serves the very bytes it got"
        );
    }

    #[tokio::test]
    async fn a_stored_compressed_copy_is_sent_as_it_is() {
        let (_dir, store) = store();
        let bytes = vec![7u8; 100_000];
        let digest = bytes_digest(&bytes);
        store.put(&digest, &bytes).unwrap();
        // Not a compression of these bytes at all: were it made again, this would not be sent.
        let planted = b"the copy made when the binary arrived".to_vec();
        std::fs::write(compressed_path(&store, &digest), &planted).unwrap();
        let chunks: Vec<BinaryChunk> =
            send_chunks(&store, digest).await.unwrap().map(|c| c.unwrap()).collect().await;
        let sent: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
        assert_eq!(sent, planted);
    }
}
