//! Typed records against the batch level (issue #25): the same map and combine of
//! `sum(l_extendedprice * (1 - l_discount)) group by l_suppkey`, written with `map_rows` /
//! `combine_rows` and with Arrow kernels over whole batches (`revenue --api batches`), on in-memory batches of
//! lineitem's three columns. Run: `cargo bench --workspace --bench typed_rows`.

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gristmill::job::rows::{combine_rows, map_rows, row_schema};
use gristmill::job::{Emitter, Groups, Mapper, Reducer};
use gristmill_jobs::revenue::batch::{BatchRevenue, SumPerKey};
use serde::Deserialize;

const ROWS: usize = 65_536;
const SUPPLIERS: i64 = 1_000;

#[derive(Deserialize)]
struct LineItem {
    l_suppkey: i64,
    l_extendedprice: f64,
    l_discount: f64,
}

/// Lineitem's three columns, suppliers in a scrambled order.
fn lineitem() -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("l_suppkey", DataType::Int64, false),
        Field::new("l_extendedprice", DataType::Float64, false),
        Field::new("l_discount", DataType::Float64, false),
    ]);
    let rows = 0..ROWS as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.clone().map(|i| (i * 7919) % SUPPLIERS))),
        Arc::new(Float64Array::from_iter_values(rows.clone().map(|i| 900.0 + (i % 1000) as f64))),
        Arc::new(Float64Array::from_iter_values(rows.map(|i| (i % 11) as f64 / 100.0))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("lineitem batch")
}

fn map_with(mapper: &mut dyn Mapper, batch: &RecordBatch) -> Vec<RecordBatch> {
    let mut out = Emitter::new(row_schema::<i64, f64>().schema().clone());
    mapper.map(batch, &mut out).expect("map");
    out.take_batches()
}

/// The map output sorted by key, as the combiner sees it.
fn sorted_map_output(batch: &RecordBatch) -> RecordBatch {
    let output = map_with(&mut BatchRevenue, batch).remove(0);
    let order = arrow::compute::sort_to_indices(output.column(0), None, None).expect("sort");
    arrow::compute::take_record_batch(&output, &order).expect("take")
}

fn combine_with(combiner: &mut dyn Reducer, sorted: &RecordBatch, starts: &[usize]) -> Vec<RecordBatch> {
    let mut out = Emitter::new(row_schema::<i64, f64>().schema().clone());
    combiner.reduce_groups(&Groups::new(sorted, starts, &[0]), &mut out).expect("combine");
    out.take_batches()
}

fn bench(c: &mut Criterion) {
    let batch = lineitem();
    let mut map = c.benchmark_group("revenue map");
    map.throughput(Throughput::Elements(ROWS as u64));
    map.bench_function("batch level", |b| b.iter(|| black_box(map_with(&mut BatchRevenue, &batch))));
    let mut typed = map_rows::<LineItem, i64, f64, _>(|item, out| {
        out.emit(item.l_suppkey, item.l_extendedprice * (1.0 - item.l_discount))
    });
    map.bench_function("typed records", |b| b.iter(|| black_box(map_with(typed.as_mut(), &batch))));
    map.finish();

    let sorted = sorted_map_output(&batch);
    let keys = sorted.column(0).as_primitive::<Int64Type>();
    let starts: Vec<usize> =
        (0..sorted.num_rows()).filter(|&i| i == 0 || keys.value(i) != keys.value(i - 1)).collect();
    let mut combine = c.benchmark_group("revenue combine");
    combine.throughput(Throughput::Elements(ROWS as u64));
    combine.bench_function("batch level", |b| {
        b.iter(|| black_box(combine_with(&mut SumPerKey, &sorted, &starts)))
    });
    let mut typed = combine_rows::<i64, f64, _>(|supplier, values, out| out.emit(supplier, values.sum()));
    combine.bench_function("typed records", |b| {
        b.iter(|| black_box(combine_with(typed.as_mut(), &sorted, &starts)))
    });
    combine.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
