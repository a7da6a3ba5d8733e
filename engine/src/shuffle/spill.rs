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
use arrow::ipc::writer::FileWriter;

use super::compact_views;
use super::run::{Run, RunReader};
use crate::error::{Error, Result};
use crate::ids::JobId;

/// Rows per batch in spill files: what the reduce-side merge holds per run.
pub const SPILL_BATCH_ROWS: usize = 8 * 1024;

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
    pub fn write(self: &Arc<Self>, schema: &SchemaRef, runs: &[Option<Run>]) -> Result<SpillFile> {
        let n = self.next_file.fetch_add(1, Relaxed);
        let path = self.path.join(format!("run-{n:06}.arrow"));
        // A full disk is told apart: it is this task's own failure (see `Error::DiskFull`).
        let io_fail = |e: std::io::Error| Error::local_disk(path.display().to_string(), e);
        let fail = |e: arrow::error::ArrowError| match e {
            arrow::error::ArrowError::IoError(_, e) => io_fail(e),
            e => Error::Spill { path: path.display().to_string(), cause: e.to_string() },
        };
        let file = File::create(&path).map_err(io_fail)?;
        let sink = BufWriter::with_capacity(1 << 20, file);
        let options = match runs.iter().flatten().next() {
            Some(run) => match run.clone().open()?.next_batch()? {
                Some(sample) => super::ipc_write_options_for(&sample)?,
                None => super::ipc_write_options()?,
            },
            None => super::ipc_write_options()?,
        };
        let mut writer = FileWriter::try_new_with_options(sink, schema, options).map_err(fail)?;
        let mut partitions = Vec::with_capacity(runs.len());
        let mut memory_bytes = Vec::with_capacity(runs.len());
        let mut batches = 0;
        for run in runs {
            let start = batches;
            memory_bytes.push(run.as_ref().map_or(0, Run::memory_bytes));
            let mut reader = match run {
                Some(run) => run.clone().open()?,
                None => RunReader::Memory(None),
            };
            while let Some(run_batch) = reader.next_batch()? {
                for offset in (0..run_batch.num_rows()).step_by(SPILL_BATCH_ROWS) {
                    let len = SPILL_BATCH_ROWS.min(run_batch.num_rows() - offset);
                    let batch = compact_views(&run_batch.slice(offset, len))?;
                    writer.write(&batch).map_err(fail)?;
                    batches += 1;
                }
            }
            partitions.push(start..batches);
        }
        writer.finish().map_err(fail)?;
        let inner = writer.into_inner().map_err(fail)?;
        let file = inner.into_inner().map_err(|e| io_fail(e.into_error()))?;
        file.sync_data().ok();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.spilled_bytes.fetch_add(bytes, Relaxed);
        Ok(SpillFile { path, partitions, memory_bytes, _dir: self.clone() })
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
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
        let reader = FileReader::try_new(BufReader::with_capacity(256 << 10, file), None)
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
        let file = dir.write(&schema, &[Some(Run::Memory(run.clone()))]).unwrap();
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
}
