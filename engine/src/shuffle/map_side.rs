//! Map side of the shuffle: partition rows by key, sort each partition by key, and run the
//! combiner over its groups. Each flush produces one sorted run per partition.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::SchemaRef;
use arrow::row::Rows;

use super::KeyEncoder;
use super::run::{Run, RunStore};
use crate::error::{Error, Result};
use crate::job::{Emitter, Groups, Reducer};
use crate::partition::Partitioner;

/// What the combiner did, for counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct MapSideStats {
    /// Rows that went into the combiner.
    pub combine_input_rows: u64,
    /// Rows that came out of it.
    pub combine_output_rows: u64,
}

/// Turns one map task's output into sorted (and combined) runs per partition.
pub struct MapOutputBuilder {
    schema: SchemaRef,
    encoder: KeyEncoder,
    partitioner: Arc<dyn Partitioner>,
    combiner: Option<Box<dyn Reducer>>,
    store: Arc<RunStore>,
    /// `runs[p]`: the sorted runs of partition `p`, one per flush that had rows for it.
    runs: Vec<Vec<Run>>,
    stats: MapSideStats,
}

/// What a [`MapOutputBuilder`] needs besides the schema.
pub struct MapOutputSpec {
    /// The key columns' indices.
    pub key_columns: Vec<usize>,
    /// Reduce partitions.
    pub num_partitions: usize,
    /// Routes rows to partitions.
    pub partitioner: Arc<dyn Partitioner>,
    /// Pre-aggregates each run's groups.
    pub combiner: Option<Box<dyn Reducer>>,
    /// Keeps the runs (in memory or spilled).
    pub store: Arc<RunStore>,
}

impl MapOutputBuilder {
    /// A builder for map output of `schema`.
    pub fn new(schema: SchemaRef, spec: MapOutputSpec) -> Result<Self> {
        let encoder = KeyEncoder::new(&schema, &spec.key_columns)?;
        Ok(MapOutputBuilder {
            schema,
            encoder,
            partitioner: spec.partitioner,
            combiner: spec.combiner,
            store: spec.store,
            runs: vec![Vec::new(); spec.num_partitions],
            stats: MapSideStats::default(),
        })
    }

    /// Partitions, sorts and combines `batches` into one more run per partition.
    pub fn flush(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        if batches.is_empty() {
            return Ok(());
        }
        let batch =
            concat_batches(&self.schema, &batches).map_err(Error::arrow("concatenating map output"))?;
        drop(batches);
        let keys: Vec<ArrayRef> =
            self.encoder.key_columns().iter().map(|&i| batch.column(i).clone()).collect();
        let mut partition_of_row = Vec::with_capacity(batch.num_rows());
        self.partitioner.partition(&keys, self.runs.len(), &mut partition_of_row)?;
        let rows = self.encoder.encode(&batch)?;
        let mut sorted = Vec::with_capacity(self.runs.len());
        for mut indices in bucket_by_partition(&partition_of_row, self.runs.len()) {
            if indices.is_empty() {
                sorted.push(None);
                continue;
            }
            sort_by_key(&mut indices, &rows);
            let run = self.sorted_run(&batch, &rows, &indices)?;
            sorted.push((run.num_rows() > 0).then_some(run));
        }
        drop((batch, rows));
        for (partition, run) in self.store.accept(&self.schema, sorted)?.into_iter().enumerate() {
            self.runs[partition].extend(run);
        }
        Ok(())
    }

    fn sorted_run(&mut self, batch: &RecordBatch, rows: &Rows, indices: &[u32]) -> Result<RecordBatch> {
        let take_indices = UInt32Array::from(indices.to_vec());
        let columns = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &take_indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::arrow("gathering sorted map output"))?;
        let sorted =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(Error::arrow("sorted map output"))?;
        let Some(combiner) = self.combiner.as_mut() else { return Ok(sorted) };
        let starts = group_starts(indices.iter().map(|&i| rows.row(i as usize)));
        let mut out = Emitter::new(self.schema.clone());
        combiner
            .reduce_groups(&Groups::new(&sorted, &starts, self.encoder.key_columns()), &mut out)
            .map_err(|e| Error::UserCode { stage: "combiner failed:", message: e.to_string() })?;
        let combined =
            concat_batches(&self.schema, &out.take_batches()).map_err(Error::arrow("combiner output"))?;
        self.stats.combine_input_rows += sorted.num_rows() as u64;
        self.stats.combine_output_rows += combined.num_rows() as u64;
        Ok(combined)
    }

    /// The runs of every partition (`runs[p]` for partition `p`) and the combiner's stats.
    pub fn finish(self) -> (Vec<Vec<Run>>, MapSideStats) {
        (self.runs, self.stats)
    }
}

/// Sorts row indices by key, stably: on the first 8 bytes of each encoded key as an
/// integer (most comparisons end there, without touching the rows again), then on the
/// whole key.
fn sort_by_key(indices: &mut [u32], rows: &Rows) {
    let prefix = |i: u32| {
        let bytes = rows.row(i as usize).data();
        let mut buf = [0u8; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[..n]);
        u64::from_be_bytes(buf)
    };
    let mut keyed: Vec<(u64, u32)> = indices.iter().map(|&i| (prefix(i), i)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| rows.row(a.1 as usize).cmp(&rows.row(b.1 as usize))));
    for (slot, (_, i)) in indices.iter_mut().zip(keyed) {
        *slot = i;
    }
}

/// Row indices of each partition, in row order (a counting sort by partition).
fn bucket_by_partition(partition_of_row: &[u32], num_partitions: usize) -> Vec<Vec<u32>> {
    let mut counts = vec![0usize; num_partitions];
    for &p in partition_of_row {
        counts[p as usize] += 1;
    }
    let mut buckets: Vec<Vec<u32>> = counts.into_iter().map(Vec::with_capacity).collect();
    for (row, &p) in partition_of_row.iter().enumerate() {
        buckets[p as usize].push(row as u32);
    }
    buckets
}

/// The positions where a new key starts in a sequence of sorted keys.
pub(super) fn group_starts<'a>(mut keys: impl Iterator<Item = arrow::row::Row<'a>>) -> Vec<usize> {
    let mut starts = Vec::new();
    let Some(mut previous) = keys.next() else { return starts };
    starts.push(0);
    for (i, key) in keys.enumerate() {
        if key != previous {
            starts.push(i + 1);
        }
        previous = key;
    }
    starts
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema, UInt64Type};

    use super::*;
    use crate::partition::HashPartitioner;

    fn batch(words: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("n", DataType::UInt64, false),
        ]));
        let n = UInt64Array::from((0..words.len() as u64).collect::<Vec<_>>());
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(words.to_vec())), Arc::new(n)]).unwrap()
    }

    #[test]
    fn runs_are_sorted_stable_and_partitioned_by_hash() {
        let input = batch(&["b", "a", "c", "a", "b", "a"]);
        let dir = tempfile::tempdir().unwrap();
        let spill =
            Arc::new(crate::shuffle::SpillDir::create(dir.path(), &crate::ids::JobId::generate()).unwrap());
        // A zero memory budget spills every run: the test reads them back from disk.
        let store = Arc::new(RunStore::new(spill, 0));
        let spec = MapOutputSpec {
            key_columns: vec![0],
            num_partitions: 2,
            partitioner: Arc::new(HashPartitioner),
            combiner: None,
            store: store.clone(),
        };
        let mut builder = MapOutputBuilder::new(input.schema(), spec).unwrap();
        builder.flush(vec![input]).unwrap();
        let (runs, _) = builder.finish();
        assert!(store.spilled_bytes() > 0);
        let mut seen = Vec::new();
        for (p, partition_runs) in runs.into_iter().enumerate() {
            for run in partition_runs {
                let run = run.open().unwrap().next_batch().unwrap().unwrap();
                let words: Vec<_> =
                    run.column(0).as_string::<i32>().iter().map(|w| w.unwrap().to_owned()).collect();
                let ns: Vec<_> = run.column(1).as_primitive::<UInt64Type>().values().to_vec();
                let mut sorted = words.clone();
                sorted.sort();
                assert_eq!(words, sorted, "partition {p} is sorted");
                seen.extend(words.into_iter().zip(ns));
            }
        }
        seen.sort();
        // Stable: the three `a` rows keep input order 1, 3, 5.
        assert_eq!(seen.iter().filter(|(w, _)| w == "a").map(|(_, n)| *n).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn group_starts_mark_key_changes() {
        let b = batch(&["a", "a", "b", "c", "c"]);
        let enc = KeyEncoder::new(&b.schema(), &[0]).unwrap();
        let rows = enc.encode(&b).unwrap();
        assert_eq!(group_starts(rows.iter()), vec![0, 2, 3]);
    }
}
