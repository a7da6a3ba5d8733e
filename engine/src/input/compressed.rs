//! Compressed text, CSV and JSON lines: gzip, zstd, bzip2 and xz files, decompressed
//! while streaming.
//!
//! None of these formats can be entered in the middle, so a compressed file is one split:
//! its compressed bytes are fetched in chunks (counted as storage reads) and its
//! decompressed bytes go through the same line scanner as plain text.

use std::io::{BufRead, Read};
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::ReadOptions;
use super::bad::BadRows;
use super::text::{CHUNK_BYTES, Chunks, LineScanner, TextSplit};
use crate::error::{Error, Result};
use crate::input::TextShape;
use crate::storage::InputFile;

/// Reads the lines of `split`, a whole file compressed with `codec`, as
/// [`TextSplit::read`] does; returns the decompressed bytes read.
pub(super) fn read(
    split: &TextSplit,
    codec: Codec,
    io: &Handle,
    options: ReadOptions,
    bad: &mut BadRows,
    sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
) -> Result<u64> {
    let mut decoder = codec.decoder(CompressedInput::new(Chunks::open(split, io)?))?;
    let mut scan = LineScanner::new(0, u64::MAX);
    let mut total = 0;
    loop {
        // `read_to_end` stops short of the limit only at the end of the stream.
        let read = (&mut decoder).take(CHUNK_BYTES).read_to_end(scan.buffer());
        let n = read.map_err(|e| decoder.input_mut().error(&split.file, codec, &e))? as u64;
        total += n;
        let eof = n < CHUNK_BYTES;
        if !split.emit(&mut scan, eof, options, bad, sink)? || eof {
            break;
        }
    }
    Ok(total)
}

/// Hands the whole lines of `split`, a whole file compressed with `codec`, to `sink` in
/// chunks, as [`TextSplit::read_chunks`] does; offsets are decompressed offsets. Returns
/// the decompressed bytes read.
pub(super) fn read_chunks(
    split: &TextSplit,
    codec: Codec,
    io: &Handle,
    sink: &mut dyn FnMut(&[u8], u64) -> Result<bool>,
) -> Result<u64> {
    let mut decoder = codec.decoder(CompressedInput::new(Chunks::open(split, io)?))?;
    let mut scan = LineScanner::new(0, u64::MAX);
    let mut total = 0;
    loop {
        let read = (&mut decoder).take(CHUNK_BYTES).read_to_end(scan.buffer());
        let n = read.map_err(|e| decoder.input_mut().error(&split.file, codec, &e))? as u64;
        total += n;
        let eof = n < CHUNK_BYTES;
        let (bytes, offset) = scan.scan_chunk(eof);
        if (!bytes.is_empty() && !sink(bytes, offset)?) || eof {
            break;
        }
    }
    Ok(total)
}

/// The first `limit` decompressed bytes of `file` (fewer at its end), and whether they
/// are all of it: the sample schema inference reads. Decodes on a blocking thread.
pub(super) async fn head(file: &InputFile, codec: Codec, limit: u64) -> Result<(Bytes, bool)> {
    let split = whole_file(Arc::new(file.clone()), codec);
    let io = Handle::current();
    let decode = move || -> Result<(Bytes, bool)> {
        let mut decoder = codec.decoder(CompressedInput::new(Chunks::open(&split, &io)?))?;
        let mut buf = Vec::new();
        // One byte past the limit tells whether the stream goes on.
        let read = (&mut decoder).take(limit + 1).read_to_end(&mut buf);
        read.map_err(|e| decoder.input_mut().error(&split.file, codec, &e))?;
        let whole = buf.len() as u64 <= limit;
        buf.truncate(limit as usize);
        Ok((Bytes::from(buf), whole))
    };
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| Error::Internal(format!("decoding the head of {} failed: {e}", file.display())))?
}

/// The decompressed text of all of `file`, from its start (for counting the lines before
/// a bad row); `None` when it cannot be opened.
pub(super) fn decompressed(file: &Arc<InputFile>, codec: Codec, io: &Handle) -> Option<Box<dyn Read + Send>> {
    let split = whole_file(file.clone(), codec);
    let decoder = codec.decoder(CompressedInput::new(Chunks::open(&split, io).ok()?)).ok()?;
    Some(Box::new(decoder))
}

/// The split that is all of `file`, compressed with `codec`.
fn whole_file(file: Arc<InputFile>, codec: Codec) -> TextSplit {
    let end = file.size;
    TextSplit { file, start: 0, end, shape: TextShape::Chunks, codec: Some(codec) }
}

/// The compressed bytes of a file as a [`BufRead`], one fetched chunk at a time, counting
/// the bytes the decoder has taken (for errors).
struct CompressedInput {
    chunks: Chunks,
    buf: Vec<u8>,
    pos: usize,
    /// Compressed bytes taken by the decoder.
    taken: u64,
    /// Why fetching the next chunk failed: the storage error, not the decoder's.
    failed: Option<Error>,
}

impl CompressedInput {
    fn new(chunks: Chunks) -> Self {
        CompressedInput { chunks, buf: Vec::new(), pos: 0, taken: 0, failed: None }
    }

    /// The error for a decoder's failure `e`: the storage's (retryable), if fetching
    /// failed, else the file is truncated or corrupt at the bytes taken so far.
    fn error(&mut self, file: &InputFile, codec: Codec, e: &std::io::Error) -> Error {
        match self.failed.take() {
            Some(failed) => failed,
            None => decode_error(file, codec, self.taken, e),
        }
    }
}

impl BufRead for CompressedInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos == self.buf.len() && self.failed.is_none() {
            self.buf.clear();
            self.pos = 0;
            match self.chunks.append_next(&mut self.buf) {
                Ok(Some(_)) => self.chunks.want_more(),
                Ok(None) => {}
                Err(e) => self.failed = Some(e),
            }
        }
        if let Some(e) = &self.failed {
            return Err(std::io::Error::other(e.to_string()));
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount;
        self.taken += amount as u64;
    }
}

impl Read for CompressedInput {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A compression format of text input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    /// gzip (concatenated members as `cat a.gz b.gz` makes them).
    Gzip,
    /// Zstandard (any number of frames).
    Zstd,
    /// bzip2 (concatenated streams as `pbzip2` makes them).
    Bzip2,
    /// xz (concatenated streams).
    Xz,
}

/// Bytes [`Codec::sniff`] looks at.
pub(super) const MAGIC_LEN: usize = 10;

impl Codec {
    /// The codec a file name's extension names.
    pub fn from_name(name: &str) -> Option<Codec> {
        let (_, ext) = name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "gz" => Some(Codec::Gzip),
            "zst" | "zstd" => Some(Codec::Zstd),
            "bz2" => Some(Codec::Bzip2),
            "xz" => Some(Codec::Xz),
            _ => None,
        }
    }

    /// `name` without the extension of a codec: `a.csv` for `a.csv.gz`.
    pub fn strip_extension(name: &str) -> &str {
        match name.rsplit_once('.') {
            Some((stem, _)) if Codec::from_name(name).is_some() => stem,
            _ => name,
        }
    }

    /// The codec whose magic bytes `head` (a file's first bytes) starts with.
    pub fn sniff(head: &[u8]) -> Option<Codec> {
        const BZIP2_BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
        const BZIP2_END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Codec::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Codec::Zstd)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Codec::Xz)
        } else if head.len() >= 10
            && head.starts_with(b"BZh")
            && (b'1'..=b'9').contains(&head[3])
            && (head[4..10] == BZIP2_BLOCK || head[4..10] == BZIP2_END)
        {
            // Plain text may start with "BZh": the block magic after it tells them apart.
            Some(Codec::Bzip2)
        } else {
            None
        }
    }

    /// The codec's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
        }
    }

    /// A decoder of this codec reading compressed bytes from `input`.
    fn decoder<R: BufRead>(self, input: R) -> Result<Decoder<R>> {
        Ok(match self {
            Codec::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(input)),
            Codec::Zstd => Decoder::Zstd(
                zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|e| Error::Internal(format!("cannot start a zstd decoder: {e}")))?,
            ),
            Codec::Bzip2 => Decoder::Bzip2(bzip2::bufread::MultiBzDecoder::new(input)),
            Codec::Xz => Decoder::Xz(Box::new(lzma_rust2::XzReader::new(input, true))),
        })
    }
}

/// A decoder of one of the codecs, over compressed input `R`.
enum Decoder<R: BufRead> {
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Bzip2(bzip2::bufread::MultiBzDecoder<R>),
    Xz(Box<lzma_rust2::XzReader<R>>),
}

impl<R: BufRead> Decoder<R> {
    /// The compressed input.
    fn input_mut(&mut self) -> &mut R {
        match self {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
            Decoder::Bzip2(d) => d.get_mut(),
            Decoder::Xz(d) => d.inner_mut(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Bzip2(d) => d.read(buf),
            Decoder::Xz(d) => d.read(buf),
        }
    }
}

/// The error for a decoder's failure after it took `offset` compressed bytes of `file`.
/// A decoder that runs out of input mid-stream reports `UnexpectedEof`: the file is cut short.
fn decode_error(file: &InputFile, codec: Codec, offset: u64, e: &std::io::Error) -> Error {
    let problem = if e.kind() == std::io::ErrorKind::UnexpectedEof { "truncated" } else { "corrupt" };
    Error::CorruptCompressed {
        path: file.display(),
        problem,
        codec: codec.name(),
        offset,
        cause: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
