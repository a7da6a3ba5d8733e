//! The binary shipped to workers for an uploaded one, made once, on the driver, as the
//! upload completes: stripped of its debug info and compressed in a single pass.
//!
//! The upload is mapped, not read (a debug build is hundreds of MB, most of it debug info
//! that is dropped); `object`'s ELF builder writes the stripped ELF through a buffer into
//! a [`ShippedWriter`], which hashes it and writes it both into the store (under its own
//! digest: what workers run and verify) and into a zstd encoder making its compressed
//! copy, which is then sent as it is to every fetcher. Nothing is read back or compressed
//! again.

use std::io::{BufWriter, Write};

use object::build::elf::Builder;
use object::write::StreamingBuffer;

use super::{CompressedCopy, SHIPPED_ZSTD_LEVEL, compressed_path, ensure_compressed};
use crate::cluster::binary::{BinaryError, BinaryStore, BinaryWriter};

/// The buffer between the ELF builder (many small writes) and the compressor.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Makes the binary shipped for the stored binary `digest`: stripped of its debug info when
/// it is an ELF file with some, with its compressed copy; returns its digest (`digest`
/// itself when there was nothing to strip, or stripping failed: the binary is then shipped
/// whole). Blocking.
pub fn prepare_shipped(store: &BinaryStore, digest: &str) -> Result<String, BinaryError> {
    let path = store.path(digest);
    let file = std::fs::File::open(&path).map_err(BinaryError::io("opening", &path))?;
    let binary = crate::storage::map_file(&file).map_err(BinaryError::io("reading", &path))?;
    let builder = match debug_stripper(&binary) {
        Ok(Some(builder)) => builder,
        Ok(None) => return ship_whole(store, digest),
        Err(e) => {
            tracing::warn!(%digest, error = %e, "cannot read the job binary as ELF; shipping it whole");
            return ship_whole(store, digest);
        }
    };
    let mut shipped = ShippedWriter::create(store)?;
    if let Err(e) = write_elf(builder, &mut shipped) {
        tracing::warn!(%digest, error = %e, "cannot strip the job binary; shipping it whole");
        return ship_whole(store, digest);
    }
    let stripped = shipped.finish(store)?;
    let stripped_bytes = std::fs::metadata(store.path(&stripped)).map(|m| m.len()).unwrap_or(0);
    tracing::info!(%digest, shipped = %stripped, bytes = binary.len(), stripped_bytes, "stripped the debug info of a job binary for shipping");
    // The upload's own compressed copy is never sent: the stripped binary's is.
    let _ = std::fs::remove_file(compressed_path(store, digest));
    Ok(stripped)
}

/// `binary` without its debug info, if it is an ELF file that has some; `None` otherwise
/// (it is shipped as it is). In memory: [`prepare_shipped`] streams instead.
pub fn strip_debug_info(binary: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Some(builder) = debug_stripper(binary)? else { return Ok(None) };
    let mut out = Vec::with_capacity(binary.len() / 2);
    builder.write(&mut out).map_err(|e| e.to_string())?;
    Ok(Some(out))
}

/// An ELF builder of `binary` with its debug sections deleted; `None` when `binary` is not
/// ELF or has no debug info.
fn debug_stripper(binary: &[u8]) -> Result<Option<Builder<'_>>, String> {
    if !binary.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let mut builder = Builder::read(binary).map_err(|e| e.to_string())?;
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
    Ok(Some(builder))
}

/// Writes the ELF file `builder` describes into `out`.
fn write_elf(builder: Builder<'_>, out: &mut ShippedWriter) -> Result<(), String> {
    let mut buffer = StreamingBuffer::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, out));
    builder.write(&mut buffer).map_err(|e| e.to_string())?;
    buffer.flush().map_err(|e| e.to_string())
}

/// Ships the stored binary `digest` as it is, with its compressed copy.
fn ship_whole(store: &BinaryStore, digest: &str) -> Result<String, BinaryError> {
    ensure_compressed(store, digest)?;
    Ok(digest.to_owned())
}

/// The stripped binary as it is written: into the store, hashed, and through a zstd
/// encoder into its compressed copy. Dropped unfinished, it leaves nothing.
struct ShippedWriter {
    plain: BinaryWriter,
    compressed: zstd::stream::write::Encoder<'static, CompressedCopy>,
}

impl ShippedWriter {
    fn create(store: &BinaryStore) -> Result<Self, BinaryError> {
        let plain = store.content_writer()?;
        let copy = CompressedCopy::create(store, "shipped")?;
        let compressed = zstd::stream::write::Encoder::new(copy, SHIPPED_ZSTD_LEVEL)
            .map_err(BinaryError::io("compressing into", store.dir()))?;
        Ok(ShippedWriter { plain, compressed })
    }

    /// Stores the binary under its digest, then its compressed copy beside it; returns the
    /// digest.
    fn finish(self, store: &BinaryStore) -> Result<String, BinaryError> {
        let copy = self.compressed.finish().map_err(BinaryError::io("compressing into", store.dir()))?;
        let digest = self.plain.finish_as_written()?;
        copy.finish(&compressed_path(store, &digest))?;
        Ok(digest)
    }
}

impl Write for ShippedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.plain.write(buf).map_err(std::io::Error::other)?;
        self.compressed.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.compressed.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::binary::bytes_digest;
    use crate::cluster::binary::tests::store;

    #[test]
    fn this_test_binary_is_shipped_stripped_with_a_copy_that_decompresses_to_it() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let Some(stripped) = strip_debug_info(&exe).unwrap() else {
            // Built without debug info: nothing to strip, shipped as it is (tested below).
            return;
        };
        assert!(stripped.len() < exe.len());
        let reread = Builder::read(&stripped[..]).unwrap();
        assert!(reread.sections.iter().all(|s| !s.name.starts_with(b".debug_")));
        assert!(reread.sections.iter().any(|s| &*s.name == b".text"));

        let (_dir, store) = store();
        let digest = bytes_digest(&exe);
        store.put(&digest, &exe).unwrap();
        std::fs::write(compressed_path(&store, &digest), b"the upload's compressed copy").unwrap();
        let shipped = prepare_shipped(&store, &digest).unwrap();
        assert_eq!(shipped, bytes_digest(&stripped), "streamed as the in-memory strip writes it");
        assert!(store.verify(&shipped).unwrap());
        let copy = std::fs::read(compressed_path(&store, &shipped)).unwrap();
        assert_eq!(zstd::decode_all(&copy[..]).unwrap(), stripped);
        assert!(!compressed_path(&store, &digest).exists(), "the upload's copy is never sent");
        assert!(store.contains(&digest), "the upload is kept whole");
    }

    #[test]
    fn a_binary_without_debug_info_is_shipped_whole_compressed_once() {
        let (_dir, store) = store();
        let script = b"#!/bin/sh\necho not an ELF file\n".to_vec();
        assert!(strip_debug_info(&script).unwrap().is_none(), "not ELF: shipped as it is");
        let digest = bytes_digest(&script);
        store.put(&digest, &script).unwrap();
        assert_eq!(prepare_shipped(&store, &digest).unwrap(), digest);
        let copy = std::fs::read(compressed_path(&store, &digest)).unwrap();
        assert_eq!(zstd::decode_all(&copy[..]).unwrap(), script);

        // An existing copy (the upload's) is kept as it is, not made again.
        std::fs::write(compressed_path(&store, &digest), b"kept").unwrap();
        assert_eq!(prepare_shipped(&store, &digest).unwrap(), digest);
        assert_eq!(std::fs::read(compressed_path(&store, &digest)).unwrap(), b"kept");
    }
}
