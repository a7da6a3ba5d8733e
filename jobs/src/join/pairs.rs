//! [`JoinGroups`]: the join's reducer. It walks each merged chunk by join key, keeps the
//! left rows of the current key and pairs every right row of the key with them.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{interleave, take, take_record_batch};
use arrow::datatypes::{SchemaRef, UInt8Type};
use arrow::row::{OwnedRow, RowConverter, SortField};
use gristmill::prelude::*;

use super::{KEY, LEFT, Layout, SIDE};

/// Pairs the left and right rows of each join key.
///
/// Chunks arrive sorted by (join key, side, sequence number), cut anywhere (every group is
/// one row). Within a chunk, a key's left rows are one run and its right rows the run after;
/// a key may continue into the next chunk, so the left rows of a chunk's last key are copied
/// out and carried over. Memory: the carried left rows of one key, plus one output batch of
/// index pairs.
pub struct JoinGroups {
    converter: RowConverter,
    left: Vec<usize>,
    right: Vec<usize>,
    output: SchemaRef,
    batch_rows: usize,
    /// The last join key of the chunks seen so far.
    carry_key: Option<OwnedRow>,
    /// Its left rows (left columns only), copied out of the chunks they came in.
    carry: Vec<RecordBatch>,
}

impl JoinGroups {
    /// A reducer for `layout`'s map output, emitting batches of at most `batch_rows` rows.
    pub fn new(layout: &Layout, batch_rows: usize) -> JobResult<Self> {
        let key_type = layout.map_output.schema().field(KEY).data_type().clone();
        Ok(JoinGroups {
            converter: RowConverter::new(vec![SortField::new(key_type)])?,
            left: layout.columns_of(0).collect(),
            right: layout.columns_of(1).collect(),
            output: layout.output.clone(),
            batch_rows: batch_rows.max(1),
            carry_key: None,
            carry: Vec::new(),
        })
    }

    /// Joins the rows of one sorted chunk.
    fn join_chunk(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self.converter.convert_columns(&[batch.column(KEY).clone()])?;
        let sides = batch.column(SIDE).as_primitive::<UInt8Type>().values();
        let left_rows = batch.project(&self.left)?;
        let right_rows = batch.project(&self.right)?;
        if self.carry_key.as_ref().is_none_or(|k| k.row() != keys.row(0)) {
            self.carry.clear();
        }

        // Left sources: the carried batches, then this chunk's left columns.
        let mut sources: Vec<&RecordBatch> = self.carry.iter().collect();
        sources.push(&left_rows);
        let chunk_source = sources.len() - 1;
        let mut pairs = PairBuffer::new(&sources, &right_rows, &self.output, self.batch_rows);

        let mut start = 0;
        let mut last_left = 0..0;
        while start < n {
            let key = keys.row(start);
            let mut mid = start;
            while mid < n && sides[mid] == LEFT && keys.row(mid) == key {
                mid += 1;
            }
            let mut end = mid;
            while end < n && keys.row(end) == key {
                end += 1;
            }
            // Only the chunk's first key can continue a key of the previous chunk.
            let carried = if start == 0 { &self.carry[..] } else { &[] };
            if end > mid && (mid > start || !carried.is_empty()) {
                for right in mid..end {
                    for (source, piece) in carried.iter().enumerate() {
                        for row in 0..piece.num_rows() {
                            pairs.push((source, row), right, out)?;
                        }
                    }
                    for left in start..mid {
                        pairs.push((chunk_source, left), right, out)?;
                    }
                }
            }
            last_left = start..mid;
            start = end;
        }
        pairs.flush(out)?;
        drop(pairs);
        drop(sources);

        // Carry the left rows of the last key into the next chunk, copied so the chunk can go.
        let last_key = keys.row(n - 1).owned();
        let first_key_is_last = keys.row(0) == last_key.row();
        if !first_key_is_last {
            self.carry.clear();
        }
        if !last_left.is_empty() {
            self.carry.push(copy_rows(&left_rows, last_left)?);
        }
        self.carry_key = Some(last_key);
        Ok(())
    }
}

/// Rows `range` of `batch`, in fresh buffers.
fn copy_rows(batch: &RecordBatch, range: Range<usize>) -> JobResult<RecordBatch> {
    let indices = UInt32Array::from_iter_values(range.start as u32..range.end as u32);
    Ok(take_record_batch(batch, &indices)?)
}

impl Reducer for JoinGroups {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        self.join_chunk(&group.rows(), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.join_chunk(groups.batch(), out)
    }
}

/// Index pairs of output rows, gathered into a batch every `limit` pairs.
struct PairBuffer<'a> {
    sources: &'a [&'a RecordBatch],
    right_rows: &'a RecordBatch,
    output: &'a SchemaRef,
    limit: usize,
    left: Vec<(usize, usize)>,
    right: Vec<u32>,
}

impl<'a> PairBuffer<'a> {
    fn new(
        sources: &'a [&'a RecordBatch],
        right_rows: &'a RecordBatch,
        output: &'a SchemaRef,
        limit: usize,
    ) -> Self {
        PairBuffer {
            sources,
            right_rows,
            output,
            limit,
            left: Vec::with_capacity(limit),
            right: Vec::with_capacity(limit),
        }
    }

    #[inline]
    fn push(&mut self, left: (usize, usize), right: usize, out: &mut Emitter) -> JobResult<()> {
        self.left.push(left);
        self.right.push(right as u32);
        if self.left.len() >= self.limit {
            self.flush(out)?;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.left.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for c in 0..self.sources[0].num_columns() {
            let values: Vec<&dyn Array> = self.sources.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&values, &self.left)?);
        }
        let right = UInt32Array::from(std::mem::replace(&mut self.right, Vec::with_capacity(self.limit)));
        for column in self.right_rows.columns() {
            columns.push(take(column.as_ref(), &right, None)?);
        }
        self.left.clear();
        out.emit(RecordBatch::try_new(Arc::clone(self.output), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray, UInt8Array, UInt64Array};
    use arrow::compute::{SortColumn, lexsort_to_indices};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use proptest::prelude::*;

    use super::super::{Layout, SideSchema};
    use super::*;

    /// Left rows (k, a), right rows (k, b).
    fn layout() -> Layout {
        let left =
            Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("a", DataType::Utf8, true)]);
        let right =
            Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("b", DataType::Int64, true)]);
        Layout::new(
            SideSchema::from_schema("left", "l".into(), &left, "k").unwrap(),
            SideSchema::from_schema("right", "r".into(), &right, "k").unwrap(),
        )
        .unwrap()
    }

    /// The map output of `left` and `right` rows, sorted by (key, side, seq) as the merge
    /// hands it over.
    fn map_output(layout: &Layout, left: &[(i64, String)], right: &[(i64, i64)]) -> RecordBatch {
        let (nl, nr) = (left.len(), right.len());
        let lefts = || left.iter().map(Some).chain(std::iter::repeat_n(None, nr));
        let rights = || std::iter::repeat_n(None, nl).chain(right.iter().map(Some));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(left.iter().map(|l| l.0).chain(right.iter().map(|r| r.0)))),
            Arc::new(UInt8Array::from_iter_values((0..nl + nr).map(|i| u8::from(i >= nl)))),
            Arc::new(UInt64Array::from_iter_values((0..nl + nr).map(|i| i as u64))),
            Arc::new(Int64Array::from_iter(lefts().map(|l| l.map(|l| l.0)))),
            Arc::new(StringArray::from_iter(lefts().map(|l| l.map(|l| l.1.clone())))),
            Arc::new(Int64Array::from_iter(rights().map(|r| r.map(|r| r.0)))),
            Arc::new(Int64Array::from_iter(rights().map(|r| r.map(|r| r.1)))),
        ];
        let batch = RecordBatch::try_new(layout.map_output.schema().clone(), columns).unwrap();
        let sort: Vec<SortColumn> =
            (0..3).map(|c| SortColumn { values: batch.column(c).clone(), options: None }).collect();
        take_record_batch(&batch, &lexsort_to_indices(&sort, None).unwrap()).unwrap()
    }

    /// Joins `batch` handed over in chunks cut at `cuts`; returns the sorted output rows
    /// and the largest output batch.
    fn join(batch: &RecordBatch, cuts: &[usize], batch_rows: usize) -> (Vec<(i64, String, i64, i64)>, usize) {
        let layout = layout();
        let mut reducer = JoinGroups::new(&layout, batch_rows).unwrap();
        let mut out = Emitter::new(layout.output.clone());
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(batch.num_rows())).collect();
        bounds.push(0);
        bounds.push(batch.num_rows());
        bounds.sort_unstable();
        for w in bounds.windows(2) {
            let chunk = batch.slice(w[0], w[1] - w[0]);
            let starts: Vec<usize> = (0..chunk.num_rows()).collect();
            let groups = Groups::new(&chunk, &starts, &[0, 1, 2]);
            reducer.reduce_groups(&groups, &mut out).unwrap();
        }
        reducer.finish(&mut out).unwrap();
        let (mut rows, mut largest) = (Vec::new(), 0);
        for b in out.take_batches() {
            largest = largest.max(b.num_rows());
            let k = b.column(0).as_primitive::<Int64Type>();
            let a = b.column(1).as_string::<i32>();
            let rk = b.column(2).as_primitive::<Int64Type>();
            let rb = b.column(3).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                rows.push((k.value(i), a.value(i).to_owned(), rk.value(i), rb.value(i)));
            }
        }
        rows.sort();
        (rows, largest)
    }

    fn nested_loops(left: &[(i64, String)], right: &[(i64, i64)]) -> Vec<(i64, String, i64, i64)> {
        let mut rows = Vec::new();
        for (lk, a) in left {
            for (rk, b) in right {
                if lk == rk {
                    rows.push((*lk, a.clone(), *rk, *b));
                }
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn a_key_frequent_on_both_sides_across_many_chunks() {
        let left: Vec<(i64, String)> =
            (0..300).map(|i| (if i % 3 == 0 { 7 } else { 1000 + i }, format!("l{i}"))).collect();
        let right: Vec<(i64, i64)> = (0..400).map(|i| (if i % 2 == 0 { 7 } else { 1000 + i }, i)).collect();
        let batch = map_output(&layout(), &left, &right);
        let cuts: Vec<usize> = (0..batch.num_rows()).step_by(37).collect();
        let (rows, largest) = join(&batch, &cuts, 100);
        assert_eq!(rows, nested_loops(&left, &right));
        assert_eq!(rows.iter().filter(|r| r.0 == 7).count(), 100 * 200);
        assert!(largest <= 100, "output batches stay bounded: {largest}");
    }

    proptest! {
        /// Any cut of the merged rows into chunks and any output batch size give the nested
        /// loops' pairs.
        #[test]
        fn equals_nested_loops_for_any_chunking(
            left in prop::collection::vec((0i64..6, 0u8..3), 0..40),
            right in prop::collection::vec((0i64..6, 0i64..100), 0..40),
            cuts in prop::collection::vec(0usize..80, 0..8),
            batch_rows in 1usize..20,
        ) {
            let left: Vec<(i64, String)> = left.into_iter().map(|(k, a)| (k, format!("a{a}"))).collect();
            let batch = map_output(&layout(), &left, &right);
            let (rows, largest) = join(&batch, &cuts, batch_rows);
            prop_assert_eq!(rows, nested_loops(&left, &right));
            prop_assert!(largest <= batch_rows);
        }
    }
}
