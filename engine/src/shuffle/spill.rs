//! Spilling sorted runs to local disk as Arrow IPC files, and reading them back.
//!
//! One map-side flush that does not fit in memory becomes one spill file holding every
//! partition's run, partition after partition, in batches of at most [`SPILL_BATCH_ROWS`]
//! rows; the index of batch ranges per partition stays in memory (Hadoop's spill + index).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};

use super::compact_views;
use crate::error::{Error, Result};
use crate::ids::JobId;

/// Rows per batch in spill files: what the reduce-side merge holds per run.
pub const SPILL_BATCH_ROWS: usize = 8 * 1024;

/// A sorted run as a spill file sees it: its batches in order, and the memory it held.
///
/// Implemented by [`Run`](super::Run), which reads spill files back
/// ([`SpilledRunReader`]); spill files are written through this trait so that `spill` does
/// not name the run types built on it.
pub trait BatchSource {
    /// Bytes the run holds in memory, kept in the spill file's index for the run read back.
    fn memory_bytes(&self) -> u64;

    /// Reads the run from its start: each call of the returned function gives its next
    /// batch, `None` at its end.
    fn batches(&self) -> Result<impl FnMut() -> Result<Option<RecordBatch>>>;
}

/// A job's spill directory, removed with everything in it when dropped (success or not).
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    next_file: AtomicU64,
    spilled_bytes: AtomicU64,
}

impl SpillDir {
    /// Creates `<parent>/gristmill-<job id>`.
    pub fn create(parent: &Path, job: &JobId) -> Result<Self> {
        let path = parent.join(format!("gristmill-{job}"));
        std::fs::create_dir_all(&path).map_err(|e| Error::Spill {
            path: parent.display().to_string(),
            cause: format!("the spill directory is not writable (cannot create {}): {e}", path.display()),
        })?;
        let probe = path.join(".probe");
        std::fs::write(&probe, b"").and_then(|_| std::fs::remove_file(&probe)).map_err(|e| {
            let _ = std::fs::remove_dir_all(&path);
            Error::Spill {
                path: parent.display().to_string(),
                cause: format!("the spill directory is not writable: {e}"),
            }
        })?;
        Ok(SpillDir { path, next_file: AtomicU64::new(0), spilled_bytes: AtomicU64::new(0) })
    }

    /// `<parent>/gristmill-<job id>`, made with its first spill file: a cluster attempt,
    /// whose worker made `parent` for it, mostly spills nothing, and a directory (and the
    /// probe file of [`SpillDir::create`]) costs more than a tiny attempt's work on some
    /// file systems.
    pub fn lazy(parent: &Path, job: &JobId) -> Self {
        let path = parent.join(format!("gristmill-{job}"));
        SpillDir { path, next_file: AtomicU64::new(0), spilled_bytes: AtomicU64::new(0) }
    }

    /// Where spill files go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written to spill files so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes.load(Relaxed)
    }

    /// Writes the in-memory runs of one flush (`runs[p]` for partition `p`) to a new spill
    /// file. The file keeps the directory alive: it is removed when the last run in it is
    /// dropped.
    pub fn write<R: BatchSource>(
        self: &Arc<Self>,
        schema: &SchemaRef,
        runs: &[Option<R>],
    ) -> Result<SpillFile> {
        let sample = match runs.iter().flatten().next() {
            Some(run) => run.batches()?()?,
            None => None,
        };
        let options = match &sample {
            Some(sample) => super::ipc_write_options_for(sample)?,
            None => super::ipc_write_options()?,
        };
        let mut writer = SpillWriter::create(self, schema, options)?;
        for run in runs {
            if let Some(run) = run {
                let mut next = run.batches()?;
                while let Some(batch) = next()? {
                    writer.write(&batch)?;
                }
            }
            writer.end_partition(run.as_ref().map_or(0, R::memory_bytes));
        }
        writer.finish()
    }

    /// Writes one sorted run, read batch by batch from `next` (a merge of runs whose
    /// in-memory size was `memory_bytes`), to a new spill file as its partition 0.
    pub fn write_run(
        self: &Arc<Self>,
        schema: &SchemaRef,
        memory_bytes: u64,
        mut next: impl FnMut() -> Result<Option<RecordBatch>>,
    ) -> Result<SpillFile> {
        let first = next()?;
        let options = match &first {
            Some(sample) => super::ipc_write_options_for(sample)?,
            None => super::ipc_write_options()?,
        };
        let mut writer = SpillWriter::create(self, schema, options)?;
        let mut batch = first;
        while let Some(rows) = batch {
            writer.write(&rows)?;
            batch = next()?;
        }
        writer.end_partition(memory_bytes);
        writer.finish()
    }
}

/// Bytes a batch of a spill file holds at most (unless one row is larger): what a merge
/// reading the file holds per run, so fewer than [`SPILL_BATCH_ROWS`] rows when rows are
/// wide (TeraSort's 100-byte records: 2,600 rows).
pub const SPILL_BATCH_BYTES: usize = 256 << 10;

/// Rows per batch of a shuffle file for batches like `batch`: [`SPILL_BATCH_ROWS`], fewer
/// when that many would be over [`SPILL_BATCH_BYTES`].
pub(crate) fn batch_rows_like(batch: &RecordBatch) -> usize {
    let rows = batch.num_rows().max(1);
    let row_bytes = (batch.get_array_memory_size() / rows).max(1);
    (SPILL_BATCH_BYTES / row_bytes).clamp(1, SPILL_BATCH_ROWS)
}

/// A spill file being written: batches of at most [`batch_rows_like`] rows, partition
/// after partition.
struct SpillWriter {
    dir: Arc<SpillDir>,
    path: PathBuf,
    writer: FileWriter<BufWriter<File>>,
    /// Batch ranges of the partitions ended so far.
    partitions: Vec<Range<usize>>,
    memory_bytes: Vec<u64>,
    batches: usize,
}

impl SpillWriter {
    fn create(dir: &Arc<SpillDir>, schema: &SchemaRef, options: IpcWriteOptions) -> Result<Self> {
        let n = dir.next_file.fetch_add(1, Relaxed);
        let path = dir.path.join(format!("run-{n:06}.arrow"));
        let file = match File::create(&path) {
            // A lazy directory's first spill file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir.path).and_then(|()| File::create(&path))
            }
            created => created,
        };
        let file = file.map_err(|e| io_failed(&path, e))?;
        let sink = BufWriter::with_capacity(SPILL_BUFFER_BYTES, file);
        let writer = FileWriter::try_new_with_options(sink, schema, options).map_err(|e| failed(&path, e))?;
        Ok(SpillWriter {
            dir: dir.clone(),
            path,
            writer,
            partitions: Vec::new(),
            memory_bytes: Vec::new(),
            batches: 0,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let step = batch_rows_like(batch);
        for offset in (0..batch.num_rows()).step_by(step) {
            let len = step.min(batch.num_rows() - offset);
            let slice = compact_views(&batch.slice(offset, len))?;
            self.writer.write(&slice).map_err(|e| failed(&self.path, e))?;
            self.batches += 1;
        }
        Ok(())
    }

    /// Ends the current partition, whose run held `memory_bytes` in memory.
    fn end_partition(&mut self, memory_bytes: u64) {
        let start = self.partitions.last().map_or(0, |p| p.end);
        self.partitions.push(start..self.batches);
        self.memory_bytes.push(memory_bytes);
    }

    fn finish(mut self) -> Result<SpillFile> {
        let path = self.path;
        self.writer.finish().map_err(|e| failed(&path, e))?;
        let inner = self.writer.into_inner().map_err(|e| failed(&path, e))?;
        let file = inner.into_inner().map_err(|e| io_failed(&path, e.into_error()))?;
        file.sync_data().ok();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.dir.spilled_bytes.fetch_add(bytes, Relaxed);
        Ok(SpillFile { path, partitions: self.partitions, memory_bytes: self.memory_bytes, _dir: self.dir })
    }
}

/// Buffers of a spill file being written or read: small, for a merge reads many at once
/// and IPC reads a batch's message whole (past the buffer) anyway.
pub(super) const SPILL_BUFFER_BYTES: usize = 64 << 10;

/// A full disk is told apart: it is this task's own failure (see `Error::DiskFull`).
fn io_failed(path: &Path, e: std::io::Error) -> Error {
    Error::local_disk(path.display().to_string(), e)
}

fn failed(path: &Path, e: arrow::error::ArrowError) -> Error {
    match e {
        arrow::error::ArrowError::IoError(_, e) => io_failed(path, e),
        e => Error::Spill { path: path.display().to_string(), cause: e.to_string() },
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the spill directory");
        }
    }
}

/// One spill file: the batch range of each partition's run.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    partitions: Vec<Range<usize>>,
    /// The in-memory size of each partition's run before it was written.
    memory_bytes: Vec<u64>,
    _dir: Arc<SpillDir>,
}

impl SpillFile {
    /// True when partition `p` has rows in this file.
    pub fn has_partition(&self, p: usize) -> bool {
        !self.partitions[p].is_empty()
    }

    /// The in-memory size partition `p`'s run had before it was written.
    pub fn memory_bytes(&self, p: usize) -> u64 {
        self.memory_bytes[p]
    }

    /// Opens partition `p`'s run for reading.
    pub fn open(&self, p: usize) -> Result<SpilledRunReader> {
        let fail = |cause: String| Error::Spill { path: self.path.display().to_string(), cause };
        let file = File::open(&self.path).map_err(|e| fail(e.to_string()))?;
        let reader = FileReader::try_new(BufReader::with_capacity(SPILL_BUFFER_BYTES, file), None)
            .map_err(|e| fail(e.to_string()))?;
        Ok(SpilledRunReader { reader, batches: self.partitions[p].clone(), path: self.path.clone() })
    }
}

/// Reads one partition's run from a spill file, a batch at a time.
pub struct SpilledRunReader {
    reader: FileReader<BufReader<File>>,
    batches: Range<usize>,
    path: PathBuf,
}

impl SpilledRunReader {
    /// The next batch of the run, or `None` at its end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(index) = self.batches.next() else { return Ok(None) };
        let fail = |cause: String| Error::Spill { path: self.path.display().to_string(), cause };
        self.reader.set_index(index).map_err(|e| fail(e.to_string()))?;
        match self.reader.next() {
            Some(batch) => batch.map(Some).map_err(|e| fail(e.to_string())),
            None => Err(fail(format!("batch {index} is missing"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, UInt64Array, new_null_array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    impl BatchSource for RecordBatch {
        fn memory_bytes(&self) -> u64 {
            self.get_array_memory_size() as u64
        }

        fn batches(&self) -> Result<impl FnMut() -> Result<Option<RecordBatch>>> {
            let mut batch = Some(self.clone());
            Ok(move || Ok(batch.take()))
        }
    }

    #[test]
    fn a_null_padded_run_spills_compressed_and_reads_back_equal() {
        // A join's map output: a key, then the other side's columns, all null.
        let rows = 50_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::UInt64, false),
            Field::new("comment", DataType::Utf8View, true),
            Field::new("price", DataType::Decimal128(15, 2), true),
        ]));
        let key = Arc::new(UInt64Array::from_iter_values(0..rows as u64));
        let nulls =
            [new_null_array(&DataType::Utf8View, rows), new_null_array(&DataType::Decimal128(15, 2), rows)];
        let run =
            RecordBatch::try_new(schema.clone(), vec![key, nulls[0].clone(), nulls[1].clone()]).unwrap();
        let in_memory: usize = run.columns().iter().map(|c| c.get_array_memory_size()).sum();

        let scratch = tempfile::tempdir().unwrap();
        let dir = Arc::new(SpillDir::create(scratch.path(), &JobId::generate()).unwrap());
        let file = dir.write(&schema, &[Some(run.clone())]).unwrap();
        assert!(
            dir.spilled_bytes() < in_memory as u64 / 4,
            "spilled {} bytes of a {in_memory}-byte run",
            dir.spilled_bytes()
        );
        let mut reader = file.open(0).unwrap();
        let mut back = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            back.push(batch);
        }
        assert_eq!(arrow::compute::concat_batches(&schema, &back).unwrap(), run);
    }

    #[test]
    fn a_lazy_spill_directory_appears_with_its_first_file_and_goes_when_dropped() {
        let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::UInt64, false)]));
        let run =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![3, 1, 2]))]).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let dir = Arc::new(SpillDir::lazy(scratch.path(), &JobId::generate()));
        assert!(!dir.path().exists(), "nothing made before a spill");
        let file = dir.write(&schema, &[Some(run.clone())]).unwrap();
        assert!(dir.path().is_dir());
        let mut reader = file.open(0).unwrap();
        assert_eq!(reader.next_batch().unwrap(), Some(run));
        let path = dir.path().to_owned();
        drop((reader, file, dir));
        assert!(!path.exists());
        drop(Arc::new(SpillDir::lazy(scratch.path(), &JobId::generate())));
    }
}
