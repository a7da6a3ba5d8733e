//! A job binary arriving (an upload on the driver, a fetch on a worker).

use std::io::Write;
use std::path::PathBuf;

use super::{CompressedCopy, compressed_path};
use crate::cluster::binary::{BinaryError, BinaryStore, BinaryWriter};

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
    Zstd {
        decoder: Box<zstd::stream::write::Decoder<'static, WriterSink>>,
        copy: CompressedCopy,
        /// Where the copy goes once the binary is verified.
        target: PathBuf,
    },
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
            Sink::Zstd { decoder: Box::new(decoder), copy, target: compressed_path(store, digest) }
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
            Sink::Zstd { decoder, copy, .. } => {
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
            Sink::Zstd { mut decoder, copy, target } => {
                decoder.flush().map_err(|e| WriterSink::error(e, &self.digest))?;
                let path = decoder.into_inner().0.finish()?;
                copy.finish(&target)?;
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
        self.0.write(buf).map(|()| buf.len()).map_err(std::io::Error::other)
    }

    /// Nothing to flush: the writer writes through to its file.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::binary::bytes_digest;
    use crate::cluster::binary::tests::store;
    use crate::cluster::binary_transfer::UPLOAD_ZSTD_LEVEL;

    #[test]
    fn a_truncated_or_foreign_stream_is_refused_and_leaves_nothing() {
        let (_dir, store) = store();
        let bytes = vec![42u8; 100_000];
        let digest = bytes_digest(&bytes);
        let compressed = zstd::encode_all(&bytes[..], UPLOAD_ZSTD_LEVEL).unwrap();
        let mut truncated = IncomingBinary::new(&store, &digest, None, true).unwrap();
        truncated.write(&compressed[..compressed.len() / 2]).unwrap();
        assert!(matches!(truncated.finish(), Err(BinaryError::DigestMismatch { .. })));

        let other = zstd::encode_all(&b"another binary"[..], UPLOAD_ZSTD_LEVEL).unwrap();
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
        let compressed = zstd::encode_all(&bytes[..], UPLOAD_ZSTD_LEVEL).unwrap();
        let mut incoming = IncomingBinary::new(&store, &bytes_digest(&bytes), Some(1000), true).unwrap();
        let refused = incoming.write(&compressed).unwrap_err();
        assert!(matches!(refused, BinaryError::TooLarge { limit: 1000 }), "{refused}");
    }
}
