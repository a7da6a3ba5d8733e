//! In-mapper combining: the `(key, value)` pairs a typed map closure emits are gathered by
//! key in a hash table and folded with the job's typed combiner before they reach the
//! shuffle (Lin and Dyer's in-mapper combining; DuckDB's and Spark's partial aggregation).
//!
//! Without it every pair is buffered, sorted and only then combined: for a sum over 30
//! million rows and 50,000 keys that is 30 million rows sorted to give 50,000. With it a
//! key's values wait in the table until there are [`COMBINE_AT`] of them, then the combiner
//! folds them, usually into one. The table is emptied into the map output when it outgrows
//! its share of the task's map buffer, and when the split ends. Like Hadoop's, a combiner
//! may run on any subset of a key's values any number of times, so the result is the same;
//! the shuffle's own combiner still runs where a key's pairs meet again.

use std::marker::PhantomData;

use hashbrown::HashTable;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use super::key_bytes::append_key_bytes;
use super::out::{KeyValueOut, Sink};
use super::reduce::RowValues;
use super::writer::RowWriter;
use crate::error::JobResult;
use crate::exec::{COMBINE_INPUT_RECORDS, COMBINE_OUTPUT_RECORDS, MAP_OUTPUT_RECORDS};
use crate::job::Emitter;

/// A key's values are combined once this many wait.
pub(super) const COMBINE_AT: usize = 32;

/// Bytes a table entry holds beyond its key's bytes and values: the index slot and the
/// entry's vector header and key range.
const ENTRY_OVERHEAD: usize = 64;

/// A typed combiner over values held in memory: `combine_rows`' closure.
pub(super) trait CombineValues<K, V>: Send {
    fn combine(&mut self, key: K, values: RowValues<'_, V>, out: &mut KeyValueOut<'_, K, V>)
    -> JobResult<()>;
}

/// One key's waiting values. `key` is `None` while the combiner holds it.
struct Entry<K, V> {
    key: Option<K>,
    values: Vec<V>,
    /// Where its key bytes lie in the table's `key_bytes`.
    bytes: std::ops::Range<usize>,
}

/// An index slot: the hash of an entry's key bytes, and the entry.
#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    entry: u32,
}

/// The pairs of one map task, gathered by key.
pub(super) struct PairTable<K, V> {
    combiner: Box<dyn CombineValues<K, V>>,
    /// The entries by the hash of their key bytes (see `key_bytes`).
    index: HashTable<Slot>,
    /// Every entry's key bytes, one after another, and where each entry's lie.
    key_bytes: Vec<u8>,
    entries: Vec<Entry<K, V>>,
    /// The key bytes of the pair being added.
    scratch: Vec<u8>,
    /// What the combiner emits while it folds one key.
    folded: Vec<(K, V)>,
    /// An estimate of the memory the table holds, and the most it may.
    bytes: usize,
    limit: usize,
    stats: Stats,
}

/// Pairs in and out, for the task's counters.
#[derive(Default)]
struct Stats {
    emitted: u64,
    written: u64,
    combine_in: u64,
    combine_out: u64,
}

impl<K: Serialize, V: Serialize> PairTable<K, V> {
    /// A table emptied into the map output whenever it holds about `limit` bytes.
    pub(super) fn new(combiner: Box<dyn CombineValues<K, V>>, limit: usize) -> Self {
        PairTable {
            combiner,
            index: HashTable::new(),
            key_bytes: Vec::new(),
            entries: Vec::new(),
            scratch: Vec::new(),
            folded: Vec::new(),
            bytes: 0,
            limit,
            stats: Stats::default(),
        }
    }

    /// Adds a pair the map closure emitted; folds its key's values when enough wait, and
    /// empties the table into `writer` when it is full.
    pub(super) fn add(
        &mut self,
        key: K,
        value: V,
        writer: &mut RowWriter,
        out: &mut Emitter,
    ) -> JobResult<()> {
        self.stats.emitted += 1;
        let entry = self.insert(key, value)?;
        if self.entries[entry].values.len() >= COMBINE_AT {
            self.fold(entry, writer, out)?;
        }
        if self.bytes > self.limit {
            self.empty_into(writer, out)?;
        }
        Ok(())
    }

    /// Puts a pair in its key's entry, made if new, and returns the entry's index.
    fn insert(&mut self, key: K, value: V) -> JobResult<usize> {
        self.scratch.clear();
        append_key_bytes(&key, &mut self.scratch)?;
        let hash = xxh3_64(&self.scratch);
        let (entries, key_bytes, scratch) = (&self.entries, &self.key_bytes, &self.scratch);
        let found = self.index.find(hash, |slot| {
            slot.hash == hash && key_bytes[entries[slot.entry as usize].bytes.clone()] == scratch[..]
        });
        let entry = match found {
            Some(slot) => slot.entry as usize,
            None => {
                let i = self.entries.len();
                let bytes = self.key_bytes.len()..self.key_bytes.len() + self.scratch.len();
                self.key_bytes.extend_from_slice(&self.scratch);
                self.entries.push(Entry { key: None, values: Vec::new(), bytes });
                self.index.insert_unique(hash, Slot { hash, entry: i as u32 }, |slot| slot.hash);
                // A key's values vector grows to `COMBINE_AT` and keeps that capacity.
                // What a key or value holds on the heap (a `String`'s text) is not counted.
                self.bytes += self.scratch.len()
                    + std::mem::size_of::<K>()
                    + COMBINE_AT * std::mem::size_of::<V>()
                    + ENTRY_OVERHEAD;
                i
            }
        };
        let slot = &mut self.entries[entry];
        if slot.key.is_none() {
            slot.key = Some(key);
        }
        slot.values.push(value);
        Ok(entry)
    }

    /// Runs the combiner over the values waiting in `entry` and puts back what it emits.
    fn fold(&mut self, entry: usize, writer: &mut RowWriter, out: &mut Emitter) -> JobResult<()> {
        let slot = &mut self.entries[entry];
        let Some(key) = slot.key.take() else { return Ok(()) };
        let mut values = std::mem::take(&mut slot.values);
        self.stats.combine_in += values.len() as u64;
        let mut folded = std::mem::take(&mut self.folded);
        let mut kv =
            KeyValueOut { writer, sink: Sink::Pairs(&mut folded), out, written: 0, types: PhantomData };
        let result = self.combiner.combine(key, RowValues::drain(values.drain(..)), &mut kv);
        let written = kv.written;
        self.stats.written += written;
        self.stats.combine_out += written;
        self.entries[entry].values = values;
        result?;
        self.stats.combine_out += folded.len() as u64;
        for (key, value) in folded.drain(..) {
            self.insert(key, value)?;
        }
        self.folded = folded;
        Ok(())
    }

    /// Folds every key with values waiting and writes one pair per key (or what the
    /// combiner emits) to the map output; the table is empty after.
    pub(super) fn empty_into(&mut self, writer: &mut RowWriter, out: &mut Emitter) -> JobResult<()> {
        for entry in 0..self.entries.len() {
            if self.entries[entry].values.len() > 1 {
                self.fold(entry, writer, out)?;
            }
        }
        for Entry { key, values, .. } in std::mem::take(&mut self.entries) {
            let Some(key) = key else { continue };
            for value in values {
                writer.push(0, &key)?;
                writer.push(1, &value)?;
                writer.end_row(out)?;
                self.stats.written += 1;
            }
        }
        self.index = HashTable::new();
        self.key_bytes = Vec::new();
        self.bytes = 0;
        Ok(())
    }

    /// Adds the table's pairs to the task's counters: map output records stay the pairs the
    /// closure emitted (the engine counts those it was handed), and what the table's
    /// combining took in and gave out joins the shuffle combiner's.
    pub(super) fn count_into(&mut self, out: &mut Emitter) {
        let stats = std::mem::take(&mut self.stats);
        out.count(MAP_OUTPUT_RECORDS, stats.emitted.saturating_sub(stats.written));
        out.count(COMBINE_INPUT_RECORDS, stats.combine_in);
        out.count(COMBINE_OUTPUT_RECORDS, stats.combine_out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{Float64Type, Int64Type};
    use serde::Deserialize;

    use super::*;
    use crate::job::rows::{combine_rows, map_rows, row_schema};

    #[derive(Deserialize)]
    struct Sale {
        shop: i64,
        amount: f64,
    }

    /// `rows` sales of shops `0..shops` (shop `i % shops`, amount `i`), in batches of 1,000.
    fn sales(rows: i64, shops: i64) -> Vec<RecordBatch> {
        sales_in_runs(rows, shops, 1)
    }

    /// Sales whose shops come in runs of `run` equal ones (shop `(i / run) % shops`).
    fn sales_in_runs(rows: i64, shops: i64, run: i64) -> Vec<RecordBatch> {
        (0..rows)
            .step_by(1000)
            .map(|start| {
                let end = (start + 1000).min(rows);
                let shop = Int64Array::from_iter_values((start..end).map(|i| (i / run) % shops));
                let amount = Float64Array::from_iter_values((start..end).map(|i| i as f64));
                RecordBatch::try_from_iter([("shop", Arc::new(shop) as _), ("amount", Arc::new(amount) as _)])
                    .unwrap()
            })
            .collect()
    }

    /// Maps `batches` with a mapper emitting `(shop, amount)`, combining in memory with
    /// `combiner` (if any) and `limit` bytes; returns the emitted pairs summed per shop, the
    /// rows emitted and the counters.
    fn map(
        batches: &[RecordBatch],
        combiner: Option<Box<dyn crate::job::Reducer>>,
        limit: usize,
    ) -> (BTreeMap<i64, f64>, usize, crate::job::Counters) {
        let mut mapper = map_rows::<Sale, i64, f64, _>(|sale, out| out.emit(sale.shop, sale.amount));
        if let Some(combiner) = combiner {
            mapper.combine_in_memory(combiner, limit);
        }
        let mut out = Emitter::new(row_schema::<i64, f64>().schema().clone());
        for batch in batches {
            mapper.map(batch, &mut out).unwrap();
        }
        mapper.finish(&mut out).unwrap();
        let (mut sums, mut rows) = (BTreeMap::new(), 0);
        for batch in out.take_batches() {
            rows += batch.num_rows();
            let keys = batch.column(0).as_primitive::<Int64Type>();
            let values = batch.column(1).as_primitive::<Float64Type>();
            for (k, v) in keys.values().iter().zip(values.values()) {
                *sums.entry(*k).or_insert(0.0) += v;
            }
        }
        (sums, rows, out.take_counters())
    }

    fn summing() -> Box<dyn crate::job::Reducer> {
        combine_rows::<i64, f64, _>(|shop, amounts, out| out.emit(shop, amounts.sum()))
    }

    #[test]
    fn pairs_are_combined_in_memory_to_one_per_key_with_the_same_sums() {
        let batches = sales(100_000, 70);
        let (plain, plain_rows, _) = map(&batches, None, 0);
        let (combined, rows, counters) = map(&batches, Some(summing()), 1 << 20);
        assert_eq!(plain_rows, 100_000);
        assert_eq!(combined, plain);
        assert_eq!(rows, 70, "one pair per shop");
        assert_eq!(
            counters.get(MAP_OUTPUT_RECORDS) as usize + rows,
            100_000,
            "map output counts what the closure emitted"
        );
        let (into, out_of) = (counters.get(COMBINE_INPUT_RECORDS), counters.get(COMBINE_OUTPUT_RECORDS));
        assert_eq!(into - out_of, 100_000 - 70, "every pair the table took in is one out or combined away");
    }

    #[test]
    fn a_full_table_is_emptied_into_the_map_output_and_sums_stay_exact() {
        // 100 shops in runs of 8 sales: a shop comes back every 800 sales.
        let batches = sales_in_runs(20_000, 100, 8);
        let (plain, _, _) = map(&batches, None, 0);
        let (_, roomy_rows, _) = map(&batches, Some(summing()), 1 << 20);
        assert_eq!(roomy_rows, 100);
        // Room for about 12 shops: the table is emptied before a shop comes back, but each
        // run of 8 is still combined.
        let (combined, rows, _) = map(&batches, Some(summing()), 12 * 340);
        assert_eq!(combined, plain);
        assert!(rows > 1_000 && rows < 20_000 / 4, "{rows} rows: emptied often, still combined");
    }

    #[test]
    fn a_combiner_may_emit_other_keys_several_pairs_or_by_reference() {
        // Odd shops' values move to shop 0, in two halves, one of them by reference.
        let odd_to_zero = combine_rows::<i64, f64, _>(|shop, amounts, out| {
            let total: f64 = amounts.sum();
            let key = if shop % 2 == 1 { 0 } else { shop };
            out.emit(key, total / 2.0)?;
            out.emit_ref(&key, &(total / 2.0))
        });
        let batches = sales(10_000, 9);
        let (plain, _, _) = map(&batches, None, 0);
        let (combined, _, _) = map(&batches, Some(odd_to_zero), 1 << 20);
        let moved = |sums: &BTreeMap<i64, f64>| {
            let mut out = BTreeMap::new();
            for (k, v) in sums {
                *out.entry(if k % 2 == 1 { 0 } else { *k }).or_insert(0.0) += v;
            }
            out
        };
        let (combined, plain) = (moved(&combined), moved(&plain));
        assert_eq!(combined.keys().collect::<Vec<_>>(), plain.keys().collect::<Vec<_>>());
        for (k, v) in &plain {
            assert!((combined[k] - v).abs() <= v.abs() * 1e-12, "shop {k}: {} against {v}", combined[k]);
        }
        assert!(combined.keys().all(|k| k % 2 == 0));
    }

    #[test]
    fn a_combiner_that_is_not_typed_is_left_to_the_shuffle() {
        struct ByBatches;
        impl crate::job::Reducer for ByBatches {
            fn reduce(&mut self, _: &crate::job::KeyGroup<'_>, _: &mut Emitter) -> JobResult<()> {
                Err("never called".into())
            }
        }
        let (sums, rows, _) = map(&sales(3_000, 7), Some(Box::new(ByBatches)), 1 << 20);
        assert_eq!(rows, 3_000);
        assert_eq!(sums.len(), 7);
    }
}
