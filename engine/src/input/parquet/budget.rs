//! What decoding a Parquet split holds, counted against the task's memory (issue #23).
//!
//! The async reader fetches every column chunk a row group reads in one go and holds them
//! until the row group is decoded: a row group of 256,000 rows of a join's input held
//! about 10 MiB per thread, outside `--memory-limit`. A split whose row groups fit the
//! decoder's share of the task's memory is still read that way (fewest requests); one
//! whose largest row group does not is read page by page instead (the sync reader over
//! [`PagedChunks`]), holding one page of each column at a time. A local file's pages are
//! read on the decoding thread itself: read on the I/O runtime's blocking threads, each
//! page was allocated in another thread's allocator heap, and the join at 16 MiB peaked
//! at 107 MiB of anonymous memory instead of 77.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};
use tokio::runtime::Handle;

use crate::storage::{InputFile, ObjectReader};

/// Bytes the header reader fetches first; it fetches twice as many each time it runs
/// out (a page header with large statistics).
const HEADER_BLOCK: usize = 8 << 10;

/// Compressed bytes of the column chunks of `row_group` that `mask` selects: what the
/// async reader fetches and holds to decode it.
pub(super) fn chunk_bytes(metadata: &ParquetMetaData, row_group: usize, mask: &ProjectionMask) -> u64 {
    let columns = metadata.row_group(row_group).columns().iter().enumerate();
    columns
        .filter(|(leaf, _)| mask.leaf_included(*leaf))
        .map(|(_, c)| c.compressed_size().max(0) as u64)
        .sum()
}

/// How a split's row groups are fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fetch {
    /// Each row group's column chunks at once: they fit the decoder's budget.
    Whole,
    /// Page by page: the largest row group's chunks would exceed the budget.
    Paged,
}

/// Reserves the largest of `row_groups`' chunk bytes (projected columns only) from
/// `budget`: whole if it fits, page by page otherwise.
pub(super) fn fetch_within(
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    mask: &ProjectionMask,
    budget: u64,
) -> Fetch {
    let largest = row_groups.iter().map(|&g| chunk_bytes(metadata, g, mask)).max().unwrap_or(0);
    if largest <= budget { Fetch::Whole } else { Fetch::Paged }
}

/// A Parquet file read by the sync reader one page (or page header) at a time, each
/// fetch a ranged read of the store run on the I/O runtime.
#[derive(Clone)]
pub(super) struct PagedChunks {
    /// The file, when it is local: read with positioned reads on the calling thread.
    local: Option<Arc<File>>,
    reader: ObjectReader,
    size: u64,
    io: Handle,
    /// The largest single fetch so far (what the reader held of the file at once).
    largest: Arc<AtomicU64>,
    /// The first failed fetch's error: the sync reader passes errors on as text only, and
    /// a store's error (retryable) must not read as a corrupt file.
    failed: Arc<Mutex<Option<parquet::errors::ParquetError>>>,
}

impl PagedChunks {
    pub(super) fn new(file: &InputFile, io: Handle) -> Self {
        let local = file.location.local_file().and_then(|path| File::open(path).ok()).map(Arc::new);
        let reader = ObjectReader::new(file.location.clone(), file.size);
        PagedChunks { local, reader, size: file.size, io, largest: Arc::default(), failed: Arc::default() }
    }

    /// The error of the first fetch that failed, if one did (once).
    pub(super) fn failure(&self) -> Option<parquet::errors::ParquetError> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The largest single fetch so far, shared with the reader's clones.
    #[cfg(test)]
    pub(super) fn largest_fetch(&self) -> Arc<AtomicU64> {
        self.largest.clone()
    }

    fn fetch(&self, start: u64, end: u64) -> parquet::errors::Result<Bytes> {
        self.largest.fetch_max(end - start, Relaxed);
        let fetched = match &self.local {
            Some(file) => read_at(file, start, end),
            None => self.io.block_on(self.reader.clone().get_bytes(start..end)),
        };
        fetched.map_err(|error| {
            let text = parquet::errors::ParquetError::General(error.to_string());
            self.failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
            text
        })
    }
}

/// Bytes `start..end` of a local file, counted as a storage GET; a failure is a read
/// error (as the object store's would be), not a corrupt file.
fn read_at(file: &File, start: u64, end: u64) -> parquet::errors::Result<Bytes> {
    let mut buffer = vec![0; (end - start) as usize];
    file.read_exact_at(&mut buffer, start).map_err(|source| {
        let error = object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(source) };
        parquet::errors::ParquetError::External(Box::new(error))
    })?;
    crate::storage::count_local_read(&(start..end));
    Ok(Bytes::from(buffer))
}

impl Length for PagedChunks {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for PagedChunks {
    type T = HeaderRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<HeaderRead> {
        Ok(HeaderRead { chunks: self.clone(), next: start, block: HEADER_BLOCK, buffered: Bytes::new() })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start + length as u64;
        if end > self.size {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "bytes {start}..{end} are past the end of the file ({} bytes)",
                self.size
            )));
        }
        self.fetch(start, end)
    }
}

/// Reads a page header from `next` on, fetching growing blocks as it goes.
pub(super) struct HeaderRead {
    chunks: PagedChunks,
    next: u64,
    block: usize,
    buffered: Bytes,
}

impl Read for HeaderRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buffered.is_empty() {
            let end = self.chunks.size.min(self.next + self.block as u64);
            if end <= self.next {
                return Ok(0);
            }
            self.buffered = self.chunks.fetch(self.next, end).map_err(std::io::Error::other)?;
            self.next = end;
            self.block = self.block.saturating_mul(2);
        }
        let n = out.len().min(self.buffered.len());
        out[..n].copy_from_slice(&self.buffered.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::input::InputSpec;

    /// Two row groups of 4,000 rows (`n`, a padded `s`, `x`), pages of at most 2 KiB.
    fn write_file(path: &std::path::Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
            Field::new("x", DataType::Int64, false),
        ]));
        let n: Vec<i64> = (0..8000).collect();
        let s: Vec<String> = n.iter().map(|i| format!("row {i}{}", "-".repeat(40))).collect();
        let x: Vec<i64> = n.iter().map(|i| i * 7).collect();
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(Int64Array::from(n)),
            Arc::new(StringArray::from(s)),
            Arc::new(Int64Array::from(x)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(4000))
            .set_dictionary_enabled(false)
            .set_data_page_size_limit(2048)
            .set_write_batch_size(64)
            .build();
        super::super::tests::write_batch(path, &batch, props);
    }

    /// The split of the whole test file under `spec`, and a runtime to read it with.
    fn split(spec: &InputSpec) -> (tempfile::TempDir, tokio::runtime::Runtime, super::super::ParquetSplit) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_file(&path);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let files = runtime
            .block_on(crate::storage::resolve_inputs(&[path.display().to_string()], &Default::default()))
            .unwrap();
        let mut splits =
            runtime.block_on(super::super::plan(&Arc::new(files[0].clone()), spec, 1 << 30)).unwrap();
        (dir, runtime, splits.remove(0))
    }

    fn values(split: &super::super::ParquetSplit, io: &Handle, budget: u64) -> Vec<(String, i64)> {
        let mut rows = Vec::new();
        let mut sink = |b: RecordBatch| {
            let (s, x) = (b.column(0).as_string::<i32>(), b.column(1).as_primitive::<Int64Type>());
            rows.extend(s.iter().zip(x.values()).map(|(s, x)| (s.unwrap().to_owned(), *x)));
            Ok(true)
        };
        split.read_within(io, budget, &mut sink).unwrap();
        rows
    }

    #[test]
    fn a_row_group_is_reserved_by_its_projected_chunks_and_read_page_by_page_past_the_budget() {
        let spec =
            InputSpec::text_lines().with_parquet_columns([("s", DataType::Utf8), ("x", DataType::Int64)]);
        let (_dir, runtime, split) = split(&spec);
        let file = split.metadata.metadata();
        let mask = split.mask();
        let column = |g: usize, c: usize| file.row_group(g).column(c).compressed_size() as u64;
        // Only the projected columns count: `s` and `x`, not `n`.
        assert_eq!(chunk_bytes(file, 0, &mask), column(0, 1) + column(0, 2));
        assert_eq!(chunk_bytes(file, 1, &ProjectionMask::all()), file.row_group(1).compressed_size() as u64);
        let largest = chunk_bytes(file, 0, &mask).max(chunk_bytes(file, 1, &mask));
        assert!(largest > 100 << 10, "the row groups are large: {largest}");
        assert_eq!(fetch_within(file, &[0, 1], &mask, largest), Fetch::Whole);
        assert_eq!(fetch_within(file, &[0, 1], &mask, largest - 1), Fetch::Paged);

        // Page by page, the reader holds a page (or a header block) at a time, not a chunk.
        let chunks = PagedChunks::new(&split.file, runtime.handle().clone());
        let held = chunks.largest_fetch();
        let reader = split
            .configure(ParquetRecordBatchReaderBuilder::new_with_metadata(chunks, split.metadata.clone()));
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 8000);
        let held = held.load(Relaxed);
        assert!(held > 0 && held <= 16 << 10, "largest fetch {held} bytes, chunks of {largest}");

        // Both ways read the same rows.
        let whole = values(&split, runtime.handle(), u64::MAX);
        assert_eq!(whole.len(), 8000);
        assert_eq!(whole[4321], (format!("row 4321{}", "-".repeat(40)), 4321 * 7));
        assert_eq!(values(&split, runtime.handle(), 0), whole);
    }

    #[test]
    fn a_filtered_split_read_page_by_page_passes_the_same_rows() {
        let filter = crate::input::Predicate::parse("n >= 2500 and n < 4100").unwrap();
        let spec = InputSpec::text_lines()
            .with_parquet_columns([("s", DataType::Utf8), ("x", DataType::Int64)])
            .with_filter(filter);
        let (_dir, runtime, split) = split(&spec);
        let whole = values(&split, runtime.handle(), u64::MAX);
        let expected: Vec<i64> = (2500..4100).map(|n| n * 7).collect();
        assert_eq!(whole.iter().map(|(_, x)| *x).collect::<Vec<_>>(), expected);
        assert_eq!(values(&split, runtime.handle(), 0), whole);
    }
}
