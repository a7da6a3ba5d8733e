//! Map side of the shuffle: partition rows by key, sort each partition by key, and run the
//! combiner over its groups. Each flush produces one sorted run per partition (or, for
//! reducers taking unordered input, one run per partition in emitted order).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::SchemaRef;
use arrow::row::Rows;

use super::KeyEncoder;
use super::gather::{FlushBatches, SortedRows};
use super::prefix::{EXACT_KEY_BYTES, key_prefix};
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
    /// Sort runs by key (false: partition only, keeping emitted order).
    sort: bool,
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
    /// Sort each run by key and combine it; false only partitions the rows, keeping the
    /// order they were emitted in (for [`crate::job::ReduceInput::Unordered`]).
    pub sort: bool,
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
            sort: spec.sort,
            runs: vec![Vec::new(); spec.num_partitions],
            stats: MapSideStats::default(),
        })
    }

    /// Partitions, sorts and combines `batches` into one more run per partition. Without a
    /// combiner a run is its sorted row numbers ([`SortedRows`]): rows are copied once, in
    /// order, when the run is read.
    pub fn flush(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if batches.is_empty() {
            return Ok(());
        }
        if !self.sort {
            let partition_of_row = self.partition_rows(&batches, None)?;
            let batch =
                concat_batches(&self.schema, &batches).map_err(Error::arrow("concatenating map output"))?;
            drop(batches);
            return self.store_unsorted(batch, &partition_of_row);
        }
        let rows = self.encoder.encode_all(&batches)?;
        let partition_of_row = self.partition_rows(&batches, Some(&rows))?;
        let flush = Arc::new(FlushBatches::new(self.schema.clone(), batches)?);
        let mut sorted = Vec::with_capacity(self.runs.len());
        for indices in bucket_by_partition(&partition_of_row, self.runs.len()) {
            if indices.is_empty() {
                sorted.push(None);
                continue;
            }
            let order = SortedKeys::sort(indices, &rows);
            sorted.push(self.sorted_run(&flush, &rows, order)?);
        }
        drop((flush, rows));
        self.accept(sorted)
    }

    /// The partition of every row of `batches`, in order, from their encoded keys `rows`
    /// where given and the partitioner can use them.
    fn partition_rows(&self, batches: &[RecordBatch], rows: Option<&Rows>) -> Result<Vec<u32>> {
        let total = batches.iter().map(RecordBatch::num_rows).sum();
        let mut partition_of_row = Vec::with_capacity(total);
        if self.runs.len() == 1 {
            partition_of_row.resize(total, 0);
            return Ok(partition_of_row);
        }
        if let Some(rows) = rows
            && self.partitioner.partition_encoded(rows, self.runs.len(), &mut partition_of_row)?
        {
            return Ok(partition_of_row);
        }
        let mut batch_partitions = Vec::new();
        for batch in batches {
            let keys: Vec<ArrayRef> =
                self.encoder.key_columns().iter().map(|&i| batch.column(i).clone()).collect();
            self.partitioner.partition(&keys, self.runs.len(), &mut batch_partitions)?;
            partition_of_row.extend_from_slice(&batch_partitions);
        }
        Ok(partition_of_row)
    }

    /// Stores each partition's rows of `batch` as one more run, in row order.
    fn store_unsorted(&mut self, batch: RecordBatch, partition_of_row: &[u32]) -> Result<()> {
        let runs = if self.runs.len() == 1 {
            vec![Some(batch)]
        } else {
            bucket_by_partition(partition_of_row, self.runs.len())
                .into_iter()
                .map(|indices| (!indices.is_empty()).then(|| take_rows(&batch, indices)).transpose())
                .collect::<Result<Vec<_>>>()?
        };
        self.accept(runs.into_iter().map(|run| run.map(Run::Memory)).collect())
    }

    /// Hands one flush's runs to the store.
    fn accept(&mut self, runs: Vec<Option<Run>>) -> Result<()> {
        for (partition, run) in self.store.accept(&self.schema, runs)?.into_iter().enumerate() {
            self.runs[partition].extend(run);
        }
        Ok(())
    }

    /// The run of the rows of `order`: their numbers, or, where a combiner is set and a key
    /// repeats, the rows gathered and combined. The combiner is skipped when no key
    /// repeats: like Hadoop's, it may run on any subset of a key's rows, any number of
    /// times, so one row per key needs no combining.
    fn sorted_run(
        &mut self,
        flush: &Arc<FlushBatches>,
        rows: &Rows,
        order: SortedKeys,
    ) -> Result<Option<Run>> {
        let uncopied =
            |order: SortedKeys| Run::Sorted(Arc::new(SortedRows::new(flush.clone(), order.indices)));
        let Some(combiner) = self.combiner.as_mut() else { return Ok(Some(uncopied(order))) };
        let starts = order.group_starts(rows);
        if starts.len() == order.indices.len() {
            return Ok(Some(uncopied(order)));
        }
        let sorted = flush.gather(&order.indices)?;
        let mut out = Emitter::new(self.schema.clone());
        combiner
            .reduce_groups(&Groups::new(&sorted, &starts, self.encoder.key_columns()), &mut out)
            .map_err(|e| Error::UserCode { stage: "combiner failed:", message: e.to_string() })?;
        let combined =
            concat_batches(&self.schema, &out.take_batches()).map_err(Error::arrow("combiner output"))?;
        self.stats.combine_input_rows += sorted.num_rows() as u64;
        self.stats.combine_output_rows += combined.num_rows() as u64;
        Ok((combined.num_rows() > 0).then_some(Run::Memory(combined)))
    }

    /// The runs of every partition (`runs[p]` for partition `p`) and the combiner's stats.
    pub fn finish(self) -> (Vec<Vec<Run>>, MapSideStats) {
        (self.runs, self.stats)
    }
}

/// The rows of `batch` at `indices`, in that order.
fn take_rows(batch: &RecordBatch, indices: Vec<u32>) -> Result<RecordBatch> {
    let indices = UInt32Array::from(indices);
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::arrow("gathering map output"))?;
    RecordBatch::try_new(batch.schema(), columns).map_err(Error::arrow("map output"))
}

/// Row indices sorted by key, stably, with each one's key prefix (the first bytes of its
/// encoded key as a big-endian integer, zero-padded).
struct SortedKeys {
    indices: Vec<u32>,
    prefixes: Vec<u128>,
    /// Every key is its prefix: all encoded keys have one length of at most
    /// [`EXACT_KEY_BYTES`] (integer keys, dates), so prefixes alone order and group them.
    exact: bool,
}

impl SortedKeys {
    /// Sorts `indices` (ascending row numbers) by the keys in `rows`. Ties keep row order:
    /// the row number is the last sort key, which lets the faster unstable sort be used.
    fn sort(indices: Vec<u32>, rows: &Rows) -> Self {
        // One pass over the rows: each key's prefix (key bytes in the high 96 bits, the row
        // number in the low 32), and whether every key is exact.
        let first_len = rows.row(indices[0] as usize).data().len();
        let mut exact = first_len <= EXACT_KEY_BYTES;
        let keyed: Vec<u128> = indices
            .iter()
            .map(|&i| {
                let key = rows.row(i as usize).data();
                exact &= key.len() == first_len;
                key_prefix(key) | i as u128
            })
            .collect();
        if exact {
            let keyed = radix_sort(keyed, first_len);
            let indices = keyed.iter().map(|&k| k as u32).collect();
            let prefixes = keyed.into_iter().map(|k| k >> 32).collect();
            return SortedKeys { indices, prefixes, exact };
        }
        // The first 8 key bytes and the row number: a smaller sort element than the `u128`.
        let mut keyed: Vec<(u64, u32)> = keyed.into_iter().map(|k| ((k >> 64) as u64, k as u32)).collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| rows.row(a.1 as usize).cmp(&rows.row(b.1 as usize)))
                .then(a.1.cmp(&b.1))
        });
        let (indices, prefixes) = keyed.into_iter().map(|(p, i)| (i, p as u128)).unzip();
        SortedKeys { indices, prefixes, exact }
    }

    /// The positions (in sorted order) where a new key starts. Different prefixes are
    /// different keys; equal prefixes of inexact keys compare the whole keys.
    fn group_starts(&self, rows: &Rows) -> Vec<usize> {
        let mut starts = vec![0];
        for i in 1..self.indices.len() {
            let new_key = self.prefixes[i] != self.prefixes[i - 1]
                || (!self.exact
                    && rows.row(self.indices[i] as usize) != rows.row(self.indices[i - 1] as usize));
            if new_key {
                starts.push(i);
            }
        }
        starts
    }
}

/// Buckets of at most this many keys are sorted by comparison: below it, one more radix
/// pass (count, scatter, copy back) costs more than the comparisons it saves.
const COMPARISON_SORT_MAX_KEYS: usize = 1024;

/// Sorts packed keys (the key's `key_bytes` bytes at the top, the row number at the bottom)
/// by a most-significant-digit radix sort: buckets by the first byte that varies, then each
/// bucket by the next byte, down to buckets small enough to sort by comparison. Only as
/// many bytes are looked at as it takes to tell keys apart: random 10-byte keys (TeraSort's)
/// are in order after two or three, where a least-significant-digit sort makes ten passes.
/// Comparisons are of the whole packed value, so equal keys end in row-number order.
fn radix_sort(mut keys: Vec<u128>, key_bytes: usize) -> Vec<u128> {
    let mut scratch = Vec::new();
    msd_sort(&mut keys, 0, key_bytes, &mut scratch);
    keys
}

/// Sorts `keys`, all equal in the bytes before `position`, from byte `position` on.
fn msd_sort(keys: &mut [u128], position: usize, key_bytes: usize, scratch: &mut Vec<u128>) {
    if keys.len() <= COMPARISON_SORT_MAX_KEYS || position >= key_bytes {
        // Past the last key byte, the keys are equal: the row numbers order them.
        keys.sort_unstable();
        return;
    }
    let byte = |key: u128| (key >> (120 - 8 * position)) as u8 as usize;
    let mut counts = [0usize; 256];
    for &key in keys.iter() {
        counts[byte(key)] += 1;
    }
    if counts.contains(&keys.len()) {
        // Every key has the same byte here (a null marker, the high bytes of small numbers).
        return msd_sort(keys, position + 1, key_bytes, scratch);
    }
    let mut next = [0usize; 256];
    let mut total = 0;
    for (slot, &n) in next.iter_mut().zip(&counts) {
        *slot = total;
        total += n;
    }
    scratch.clear();
    scratch.resize(keys.len(), 0);
    for &key in keys.iter() {
        let digit = byte(key);
        scratch[next[digit]] = key;
        next[digit] += 1;
    }
    keys.copy_from_slice(scratch);
    let mut start = 0;
    for n in counts {
        if n > 1 {
            msd_sort(&mut keys[start..start + n], position + 1, key_bytes, scratch);
        }
        start += n;
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

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray, UInt64Array};
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
        let store = Arc::new(RunStore::new(spill, crate::shuffle::RunBudget::uniform(0)));
        let spec = MapOutputSpec {
            key_columns: vec![0],
            num_partitions: 2,
            partitioner: Arc::new(HashPartitioner),
            combiner: None,
            store: store.clone(),
            sort: true,
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

    /// The encoded key of a random number.
    type KeyOf = fn(u64) -> Vec<u8>;

    #[test]
    fn the_radix_sort_orders_packed_keys_as_a_comparison_sort_does() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // 5-byte keys (as an Int32 key encodes): constant bytes, many repeats; 10-byte random
        // keys (TeraSort's, encoded with their validity byte); one key repeated; a key whose
        // first bytes repeat and whose last byte varies.
        let shapes: [(usize, KeyOf); 4] = [
            (5, |r| vec![1, 0x80, (r >> 8) as u8 & 3, (r >> 16) as u8, r as u8]),
            (11, |r| [&[1u8][..], &r.to_be_bytes(), &[(r >> 3) as u8, (r >> 51) as u8]].concat()),
            (3, |_| vec![1, 2, 3]),
            (9, |r| vec![1, 0, 0, 0, 0, 0, 0, (r >> 60) as u8 & 1, r as u8]),
        ];
        for (key_bytes, key_of) in shapes {
            let keys: Vec<u128> =
                (0..50_000u32).map(|row| key_prefix(&key_of(random())) | row as u128).collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            assert_eq!(radix_sort(keys, key_bytes), expected, "{key_bytes}-byte keys");
        }
    }

    #[test]
    fn string_keys_sort_stably_and_group() {
        let b =
            batch(&["b", "a", "a longer key than eight bytes", "a", "b", "a longer key than eight bytes!"]);
        let rows = KeyEncoder::new(&b.schema(), &[0]).unwrap().encode(&b).unwrap();
        let order = SortedKeys::sort((0..6).collect(), &rows);
        assert!(!order.exact);
        assert_eq!(order.indices, [1, 3, 2, 5, 0, 4]);
        assert_eq!(order.group_starts(&rows), [0, 2, 3, 4]);
    }

    #[test]
    fn integer_keys_sort_on_their_prefix_alone_and_ties_keep_row_order() {
        let keys = Int64Array::from(vec![5, -1, 5, i64::MIN, 7, -1, i64::MAX]);
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(keys)]).unwrap();
        let rows = KeyEncoder::new(&b.schema(), &[0]).unwrap().encode(&b).unwrap();
        let order = SortedKeys::sort((0..7).collect(), &rows);
        assert!(order.exact, "an Int64 key encodes in 9 bytes");
        assert_eq!(order.indices, [3, 1, 5, 0, 2, 4, 6]);
        assert_eq!(order.group_starts(&rows), [0, 1, 3, 5, 6]);
    }

    /// Sums `n` per key, counting its calls.
    struct SumCombiner(Arc<std::sync::atomic::AtomicUsize>);

    impl Reducer for SumCombiner {
        fn reduce(
            &mut self,
            group: &crate::job::KeyGroup<'_>,
            out: &mut Emitter,
        ) -> crate::error::JobResult<()> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let rows = group.rows();
            let n: u64 = rows.column(1).as_primitive::<UInt64Type>().values().iter().sum();
            let columns = vec![rows.column(0).slice(0, 1), Arc::new(UInt64Array::from(vec![n])) as ArrayRef];
            out.emit(RecordBatch::try_new(rows.schema(), columns)?)
        }
    }

    #[test]
    fn the_combiner_runs_only_where_a_key_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let spill =
            Arc::new(crate::shuffle::SpillDir::create(dir.path(), &crate::ids::JobId::generate()).unwrap());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spec = MapOutputSpec {
            key_columns: vec![0],
            num_partitions: 1,
            partitioner: Arc::new(HashPartitioner),
            combiner: Some(Box::new(SumCombiner(calls.clone()))),
            store: Arc::new(RunStore::new(spill, crate::shuffle::RunBudget::uniform(u64::MAX))),
            sort: true,
        };
        let mut builder = MapOutputBuilder::new(batch(&[]).schema(), spec).unwrap();
        builder.flush(vec![batch(&["c", "a", "b"])]).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0, "no key repeats: no combining");
        builder.flush(vec![batch(&["b", "a", "b"])]).unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2, "both groups of the second run");
        let (runs, stats) = builder.finish();
        assert_eq!((stats.combine_input_rows, stats.combine_output_rows), (3, 2));
        let second = runs[0][1].clone().open().unwrap().next_batch().unwrap().unwrap();
        let words: Vec<_> = second.column(0).as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(words, ["a", "b"]);
        assert_eq!(second.column(1).as_primitive::<UInt64Type>().values().as_ref(), [1, 2]);
    }
}
