//! Merging in passes (Hadoop's `io.sort.factor`): a k-way merge holds a batch and a read
//! buffer per run, so when the runs of a partition times that would be over the task's
//! merge budget, consecutive runs are first merged into spill files, `factor` at a time,
//! until few enough are left to merge at once.
//!
//! Consecutive runs are merged together and their merge takes their place, so rows of equal
//! keys keep their run order through every pass: the final merge's order is that of a
//! single merge of all runs.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::run::{Run, SORTED_READ_ROWS};
use super::spill::{SPILL_BATCH_BYTES, SpillDir};
use super::{KeyEncoder, MERGE_CHUNK_ROWS, RunMerger};
use crate::error::Result;

/// Where and within what memory a task merges its runs.
#[derive(Clone, Debug)]
pub struct MergeSpace {
    /// Where intermediate merges are written.
    pub spill: Arc<SpillDir>,
    /// Bytes the merge's per-run batches and read buffers may take.
    pub budget: u64,
}

/// Runs merged at once, at least: a merge of two makes progress, one would not.
const MIN_FACTOR: usize = 2;

impl MergeSpace {
    /// Runs one merge may read at once within the budget.
    pub fn factor(&self, runs: &[Run]) -> usize {
        let per_run = runs.iter().map(merge_bytes).max().unwrap_or(1).max(1);
        usize::try_from(self.budget / per_run).unwrap_or(usize::MAX).max(MIN_FACTOR)
    }

    /// `runs` (each sorted by `key_columns`), merged in passes into at most
    /// [`MergeSpace::factor`] runs, in the same order.
    pub fn reduce_runs(&self, schema: &SchemaRef, key_columns: &[usize], runs: Vec<Run>) -> Result<Vec<Run>> {
        let factor = self.factor(&runs);
        let mut runs = runs;
        while runs.len() > factor {
            let _pass = tracing::info_span!("merge pass", runs = runs.len(), factor).entered();
            let mut merged = Vec::with_capacity(runs.len().div_ceil(factor));
            let mut rest = runs.into_iter().peekable();
            while rest.peek().is_some() {
                let group: Vec<Run> = rest.by_ref().take(factor).collect();
                merged.push(self.merge_group(schema, key_columns, group)?);
            }
            runs = merged;
        }
        Ok(runs)
    }

    /// One run: `group` itself when it is one run, else its merge written to a spill file.
    fn merge_group(&self, schema: &SchemaRef, key_columns: &[usize], mut group: Vec<Run>) -> Result<Run> {
        if group.len() == 1 {
            return Ok(group.remove(0));
        }
        let memory_bytes = group.iter().map(Run::memory_bytes).sum();
        let encoder = KeyEncoder::new(schema, key_columns)?;
        let mut merger = RunMerger::new(schema.clone(), encoder, group, MERGE_CHUNK_ROWS)?;
        let file =
            self.spill.write_run(schema, memory_bytes, || Ok(merger.next_chunk()?.map(|c| c.batch)))?;
        Ok(Run::Spilled { file: Arc::new(file), partition: 0 })
    }
}

/// What a merge holds for `run` at once, estimated: its current batch (with its key rows
/// and prefixes, about as large again for narrow rows) and its reader's buffer.
pub fn merge_bytes(run: &Run) -> u64 {
    let batch = 2 * SPILL_BATCH_BYTES as u64;
    match run {
        // The whole batch is held already (counted in the run store's budget).
        Run::Memory(_) => batch,
        // Copies of `SORTED_READ_ROWS` rows, of a flush of at most the map buffer.
        Run::Sorted(rows) => {
            let row_bytes = rows.footprint().total() / rows.num_rows().max(1) as u64;
            (2 * SORTED_READ_ROWS as u64 * row_bytes).max(batch)
        }
        Run::Spilled { .. } => batch + super::spill::SPILL_BUFFER_BYTES as u64,
        Run::Segment { len, .. } => batch + crate::storage::read_buffer_bytes_for(*len),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::ids::JobId;

    /// Seven runs of (key, run number) with overlapping keys.
    fn runs(schema: &SchemaRef) -> Vec<Run> {
        (0..7)
            .map(|r| {
                let mut keys: Vec<i64> = (0..50).map(|i| (i * (r + 2)) % 40).collect();
                keys.sort();
                let tags = vec![r; keys.len()];
                let columns =
                    vec![Arc::new(Int64Array::from(keys)) as _, Arc::new(Int64Array::from(tags)) as _];
                Run::Memory(RecordBatch::try_new(schema.clone(), columns).unwrap())
            })
            .collect()
    }

    fn merged_rows(schema: &SchemaRef, runs: Vec<Run>) -> Vec<(i64, i64)> {
        let encoder = KeyEncoder::new(schema, &[0]).unwrap();
        let mut merger = RunMerger::new(schema.clone(), encoder, runs, 16).unwrap();
        let mut rows = Vec::new();
        while let Some(chunk) = merger.next_chunk().unwrap() {
            let (k, r) = (chunk.batch.column(0).as_primitive::<Int64Type>(), chunk.batch.column(1));
            let r = r.as_primitive::<Int64Type>();
            rows.extend((0..chunk.batch.num_rows()).map(|i| (k.value(i), r.value(i))));
        }
        rows
    }

    #[test]
    fn passes_leave_at_most_factor_runs_and_the_same_order_as_one_merge() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("run", DataType::Int64, false),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillDir::create(dir.path(), &JobId::generate()).unwrap());
        let one_merge = merged_rows(&schema, runs(&schema));
        // A budget for two runs at once: 7 runs become 4, then 2 (merged at once by the reduce).
        let space = MergeSpace { spill: spill.clone(), budget: 2 * merge_bytes(&runs(&schema)[0]) + 1 };
        assert_eq!(space.factor(&runs(&schema)), 2);
        let reduced = space.reduce_runs(&schema, &[0], runs(&schema)).unwrap();
        assert_eq!(reduced.len(), 2);
        assert!(spill.spilled_bytes() > 0, "intermediate merges went to disk");
        assert_eq!(merged_rows(&schema, reduced), one_merge, "equal keys keep their run order");

        let roomy = MergeSpace { spill, budget: u64::MAX };
        assert_eq!(roomy.reduce_runs(&schema, &[0], runs(&schema)).unwrap().len(), 7, "no pass needed");
        let tiny = MergeSpace { budget: 0, ..roomy };
        assert_eq!(tiny.factor(&runs(&schema)), MIN_FACTOR, "a merge reads two runs at least");
    }
}
