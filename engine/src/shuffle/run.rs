//! Sorted runs: one map flush's rows of one partition, in memory or spilled to disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::gather::SortedRows;
use super::spill::{SPILL_BATCH_ROWS, SpillDir, SpillFile, SpilledRunReader};
use crate::error::Result;

/// A sorted run of one partition.
#[derive(Clone, Debug)]
pub enum Run {
    /// Held in memory.
    Memory(RecordBatch),
    /// Held in memory as a flush's batches and the numbers of the run's rows, copied in
    /// sorted order as they are read.
    Sorted(Arc<SortedRows>),
    /// Partition `partition` of a spill file.
    Spilled {
        /// The file.
        file: Arc<SpillFile>,
        /// The partition.
        partition: usize,
    },
    /// An IPC stream in a file: a map output's partition, or a fetched copy of one.
    Segment {
        /// The file.
        path: Arc<std::path::PathBuf>,
        /// Where the stream starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

/// How much larger than its file a fetched map output segment is estimated to be in
/// memory: segments are LZ4-compressed Arrow IPC.
const SEGMENT_EXPANSION: u64 = 3;

impl Run {
    /// The run's size in memory: exact for runs in memory or spilled here, estimated for
    /// fetched segments (their file size times `SEGMENT_EXPANSION`).
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Run::Memory(batch) => batch.get_array_memory_size() as u64,
            Run::Sorted(rows) => rows.memory_bytes(),
            Run::Spilled { file, partition } => file.memory_bytes(*partition),
            Run::Segment { len, .. } => len.saturating_mul(SEGMENT_EXPANSION),
        }
    }

    /// Opens the run for reading, batch by batch.
    pub fn open(self) -> Result<RunReader> {
        Ok(match self {
            Run::Memory(batch) => RunReader::Memory(Some(batch)),
            Run::Sorted(run) => RunReader::Sorted { run, next: 0 },
            Run::Spilled { file, partition } => RunReader::Spilled(Box::new(file.open(partition)?)),
            Run::Segment { path, offset, len } => {
                RunReader::Segment(Box::new(super::map_file::open_segment(&path, offset, len)?))
            }
        })
    }
}

/// Rows copied at once from a [`Run::Sorted`]: what a merge holds per run, as it holds a
/// spilled run's batch.
pub const SORTED_READ_ROWS: usize = SPILL_BATCH_ROWS;

/// Reads a run batch by batch.
pub enum RunReader {
    /// The whole run, until taken.
    Memory(Option<RecordBatch>),
    /// A run gathered [`SORTED_READ_ROWS`] rows at a time; `next` is the next row to read.
    Sorted {
        /// The run.
        run: Arc<SortedRows>,
        /// Its next row.
        next: usize,
    },
    /// A spilled run.
    Spilled(Box<SpilledRunReader>),
    /// An IPC stream in a file.
    Segment(Box<super::map_file::SegmentReader>),
}

impl RunReader {
    /// The next batch of the run, or `None` at its end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            RunReader::Memory(batch) => Ok(batch.take()),
            RunReader::Sorted { run, next } => {
                if *next == run.num_rows() {
                    return Ok(None);
                }
                let end = run.num_rows().min(*next + SORTED_READ_ROWS);
                let batch = run.gather(*next..end)?;
                *next = end;
                Ok(Some(batch))
            }
            RunReader::Spilled(reader) => reader.next_batch(),
            RunReader::Segment(reader) => reader.next_batch(),
        }
    }
}

/// Where map tasks put their runs: in memory while the budget lasts, then on disk.
#[derive(Debug)]
pub struct RunStore {
    spill: Arc<SpillDir>,
    memory_limit: u64,
    in_memory: AtomicU64,
}

impl RunStore {
    /// A store keeping at most `memory_limit` bytes of runs in memory, spilling into `spill`.
    pub fn new(spill: Arc<SpillDir>, memory_limit: u64) -> Self {
        RunStore { spill, memory_limit, in_memory: AtomicU64::new(0) }
    }

    /// Takes the in-memory runs of one flush (`runs[p]` for partition `p`) and keeps them,
    /// or spills them together into one file if they do not fit in memory.
    pub fn accept(&self, schema: &SchemaRef, runs: Vec<Option<Run>>) -> Result<Vec<Option<Run>>> {
        let bytes: u64 = runs.iter().flatten().map(Run::memory_bytes).sum();
        let fits = self
            .in_memory
            .fetch_update(Relaxed, Relaxed, |used| {
                (used + bytes <= self.memory_limit).then_some(used + bytes)
            })
            .is_ok();
        if fits {
            return Ok(runs);
        }
        let file = Arc::new(self.spill.write(schema, &runs)?);
        Ok((0..runs.len())
            .map(|p| file.has_partition(p).then(|| Run::Spilled { file: file.clone(), partition: p }))
            .collect())
    }

    /// Bytes spilled so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.spilled_bytes()
    }
}
