//! TPC-H query 1 (the pricing summary report) over `lineitem` Parquet files:
//!
//! ```sql
//! select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
//!        sum(l_extendedprice) as sum_base_price,
//!        sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
//!        sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
//!        avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price,
//!        avg(l_discount) as avg_disc, count(*) as count_order
//! from lineitem
//! where l_shipdate <= date '1998-12-01' - interval '90' day
//! group by l_returnflag, l_linestatus
//! order by l_returnflag, l_linestatus
//! ```
//!
//! The mapper filters each batch and accumulates exact partial aggregates (`i128` sums of
//! the `DECIMAL(15, 2)` columns, read as `Decimal64`) per (returnflag, linestatus), found
//! through the flags' dictionary indices (no hashing or string access per row),
//! emitting one partial row per group when its split ends; the combiner and the reducer
//! merge partials, and the reducer emits the final row of each group. Sums are exact
//! decimals (`sum_disc_price` at scale 4, `sum_charge` at scale 6); averages are `Float64`
//! (exact sum / count, as DuckDB computes them); `count_order` is `Int64`. Every group goes
//! to partition 0, so the first part file holds the whole result in the query's order.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, DictionaryArray, Float64Array, Int64Array, StringArray,
};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{
    Date32Type, Decimal64Type, Decimal128Type, Field, Int32Type, Int64Type, Schema, SchemaRef,
};
use gristmill::input::{CmpOp, Predicate};
use gristmill::partition::Partitioner;
use gristmill::prelude::*;
use serde::{Deserialize, Serialize};

use crate::group_ranges::{ByRanges, MergeRanges};

mod groups;

use groups::FlagGroups;

/// The type the mapper reads lineitem's `DECIMAL(15, 2)` columns as: 64-bit, as files
/// store them (`INT64`), so the Parquet decoder hands them over without widening.
pub const LINEITEM_DECIMAL: DataType = DataType::Decimal64(15, 2);
/// The base date of the ship-date predicate: `date '1998-12-01' - interval 'DELTA' day`.
pub const SHIP_DATE_BASE: &str = "1998-12-01";
/// `1` at the scale of lineitem's decimals (scale 2).
const ONE: i128 = 100;
/// The precision of every sum (DuckDB's `sum` of a decimal is `DECIMAL(38, s)`).
const SUM_PRECISION: u8 = 38;

/// The lineitem columns the mapper reads, in this order.
const LINEITEM_COLUMNS: [&str; 7] =
    ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax", "l_shipdate"];

/// Runs TPC-H query 1 on lineitem Parquet input.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct TpchQ1 {
    /// The query's substitution parameter DELTA: rows shipped up to `1998-12-01` minus
    /// this many days are summarized (the validation query uses 90).
    #[arg(long, default_value_t = 90)]
    pub delta_days: i32,
}

impl Default for TpchQ1 {
    fn default() -> Self {
        TpchQ1 { delta_days: 90 }
    }
}

impl TpchQ1 {
    /// The last ship date (days since 1970-01-01) that passes the filter.
    pub fn ship_date_cutoff(&self) -> JobResult<i32> {
        let base = Date32Type::parse(SHIP_DATE_BASE).ok_or("cannot parse the ship-date base")?;
        if !(0..=36_500).contains(&self.delta_days) {
            return Err(format!("--delta-days {} is outside 0..=36500", self.delta_days).into());
        }
        Ok(base - self.delta_days)
    }
}

impl Job for TpchQ1 {
    const NAME: &'static str = "tpch-q1";
    const ABOUT: &'static str = "TPC-H query 1 (pricing summary report) over lineitem Parquet files. \
        Output: one row per (l_returnflag, l_linestatus) in order, in the first part file.";

    fn validate(&self) -> JobResult<()> {
        self.ship_date_cutoff().map(drop)
    }

    fn input(&self) -> InputSpec {
        // Flags as dictionaries: files store them dictionary-encoded, and the mapper groups
        // by dictionary index (see `groups`).
        let flag = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let types = [
            flag.clone(),
            flag,
            LINEITEM_DECIMAL,
            LINEITEM_DECIMAL,
            LINEITEM_DECIMAL,
            LINEITEM_DECIMAL,
            DataType::Date32,
        ];
        let spec = InputSpec::text_lines().with_parquet_columns(LINEITEM_COLUMNS.into_iter().zip(types));
        // Row groups shipped wholly after the cutoff are not read; the mapper tests each
        // row's date while it aggregates.
        let cutoff = self.ship_date_cutoff().ok().and_then(Date32Type::to_naive_date_opt);
        match cutoff {
            Some(date) => spec.with_pruning(Predicate::cmp("l_shipdate", CmpOp::LtEq, date)),
            None => spec,
        }
    }

    fn map_output(&self) -> KeyedSchema {
        KeyedSchema::new([
            ("l_returnflag", DataType::Utf8),
            ("l_linestatus", DataType::Utf8),
            ("sum_qty", sum_type(2)),
            ("sum_base_price", sum_type(2)),
            ("sum_disc", sum_type(2)),
            ("sum_disc_price", sum_type(4)),
            ("sum_charge", sum_type(6)),
            ("count_order", DataType::Int64),
        ])
        .key(["l_returnflag", "l_linestatus"])
    }

    fn output_schema(&self) -> SchemaRef {
        let fields = [
            ("l_returnflag", DataType::Utf8),
            ("l_linestatus", DataType::Utf8),
            ("sum_qty", sum_type(2)),
            ("sum_base_price", sum_type(2)),
            ("sum_disc_price", sum_type(4)),
            ("sum_charge", sum_type(6)),
            ("avg_qty", DataType::Float64),
            ("avg_price", DataType::Float64),
            ("avg_disc", DataType::Float64),
            ("count_order", DataType::Int64),
        ];
        Arc::new(Schema::new(fields.map(|(name, ty)| Field::new(name, ty, false)).to_vec()))
    }

    fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        let cutoff = self.ship_date_cutoff()?;
        Ok(Box::new(PricingMapper {
            cutoff,
            groups: FlagGroups::default(),
            slots: Vec::new(),
            sums: Vec::new(),
        }))
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(ByRanges(MergePartials { emit: Emit::Report })))
    }

    fn combiner(&self, _: &TaskInfo) -> Option<Box<dyn Reducer>> {
        Some(Box::new(ByRanges(MergePartials { emit: Emit::Partials })))
    }

    fn partitioner(&self) -> Option<Box<dyn Partitioner>> {
        Some(Box::new(FirstPartition))
    }
}

fn sum_type(scale: i8) -> DataType {
    DataType::Decimal128(SUM_PRECISION, scale)
}

/// Exact partial aggregates of one (returnflag, linestatus) group, as unscaled decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Partial {
    /// `sum(l_quantity)`, scale 2.
    pub sum_qty: i128,
    /// `sum(l_extendedprice)`, scale 2.
    pub sum_base_price: i128,
    /// `sum(l_discount)`, scale 2 (for `avg_disc`).
    pub sum_disc: i128,
    /// `sum(l_extendedprice * (1 - l_discount))`, scale 4.
    pub sum_disc_price: i128,
    /// `sum(l_extendedprice * (1 - l_discount) * (1 + l_tax))`, scale 6.
    pub sum_charge: i128,
    /// `count(*)`.
    pub count: i64,
}

impl Partial {
    /// Adds one lineitem row (unscaled scale-2 decimals).
    #[inline]
    fn add_row(&mut self, quantity: i64, price: i64, discount: i64, tax: i64) {
        let disc_price = i128::from(price) * (ONE - i128::from(discount));
        self.sum_qty += i128::from(quantity);
        self.sum_base_price += i128::from(price);
        self.sum_disc += i128::from(discount);
        self.sum_disc_price += disc_price;
        self.sum_charge += disc_price * (ONE + i128::from(tax));
        self.count += 1;
    }

    /// Adds one batch's sums of this group.
    fn add_batch(&mut self, sums: &BatchSums) {
        self.sum_qty += i128::from(sums.qty);
        self.sum_base_price += i128::from(sums.price);
        self.sum_disc += i128::from(sums.disc);
        self.sum_disc_price += i128::from(sums.disc_price);
        self.sum_charge += i128::from(sums.charge);
        self.count += sums.count;
    }

    fn average(sum: i128, count: i64, scale: i32) -> f64 {
        sum as f64 / (count as f64 * 10f64.powi(scale))
    }
}

/// One group's sums over one batch, in `i64`: used when [`fits_in_i64`] shows no sum of
/// the batch can overflow, so the per-row work is 64-bit arithmetic, not 128-bit.
#[derive(Clone, Copy, Debug, Default)]
struct BatchSums {
    qty: i64,
    price: i64,
    disc: i64,
    disc_price: i64,
    charge: i64,
    count: i64,
}

/// Whether every sum of `rows` rows with these columns fits an `i64`: each value's
/// magnitude is at most its column's largest, so `rows` times the largest possible
/// product bounds each sum.
fn fits_in_i64(rows: usize, [quantity, price, discount, tax]: [&[i64]; 4]) -> bool {
    let largest = |column: &[i64]| column.iter().fold(0u64, |m, v| m.max(v.unsigned_abs()));
    let one = ONE as u64;
    let bound = || -> Option<u64> {
        let disc_price = largest(price).checked_mul(one.checked_add(largest(discount))?)?;
        let charge = disc_price.checked_mul(one.checked_add(largest(tax))?)?;
        let per_row = charge.max(largest(quantity)).max(largest(price)).max(largest(discount));
        per_row.checked_mul(rows as u64)
    };
    bound().is_some_and(|b| b <= i64::MAX as u64)
}

/// The mapper: filters on the ship date and accumulates partials per group.
struct PricingMapper {
    cutoff: i32,
    groups: FlagGroups,
    /// Each row's group slot (reused across batches).
    slots: Vec<u32>,
    /// Each group's sums over the current batch (reused across batches).
    sums: Vec<BatchSums>,
}

/// Typed views of a lineitem batch's declared columns.
struct Lineitems<'a> {
    flags: &'a DictionaryArray<Int32Type>,
    statuses: &'a DictionaryArray<Int32Type>,
    decimals: [&'a [i64]; 4],
    ship_dates: &'a [i32],
}

impl<'a> Lineitems<'a> {
    fn of(batch: &'a RecordBatch) -> JobResult<Self> {
        for (i, name) in LINEITEM_COLUMNS.iter().enumerate() {
            let nulls = batch.column(i).logical_null_count();
            if nulls > 0 {
                return Err(
                    format!("lineitem column {name} has {nulls} nulls (TPC-H declares it NOT NULL)").into()
                );
            }
        }
        let decimal = |i: usize| batch.column(i).as_primitive::<Decimal64Type>().values().as_ref();
        Ok(Lineitems {
            flags: batch.column(0).as_dictionary(),
            statuses: batch.column(1).as_dictionary(),
            decimals: [decimal(2), decimal(3), decimal(4), decimal(5)],
            ship_dates: batch.column(6).as_primitive::<Date32Type>().values(),
        })
    }
}

impl Mapper for PricingMapper {
    fn map(&mut self, batch: &RecordBatch, _: &mut Emitter) -> JobResult<()> {
        let rows = Lineitems::of(batch)?;
        self.groups.slots_of(rows.flags, rows.statuses, &mut self.slots)?;
        let n = rows.ship_dates.len();
        // Slices of one length: the loop below needs no bounds checks on them.
        let (dates, slots) = (&rows.ship_dates[..n], &self.slots[..n]);
        let [quantity, price, discount, tax] = rows.decimals.map(|column| &column[..n]);
        let partials = self.groups.partials_mut();
        if !fits_in_i64(n, [quantity, price, discount, tax]) {
            for i in 0..n {
                if dates[i] <= self.cutoff {
                    partials[slots[i] as usize].add_row(quantity[i], price[i], discount[i], tax[i]);
                }
            }
            return Ok(());
        }
        self.sums.clear();
        self.sums.resize(partials.len(), BatchSums::default());
        let one = ONE as i64;
        for i in 0..n {
            if dates[i] <= self.cutoff {
                let sums = &mut self.sums[slots[i] as usize];
                let disc_price = price[i] * (one - discount[i]);
                sums.qty += quantity[i];
                sums.price += price[i];
                sums.disc += discount[i];
                sums.disc_price += disc_price;
                sums.charge += disc_price * (one + tax[i]);
                sums.count += 1;
            }
        }
        for (partial, sums) in partials.iter_mut().zip(&self.sums) {
            partial.add_batch(sums);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        let (flags, statuses, partials) = self.groups.drain();
        if partials.is_empty() {
            return Ok(());
        }
        out.emit(partial_rows(out.schema(), flags, statuses, &partials)?)
    }
}

/// What [`MergePartials`] emits.
#[derive(Clone, Copy, Debug)]
enum Emit {
    /// Merged partials, in the map-output schema (the combiner).
    Partials,
    /// The query's result rows (the reducer).
    Report,
}

/// Merges the partials of each group (the combiner and the reducer).
struct MergePartials {
    emit: Emit,
}

impl MergeRanges for MergePartials {
    fn merge(&mut self, batch: &RecordBatch, ranges: &[Range<usize>], out: &mut Emitter) -> JobResult<()> {
        let sums: Vec<&[i128]> =
            (2..7).map(|c| batch.column(c).as_primitive::<Decimal128Type>().values().as_ref()).collect();
        let counts = batch.column(7).as_primitive::<Int64Type>().values();
        let partials: Vec<Partial> = ranges
            .iter()
            .map(|r| Partial {
                sum_qty: sums[0][r.clone()].iter().sum(),
                sum_base_price: sums[1][r.clone()].iter().sum(),
                sum_disc: sums[2][r.clone()].iter().sum(),
                sum_disc_price: sums[3][r.clone()].iter().sum(),
                sum_charge: sums[4][r.clone()].iter().sum(),
                count: counts[r.clone()].iter().sum(),
            })
            .collect();
        let key = |c: usize| {
            let column = batch.column(c).as_string::<i32>();
            StringArray::from_iter_values(ranges.iter().map(|r| column.value(r.start)))
        };
        let (flags, statuses) = (key(0), key(1));
        let rows = match self.emit {
            Emit::Partials => partial_rows(out.schema(), flags, statuses, &partials)?,
            Emit::Report => report_rows(out.schema(), flags, statuses, &partials)?,
        };
        out.emit(rows)
    }
}

fn decimals(values: impl Iterator<Item = i128>, scale: i8) -> JobResult<ArrayRef> {
    let array = Decimal128Array::from_iter_values(values).with_precision_and_scale(SUM_PRECISION, scale)?;
    array.validate_decimal_precision(SUM_PRECISION)?;
    Ok(Arc::new(array))
}

fn partial_rows(
    schema: &SchemaRef,
    flags: StringArray,
    statuses: StringArray,
    partials: &[Partial],
) -> JobResult<RecordBatch> {
    let p = partials;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(flags),
        Arc::new(statuses),
        decimals(p.iter().map(|p| p.sum_qty), 2)?,
        decimals(p.iter().map(|p| p.sum_base_price), 2)?,
        decimals(p.iter().map(|p| p.sum_disc), 2)?,
        decimals(p.iter().map(|p| p.sum_disc_price), 4)?,
        decimals(p.iter().map(|p| p.sum_charge), 6)?,
        Arc::new(Int64Array::from_iter_values(p.iter().map(|p| p.count))),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn report_rows(
    schema: &SchemaRef,
    flags: StringArray,
    statuses: StringArray,
    partials: &[Partial],
) -> JobResult<RecordBatch> {
    let p = partials;
    let average = |f: fn(&Partial) -> i128| {
        Arc::new(Float64Array::from_iter_values(p.iter().map(|p| Partial::average(f(p), p.count, 2))))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(flags),
        Arc::new(statuses),
        decimals(p.iter().map(|p| p.sum_qty), 2)?,
        decimals(p.iter().map(|p| p.sum_base_price), 2)?,
        decimals(p.iter().map(|p| p.sum_disc_price), 4)?,
        decimals(p.iter().map(|p| p.sum_charge), 6)?,
        average(|p| p.sum_qty),
        average(|p| p.sum_base_price),
        average(|p| p.sum_disc),
        Arc::new(Int64Array::from_iter_values(p.iter().map(|p| p.count))),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Routes every group to partition 0: query 1 has a handful of groups, and one partition
/// makes the first part file the whole result in the query's order.
struct FirstPartition;

impl Partitioner for FirstPartition {
    fn partition(&self, keys: &[ArrayRef], _: usize, out: &mut Vec<u32>) -> gristmill::Result<()> {
        out.clear();
        out.resize(keys.first().map_or(0, |k| k.len()), 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_cutoff_is_1998_09_02() {
        // 1998-09-02 is day 10471 after 1970-01-01.
        assert_eq!(TpchQ1::default().ship_date_cutoff().unwrap(), 10_471);
        assert!(
            TpchQ1 { delta_days: -1 }.ship_date_cutoff().unwrap_err().to_string().contains("--delta-days")
        );
    }

    #[test]
    fn a_row_adds_exact_scaled_products() {
        let mut partial = Partial::default();
        // quantity 17.00, price 23456.78, discount 0.04, tax 0.02
        partial.add_row(1700, 2_345_678, 4, 2);
        // 23456.78 * 0.96 = 22518.5088 (scale 4); * 1.02 = 22968.878976 (scale 6)
        assert_eq!(
            (partial.sum_disc_price, partial.sum_charge, partial.count),
            (225_185_088, 22_968_878_976, 1)
        );
        assert_eq!(Partial::average(partial.sum_disc, partial.count, 2), 0.04);
    }

    /// Maps one batch of `rows` (quantity, price, discount, tax), all in one group.
    fn mapped(rows: &[[i64; 4]]) -> Partial {
        let column = |i: usize| -> ArrayRef {
            let values = rows.iter().map(|r| r[i]);
            Arc::new(
                arrow::array::Decimal64Array::from_iter_values(values)
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            )
        };
        let flags = |s: &str| -> ArrayRef {
            Arc::new(DictionaryArray::<Int32Type>::from_iter(std::iter::repeat_n(s, rows.len())))
        };
        let dates: ArrayRef = Arc::new(arrow::array::Date32Array::from(vec![0; rows.len()]));
        let columns = vec![flags("A"), flags("F"), column(0), column(1), column(2), column(3), dates];
        let batch = RecordBatch::try_from_iter(LINEITEM_COLUMNS.iter().zip(columns)).unwrap();
        let mut mapper =
            PricingMapper { cutoff: 1, groups: FlagGroups::default(), slots: Vec::new(), sums: Vec::new() };
        mapper.map(&batch, &mut Emitter::new(TpchQ1::default().map_output().schema().clone())).unwrap();
        mapper.groups.partials_mut()[0]
    }

    #[test]
    fn batch_sums_in_i64_equal_row_sums_in_i128_and_large_values_take_the_exact_path() {
        let small: Vec<[i64; 4]> =
            (0..5000).map(|i| [i % 5000, 1_000_000 + i * 7, i % 11, i % 9 - 2]).collect();
        let huge = vec![[1, i64::MAX / 1000, 5, 3], [2, i64::MAX / 1000, 7, 1]];
        for rows in [small, huge] {
            let mut expected = Partial::default();
            for r in &rows {
                expected.add_row(r[0], r[1], r[2], r[3]);
            }
            assert_eq!(mapped(&rows), expected);
        }
        let big = [i64::MAX / 1000];
        assert!(!fits_in_i64(1, [&big, &big, &[0], &[0]]), "the product overflows");
        assert!(fits_in_i64(8192, [&[1], &[10_494_950], &[10], &[8]]), "TPC-H's largest values");
    }
}
