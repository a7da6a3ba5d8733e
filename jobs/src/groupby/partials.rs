//! Partial aggregates: the mapper that accumulates them per group ([`AggregateMapper`]) and
//! the combiner and reducer that merge them ([`MergePartials`]).
//!
//! A partial row is the key, then per aggregate of a column its sum (`Int64`, `UInt64` or
//! `Float64`) and its count of non-null values (`Int64`), and per `--count` the rows of the
//! group (`Int64`). Sums and counts are never null: a group whose values are all null has
//! sum 0 and count 0, and only the reducer's final rows turn that into SQL's null.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, Float64Array, Int64Array, UInt64Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, take};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use gristmill::prelude::*;

use super::keys::KeyTable;
use super::{Aggregate, GroupByPlan, SumType};
use crate::group_ranges::MergeRanges;

/// Groups a mapper holds before it emits their partials (bounds its memory).
pub(super) const MAX_GROUPS: usize = 1 << 20;

/// How values of one type are added: wrapping, reporting overflow.
pub(super) trait Sum: ArrowPrimitiveType {
    fn add(a: Self::Native, b: Self::Native) -> (Self::Native, bool);
}

impl Sum for Int64Type {
    #[inline]
    fn add(a: i64, b: i64) -> (i64, bool) {
        a.overflowing_add(b)
    }
}

impl Sum for UInt64Type {
    #[inline]
    fn add(a: u64, b: u64) -> (u64, bool) {
        a.overflowing_add(b)
    }
}

impl Sum for Float64Type {
    #[inline]
    fn add(a: f64, b: f64) -> (f64, bool) {
        (a + b, false)
    }
}

/// Per-group sums of one column.
pub(super) enum Sums {
    Signed(Vec<i64>),
    Unsigned(Vec<u64>),
    Float(Vec<f64>),
}

impl Sums {
    pub(super) fn new(sum_type: SumType) -> Self {
        match sum_type {
            SumType::Signed => Sums::Signed(Vec::new()),
            SumType::Unsigned => Sums::Unsigned(Vec::new()),
            SumType::Float => Sums::Float(Vec::new()),
        }
    }

    /// The sums of a partial sum column over each range, and whether one overflowed.
    fn merge(column: &ArrayRef, ranges: &[Range<usize>]) -> (Self, bool) {
        match column.data_type() {
            DataType::Int64 => {
                let (sums, overflow) = sum_ranges::<Int64Type>(column, ranges);
                (Sums::Signed(sums), overflow)
            }
            DataType::UInt64 => {
                let (sums, overflow) = sum_ranges::<UInt64Type>(column, ranges);
                (Sums::Unsigned(sums), overflow)
            }
            _ => (Sums::Float(sum_ranges::<Float64Type>(column, ranges).0), false),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Sums::Signed(_) => DataType::Int64,
            Sums::Unsigned(_) => DataType::UInt64,
            Sums::Float(_) => DataType::Float64,
        }
    }

    pub(super) fn resize(&mut self, groups: usize) {
        match self {
            Sums::Signed(s) => s.resize(groups, 0),
            Sums::Unsigned(s) => s.resize(groups, 0),
            Sums::Float(s) => s.resize(groups, 0.0),
        }
    }

    /// The sums as a column with these nulls; leaves the sums empty.
    pub(super) fn take_array(&mut self, nulls: Option<NullBuffer>) -> ArrayRef {
        match self {
            Sums::Signed(s) => Arc::new(Int64Array::new(std::mem::take(s).into(), nulls)),
            Sums::Unsigned(s) => Arc::new(UInt64Array::new(std::mem::take(s).into(), nulls)),
            Sums::Float(s) => Arc::new(Float64Array::new(std::mem::take(s).into(), nulls)),
        }
    }

    /// `sum / count` per group, null where the count is 0.
    pub(super) fn means(&self, counts: &[i64]) -> ArrayRef {
        let means: Vec<f64> = match self {
            Sums::Signed(s) => s.iter().zip(counts).map(|(&s, &n)| s as f64 / n as f64).collect(),
            Sums::Unsigned(s) => s.iter().zip(counts).map(|(&s, &n)| s as f64 / n as f64).collect(),
            Sums::Float(s) => s.iter().zip(counts).map(|(&s, &n)| s / n as f64).collect(),
        };
        Arc::new(Float64Array::new(means.into(), nulls_where_empty(counts)))
    }
}

/// One aggregate's per-group state in the mapper.
struct Accumulator {
    /// The input column summed, and its index in input batches; `None` for `--count`.
    column: Option<(String, usize)>,
    sums: Option<Sums>,
    /// Non-null values (rows, for `--count`) per group.
    counts: Vec<i64>,
}

impl Accumulator {
    /// Makes room for `groups` groups.
    pub(super) fn resize(&mut self, groups: usize) {
        self.counts.resize(groups, 0);
        if let Some(sums) = &mut self.sums {
            sums.resize(groups);
        }
    }

    /// Adds the rows of `batch` whose groups are `ids`.
    fn update(&mut self, batch: &RecordBatch, ids: &[u32]) -> JobResult<()> {
        let Some((name, index)) = &self.column else {
            for &id in ids {
                self.counts[id as usize] += 1;
            }
            return Ok(());
        };
        let values = batch.column(*index);
        let sums = self.sums.as_mut().ok_or("a column aggregate has sums")?;
        let overflow = match sums {
            Sums::Signed(s) => accumulate::<Int64Type>(values, ids, s, &mut self.counts)?,
            Sums::Unsigned(s) => accumulate::<UInt64Type>(values, ids, s, &mut self.counts)?,
            Sums::Float(s) => accumulate::<Float64Type>(values, ids, s, &mut self.counts)?,
        };
        if overflow {
            return Err(overflow_error(name, sums));
        }
        Ok(())
    }

    /// This aggregate's partial columns for every group, in group order; empties it.
    fn drain(&mut self, columns: &mut Vec<ArrayRef>) {
        if let Some(sums) = &mut self.sums {
            columns.push(sums.take_array(None));
        }
        columns.push(Arc::new(Int64Array::from(std::mem::take(&mut self.counts))));
    }
}

pub(super) fn overflow_error(column: &str, sums: &Sums) -> BoxError {
    format!("the sum of `{column}` overflows {} in a group", sums.data_type()).into()
}

/// Adds each non-null value of `values` (widened to `T`) to its group's sum and count;
/// true when a sum overflowed.
fn accumulate<T: Sum>(
    values: &ArrayRef,
    ids: &[u32],
    sums: &mut [T::Native],
    counts: &mut [i64],
) -> JobResult<bool> {
    let wide = cast(values, &T::DATA_TYPE)?;
    let wide = wide.as_primitive::<T>();
    let values = wide.values();
    let mut overflow = false;
    let mut add = |row: usize| {
        let id = ids[row] as usize;
        let (sum, o) = T::add(sums[id], values[row]);
        sums[id] = sum;
        overflow |= o;
        counts[id] += 1;
    };
    match wide.nulls().filter(|n| n.null_count() > 0) {
        None => (0..values.len()).for_each(&mut add),
        Some(nulls) => nulls.valid_indices().for_each(&mut add),
    }
    Ok(overflow)
}

/// The mapper: accumulates partials per group over its whole split (in-mapper combining),
/// emitting them when the split ends or when it holds [`MAX_GROUPS`] groups.
pub(super) struct AggregateMapper {
    keys: KeyTable,
    aggregates: Vec<Accumulator>,
    ids: Vec<u32>,
}

impl AggregateMapper {
    pub(super) fn new(plan: &GroupByPlan) -> JobResult<Self> {
        let keys = KeyTable::new(&plan.key.ty.read_type(), plan.key.ty.output_type())?;
        let mut next_column = 1;
        let aggregates = plan
            .aggregates
            .iter()
            .map(|aggregate| match aggregate.column() {
                None => Accumulator { column: None, sums: None, counts: Vec::new() },
                Some(column) => {
                    next_column += 1;
                    let sums = column.ty.sum_type().map(Sums::new);
                    Accumulator {
                        column: Some((column.name.clone(), next_column - 1)),
                        sums,
                        counts: Vec::new(),
                    }
                }
            })
            .collect();
        Ok(AggregateMapper { keys, aggregates, ids: Vec::new() })
    }

    fn emit_partials(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.keys.len() == 0 {
            return Ok(());
        }
        let mut columns = vec![self.keys.drain()?];
        for aggregate in &mut self.aggregates {
            aggregate.drain(&mut columns);
        }
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

impl Mapper for AggregateMapper {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        self.keys.group_ids(batch.column(0), &mut self.ids)?;
        for aggregate in &mut self.aggregates {
            aggregate.resize(self.keys.len());
            aggregate.update(batch, &self.ids)?;
        }
        if self.keys.len() >= MAX_GROUPS {
            self.emit_partials(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        self.emit_partials(out)
    }
}

/// Merges the partials of each group into its final row, vectorized over runs of groups
/// (the reducer's way with sorted input).
pub(super) struct MergePartials {
    pub(super) aggregates: Vec<Aggregate<super::Column>>,
}

/// The sum of `column` (of type `T`) over each range, and whether one overflowed.
fn sum_ranges<T: Sum>(column: &ArrayRef, ranges: &[Range<usize>]) -> (Vec<T::Native>, bool) {
    let values = column.as_primitive::<T>().values();
    let mut overflow = false;
    let sums = ranges
        .iter()
        .map(|r| {
            values[r.clone()].iter().fold(T::Native::default(), |a, &b| {
                let (sum, o) = T::add(a, b);
                overflow |= o;
                sum
            })
        })
        .collect();
    (sums, overflow)
}

/// Null where `counts` is 0 (a group without a non-null value).
pub(super) fn nulls_where_empty(counts: &[i64]) -> Option<NullBuffer> {
    let nulls = NullBuffer::from_iter(counts.iter().map(|&n| n > 0));
    (nulls.null_count() > 0).then_some(nulls)
}

/// The output column of a `--sum` or `--mean` from its groups' sums and non-null counts:
/// SQL's null where a group has no non-null value.
pub(super) fn final_column<C>(aggregate: &Aggregate<C>, sums: &mut Sums, counts: &[i64]) -> ArrayRef {
    match aggregate {
        Aggregate::Mean(_) => sums.means(counts),
        _ => sums.take_array(nulls_where_empty(counts)),
    }
}

impl MergeRanges for MergePartials {
    fn merge(&mut self, batch: &RecordBatch, ranges: &[Range<usize>], out: &mut Emitter) -> JobResult<()> {
        let starts = UInt64Array::from_iter_values(ranges.iter().map(|r| r.start as u64));
        let mut columns = vec![take(batch.column(0), &starts, None)?];
        let mut next = 1;
        for aggregate in &self.aggregates {
            let Some(column) = aggregate.column() else {
                let (rows, _) = sum_ranges::<Int64Type>(batch.column(next), ranges);
                columns.push(Arc::new(Int64Array::from(rows)));
                next += 1;
                continue;
            };
            let (mut sums, overflow) = Sums::merge(batch.column(next), ranges);
            let (counts, _) = sum_ranges::<Int64Type>(batch.column(next + 1), ranges);
            next += 2;
            if overflow {
                return Err(overflow_error(&column.name, &sums));
            }
            columns.push(final_column(aggregate, &mut sums, &counts));
        }
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int32Array, Int64Array};
    use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};

    use super::*;
    use crate::group_ranges::ByRanges;
    use crate::groupby::{Column, ColumnType};

    fn plan(value: ColumnType) -> GroupByPlan {
        let column = |name: &str, ty| Column { name: name.to_owned(), ty };
        GroupByPlan {
            key: column("k", ColumnType::Int32),
            aggregates: vec![
                Aggregate::Sum(column("v", value)),
                Aggregate::Count,
                Aggregate::Mean(column("x", ColumnType::Float64)),
            ],
            filter: None,
        }
    }

    fn input(keys: Vec<Option<i32>>, v: Vec<Option<i32>>, x: Vec<Option<f64>>) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(keys)),
            Arc::new(Int32Array::from(v)),
            Arc::new(Float64Array::from(x)),
        ];
        RecordBatch::try_from_iter(["k", "v", "x"].into_iter().zip(columns)).unwrap()
    }

    /// Maps `batches` in one map task; returns its partial rows.
    fn map(plan: &GroupByPlan, batches: &[RecordBatch]) -> RecordBatch {
        let mut mapper = AggregateMapper::new(plan).unwrap();
        let mut out = Emitter::new(plan.map_output().schema().clone());
        for batch in batches {
            mapper.map(batch, &mut out).unwrap();
        }
        mapper.finish(&mut out).unwrap();
        let batches = out.take_batches();
        assert_eq!(batches.len(), 1, "one partial row per group, at the end of the split");
        batches.into_iter().next().unwrap()
    }

    /// Merges `partials` as the engine would: sorted by key, then one `reduce_groups` call.
    fn merge(plan: &GroupByPlan, partials: &[RecordBatch]) -> JobResult<RecordBatch> {
        let all = concat_batches(partials[0].schema_ref(), partials).unwrap();
        let sorted = take_record_batch(&all, &sort_to_indices(all.column(0), None, None).unwrap()).unwrap();
        let keys = sorted.column(0);
        let starts: Vec<usize> =
            (0..sorted.num_rows()).filter(|&i| i == 0 || keys.slice(i, 1) != keys.slice(i - 1, 1)).collect();
        let mut out = Emitter::new(plan.output_schema());
        let mut reducer = ByRanges(MergePartials { aggregates: plan.aggregates.clone() });
        reducer.reduce_groups(&Groups::new(&sorted, &starts, &[0]), &mut out)?;
        Ok(out.take_batches().remove(0))
    }

    #[test]
    fn partials_of_two_map_tasks_merge_into_sql_sums_means_and_counts() {
        let plan = plan(ColumnType::Int32);
        let first = map(
            &plan,
            &[
                input(
                    vec![Some(1), None, Some(2)],
                    vec![Some(10), Some(5), None],
                    vec![Some(1.5), None, None],
                ),
                input(vec![Some(1), Some(2)], vec![Some(-3), None], vec![Some(2.5), None]),
            ],
        );
        // Groups in first-seen order: 1, null, 2.
        let sums = first.column(1).as_primitive::<Int64Type>();
        assert_eq!(sums.values().as_ref(), [7, 5, 0]);
        assert_eq!(first.column(2).as_primitive::<Int64Type>().values().as_ref(), [2, 1, 0], "non-null v");
        assert_eq!(first.column(3).as_primitive::<Int64Type>().values().as_ref(), [2, 1, 2], "rows");
        let second = map(&plan, &[input(vec![Some(2), Some(1)], vec![None, Some(1)], vec![None, Some(5.0)])]);

        let last = merge(&plan, &[first, second]).unwrap();
        // Sorted by key, nulls first: null, 1, 2.
        assert_eq!(last.column(0).as_ref(), &Int32Array::from(vec![None, Some(1), Some(2)]) as &dyn Array);
        assert_eq!(last.column(1).as_ref(), &Int64Array::from(vec![Some(5), Some(8), None]) as &dyn Array);
        assert_eq!(last.column(2).as_ref(), &Int64Array::from(vec![1, 3, 3]) as &dyn Array);
        let means = Float64Array::from(vec![None, Some(3.0), None]);
        assert_eq!(last.column(3).as_ref(), &means as &dyn Array);
    }

    #[test]
    fn an_overflowing_sum_names_its_column() {
        let plan = plan(ColumnType::Int64);
        let big = |k: i32| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from(vec![k])),
                Arc::new(Int64Array::from(vec![i64::MAX - 1])),
                Arc::new(Float64Array::from(vec![1.0])),
            ];
            RecordBatch::try_from_iter(["k", "v", "x"].into_iter().zip(columns)).unwrap()
        };
        let mut mapper = AggregateMapper::new(&plan).unwrap();
        let mut out = Emitter::new(plan.map_output().schema().clone());
        mapper.map(&big(1), &mut out).unwrap();
        let err = mapper.map(&big(1), &mut out).unwrap_err().to_string();
        assert!(err.contains("`v`") && err.contains("Int64"), "{err}");
        let partial = map(&plan, &[big(1)]);
        let err = merge(&plan, &[partial.clone(), partial]).unwrap_err().to_string();
        assert!(err.contains("`v`") && err.contains("overflows"), "{err}");
    }
}
