//! Sorted runs: one map flush's rows of one partition, in memory or spilled to disk.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::gather::SortedRows;
use super::spill::{BatchSource, SPILL_BATCH_ROWS, SpillDir, SpillFile, SpilledRunReader};
use crate::error::Result;
use crate::storage::{Footprint, footprint};

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
        /// Its CRC-32, checked while it is read: map output read in place (a fetched copy
        /// was checked on arrival).
        crc32: Option<u32>,
    },
}

/// How much larger than its file a fetched map output segment is estimated to be in
/// memory: segments are LZ4-compressed Arrow IPC.
const SEGMENT_EXPANSION: u64 = 3;

impl Run {
    /// The run's size in memory: exact for runs in memory or spilled here, estimated for
    /// fetched segments (their file size times `SEGMENT_EXPANSION`).
    pub fn memory_bytes(&self) -> u64 {
        self.footprint().total()
    }

    /// [`Run::memory_bytes`], split into owned memory and pages of mapped input files a run
    /// in memory views. Runs on disk are counted as owned: read, their rows are copies.
    pub fn footprint(&self) -> Footprint {
        let owned = |owned| Footprint { owned, mapped: 0 };
        match self {
            Run::Memory(batch) => footprint(batch),
            Run::Sorted(rows) => rows.footprint(),
            Run::Spilled { file, partition } => owned(file.memory_bytes(*partition)),
            Run::Segment { len, .. } => owned(len.saturating_mul(SEGMENT_EXPANSION)),
        }
    }

    /// Opens the run for reading, batch by batch.
    pub fn open(self) -> Result<RunReader> {
        Ok(match self {
            Run::Memory(batch) => RunReader::Memory(Some(batch)),
            Run::Sorted(run) => RunReader::Sorted { run, next: 0 },
            Run::Spilled { file, partition } => RunReader::Spilled(Box::new(file.open(partition)?)),
            Run::Segment { path, offset, len, crc32 } => {
                RunReader::Segment(Box::new(super::map_file::open_segment(&path, offset, len, crc32)?))
            }
        })
    }
}

impl BatchSource for Run {
    fn memory_bytes(&self) -> u64 {
        Run::memory_bytes(self)
    }

    fn batches(&self) -> Result<impl FnMut() -> Result<Option<RecordBatch>>> {
        let mut reader = self.clone().open()?;
        Ok(move || reader.next_batch())
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

/// How much of the runs a [`RunStore`] keeps in memory.
///
/// Runs whose rows view a mapped input file (`InputSpec::fixed_records_whole`) hold pages
/// of the page cache, not memory of their own. Those pages count against their own
/// budget: were they counted as owned memory, TeraSort would spill records that sit in
/// the page cache anyway; were they not counted at all, an input larger than the page
/// cache would be read back from disk at random by the reduce instead of in order from
/// spill files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunBudget {
    /// Memory the runs allocate.
    pub owned: u64,
    /// Pages of mapped input files the runs view.
    pub mapped: u64,
}

impl RunBudget {
    /// The same limit for both parts: `0` spills every run, `u64::MAX` none.
    pub fn uniform(bytes: u64) -> Self {
        RunBudget { owned: bytes, mapped: bytes }
    }

    fn admits(&self, footprint: Footprint) -> bool {
        footprint.owned <= self.owned && footprint.mapped <= self.mapped
    }
}

/// Where map tasks put their runs: in memory while the budget lasts, then on disk.
#[derive(Debug)]
pub struct RunStore {
    spill: Arc<SpillDir>,
    budget: RunBudget,
    in_memory: Mutex<Footprint>,
}

impl RunStore {
    /// A store keeping runs in memory within `budget`, spilling the rest into `spill`.
    pub fn new(spill: Arc<SpillDir>, budget: RunBudget) -> Self {
        RunStore { spill, budget, in_memory: Mutex::default() }
    }

    /// Takes the in-memory runs of one flush (`runs[p]` for partition `p`) and keeps them,
    /// or spills them together into one file if they do not fit in memory.
    pub fn accept(&self, schema: &SchemaRef, runs: Vec<Option<Run>>) -> Result<Vec<Option<Run>>> {
        let flush: Footprint = runs.iter().flatten().map(Run::footprint).sum();
        let fits = {
            let mut used = self.in_memory.lock().unwrap_or_else(|e| e.into_inner());
            let fits = self.budget.admits(*used + flush);
            if fits {
                *used += flush;
            }
            fits
        };
        if fits {
            return Ok(runs);
        }
        let file = Arc::new(self.spill.write(schema, &runs)?);
        Ok((0..runs.len())
            .map(|p| file.has_partition(p).then(|| Run::Spilled { file: file.clone(), partition: p }))
            .collect())
    }

    /// Where runs spill.
    pub fn spill_dir(&self) -> &Arc<SpillDir> {
        &self.spill
    }

    /// Bytes spilled so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spill.spilled_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use arrow::array::{Array, AsArray, FixedSizeBinaryArray, UInt32Array};
    use arrow::buffer::Buffer;

    use super::*;
    use crate::ids::JobId;
    use crate::shuffle::gather::FlushBatches;

    /// One flush of 40 records of 100 bytes viewing a mapped file, with an owned row number
    /// each, as one sorted run (`Run::Sorted`), and its schema.
    fn mapped_flush(file: &std::fs::File) -> (SchemaRef, Vec<Option<Run>>) {
        let bytes = crate::storage::map_file(file).unwrap();
        let records = FixedSizeBinaryArray::new(100, Buffer::from(bytes), None);
        let numbers = UInt32Array::from_iter_values(0..40);
        let batch =
            RecordBatch::try_from_iter([("record", Arc::new(records) as _), ("n", Arc::new(numbers) as _)])
                .unwrap();
        let schema = batch.schema();
        let flush = Arc::new(FlushBatches::new(schema.clone(), vec![batch]).unwrap());
        (schema, vec![Some(Run::Sorted(Arc::new(SortedRows::new(flush, (0..40).rev().collect()))))])
    }

    fn kept_in_memory(runs: &[Option<Run>]) -> bool {
        matches!(runs[0], Some(Run::Sorted(_)))
    }

    #[test]
    fn runs_viewing_mapped_input_count_against_the_mapped_budget() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
        file.write_all(&content).unwrap();
        let (schema, flush) = mapped_flush(file.as_file());
        let footprint = flush[0].as_ref().unwrap().footprint();
        // The numbers column (160 bytes, 64-byte aligned capacity) and the run's row numbers.
        assert_eq!(footprint.mapped, 4000);
        assert!((160 + 160..4000).contains(&footprint.owned), "{footprint:?}");

        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillDir::create(dir.path(), &JobId::generate()).unwrap());
        let budget = RunBudget { owned: 3 * footprint.owned, mapped: 6000 };
        let store = RunStore::new(spill, budget);
        assert!(kept_in_memory(&store.accept(&schema, flush).unwrap()), "owned bytes fit, mapped ones too");
        assert_eq!(store.spilled_bytes(), 0);
        let second = store.accept(&schema, mapped_flush(file.as_file()).1).unwrap();
        assert!(!kept_in_memory(&second), "8000 mapped bytes exceed the budget of 6000");
        assert!(store.spilled_bytes() > 0);
        let mut reader = second[0].clone().unwrap().open().unwrap();
        let spilled = reader.next_batch().unwrap().unwrap();
        let records = spilled.column(0).as_fixed_size_binary();
        assert_eq!(records.len(), 40);
        assert_eq!(records.value(0), &content[3900..], "the run's first row is the file's last record");
        assert_eq!(crate::storage::footprint(&spilled).mapped, 0, "read back, records are owned");

        let spill = Arc::new(SpillDir::create(dir.path(), &JobId::generate()).unwrap());
        let store = RunStore::new(spill, RunBudget { owned: footprint.owned - 1, mapped: u64::MAX });
        assert!(!kept_in_memory(&store.accept(&schema, mapped_flush(file.as_file()).1).unwrap()));
    }
}
