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
use crate::error::{Error, Result};
use crate::job::InputSpec;
use crate::storage::InputFile;

/// Bytes fetched per request within a split (also the size of one batch of lines).
const CHUNK_BYTES: u64 = 4 << 20;
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
}

/// Cuts a file into ranges of `split_size` bytes (the last one shorter); none for an empty file.
pub(super) fn plan(file: &Arc<InputFile>, split_size: u64) -> impl Iterator<Item = TextSplit> + '_ {
    let step = split_size.max(1);
    (0..file.size).step_by(step as usize).map(move |start| TextSplit {
        file: file.clone(),
        start,
        end: (start + step).min(file.size),
    })
}

impl TextSplit {
    /// Reads the split's lines as batches of one Utf8 column `line`.
    pub fn read(
        &self,
        io: &Handle,
        options: ReadOptions,
        sink: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<()> {
        let mut source = match self.file.location.local_file() {
            Some(path) => Chunks::Local(LocalChunks::open(self, path)?),
            None => Chunks::Store(Fetcher::new(self, io.clone())),
        };
        let mut scan = LineScanner::new(self.start, self.end);
        loop {
            let Some((offset, bytes)) = source.next()? else { break };
            let eof = offset + bytes.len() as u64 >= self.file.size;
            let lines = scan.push(offset, bytes, eof);
            if !lines.is_empty() && !sink(to_batch(&self.file, &lines, options.replace_invalid_utf8)?)? {
                break;
            }
            if scan.done || eof {
                break;
            }
            source.want_more();
        }
        Ok(())
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
enum Chunks<'a> {
    /// An object store, one request ahead.
    Store(Fetcher<'a>),
    /// A local file, read directly into one reused buffer.
    Local(LocalChunks<'a>),
}

impl Chunks<'_> {
    /// The next range of the file and its bytes.
    fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        match self {
            Chunks::Store(fetcher) => fetcher.next(),
            Chunks::Local(local) => local.next(),
        }
    }

    /// The reader wants the range after the last one.
    fn want_more(&mut self) {
        if let Chunks::Store(fetcher) = self {
            fetcher.request_more();
        }
    }
}

/// Reads a local file's ranges with plain reads into a buffer allocated once per split.
///
/// Not through `object_store`: its local `get_range` allocates and zero-fills a fresh buffer
/// per request, which cost grep 13% of its instructions (and a page fault per page of
/// every 4 MiB chunk) before any byte was read.
struct LocalChunks<'a> {
    split: &'a TextSplit,
    file: std::fs::File,
    plan: RangePlan,
    buffer: Vec<u8>,
}

impl<'a> LocalChunks<'a> {
    fn open(split: &'a TextSplit, path: std::path::PathBuf) -> Result<Self> {
        let file = std::fs::File::open(&path).map_err(|e| local_error(split, e))?;
        let buffer = vec![0; CHUNK_BYTES.min(split.file.size) as usize];
        Ok(LocalChunks { split, file, plan: RangePlan::new(split), buffer })
    }

    fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(range) = self.plan.next() else { return Ok(None) };
        let len = (range.end - range.start) as usize;
        let buffer = &mut self.buffer[..len];
        let read = self.file.seek(SeekFrom::Start(range.start)).and_then(|_| self.file.read_exact(buffer));
        read.map_err(|e| local_error(self.split, e))?;
        crate::storage::count_local_read(&range);
        Ok(Some((range.start, &self.buffer[..len])))
    }
}

fn local_error(split: &TextSplit, e: std::io::Error) -> Error {
    let source = object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) };
    Error::read(split.file.display(), source)
}

/// Fetches consecutive ranges of the file, one request ahead of the reader.
struct Fetcher<'a> {
    split: &'a TextSplit,
    io: Handle,
    plan: RangePlan,
    pending: Option<(u64, JoinHandle<object_store::Result<Bytes>>)>,
    /// The range handed out last.
    current: Bytes,
}

impl<'a> Fetcher<'a> {
    fn new(split: &'a TextSplit, io: Handle) -> Self {
        let mut fetcher =
            Fetcher { split, io, plan: RangePlan::new(split), pending: None, current: Bytes::new() };
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
        let start = range.start;
        self.pending = Some((start, self.io.spawn(async move { store.get_range(&path, range).await })));
    }

    /// The next range in file order, and starts fetching the one after it.
    fn next(&mut self) -> Result<Option<(u64, &[u8])>> {
        let Some((offset, handle)) = self.pending.take() else { return Ok(None) };
        let path = self.split.file.display();
        self.current = self
            .io
            .block_on(handle)
            .map_err(|e| Error::Internal(format!("fetch task of {path} failed: {e}")))?
            .map_err(|source| Error::read(path, source))?;
        if self.plan.within_split() {
            self.request_more();
        }
        Ok(Some((offset, &self.current)))
    }
}

/// Finds the lines that start in `start..end` in consecutive ranges of a file.
#[derive(Debug)]
struct LineScanner {
    end: u64,
    /// Bytes of a line that began in an earlier range and has not ended yet.
    partial: Vec<u8>,
    /// File offset of `partial[0]`, or of the next byte when `partial` is empty.
    partial_offset: u64,
    /// Still looking for the end of the line that straddles `start`.
    skipping: bool,
    done: bool,
}

/// Complete lines found in one pushed range: their bytes (terminators included) and the
/// file offset of the first one, with the line boundaries.
#[derive(Debug, Default)]
struct Lines {
    bytes: Vec<u8>,
    file_offset: u64,
    /// Ranges of `bytes` holding each line without its terminator.
    spans: Vec<Range<usize>>,
}

impl Lines {
    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl LineScanner {
    fn new(start: u64, end: u64) -> Self {
        LineScanner {
            end,
            partial: Vec::new(),
            partial_offset: start.saturating_sub(1),
            skipping: start > 0,
            done: false,
        }
    }

    /// Consumes the range of bytes at `offset` (contiguous with the previous one).
    fn push(&mut self, offset: u64, data: &[u8], eof: bool) -> Lines {
        debug_assert_eq!(offset, self.partial_offset + self.partial.len() as u64);
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(data);
        let base = self.partial_offset;
        let mut cursor = 0usize;
        if self.skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(nl) => {
                    cursor = nl + 1;
                    self.skipping = false;
                }
                None => {
                    self.partial_offset = base + buf.len() as u64;
                    self.done = eof;
                    return Lines::default();
                }
            }
        }
        let mut spans = Vec::new();
        let first = cursor;
        loop {
            if base + cursor as u64 >= self.end {
                self.done = true;
                break;
            }
            match memchr::memchr(b'\n', &buf[cursor..]) {
                Some(len) => {
                    let stop = if len > 0 && buf[cursor + len - 1] == b'\r' {
                        cursor + len - 1
                    } else {
                        cursor + len
                    };
                    spans.push(cursor - first..stop - first);
                    cursor += len + 1;
                }
                None if eof => {
                    if cursor < buf.len() {
                        spans.push(cursor - first..buf.len() - first);
                        cursor = buf.len();
                    }
                    self.done = true;
                    break;
                }
                None => break,
            }
        }
        self.partial = buf.split_off(cursor);
        self.partial_offset = base + cursor as u64;
        buf.drain(..first);
        Lines { bytes: buf, file_offset: base + first as u64, spans }
    }
}

fn to_batch(file: &InputFile, lines: &Lines, replace_invalid: bool) -> Result<RecordBatch> {
    let mut values = Vec::with_capacity(lines.bytes.len());
    let mut offsets = Vec::with_capacity(lines.spans.len() + 1);
    offsets.push(0i32);
    for span in &lines.spans {
        let line = &lines.bytes[span.clone()];
        if replace_invalid {
            values.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
        } else {
            values.extend_from_slice(line);
        }
        let end = i32::try_from(values.len())
            .map_err(|_| Error::Internal(format!("{}: a batch of lines exceeds 2 GiB", file.display())))?;
        offsets.push(end);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let array = StringArray::try_new(offsets, Buffer::from_vec(values), None)
        .map_err(|_| invalid_utf8_error(file, lines))?;
    RecordBatch::try_new(InputSpec::text_schema(), vec![Arc::new(array)])
        .map_err(Error::arrow("building a batch of lines"))
}

fn invalid_utf8_error(file: &InputFile, lines: &Lines) -> Error {
    let offset = match std::str::from_utf8(&lines.bytes) {
        Err(e) => lines.file_offset + e.valid_up_to() as u64,
        Ok(_) => lines.file_offset,
    };
    Error::InvalidUtf8 { path: file.display(), offset }
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
        let file = Arc::new(InputFile { location, size: data.len() as u64 });
        let io = tokio::runtime::Runtime::new().unwrap();
        for split_size in [CHUNK_BYTES / 3, CHUNK_BYTES, 3 * CHUNK_BYTES] {
            let mut lines = Vec::new();
            for split in plan(&file, split_size) {
                split
                    .read(io.handle(), ReadOptions::default(), &mut |batch| {
                        let column = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                        lines.extend(column.iter().map(|l| l.unwrap().to_owned()));
                        Ok(true)
                    })
                    .unwrap();
            }
            assert!(
                lines == expected,
                "split size {split_size}: {} lines of {}",
                lines.len(),
                expected.len()
            );
        }
    }

    /// Splits `data` at `cuts` and reads every split by pushing it in `chunk`-byte pieces.
    fn read_all(data: &[u8], split: usize, chunk: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let size = data.len() as u64;
        for start in (0..data.len()).step_by(split) {
            let end = (start + split).min(data.len()) as u64;
            let mut scan = LineScanner::new(start as u64, end);
            let mut offset = (start as u64).saturating_sub(1);
            while !scan.done && offset < size {
                let stop = (offset + chunk as u64).min(size);
                let lines = scan.push(offset, &data[offset as usize..stop as usize], stop == size);
                out.extend(lines.spans.iter().map(|s| lines.bytes[s.clone()].to_vec()));
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
