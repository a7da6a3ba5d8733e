//! Job binaries on the wire: zstd-compressed for transfer, stripped of debug info for
//! shipping.
//!
//! * [`strip_debug_info`] drops the `.debug_*` sections of an ELF binary with `object`'s
//!   ELF builder: workers run the stripped binary (the digest they verify is its digest);
//!   the driver keeps the unstripped one for symbolized backtraces.
//! * [`IncomingBinary`] receives a binary, plain or as a zstd stream, into a
//!   [`BinaryStore`]: decompressed and hashed as it comes, with the compressed bytes kept
//!   beside it (`<digest>.zst`) so it is served on without compressing it again.
//! * [`send_chunks`] streams a stored binary's compressed copy (made once, on a blocking
//!   thread, by [`ensure_compressed`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use gristmill_proto::CHUNK_BYTES;
use gristmill_proto::v1::BinaryChunk;
use tokio::io::AsyncReadExt;
use tonic::Status;

use super::binary::{BinaryError, BinaryStore, BinaryWriter, bytes_digest};

/// The zstd level of job binaries in transfer: fast, and most of the gain.
pub const ZSTD_LEVEL: i32 = 3;

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

/// `binary` without its debug info, if it is an ELF file that has some; `None` otherwise
/// (it is shipped as it is).
pub fn strip_debug_info(binary: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if !binary.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let mut builder = object::build::elf::Builder::read(binary).map_err(|e| e.to_string())?;
    let mut stripped = false;
    for section in &mut builder.sections {
        let name: &[u8] = &section.name;
        if name.starts_with(b".debug_") || name.starts_with(b".zdebug_") {
            section.delete = true;
            stripped = true;
        }
    }
    if !stripped {
        return Ok(None);
    }
    builder.delete_orphans();
    let mut out = Vec::with_capacity(binary.len() / 2);
    builder.write(&mut out).map_err(|e| e.to_string())?;
    Ok(Some(out))
}

/// Stores a stripped copy of the stored binary `digest` (if it has debug info to strip);
/// returns the digest of the binary to ship (the stripped one, or `digest` itself).
/// Blocking: reads the whole binary.
pub fn store_stripped(store: &BinaryStore, digest: &str) -> Result<String, BinaryError> {
    let path = store.path(digest);
    let binary = std::fs::read(&path).map_err(|source| BinaryError::Io { what: "reading", path, source })?;
    match strip_debug_info(&binary) {
        Ok(Some(stripped)) => {
            let shipped = bytes_digest(&stripped);
            if !store.contains(&shipped) {
                store.put(&shipped, &stripped)?;
            }
            tracing::info!(%digest, %shipped, bytes = binary.len(), stripped = stripped.len(), "stripped the debug info of a job binary for shipping");
            Ok(shipped)
        }
        Ok(None) => Ok(digest.to_owned()),
        Err(e) => {
            tracing::warn!(%digest, error = %e, "cannot strip the job binary; shipping it whole");
            Ok(digest.to_owned())
        }
    }
}

/// Makes the compressed copy of the stored binary `digest` unless it exists; returns its
/// path. Blocking.
pub fn ensure_compressed(store: &BinaryStore, digest: &str) -> Result<PathBuf, BinaryError> {
    let target = compressed_path(store, digest);
    if target.is_file() {
        return Ok(target);
    }
    let source = store.path(digest);
    let input = std::fs::File::open(&source).map_err(BinaryError::io("opening", &source))?;
    let mut copy = CompressedCopy::create(store, digest)?;
    zstd::stream::copy_encode(input, &mut copy.file, ZSTD_LEVEL)
        .map_err(BinaryError::io("compressing", &source))?;
    copy.finish()
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

/// A binary arriving in a [`BinaryStore`], plain or zstd-compressed: decompressed into a
/// [`BinaryWriter`] (hashed, bounded), with the compressed bytes kept as its compressed
/// copy. Dropped unfinished, it leaves nothing.
///
/// Its methods do blocking file I/O: call them off async runtime threads.
pub struct IncomingBinary {
    digest: String,
    sink: Sink,
}

enum Sink {
    Plain(BinaryWriter),
    Zstd { decoder: Box<zstd::stream::write::Decoder<'static, WriterSink>>, copy: CompressedCopy },
}

impl std::fmt::Debug for IncomingBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingBinary").field("digest", &self.digest).finish()
    }
}

impl IncomingBinary {
    /// Starts receiving the binary with `digest` (at most `limit` bytes once decompressed);
    /// `zstd`: the bytes to come are a zstd stream of it.
    pub fn new(
        store: &BinaryStore,
        digest: &str,
        limit: Option<u64>,
        zstd: bool,
    ) -> Result<Self, BinaryError> {
        let writer = store.writer(digest, limit)?;
        let sink = if zstd {
            let copy = CompressedCopy::create(store, digest)?;
            let decoder = zstd::stream::write::Decoder::new(WriterSink(writer))
                .map_err(BinaryError::io("decompressing", store.dir()))?;
            Sink::Zstd { decoder: Box::new(decoder), copy }
        } else {
            Sink::Plain(writer)
        };
        Ok(IncomingBinary { digest: digest.to_owned(), sink })
    }

    /// The digest the content must have.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Bytes of the binary (decompressed) written so far.
    pub fn written(&self) -> u64 {
        match &self.sink {
            Sink::Plain(writer) => writer.written(),
            Sink::Zstd { decoder, .. } => decoder.get_ref().0.written(),
        }
    }

    /// Appends the next bytes as they came.
    pub fn write(&mut self, data: &[u8]) -> Result<(), BinaryError> {
        match &mut self.sink {
            Sink::Plain(writer) => writer.write(data),
            Sink::Zstd { decoder, copy } => {
                copy.file.write_all(data).map_err(BinaryError::io("writing", &copy.tmp))?;
                decoder.write_all(data).map_err(|e| WriterSink::error(e, &self.digest))
            }
        }
    }

    /// Writes out what the decompressor still holds ([`IncomingBinary::written`] then
    /// counts all the bytes received).
    pub fn flush(&mut self) -> Result<(), BinaryError> {
        match &mut self.sink {
            Sink::Plain(_) => Ok(()),
            Sink::Zstd { decoder, .. } => decoder.flush().map_err(|e| WriterSink::error(e, &self.digest)),
        }
    }

    /// Checks the digest and puts the binary (and its compressed copy) in place; returns
    /// the binary's path.
    pub fn finish(self) -> Result<PathBuf, BinaryError> {
        match self.sink {
            Sink::Plain(writer) => writer.finish(),
            Sink::Zstd { mut decoder, copy } => {
                decoder.flush().map_err(|e| WriterSink::error(e, &self.digest))?;
                let path = decoder.into_inner().0.finish()?;
                copy.finish()?;
                Ok(path)
            }
        }
    }
}

/// A [`BinaryWriter`] as an [`std::io::Write`] (what the zstd decoder writes to).
struct WriterSink(BinaryWriter);

impl WriterSink {
    /// The [`BinaryError`] behind an I/O error of the decoder (a corrupt stream otherwise).
    fn error(error: std::io::Error, digest: &str) -> BinaryError {
        match error.into_inner().map(|inner| inner.downcast::<BinaryError>()) {
            Some(Ok(binary)) => *binary,
            _ => BinaryError::DigestMismatch { digest: digest.to_owned() },
        }
    }
}

impl Write for WriterSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A compressed copy being written: a hidden temporary file renamed into place by
/// [`CompressedCopy::finish`], removed if dropped before.
struct CompressedCopy {
    tmp: PathBuf,
    target: PathBuf,
    file: std::fs::File,
}

impl CompressedCopy {
    fn create(store: &BinaryStore, digest: &str) -> Result<Self, BinaryError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A dot name ending in `.tmp`: a store reopened after a crash removes it.
        let tmp = store.dir().join(format!(".{digest}{COMPRESSED_SUFFIX}.{}.{n}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(BinaryError::io("creating", &tmp))?;
        Ok(CompressedCopy { target: compressed_path(store, digest), tmp, file })
    }

    fn finish(self) -> Result<PathBuf, BinaryError> {
        self.file.sync_all().map_err(BinaryError::io("writing", &self.tmp))?;
        std::fs::rename(&self.tmp, &self.target)
            .map_err(BinaryError::io("renaming into place", &self.target))?;
        Ok(self.target.clone())
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

    #[test]
    fn a_truncated_or_foreign_stream_is_refused_and_leaves_nothing() {
        let (_dir, store) = store();
        let bytes = vec![42u8; 100_000];
        let digest = bytes_digest(&bytes);
        let compressed = zstd::encode_all(&bytes[..], ZSTD_LEVEL).unwrap();
        let mut truncated = IncomingBinary::new(&store, &digest, None, true).unwrap();
        truncated.write(&compressed[..compressed.len() / 2]).unwrap();
        assert!(matches!(truncated.finish(), Err(BinaryError::DigestMismatch { .. })));

        let other = zstd::encode_all(&b"another binary"[..], ZSTD_LEVEL).unwrap();
        let mut foreign = IncomingBinary::new(&store, &digest, None, true).unwrap();
        foreign.write(&other).unwrap();
        assert!(matches!(foreign.finish(), Err(BinaryError::DigestMismatch { .. })));

        let mut garbage = IncomingBinary::new(&store, &digest, None, true).unwrap();
        let refused = garbage.write(b"not a zstd stream at all").unwrap_err();
        assert!(matches!(refused, BinaryError::DigestMismatch { .. }), "{refused}");
        drop(garbage);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }

    #[test]
    fn the_limit_applies_to_the_decompressed_bytes() {
        let (_dir, store) = store();
        let bytes = vec![0u8; 1 << 20];
        let compressed = zstd::encode_all(&bytes[..], ZSTD_LEVEL).unwrap();
        let mut incoming = IncomingBinary::new(&store, &bytes_digest(&bytes), Some(1000), true).unwrap();
        let refused = incoming.write(&compressed).unwrap_err();
        assert!(matches!(refused, BinaryError::TooLarge { limit: 1000 }), "{refused}");
    }

    #[test]
    fn this_test_binary_loses_its_debug_info_and_still_parses() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(strip_debug_info(b"#!/bin/sh\n").unwrap().is_none(), "not ELF: shipped as it is");
        let Some(stripped) = strip_debug_info(&exe).unwrap() else {
            // Built without debug info: nothing to strip, shipped as it is.
            return;
        };
        assert!(stripped.len() < exe.len());
        let reread = object::build::elf::Builder::read(&stripped[..]).unwrap();
        assert!(reread.sections.iter().all(|s| !s.name.starts_with(b".debug_")));
        assert!(reread.sections.iter().any(|s| &*s.name == b".text"));
    }
}
