//! A combiner given as a fold of two values (Spark's `reduceByKey`), which a map task
//! applies in a hash table as its closure emits pairs, before anything is buffered or
//! sorted: DuckDB's and Spark's partial aggregation.
//!
//! A combiner over a group of values (`combine_rows`) can only run once the shuffle has
//! sorted the pairs: for a sum over 30 million rows and 50,000 keys, 30 million pairs are
//! buffered and sorted to give 50,000. A fold needs one accumulator per key, so the map
//! task keeps a table of them and the pairs never leave it until the split ends or the
//! table outgrows its share of the map buffer; the shuffle then folds what it merges.
//! (A table of held values per key for `combine_rows` was tried and was slower than the
//! sort: its working set did not stay in cache; see bench/README.md.)

use std::hash::Hash;
use std::marker::PhantomData;

use arrow::array::RecordBatch;
use hashbrown::HashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::reduce::{GroupRows, Grouped, PairGroups, Ranges, RowValues};
use super::writer::RowWriter;
use crate::error::JobResult;
use crate::exec::{COMBINE_INPUT_RECORDS, COMBINE_OUTPUT_RECORDS, MAP_OUTPUT_RECORDS};
use crate::job::{Emitter, Reducer};

/// A combiner that folds each key's values with `f` (`f(&mut acc, value)`), which must be
/// associative and commutative: the engine folds any subset of a key's values in any
/// order, on the map side as pairs are emitted and again where the shuffle merges them.
/// Keys must be `Hash + Eq`; for a key that is not (a float), use
/// [`combine_rows`](super::combine_rows).
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{AsArray, Float64Array, Int64Array};
/// use gristmill::arrow::datatypes::{Float64Type, Int64Type};
/// use gristmill::job::rows::{fold_values, map_rows, row_schema};
/// use gristmill::prelude::*;
///
/// #[derive(serde::Deserialize)]
/// struct Sale { shop: i64, amount: f64 }
///
/// // A map task offered the fold sums each shop's amounts as they are emitted.
/// let mut mapper = map_rows::<Sale, i64, f64, _>(|sale, out| out.emit(sale.shop, sale.amount));
/// mapper.combine_in_memory(fold_values::<i64, f64, _>(|total, amount| *total += amount), 1 << 20);
/// let sales = RecordBatch::try_from_iter([
///     ("shop", Arc::new(Int64Array::from(vec![7, 8, 7, 7])) as _),
///     ("amount", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])) as _),
/// ])?;
/// let mut out = Emitter::new(row_schema::<i64, f64>().schema().clone());
/// mapper.map(&sales, &mut out)?;
/// mapper.finish(&mut out)?;
/// let batch = &out.take_batches()[0];
/// let mut totals: Vec<(i64, f64)> = batch.column(0).as_primitive::<Int64Type>().values().iter().copied()
///     .zip(batch.column(1).as_primitive::<Float64Type>().values().iter().copied())
///     .collect();
/// totals.sort_by_key(|(shop, _)| *shop);
/// assert_eq!(totals, [(7, 8.0), (8, 2.0)]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
pub fn fold_values<K, V, F>(f: F) -> Box<dyn Reducer>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut(&mut V, V) + Send + 'static,
{
    Box::new(Grouped(Fold { f, groups: PairGroups::default(), types: PhantomData::<fn(K, V)> }))
}

/// The fold as the shuffle's combiner, and the maker of a map task's table.
struct Fold<K, V, F> {
    f: F,
    groups: PairGroups,
    types: PhantomData<fn(K, V)>,
}

impl<K, V, F> GroupRows for Fold<K, V, F>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut(&mut V, V) + Send + 'static,
{
    fn reduce_rows(&mut self, batch: &RecordBatch, rows: Ranges<'_>, out: &mut Emitter) -> JobResult<()> {
        let f = &mut self.f;
        self.groups.combine(batch, rows, out, |key: K, mut values: RowValues<'_, V>, kv| {
            let Some(mut acc) = values.next() else { return Ok(()) };
            values.for_each(|value| f(&mut acc, value));
            kv.emit(key, acc)
        })
    }

    fn into_pair_table(self, memory_bytes: usize) -> Option<Box<dyn std::any::Any + Send>> {
        // A hash table's slot per pair, with room to grow into.
        let per_key = 2 * std::mem::size_of::<(K, V)>() + 1;
        let table: Box<dyn PairTable<K, V>> = Box::new(FoldTable {
            f: self.f,
            accumulators: HashMap::new(),
            max_keys: (memory_bytes / per_key).max(1),
            stats: Stats::default(),
        });
        Some(Box::new(table))
    }
}

/// Where a map task's emitted pairs wait, folded by key, before the map output.
pub(super) trait PairTable<K, V>: Send {
    /// Takes a pair the map closure emitted; empties the table into `writer` when full.
    fn add(&mut self, key: K, value: V, writer: &mut RowWriter, out: &mut Emitter) -> JobResult<()>;
    /// Writes every key's pair to the map output and leaves the table empty.
    fn empty_into(&mut self, writer: &mut RowWriter, out: &mut Emitter) -> JobResult<()>;
    /// Adds what went in and out to the task's counters.
    fn count_into(&mut self, out: &mut Emitter);
}

/// One accumulator per key.
struct FoldTable<K, V, F> {
    f: F,
    accumulators: HashMap<K, V>,
    /// Keys held before the table is emptied (what a key or value holds on the heap, a
    /// `String`'s text, is not counted).
    max_keys: usize,
    stats: Stats,
}

/// Pairs in and out, for the task's counters.
#[derive(Default)]
struct Stats {
    emitted: u64,
    written: u64,
}

impl<K, V, F> PairTable<K, V> for FoldTable<K, V, F>
where
    K: Serialize + Hash + Eq + Send,
    V: Serialize + Send,
    F: FnMut(&mut V, V) + Send,
{
    #[inline]
    fn add(&mut self, key: K, value: V, writer: &mut RowWriter, out: &mut Emitter) -> JobResult<()> {
        self.stats.emitted += 1;
        if let Some(acc) = self.accumulators.get_mut(&key) {
            (self.f)(acc, value);
            return Ok(());
        }
        // Full: empty it before a new key, so the keys held keep folding.
        if self.accumulators.len() >= self.max_keys {
            self.empty_into(writer, out)?;
        }
        self.accumulators.insert(key, value);
        Ok(())
    }

    fn empty_into(&mut self, writer: &mut RowWriter, out: &mut Emitter) -> JobResult<()> {
        for (key, value) in self.accumulators.drain() {
            writer.push(0, &key)?;
            writer.push(1, &value)?;
            writer.end_row(out)?;
            self.stats.written += 1;
        }
        Ok(())
    }

    /// Map output records stay the pairs the closure emitted (the engine counts those it
    /// was handed); the fold's input and output join the shuffle combiner's.
    fn count_into(&mut self, out: &mut Emitter) {
        let Stats { emitted, written } = std::mem::take(&mut self.stats);
        out.count(MAP_OUTPUT_RECORDS, emitted.saturating_sub(written));
        out.count(COMBINE_INPUT_RECORDS, emitted);
        out.count(COMBINE_OUTPUT_RECORDS, written);
    }
}

#[cfg(test)]
mod tests;
