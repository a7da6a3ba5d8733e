//! Text input: byte-range splits of line-oriented files.
//!
//! A line belongs to the split where it starts: a split skips the partial line at its start
//! (the previous split owns it) and reads past its end to finish its last line. Lines end at
//! `\n` or `\r\n`, exactly as Rust's `str::lines` splits them.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::ReadOptions;
use super::bad::{BadRecords, BadRows};
use super::compressed::Codec;
use crate::error::{Error, Result};
use crate::input::{InputSpec, TextShape};
use crate::storage::InputFile;

/// Bytes fetched per request within a split (also the size of one batch of lines).
pub(super) const CHUNK_BYTES: u64 = 4 << 20;
/// The first request past a split's end, to finish its last line; doubles while the line goes on.
const TAIL_BYTES: u64 = 64 << 10;

/// Bytes `start..end` of a text file: the lines that start in that range.
#[derive(Clone, Debug)]
pub struct TextSplit {
    /// The file.
    pub file: Arc<InputFile>,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// Lines or chunks of lines.
    pub shape: TextShape,
    /// The file's compression: then the split is the whole file.
    pub codec: Option<Codec>,
}

/// Cuts a file into ranges of `split_size` bytes (the last one shorter); none for an empty
/// file. A compressed file is never cut: it cannot be decompressed from the middle.
pub(super) fn plan(
    file: &Arc<InputFile>,
    split_size: u64,
    shape: TextShape,
    codec: Option<Codec>,
) -> impl Iterator<Item = TextSplit> + '_ {
    let step = if codec.is_some() { file.size } else { split_size }.max(1);
    (0..file.size).step_by(step as usize).map(move |start| TextSplit {
        file: file.clone(),
        start,
        end: (start + step).min(file.size),
        shape,
        codec,
    })
}

impl TextSplit {
    /// Reads the split's lines as batches of one Utf8 column: `line`, a row per line, or
    /// `text`, a row per chunk of whole lines ([`TextShape`]). Returns the bytes of text
    /// read: the range's, or the decompressed bytes of a compressed file. A line that is
    /// not UTF-8 goes to `bad` (which fails the read when it allows none).
    pub fn read(
        &self,
        io: &Handle,
        options: ReadOptions,
        bad: &BadRecords,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<u64> {
        if let Some(codec) = self.codec {
            let mut bad = BadRows::new(&self.file, io, bad).with_codec(Some(codec));
            return super::compressed::read(self, codec, io, options, &mut bad, sink);
        }
        let mut bad = BadRows::new(&self.file, io, bad);
        let mut source = Chunks::open(self, io)?;
        let mut scan = LineScanner::new(self.start, self.end);
        loop {
            let Some(range) = source.append_next(scan.buffer())? else { break };
            let eof = range.end >= self.file.size;
            if !self.emit(&mut scan, eof, options, &mut bad, sink)? || scan.done || eof {
                break;
            }
            source.want_more();
        }
        Ok(self.end - self.start)
    }

    /// Hands what `scan` found in the bytes appended to its buffer to `sink` as a batch, if
    /// any; false when `sink` wants no more.
    pub(super) fn emit(
        &self,
        scan: &mut LineScanner,
        eof: bool,
        options: ReadOptions,
        bad: &mut BadRows,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<bool> {
        let replace = options.replace_invalid_utf8;
        let batch = match self.shape {
            TextShape::Lines => {
                let lines = scan.scan(eof).map_err(|e| match e {
                    Error::Internal(cause) => Error::Internal(format!("{}: {cause}", self.file.display())),
                    other => other,
                })?;
                (!lines.is_empty()).then(|| to_batch(lines, replace, bad))
            }
            TextShape::Chunks => {
                let (bytes, offset) = scan.scan_chunk(eof);
                (!bytes.is_empty()).then(|| chunk_batch(&self.file, bytes, offset, replace, bad))
            }
        };
        match batch {
            Some(batch) => sink(batch?),
            None => Ok(true),
        }
    }
}

impl TextSplit {
    /// Hands the split's lines to `sink` in chunks of whole lines (terminators kept), each
    /// with the file offset of its first byte, until `sink` returns `false`. For readers
    /// of line-oriented formats (CSV, JSON lines) that decode the bytes themselves. A
    /// compressed file is decompressed, its offsets decompressed offsets. Returns the bytes
    /// read: the range's, or the decompressed bytes of a compressed file.
    pub(super) fn read_chunks(
        &self,
        io: &Handle,
        sink: &mut dyn FnMut(&[u8], u64) -> Result<bool>,
    ) -> Result<u64> {
        if let Some(codec) = self.codec {
            return super::compressed::read_chunks(self, codec, io, sink);
        }
        let mut source = match self.file.location.local_file() {
            Some(path) => Chunks::Local(LocalChunks::open(self.clone(), path)?),
            None => Chunks::Store(Fetcher::new(self.clone(), io.clone())),
        };
        let mut scan = LineScanner::new(self.start, self.end);
        while let Some(range) = source.append_next(scan.buffer())? {
            let eof = range.end >= self.file.size;
            let (bytes, offset) = scan.scan_chunk(eof);
            if !bytes.is_empty() && !sink(bytes, offset)? {
                break;
            }
            if scan.done || eof {
                break;
            }
            source.want_more();
        }
        Ok(self.end - self.start)
    }
}

/// The ranges a split reads, in order: chunks up to the split's end, then ever longer
/// steps past it until the scanner has finished its last line.
struct RangePlan {
    next_offset: u64,
    split_end: u64,
    file_size: u64,
    tail_step: u64,
}

impl RangePlan {
    fn new(split: &TextSplit) -> Self {
        RangePlan {
            next_offset: split.start.saturating_sub(1),
            split_end: split.end,
            file_size: split.file.size,
            tail_step: TAIL_BYTES,
        }
    }

    /// The next range, or `None` at the end of the file.
    fn next(&mut self) -> Option<Range<u64>> {
        if self.next_offset >= self.file_size {
            return None;
        }
        let len = if self.next_offset < self.split_end {
            CHUNK_BYTES.min(self.split_end - self.next_offset)
        } else {
            let step = self.tail_step;
            self.tail_step = (step * 2).min(CHUNK_BYTES);
            step
        };
        let range = self.next_offset..(self.next_offset + len).min(self.file_size);
        self.next_offset = range.end;
        Some(range)
    }

    fn within_split(&self) -> bool {
        self.next_offset < self.split_end
    }
}

/// Where a split's bytes come from.
pub(super) enum Chunks {
    /// An object store, one request ahead.
    Store(Fetcher),
    /// A local file, read directly into one reused buffer.
    Local(LocalChunks),
}

impl Chunks {
    /// The ranges of `split`, read from the local file or fetched from its store.
    pub(super) fn open(split: &TextSplit, io: &Handle) -> Result<Self> {
        let split = split.clone();
        Ok(match split.file.location.local_file() {
            Some(path) => Chunks::Local(LocalChunks::open(split, path)?),
            None => Chunks::Store(Fetcher::new(split, io.clone())),
        })
    }

    /// Appends the bytes of the next range of the file to `buf`; returns the range.
    pub(super) fn append_next(&mut self, buf: &mut Vec<u8>) -> Result<Option<Range<u64>>> {
        match self {
            Chunks::Store(fetcher) => fetcher.append_next(buf),
            Chunks::Local(local) => local.append_next(buf),
        }
    }

    /// The reader wants the range after the last one.
    pub(super) fn want_more(&mut self) {
        if let Chunks::Store(fetcher) = self {
            fetcher.request_more();
        }
    }
}

/// Reads a local file's ranges with plain reads straight into the scanner's buffer.
///
/// Not through `object_store`: its local `get_range` allocates and zero-fills a fresh buffer
/// per request, which cost grep 13% of its instructions (and a page fault per page of
/// every 4 MiB chunk) before any byte was read.
pub(super) struct LocalChunks {
    split: TextSplit,
    file: std::fs::File,
    plan: RangePlan,
}

impl LocalChunks {
    fn open(split: TextSplit, path: std::path::PathBuf) -> Result<Self> {
        let file = std::fs::File::open(&path).map_err(|e| local_error(&split, e))?;
        let plan = RangePlan::new(&split);
        Ok(LocalChunks { split, file, plan })
    }

    /// Reads into `buf`'s spare capacity (`read_to_end` does not zero it first).
    fn append_next(&mut self, buf: &mut Vec<u8>) -> Result<Option<Range<u64>>> {
        let Some(range) = self.plan.next() else { return Ok(None) };
        crate::storage::read_local_range(&mut self.file, &range, buf)
            .map_err(|e| local_error(&self.split, e))?;
        Ok(Some(range))
    }
}

fn local_error(split: &TextSplit, e: std::io::Error) -> Error {
    Error::local_read(split.file.display(), e)
}

/// Fetches consecutive ranges of the file, one request ahead of the reader.
pub(super) struct Fetcher {
    split: TextSplit,
    io: Handle,
    plan: RangePlan,
    pending: Option<(Range<u64>, JoinHandle<object_store::Result<Bytes>>)>,
}

impl Fetcher {
    fn new(split: TextSplit, io: Handle) -> Self {
        let plan = RangePlan::new(&split);
        let mut fetcher = Fetcher { split, io, plan, pending: None };
        fetcher.request_more();
        fetcher
    }

    /// Starts fetching the next range, unless one is in flight or the file is exhausted.
    fn request_more(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let Some(range) = self.plan.next() else { return };
        let (store, path) =
            (self.split.file.location.store().clone(), self.split.file.location.path().clone());
        let fetched = range.clone();
        self.pending = Some((fetched, self.io.spawn(async move { store.get_range(&path, range).await })));
    }

    /// Appends the next range in file order to `buf`, and starts fetching the one after it.
    fn append_next(&mut self, buf: &mut Vec<u8>) -> Result<Option<Range<u64>>> {
        let Some((range, handle)) = self.pending.take() else { return Ok(None) };
        let path = self.split.file.display();
        let bytes = self
            .io
            .block_on(handle)
            .map_err(|e| Error::Internal(format!("fetch task of {path} failed: {e}")))?
            .map_err(|source| Error::read(path, source))?;
        if self.plan.within_split() {
            self.request_more();
        }
        buf.extend_from_slice(&bytes);
        Ok(Some(range))
    }
}

/// Finds the lines that start in `start..end` in consecutive ranges of a file.
#[derive(Debug)]
pub(super) struct LineScanner {
    end: u64,
    /// The range being scanned, after the start of a line that began in an earlier range
    /// (kept for the whole split: a fresh buffer per range cost a page fault per page).
    buf: Vec<u8>,
    /// Where in `buf` the line that has not ended yet starts.
    partial_start: usize,
    /// File offset of `buf[partial_start]`.
    partial_offset: u64,
    /// Still looking for the end of the line that straddles `start`.
    skipping: bool,
    pub(super) done: bool,
}

/// Complete lines found in one pushed range, as Arrow's string values and offsets (lines
/// without terminators, back to back), with the raw bytes they came from for errors.
#[derive(Debug)]
struct Lines<'a> {
    /// The raw bytes, from the first line on (terminators included).
    bytes: &'a [u8],
    /// The file offset of `bytes[0]`.
    file_offset: u64,
    values: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is line `i` in `values`.
    offsets: Vec<i32>,
}

impl Lines<'_> {
    fn empty() -> Self {
        Lines { bytes: &[], file_offset: 0, values: Vec::new(), offsets: vec![0] }
    }

    fn is_empty(&self) -> bool {
        self.offsets.len() == 1
    }

    /// Line `i`'s bytes.
    fn line(&self, i: usize) -> &[u8] {
        &self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Appends a line (without its terminator).
    fn push_line(&mut self, line: &[u8]) -> std::result::Result<(), std::num::TryFromIntError> {
        self.values.extend_from_slice(line);
        self.offsets.push(i32::try_from(self.values.len())?);
        Ok(())
    }
}

impl LineScanner {
    pub(super) fn new(start: u64, end: u64) -> Self {
        LineScanner {
            end,
            buf: Vec::new(),
            partial_start: 0,
            partial_offset: start.saturating_sub(1),
            skipping: start > 0,
            done: false,
        }
    }

    /// The buffer to append the next range to (contiguous with the previous one): the
    /// lines already handed out are dropped, the unfinished one is kept at the front.
    pub(super) fn buffer(&mut self) -> &mut Vec<u8> {
        self.buf.drain(..self.partial_start);
        self.partial_start = 0;
        &mut self.buf
    }

    /// Skips the line that straddles the split's start, if still looking for its end:
    /// where the first line of the split starts in `buf`, or `None` when `buf` holds none.
    fn skip_first_partial(&mut self, eof: bool) -> Option<usize> {
        if !self.skipping {
            return Some(0);
        }
        match memchr::memchr(b'\n', &self.buf) {
            Some(nl) => {
                self.skipping = false;
                Some(nl + 1)
            }
            None => {
                self.partial_offset += self.buf.len() as u64;
                self.partial_start = self.buf.len();
                self.done = eof;
                None
            }
        }
    }

    /// Scans what was appended to [`LineScanner::buffer`] for whole lines, without splitting
    /// them: the bytes of the complete lines of the split found so far, and the file offset
    /// of the first. Only the last newline is looked for (and, at the split's end, the one
    /// that ends the last line starting in the split).
    pub(super) fn scan_chunk(&mut self, eof: bool) -> (&[u8], u64) {
        let Some(first) = self.skip_first_partial(eof) else { return (&[], 0) };
        let base = self.partial_offset;
        let buf = &self.buf;
        // Lines starting before `buf[limit]` are the split's.
        let limit = usize::try_from(self.end.saturating_sub(base)).unwrap_or(usize::MAX);
        let cursor = if first >= limit {
            self.done = true;
            first
        } else if limit <= buf.len() {
            match memchr::memchr(b'\n', &buf[limit - 1..]) {
                Some(nl) => {
                    self.done = true;
                    limit + nl
                }
                None if eof => buf.len(),
                None => first + memchr::memrchr(b'\n', &buf[first..]).map_or(0, |nl| nl + 1),
            }
        } else if eof {
            buf.len()
        } else {
            first + memchr::memrchr(b'\n', &buf[first..]).map_or(0, |nl| nl + 1)
        };
        self.done |= eof;
        self.partial_start = cursor;
        self.partial_offset = base + cursor as u64;
        (&self.buf[first..cursor], base + first as u64)
    }

    /// Scans what was appended to [`LineScanner::buffer`]; `eof` when it ends the file.
    /// One pass: each newline found ends a line, copied into the values as it is found.
    fn scan(&mut self, eof: bool) -> Result<Lines<'_>> {
        let Some(first) = self.skip_first_partial(eof) else { return Ok(Lines::empty()) };
        let buf = &self.buf;
        let base = self.partial_offset;
        let mut cursor = first;
        let mut lines = Lines { values: Vec::with_capacity(buf.len() - first), ..Lines::empty() };
        let too_long = |_| Error::Internal("a batch of lines exceeds 2 GiB".into());
        for nl in memchr::memchr_iter(b'\n', &buf[first..]).map(|nl| first + nl) {
            if base + cursor as u64 >= self.end {
                break;
            }
            let stop = if nl > cursor && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            lines.push_line(&buf[cursor..stop]).map_err(too_long)?;
            cursor = nl + 1;
        }
        if base + cursor as u64 >= self.end {
            self.done = true;
        } else if eof {
            if cursor < buf.len() {
                lines.push_line(&buf[cursor..]).map_err(too_long)?;
                cursor = buf.len();
            }
            self.done = true;
        }
        self.partial_start = cursor;
        self.partial_offset = base + cursor as u64;
        lines.bytes = &buf[first..cursor];
        lines.file_offset = base + first as u64;
        Ok(lines)
    }
}

/// A batch of one row: `bytes`, whole lines from `offset` of `file` (lines that are not
/// UTF-8 replaced, or handed to `bad` and left out).
fn chunk_batch(
    file: &InputFile,
    bytes: &[u8],
    offset: u64,
    replace_invalid: bool,
    bad: &mut BadRows,
) -> Result<RecordBatch> {
    let lossy;
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) if replace_invalid => {
            lossy = String::from_utf8_lossy(bytes);
            &lossy
        }
        Err(_) => {
            lossy = std::borrow::Cow::Owned(valid_lines(bytes, offset, bad)?);
            &lossy
        }
    };
    if i32::try_from(text.len()).is_err() {
        return Err(Error::Internal(format!("{}: a chunk of lines exceeds 2 GiB", file.display())));
    }
    let array = StringArray::from_iter_values([text]);
    RecordBatch::try_new(InputSpec::text_chunks_schema(), vec![Arc::new(array)])
        .map_err(Error::arrow("building a chunk of lines"))
}

fn to_batch(lines: Lines, replace_invalid: bool, bad: &mut BadRows) -> Result<RecordBatch> {
    let lines = match std::str::from_utf8(&lines.values) {
        Ok(_) => lines,
        Err(_) if replace_invalid => replace_invalid_utf8(lines),
        Err(_) => without_invalid_lines(lines, bad)?,
    };
    let Lines { values, offsets, .. } = lines;
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let array = StringArray::try_new(offsets, Buffer::from_vec(values), None)
        .map_err(|e| Error::Internal(format!("lines checked as UTF-8 are not: {e}")))?;
    RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(array)])
        .map_err(Error::arrow("building a batch of lines"))
}

/// `lines` with each invalid UTF-8 sequence replaced by U+FFFD.
fn replace_invalid_utf8(lines: Lines) -> Lines {
    let mut replaced = Lines { values: Vec::with_capacity(lines.values.len()), ..Lines::empty() };
    for i in 0..lines.offsets.len() - 1 {
        // Replacement only grows a line by a few bytes per invalid byte: well within i32.
        let _ = replaced.push_line(String::from_utf8_lossy(lines.line(i)).as_bytes());
    }
    Lines { bytes: lines.bytes, file_offset: lines.file_offset, ..replaced }
}

/// `lines` without those that are not UTF-8, each handed to `bad` (which fails on the
/// first when it allows none).
fn without_invalid_lines<'a>(lines: Lines<'a>, bad: &mut BadRows) -> Result<Lines<'a>> {
    let mut kept = Lines { values: Vec::with_capacity(lines.values.len()), ..Lines::empty() };
    let mut at = 0;
    for i in 0..lines.offsets.len() - 1 {
        let line = lines.line(i);
        let offset = lines.file_offset + at as u64;
        // The line's terminator in the raw bytes: `\n`, `\r\n`, or none at the end of the file.
        at += line.len();
        at += match &lines.bytes[at.min(lines.bytes.len())..] {
            [b'\r', b'\n', ..] => 2,
            [b'\n', ..] => 1,
            _ => 0,
        };
        match std::str::from_utf8(line) {
            Ok(_) => {
                kept.push_line(line).map_err(|_| Error::Internal("a batch of lines exceeds 2 GiB".into()))?
            }
            Err(e) => bad.invalid_utf8(offset, offset + e.valid_up_to() as u64, line)?,
        }
    }
    Ok(Lines { bytes: lines.bytes, file_offset: lines.file_offset, ..kept })
}

/// The lines of `bytes` (whole lines from `offset`, terminators kept) that are UTF-8; the
/// others are handed to `bad` (which fails on the first when it allows none).
fn valid_lines(bytes: &[u8], offset: u64, bad: &mut BadRows) -> Result<String> {
    let mut kept = String::with_capacity(bytes.len());
    let mut at = offset;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(text) => kept.push_str(text),
            Err(e) => bad.invalid_utf8(at, at + e.valid_up_to() as u64, line)?,
        }
        at += line.len() as u64;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn local_files_are_read_whole_across_chunks_and_split_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        // Lines of 0..=300 bytes, some \r\n-terminated, over more than two chunks.
        let mut data = Vec::new();
        let mut expected = Vec::new();
        for i in 0..60_000usize {
            let line: Vec<u8> = (0..(i * 7919) % 301).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            data.extend_from_slice(&line);
            data.extend_from_slice(if i % 5 == 0 { b"\r\n" } else { b"\n" });
            expected.push(String::from_utf8(line).unwrap());
        }
        assert!(data.len() as u64 > 2 * CHUNK_BYTES);
        std::fs::write(&path, &data).unwrap();
        let location = crate::storage::Location::parse(path.to_str().unwrap()).unwrap();
        assert!(location.local_file().is_some());
        let file = Arc::new(InputFile::new(location, data.len() as u64));
        let io = tokio::runtime::Runtime::new().unwrap();
        let shapes = [TextShape::Lines, TextShape::Chunks];
        for (split_size, shape) in
            [CHUNK_BYTES / 3, CHUNK_BYTES, 3 * CHUNK_BYTES].into_iter().flat_map(|s| shapes.map(|h| (s, h)))
        {
            let mut lines = Vec::new();
            for split in plan(&file, split_size, shape, None) {
                split
                    .read(io.handle(), ReadOptions::default(), &BadRecords::new(0), &mut |batch| {
                        assert_eq!(InputSpec::is_text_chunks(&batch), shape == TextShape::Chunks);
                        let column = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                        for value in column.iter().map(Option::unwrap) {
                            match shape {
                                TextShape::Lines => lines.push(value.to_owned()),
                                TextShape::Chunks => lines.extend(value.lines().map(str::to_owned)),
                            }
                        }
                        Ok(true)
                    })
                    .unwrap();
            }
            assert!(
                lines == expected,
                "split size {split_size}, {shape:?}: {} lines of {}",
                lines.len(),
                expected.len()
            );
        }
    }

    #[test]
    fn lines_that_are_not_utf8_are_skipped_and_kept_or_fail_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let data = b"ok\ncaf\xe9\r\nfine\n\xff\nlast";
        std::fs::write(&path, data).unwrap();
        let location = crate::storage::Location::parse(path.to_str().unwrap()).unwrap();
        let file = Arc::new(InputFile { location, size: data.len() as u64, partitions: Vec::new() });
        let io = tokio::runtime::Runtime::new().unwrap();
        for shape in [TextShape::Lines, TextShape::Chunks] {
            for split_size in [1, 4, 100] {
                let (bad, mut lines) = (BadRecords::new(2), Vec::new());
                for split in plan(&file, split_size, shape, None) {
                    split
                        .read(io.handle(), ReadOptions::default(), &bad, &mut |batch| {
                            let column = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                            lines.extend(column.iter().flat_map(|v| v.unwrap().lines().map(str::to_owned)));
                            Ok(true)
                        })
                        .unwrap();
                }
                assert_eq!(lines, ["ok", "fine", "last"], "{shape:?}, split size {split_size}");
                let kept: Vec<_> = bad.take().into_iter().map(|r| (r.line, r.offset, r.text)).collect();
                assert_eq!(
                    kept,
                    [(Some(2), 3, "caf\u{fffd}".to_owned()), (Some(4), 14, "\u{fffd}".to_owned())]
                );
            }
            let split = plan(&file, 100, shape, None).next().unwrap();
            let error =
                split.read(io.handle(), ReadOptions::default(), &BadRecords::new(0), &mut |_| Ok(true));
            let message = error.unwrap_err().to_string();
            assert!(message.contains("invalid UTF-8 at byte offset 6 (line 2)"), "{message}");
        }
    }

    /// Splits `data` at `cuts` and reads every split by pushing it in `chunk`-byte pieces.
    fn read_all(data: &[u8], split: usize, chunk: usize) -> Vec<Vec<u8>> {
        let lines = read_all_shaped(data, split, chunk, TextShape::Lines);
        let from_chunks = read_all_shaped(data, split, chunk, TextShape::Chunks);
        assert_eq!(from_chunks, lines, "chunks of lines hold the same lines");
        lines
    }

    fn read_all_shaped(data: &[u8], split: usize, chunk: usize, shape: TextShape) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let size = data.len() as u64;
        for start in (0..data.len()).step_by(split) {
            let end = (start + split).min(data.len()) as u64;
            let mut scan = LineScanner::new(start as u64, end);
            let mut offset = (start as u64).saturating_sub(1);
            while !scan.done && offset < size {
                let stop = (offset + chunk as u64).min(size);
                let eof = stop == size;
                scan.buffer().extend_from_slice(&data[offset as usize..stop as usize]);
                if shape == TextShape::Chunks {
                    let (bytes, at) = scan.scan_chunk(eof);
                    let whole = bytes.ends_with(b"\n") || at + bytes.len() as u64 == size;
                    assert!(bytes.is_empty() || whole, "a chunk ends at a line's end: {bytes:?}");
                    out.extend(String::from_utf8_lossy(bytes).lines().map(|l| l.as_bytes().to_vec()));
                } else {
                    let lines = scan.scan(eof).unwrap();
                    out.extend((0..lines.offsets.len() - 1).map(|i| lines.line(i).to_vec()));
                }
                offset = stop;
            }
        }
        out
    }

    fn reference(data: &[u8]) -> Vec<Vec<u8>> {
        // str::lines on bytes: split on \n, strip one \r before it, no empty last line.
        let text = String::from_utf8_lossy(data);
        assert_eq!(text.len(), data.len(), "tests use valid UTF-8");
        text.lines().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn edge_cases() {
        for data in [
            &b""[..],
            b"\n",
            b"a",
            b"a\n",
            b"a\r\nb\r\n",
            b"\n\n\nx",
            b"one line without newline",
            b"a\rb\n\r\n\r",
            b"long line ........................................ end\nshort\n",
        ] {
            for split in [1, 2, 3, 7, 100] {
                for chunk in [1, 2, 5, 64] {
                    assert_eq!(
                        read_all(data, split, chunk),
                        reference(data),
                        "{data:?} split {split} chunk {chunk}"
                    );
                }
            }
        }
    }

    proptest! {
        /// Every line is read exactly once, whatever the split and chunk sizes.
        #[test]
        fn every_line_exactly_once(
            data in prop::collection::vec(prop::sample::select(vec![b'a', b'b', b' ', b'\n', b'\r']), 0..300),
            split in 1usize..50,
            chunk in 1usize..20,
        ) {
            prop_assert_eq!(read_all(&data, split, chunk), reference(&data));
        }
    }
}
