//! [`FinalReducer`]: the group-by's reducer. Its job asks for unordered reduce input, so
//! the shuffle does not sort the map tasks' partials: the reducer merges them in a hash
//! table over its whole partition ([`PartialTable`]) and sorts only its final groups, once.
//! A partition too large for that reaches it sorted instead, and is merged by key ranges.
//!
//! Partials are added in the order the engine hands them over (map task order), as the
//! sorted merge adds them, so both ways give the same float sums.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::compute::{cast, sort_to_indices, take};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use gristmill::prelude::*;

use super::keys::KeyTable;
use super::partials::{MergePartials, Sum, Sums, final_column, overflow_error};
use super::{Aggregate, Column, GroupByPlan};
use crate::group_ranges::ByRanges;

/// Final rows emitted per batch.
const EMIT_ROWS: usize = 64 * 1024;

/// Merges partials by hash (unordered input) or by key ranges (sorted input).
pub(super) struct FinalReducer {
    sorted: ByRanges<MergePartials>,
    table: PartialTable,
}

impl FinalReducer {
    pub(super) fn new(plan: &GroupByPlan) -> JobResult<Self> {
        Ok(FinalReducer {
            sorted: ByRanges(MergePartials { aggregates: plan.aggregates.clone() }),
            table: PartialTable::new(plan)?,
        })
    }
}

impl Reducer for FinalReducer {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        self.sorted.reduce(group, out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.sorted.reduce_groups(groups, out)
    }

    fn reduce_batch(&mut self, batch: &RecordBatch, _: &mut Emitter) -> JobResult<()> {
        self.table.add(batch)
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        self.table.emit_sorted(out)
    }
}

/// One aggregate's merged state per group.
struct Merged {
    aggregate: Aggregate<Column>,
    /// `None` for `--count`.
    sums: Option<Sums>,
    /// Non-null values (rows, for `--count`) per group.
    counts: Vec<i64>,
}

/// Partials merged per group in a hash table: the groups' keys and their sums and counts.
struct PartialTable {
    keys: KeyTable,
    /// Strings are partial keys as `Utf8`, looked up as `Utf8View`.
    key_type: DataType,
    merged: Vec<Merged>,
    ids: Vec<u32>,
}

impl PartialTable {
    fn new(plan: &GroupByPlan) -> JobResult<Self> {
        let key_type = plan.key.ty.read_type();
        let merged = plan
            .aggregates
            .iter()
            .map(|aggregate| Merged {
                aggregate: aggregate.clone(),
                sums: aggregate.column().and_then(|c| c.ty.sum_type()).map(Sums::new),
                counts: Vec::new(),
            })
            .collect();
        Ok(PartialTable {
            keys: KeyTable::new(&key_type, plan.key.ty.output_type())?,
            key_type,
            merged,
            ids: Vec::new(),
        })
    }

    /// Adds a batch of partial rows (map-output schema) to their groups.
    fn add(&mut self, batch: &RecordBatch) -> JobResult<()> {
        let keys = cast(batch.column(0), &self.key_type)?;
        self.keys.group_ids(&keys, &mut self.ids)?;
        let groups = self.keys.len();
        let mut next = 1;
        for merged in &mut self.merged {
            merged.counts.resize(groups, 0);
            if let Some(sums) = &mut merged.sums {
                sums.resize(groups);
                let overflow = match sums {
                    Sums::Signed(s) => add_by_id::<Int64Type>(batch.column(next), &self.ids, s),
                    Sums::Unsigned(s) => add_by_id::<UInt64Type>(batch.column(next), &self.ids, s),
                    Sums::Float(s) => add_by_id::<Float64Type>(batch.column(next), &self.ids, s),
                };
                if overflow {
                    let name = merged.aggregate.column().map_or("count", |c| &c.name);
                    return Err(overflow_error(name, sums));
                }
                next += 1;
            }
            add_by_id::<Int64Type>(batch.column(next), &self.ids, &mut merged.counts);
            next += 1;
        }
        Ok(())
    }

    /// Emits the final row of every group, sorted by key (nulls first), and empties the table.
    fn emit_sorted(&mut self, out: &mut Emitter) -> JobResult<()> {
        if self.keys.len() == 0 {
            return Ok(());
        }
        let keys = self.keys.drain()?;
        let mut columns = vec![keys];
        for merged in &mut self.merged {
            let counts = std::mem::take(&mut merged.counts);
            columns.push(match &mut merged.sums {
                Some(sums) => final_column(&merged.aggregate, sums, &counts),
                None => Arc::new(Int64Array::from(counts)),
            });
        }
        let order = sort_to_indices(&columns[0], None, None)?;
        for start in (0..order.len()).step_by(EMIT_ROWS) {
            let indices = order.slice(start, EMIT_ROWS.min(order.len() - start));
            let sorted: Vec<ArrayRef> =
                columns.iter().map(|c| take(c, &indices, None)).collect::<Result<_, _>>()?;
            out.emit(RecordBatch::try_new(out.schema().clone(), sorted)?)?;
        }
        Ok(())
    }
}

/// Adds each value of `values` (a non-null partial column of type `T`) to its group's
/// entry of `into`; true when one overflowed.
fn add_by_id<T: Sum>(values: &ArrayRef, ids: &[u32], into: &mut [T::Native]) -> bool {
    let values = values.as_primitive::<T>().values();
    let mut overflow = false;
    for (&id, &value) in ids.iter().zip(values.iter()) {
        let (sum, o) = T::add(into[id as usize], value);
        into[id as usize] = sum;
        overflow |= o;
    }
    overflow
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Float64Array, StringArray};

    use super::*;
    use crate::groupby::ColumnType;

    fn plan() -> GroupByPlan {
        let column = |name: &str, ty| Column { name: name.to_owned(), ty };
        GroupByPlan {
            key: column("k", ColumnType::Utf8),
            aggregates: vec![
                Aggregate::Sum(column("v", ColumnType::Int32)),
                Aggregate::Count,
                Aggregate::Mean(column("x", ColumnType::Float64)),
            ],
            filter: None,
        }
    }

    /// A partial row: key, v.sum, v.count, count, x.sum, x.count.
    type Partial<'a> = (Option<&'a str>, i64, i64, i64, f64, i64);

    fn partials(plan: &GroupByPlan, rows: &[Partial<'_>]) -> RecordBatch {
        let column = |f: fn(&Partial<'_>) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            column(|r| r.1),
            column(|r| r.2),
            column(|r| r.3),
            Arc::new(Float64Array::from(rows.iter().map(|r| r.4).collect::<Vec<_>>())),
            column(|r| r.5),
        ];
        RecordBatch::try_new(plan.map_output().schema().clone(), columns).unwrap()
    }

    #[test]
    fn unordered_partials_merge_into_sorted_final_rows_as_the_sorted_merge_gives() {
        let plan = plan();
        let first = partials(
            &plan,
            &[(Some("b"), 5, 1, 2, 1.5, 1), (None, 0, 0, 1, 0.0, 0), (Some("a"), 1, 1, 1, 0.0, 0)],
        );
        let second = partials(&plan, &[(Some("a"), 2, 1, 3, 2.0, 2), (Some("b"), 0, 0, 1, 0.5, 1)]);

        let mut hashed = FinalReducer::new(&plan).unwrap();
        let mut out = Emitter::new(plan.output_schema());
        hashed.reduce_batch(&first, &mut out).unwrap();
        hashed.reduce_batch(&second, &mut out).unwrap();
        assert!(out.take_batches().is_empty(), "nothing is emitted before the partition ends");
        hashed.finish(&mut out).unwrap();
        let hashed = out.take_batches().remove(0);

        let keys = hashed.column(0).as_string::<i32>();
        assert_eq!(keys.iter().collect::<Vec<_>>(), [None, Some("a"), Some("b")], "sorted, nulls first");
        let sums = hashed.column(1).as_primitive::<Int64Type>();
        assert_eq!((sums.is_null(0), sums.value(1), sums.value(2)), (true, 3, 5), "no non-null v: null");
        assert_eq!(hashed.column(2).as_primitive::<Int64Type>().values().as_ref(), [1, 4, 3]);
        let means = hashed.column(3).as_primitive::<Float64Type>();
        assert_eq!((means.is_null(0), means.value(1), means.value(2)), (true, 1.0, 1.0));

        // The same partials, sorted and merged by key ranges.
        let all = arrow::compute::concat_batches(&first.schema(), &[first, second]).unwrap();
        let order = sort_to_indices(all.column(0), None, None).unwrap();
        let sorted = arrow::compute::take_record_batch(&all, &order).unwrap();
        let mut ranged = FinalReducer::new(&plan).unwrap();
        let mut out = Emitter::new(plan.output_schema());
        ranged.reduce_groups(&Groups::new(&sorted, &[0, 1, 3], &[0]), &mut out).unwrap();
        ranged.finish(&mut out).unwrap();
        assert_eq!(out.take_batches(), [hashed]);
    }

    #[test]
    fn an_overflowing_merged_sum_names_its_column() {
        let plan = plan();
        let big = partials(&plan, &[(Some("a"), i64::MAX, 1, 1, 0.0, 0), (Some("a"), 1, 1, 1, 0.0, 0)]);
        let mut reducer = FinalReducer::new(&plan).unwrap();
        let err = reducer.reduce_batch(&big, &mut Emitter::new(plan.output_schema())).unwrap_err();
        assert!(err.to_string().contains("`v`") && err.to_string().contains("overflows"), "{err}");
    }
}
