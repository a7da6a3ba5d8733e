use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use serde::Deserialize;

use super::*;
use crate::job::rows::{combine_rows, map_rows, row_schema};
use crate::job::{Counters, Groups};

#[derive(Deserialize)]
struct Sale {
    shop: i64,
    amount: i64,
}

/// `rows` sales (amount `i`) of shops `0..shops` in runs of `run` equal ones (shop
/// `(i / run) % shops`), in batches of 1,000.
fn sales(rows: i64, shops: i64, run: i64) -> Vec<RecordBatch> {
    (0..rows)
        .step_by(1000)
        .map(|start| {
            let end = (start + 1000).min(rows);
            let shop = Int64Array::from_iter_values((start..end).map(|i| (i / run) % shops));
            let amount = Int64Array::from_iter_values(start..end);
            RecordBatch::try_from_iter([("shop", Arc::new(shop) as _), ("amount", Arc::new(amount) as _)])
                .unwrap()
        })
        .collect()
}

/// `(shop, amount)` pairs of `batch` summed per shop into `sums`; the batch's rows.
fn add_up(batch: &RecordBatch, sums: &mut BTreeMap<i64, i64>) -> usize {
    let keys = batch.column(0).as_primitive::<Int64Type>();
    let values = batch.column(1).as_primitive::<Int64Type>();
    for (k, v) in keys.values().iter().zip(values.values()) {
        *sums.entry(*k).or_insert(0) += v;
    }
    batch.num_rows()
}

/// Maps `batches` with a mapper emitting `(shop, amount)`, offered `combiner` (if any)
/// with `memory` bytes; the pairs summed per shop, the rows emitted and the counters.
fn map(
    batches: &[RecordBatch],
    combiner: Option<Box<dyn Reducer>>,
    memory: usize,
) -> (BTreeMap<i64, i64>, usize, Counters) {
    let mut mapper = map_rows::<Sale, i64, i64, _>(|sale, out| out.emit(sale.shop, sale.amount));
    if let Some(combiner) = combiner {
        mapper.combine_in_memory(combiner, memory);
    }
    let mut out = Emitter::new(row_schema::<i64, i64>().schema().clone());
    for batch in batches {
        mapper.map(batch, &mut out).unwrap();
    }
    mapper.finish(&mut out).unwrap();
    let mut sums = BTreeMap::new();
    let rows = out.take_batches().iter().map(|batch| add_up(batch, &mut sums)).sum();
    (sums, rows, out.take_counters())
}

fn summing() -> Box<dyn Reducer> {
    fold_values::<i64, i64, _>(|total, amount| *total += amount)
}

#[test]
fn a_map_task_folds_pairs_by_key_as_they_are_emitted_with_the_same_sums() {
    let batches = sales(100_000, 70, 1);
    let (plain, plain_rows, _) = map(&batches, None, 0);
    let (folded, rows, counters) = map(&batches, Some(summing()), 1 << 20);
    assert_eq!(plain_rows, 100_000);
    assert_eq!(folded, plain);
    assert_eq!(rows, 70, "one pair per shop");
    assert_eq!(
        counters.get(MAP_OUTPUT_RECORDS) as usize + rows,
        100_000,
        "map output counts what the closure emitted"
    );
    assert_eq!(counters.get(COMBINE_INPUT_RECORDS), 100_000);
    assert_eq!(counters.get(COMBINE_OUTPUT_RECORDS), 70);
}

#[test]
fn a_full_table_is_emptied_into_the_map_output_and_sums_stay_exact() {
    // 100 shops in runs of 8 sales: a shop comes back every 800 sales.
    let batches = sales(20_000, 100, 8);
    let (plain, _, _) = map(&batches, None, 0);
    // Room for 10 shops: emptied before a shop comes back, each run still folded.
    let room = 10 * (2 * std::mem::size_of::<(i64, i64)>() + 1);
    let (folded, rows, _) = map(&batches, Some(summing()), room);
    assert_eq!(folded, plain);
    assert_eq!(rows, 20_000 / 8, "one pair per run of a shop");
}

#[test]
fn the_fold_is_also_the_shuffle_s_combiner_over_sorted_groups() {
    let keys = Int64Array::from(vec![1, 1, 1, 4, 9, 9]);
    let values = Int64Array::from(vec![1, 2, 3, 10, 5, 6]);
    let batch = RecordBatch::try_new(
        row_schema::<i64, i64>().schema().clone(),
        vec![Arc::new(keys), Arc::new(values)],
    )
    .unwrap();
    let starts = [0, 3, 4];
    let mut combiner = summing();
    let mut out = Emitter::new(batch.schema());
    combiner.reduce_groups(&Groups::new(&batch, &starts, &[0]), &mut out).unwrap();
    let mut sums = BTreeMap::new();
    let rows: usize = out.take_batches().iter().map(|b| add_up(b, &mut sums)).sum();
    assert_eq!(rows, 3);
    assert_eq!(sums, BTreeMap::from([(1, 6), (4, 10), (9, 11)]));
}

#[test]
fn a_combiner_over_groups_is_left_to_the_shuffle() {
    let by_groups = combine_rows::<i64, i64, _>(|shop, amounts, out| out.emit(shop, amounts.sum()));
    let (sums, rows, _) = map(&sales(3_000, 7, 1), Some(by_groups), 1 << 20);
    assert_eq!(rows, 3_000, "nothing folded in the map task");
    assert_eq!(sums.len(), 7);
}

#[test]
fn f64_sums_folded_in_the_mapper_match_a_plain_sum() {
    #[derive(Deserialize)]
    struct Priced {
        shop: i64,
        price: f64,
    }
    let mut mapper = map_rows::<Priced, i64, f64, _>(|p, out| out.emit(p.shop, p.price));
    mapper.combine_in_memory(fold_values::<i64, f64, _>(|t, p| *t += p), 1 << 20);
    let shop = Int64Array::from_iter_values((0..5_000).map(|i| i % 3));
    let price = Float64Array::from_iter_values((0..5_000).map(|i| i as f64 * 0.25));
    let batch =
        RecordBatch::try_from_iter([("shop", Arc::new(shop) as _), ("price", Arc::new(price) as _)]).unwrap();
    let mut out = Emitter::new(row_schema::<i64, f64>().schema().clone());
    mapper.map(&batch, &mut out).unwrap();
    mapper.finish(&mut out).unwrap();
    let batch = &out.take_batches()[0];
    let total: f64 = batch.column(1).as_primitive::<Float64Type>().values().iter().sum();
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(total, (0..5_000).map(|i| i as f64 * 0.25).sum::<f64>());
}
