//! Typed key groups into a reducer or combiner: the group's key and its values,
//! deserialized from the merged map output.

use std::any::Any;
use std::marker::PhantomData;
use std::ops::Range;

use arrow::array::{ArrayRef, RecordBatch};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_arrow::Deserializer;
use serde_arrow::utils::Item;

use super::columns::RowColumns;
use super::flat::FlatRows;
use super::out::{KeyValueOut, RowOut};
use super::writer::RowWriter;
use super::{key_columns, output_columns, value_columns};
use crate::error::JobResult;
use crate::job::{Emitter, Groups, KeyGroup, Reducer};

/// The values of one group, in the order the shuffle merged them (for a job that groups by
/// part of its key, ordered by the rest of the key). Values the closure leaves unread are
/// skipped.
///
/// ```
/// use gristmill::job::rows::{RowValues, reduce_rows};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Spread { sensor: i64, readings: u64, max: f64 }
///
/// let reducer = reduce_rows::<i64, f64, Spread, _>(|sensor, values: RowValues<'_, f64>, out| {
///     let readings = values.len() as u64; // an exact size, before any is read
///     let max = values.fold(f64::MIN, f64::max);
///     out.emit(Spread { sensor, readings, max })
/// });
/// # let _ = reducer;
/// ```
pub struct RowValues<'a, V> {
    values: std::iter::Take<&'a mut std::vec::IntoIter<V>>,
}

impl<V> Iterator for RowValues<'_, V> {
    type Item = V;
    fn next(&mut self) -> Option<V> {
        self.values.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}

impl<V> ExactSizeIterator for RowValues<'_, V> {}

/// How the keys and values of a map output lie in its columns: traced from `K` and `V` once
/// per reducer, not per batch.
pub(super) struct GroupLayout {
    keys: RowColumns,
    values: RowColumns,
    /// How keys are read, chosen on the reducer's first rows and kept: whether `K` reads
    /// from flat columns depends on `K` and the columns' types, which the layout fixes
    /// (batches are cast to it), not on the batch.
    key_path: Option<KeyPath>,
}

/// How a reducer reads its keys.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KeyPath {
    Flat,
    Serde,
}

impl GroupLayout {
    /// The layout in `slot`, traced on first use.
    fn get<K: DeserializeOwned, V: DeserializeOwned>(
        slot: &mut Option<GroupLayout>,
    ) -> JobResult<&mut GroupLayout> {
        if slot.is_none() {
            *slot = Some(GroupLayout {
                keys: key_columns::<K>()?,
                values: value_columns::<V>()?,
                key_path: None,
            });
        }
        slot.as_mut().ok_or_else(|| "no group layout".into())
    }
}

/// Calls `visit` with the key (of the group's first row) and values of each group of `rows`.
fn each_group<K: DeserializeOwned, V: DeserializeOwned>(
    layout: &mut GroupLayout,
    batch: &RecordBatch,
    rows: impl Iterator<Item = Range<usize>>,
    mut visit: impl FnMut(K, RowValues<'_, V>) -> JobResult<()>,
) -> JobResult<()> {
    let (keys, values) = (&layout.keys, &layout.values);
    let key_columns = keys.cast(&batch.columns()[..keys.len()])?;
    let value_columns = values.cast(&batch.columns()[keys.len()..keys.len() + values.len()])?;
    let mut joined = None;
    let key_rows = KeyRows::<K>::new(keys, &key_columns, &mut layout.key_path, &mut joined)?;
    let mut all_values = read_all::<V>(values, &value_columns)?.into_iter();
    for range in rows {
        // Skip to the group's first value: earlier groups may have left values unread.
        let skip = all_values.len() - (batch.num_rows() - range.start);
        all_values.by_ref().take(skip).for_each(drop);
        let key = key_rows.get(range.start)?;
        visit(key, RowValues { values: all_values.by_ref().take(range.len()) })?;
    }
    Ok(())
}

/// The keys of a batch, read one group's first row at a time.
enum KeyRows<'a, K> {
    /// From flat columns.
    Flat(FlatRows<'a>, PhantomData<fn() -> K>),
    /// Through serde_arrow, for a key type flat columns cannot hold or its `Deserialize`
    /// does not read as a sequence.
    Serde(Deserializer<'a>),
}

impl<'a, K: DeserializeOwned> KeyRows<'a, K> {
    /// The keys of `columns` read the reducer's way, `path`: chosen here on its first rows
    /// (the one row deserialized twice), kept for every later batch. `joined` holds the
    /// array serde_arrow reads, when it does.
    fn new(
        layout: &RowColumns,
        columns: &'a [ArrayRef],
        path: &mut Option<KeyPath>,
        joined: &'a mut Option<[ArrayRef; 1]>,
    ) -> JobResult<Self> {
        if *path != Some(KeyPath::Serde)
            && let Some(rows) = FlatRows::new(columns, layout.serde_names().is_some())
        {
            let flat = match path {
                Some(chosen) => *chosen == KeyPath::Flat,
                // Nothing to read yet: choose on a later batch.
                None if rows.len() == 0 => return Ok(KeyRows::Flat(rows, PhantomData)),
                None => K::deserialize(rows.row(0)).is_ok(),
            };
            if flat {
                *path = Some(KeyPath::Flat);
                return Ok(KeyRows::Flat(rows, PhantomData));
            }
        }
        *path = Some(KeyPath::Serde);
        let (item, array) = layout.join(columns)?;
        Ok(KeyRows::Serde(Deserializer::from_arrow(&[item], joined.insert([array]))?))
    }

    fn get(&self, row: usize) -> JobResult<K> {
        match self {
            KeyRows::Flat(rows, _) => Ok(K::deserialize(rows.row(row))?),
            KeyRows::Serde(rows) => {
                let item = rows.get(row).ok_or("a group starts past the batch")?;
                Ok(Item::<K>::deserialize(item)?.0)
            }
        }
    }
}

/// Every row of `columns` as a `T`: from flat columns where they are, else through serde_arrow.
fn read_all<T: DeserializeOwned>(layout: &RowColumns, columns: &[ArrayRef]) -> JobResult<Vec<T>> {
    if let Some(rows) = FlatRows::new(columns, layout.serde_names().is_some()) {
        let mut all = Vec::with_capacity(rows.len());
        for i in 0..rows.len() {
            match T::deserialize(rows.row(i)) {
                Ok(value) => all.push(value),
                Err(_) if i == 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        if all.len() == rows.len() {
            return Ok(all);
        }
    }
    let (item, array) = layout.join(columns)?;
    let items: Vec<Item<T>> = serde_arrow::from_arrow(&[item], &[array])?;
    Ok(items.into_iter().map(|Item(v)| v).collect())
}

/// Reduces the groups of `rows` of a merged batch: what a typed reducer and a typed combiner
/// share, made a [`Reducer`] by [`Grouped`].
pub(super) trait GroupRows: Send {
    fn reduce_rows(&mut self, batch: &RecordBatch, rows: Ranges<'_>, out: &mut Emitter) -> JobResult<()>;

    /// A combiner's table for pairs as a map task emits them (see [`Reducer`]'s hidden
    /// `into_pair_table`): only a fold has one.
    fn into_pair_table(self, _memory_bytes: usize) -> Option<Box<dyn Any + Send>>
    where
        Self: Sized,
    {
        None
    }
}

/// The row ranges of the groups of a merged batch.
pub(super) type Ranges<'a> = &'a mut dyn Iterator<Item = Range<usize>>;

/// A [`Reducer`] of typed groups.
pub(super) struct Grouped<R>(pub(super) R);

impl<R: GroupRows> Reducer for Grouped<R> {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let (batch, rows) = group.batch_and_range();
        self.0.reduce_rows(batch, &mut std::iter::once(rows), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.0.reduce_rows(groups.batch(), &mut (0..groups.len()).map(|i| groups.range(i)), out)
    }

    fn into_pair_table(self: Box<Self>, memory_bytes: usize) -> Option<Box<dyn Any + Send>> {
        self.0.into_pair_table(memory_bytes)
    }
}

/// A reducer from a closure over each group, emitting output rows.
pub(super) struct RowReducer<K, V, Out, F> {
    pub(super) f: F,
    pub(super) layout: Option<GroupLayout>,
    pub(super) writer: Option<RowWriter>,
    pub(super) types: PhantomData<fn(K, V, Out)>,
}

impl<K, V, Out, F> GroupRows for RowReducer<K, V, Out, F>
where
    K: DeserializeOwned,
    V: DeserializeOwned,
    Out: Serialize + DeserializeOwned,
    F: FnMut(K, RowValues<'_, V>, &mut RowOut<'_, Out>) -> JobResult<()> + Send,
{
    fn reduce_rows(&mut self, batch: &RecordBatch, rows: Ranges<'_>, out: &mut Emitter) -> JobResult<()> {
        let writer = RowWriter::get_or_create(&mut self.writer, out, || Ok(vec![output_columns::<Out>()?]))?;
        let layout = GroupLayout::get::<K, V>(&mut self.layout)?;
        let mut row_out = RowOut { writer, out, types: PhantomData };
        each_group(layout, batch, rows, |key, values| (self.f)(key, values, &mut row_out))?;
        row_out.writer.flush(row_out.out)
    }
}

/// A combiner from a closure over each group, emitting `(key, value)` pairs of the map
/// output.
pub(super) struct RowCombiner<K, V, F> {
    pub(super) f: F,
    pub(super) groups: PairGroups,
    pub(super) types: PhantomData<fn(K, V)>,
}

/// What a typed combiner keeps from batch to batch: the groups' layout and the writer of
/// the pairs it emits.
#[derive(Default)]
pub(super) struct PairGroups {
    layout: Option<GroupLayout>,
    writer: Option<RowWriter>,
}

impl PairGroups {
    /// Calls `visit` with each group of `rows` of `batch`; what it emits are map-output pairs.
    pub(super) fn combine<K, V>(
        &mut self,
        batch: &RecordBatch,
        rows: Ranges<'_>,
        out: &mut Emitter,
        mut visit: impl FnMut(K, RowValues<'_, V>, &mut KeyValueOut<'_, K, V>) -> JobResult<()>,
    ) -> JobResult<()>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let writer = RowWriter::get_or_create(&mut self.writer, out, || {
            Ok(vec![key_columns::<K>()?, value_columns::<V>()?])
        })?;
        let layout = GroupLayout::get::<K, V>(&mut self.layout)?;
        let mut kv = KeyValueOut::columns(writer, out);
        each_group(layout, batch, rows, |key, values| visit(key, values, &mut kv))?;
        kv.writer.flush(kv.out)
    }
}

impl<K, V, F> GroupRows for RowCombiner<K, V, F>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
    F: FnMut(K, RowValues<'_, V>, &mut KeyValueOut<'_, K, V>) -> JobResult<()> + Send,
{
    fn reduce_rows(&mut self, batch: &RecordBatch, rows: Ranges<'_>, out: &mut Emitter) -> JobResult<()> {
        self.groups.combine(batch, rows, out, &mut self.f)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch};
    use serde::{Deserialize, Deserializer, Serialize};

    use super::super::{reduce_rows, row_output_schema, row_schema};
    use crate::job::{Emitter, Groups};

    thread_local! {
        /// Keys of type `Counted` deserialized on this thread.
        static KEY_READS: Cell<usize> = const { Cell::new(0) };
    }

    /// A key that counts how often it is deserialized.
    #[derive(Serialize)]
    struct Counted(i64);

    impl<'de> Deserialize<'de> for Counted {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            KEY_READS.with(|reads| reads.set(reads.get() + 1));
            i64::deserialize(deserializer).map(Counted)
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Total {
        key: i64,
        total: f64,
    }

    fn batch(keys: Vec<i64>, values: Vec<f64>) -> RecordBatch {
        let schema = row_schema::<i64, f64>().schema().clone();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(keys)), Arc::new(Float64Array::from(values))],
        )
        .unwrap()
    }

    #[test]
    fn keys_are_read_once_per_group_the_path_chosen_once_per_reducer() {
        let mut reducer = reduce_rows::<Counted, f64, Total, _>(|Counted(key), values, out| {
            out.emit(Total { key, total: values.sum() })
        });
        let mut out = Emitter::new(row_output_schema::<Total>());
        let first = batch(vec![1, 1, 2], vec![1.0, 2.0, 3.0]);
        reducer.reduce_groups(&Groups::new(&first, &[0, 2], &[0]), &mut out).unwrap();
        let after_first = KEY_READS.with(Cell::get);
        // Three more batches of two groups each: two keys read each, none to choose a path.
        for start in [3, 5, 7] {
            let next = batch(vec![start, start + 1, start + 1], vec![1.0, 2.0, 4.0]);
            reducer.reduce_groups(&Groups::new(&next, &[0, 1], &[0]), &mut out).unwrap();
        }
        assert_eq!(KEY_READS.with(Cell::get) - after_first, 6);
        let totals: Vec<f64> = out
            .take_batches()
            .iter()
            .flat_map(|b| b.column(1).as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(totals, [3.0, 3.0, 1.0, 6.0, 1.0, 6.0, 1.0, 6.0]);
    }
}
