//! The same revenue job written at the batch level, with Arrow kernels over whole batches:
//! what the typed-record version is measured against (`revenue --api batches`,
//! `bench/typed-records`, the `typed_rows` criterion bench).

use std::sync::Arc;

use gristmill::arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use gristmill::arrow::compute::kernels::arity::binary;
use gristmill::arrow::compute::{CastOptions, cast_with_options};
use gristmill::arrow::datatypes::{DataType, Float64Type, Int64Type};
use gristmill::prelude::*;

/// Maps lineitem batches (`l_suppkey`, `l_extendedprice`, `l_discount`, in any numeric
/// types) to `(supplier, revenue)` batches.
pub struct BatchRevenue;

impl Mapper for BatchRevenue {
    fn map(&mut self, batch: &RecordBatch, out: &mut Emitter) -> JobResult<()> {
        let supplier = column(batch, "l_suppkey", &DataType::Int64)?;
        let price = column(batch, "l_extendedprice", &DataType::Float64)?;
        let discount = column(batch, "l_discount", &DataType::Float64)?;
        let revenue: Float64Array =
            binary(price.as_primitive::<Float64Type>(), discount.as_primitive::<Float64Type>(), |p, d| {
                p * (1.0 - d)
            })?;
        out.emit(RecordBatch::try_new(out.schema().clone(), vec![supplier, Arc::new(revenue)])?)
    }
}

/// The column `name` of `batch`, cast (strictly) to `to`.
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> JobResult<ArrayRef> {
    let array = batch.column_by_name(name).ok_or_else(|| format!("the input has no column `{name}`"))?;
    let strict = CastOptions { safe: false, ..Default::default() };
    Ok(cast_with_options(array, to, &strict)?)
}

/// Sums the `f64` values of each group of `(i64 key, f64 value)` rows: the combiner and the
/// reducer (both emit two columns, in the emitter's schema).
pub struct SumPerKey;

impl Reducer for SumPerKey {
    fn reduce(&mut self, group: &KeyGroup<'_>, out: &mut Emitter) -> JobResult<()> {
        let (batch, rows) = group.batch_and_range();
        self.sum(batch, std::iter::once(rows), out)
    }

    fn reduce_groups(&mut self, groups: &Groups<'_>, out: &mut Emitter) -> JobResult<()> {
        self.sum(groups.batch(), (0..groups.len()).map(|i| groups.range(i)), out)
    }
}

impl SumPerKey {
    fn sum(
        &mut self,
        batch: &RecordBatch,
        groups: impl ExactSizeIterator<Item = std::ops::Range<usize>>,
        out: &mut Emitter,
    ) -> JobResult<()> {
        let keys = batch.column(0).as_primitive::<Int64Type>();
        let values = batch.column(1).as_primitive::<Float64Type>().values();
        let (mut group_keys, mut sums) = (Vec::with_capacity(groups.len()), Vec::with_capacity(groups.len()));
        for rows in groups {
            group_keys.push(keys.value(rows.start));
            sums.push(values[rows].iter().sum::<f64>());
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(group_keys)), Arc::new(Float64Array::from(sums))];
        out.emit(RecordBatch::try_new(out.schema().clone(), columns)?)
    }
}
