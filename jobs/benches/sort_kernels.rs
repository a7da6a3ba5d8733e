//! Criterion benchmarks of TeraSort's shuffle kernels, on 1M records of 100 bytes with
//! random 10-byte keys (map output `(key, record)`, as the TeraSort job emits it):
//!
//! * `flush`: hash-partition into 2 and radix-sort one map buffer into sorted runs;
//! * `read_sorted_runs`: gather those runs' rows in key order (random reads of records);
//! * `merge_24_runs`: merge 24 runs of one partition as a reducer finds them in local mode
//!   (sorted row numbers, gathered batch by batch as the merge reads them);
//! * `merge_{2,8,24}_gathered_runs`: the merge alone, of runs already gathered: its cost
//!   per row grows with the depth of the merge tree.
//!
//! `cargo bench --workspace --bench sort_kernels`

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gristmill::job::Job;
use gristmill::partition::HashPartitioner;
use gristmill::shuffle::{
    KeyEncoder, MERGE_CHUNK_ROWS, MapOutputBuilder, MapOutputSpec, Run, RunBudget, RunMerger, RunStore,
    SpillDir,
};
use gristmill_jobs::sample::SplitMix64;
use gristmill_jobs::terasort::{KEY_LEN, RECORD_LEN, TeraSort};

const RECORDS: usize = 1_000_000;

/// `rows` records of random bytes as TeraSort's map output: each key copied beside its record.
fn records(rows: usize, seed: u64) -> RecordBatch {
    let mut rng = SplitMix64::new(seed);
    let mut bytes = vec![0u8; rows * RECORD_LEN];
    for chunk in bytes.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    let keys: Vec<&[u8]> = bytes.chunks(RECORD_LEN).map(|r| &r[..KEY_LEN]).collect();
    let keys = FixedSizeBinaryArray::try_from_iter(keys.into_iter()).unwrap();
    let records = FixedSizeBinaryArray::new(RECORD_LEN as i32, bytes.into(), None);
    let columns: Vec<ArrayRef> = vec![Arc::new(keys), Arc::new(records)];
    RecordBatch::try_new(TeraSort::default().map_output().schema().clone(), columns).unwrap()
}

/// The sorted runs (one per partition) of `batches` flushed as one map buffer.
fn flush(batches: &[RecordBatch], num_partitions: usize, store: &Arc<RunStore>) -> Vec<Vec<Run>> {
    let spec = MapOutputSpec {
        key_columns: vec![0],
        num_partitions,
        partitioner: Arc::new(HashPartitioner),
        combiner: None,
        store: store.clone(),
        sort: true,
    };
    let mut builder = MapOutputBuilder::new(batches[0].schema(), spec).unwrap();
    builder.flush(batches.to_vec()).unwrap();
    builder.finish().0
}

/// The batches of `run`, as a reader hands them over.
fn read(run: &Run) -> Vec<RecordBatch> {
    let mut reader = run.clone().open().unwrap();
    std::iter::from_fn(|| reader.next_batch().unwrap()).collect()
}

/// `n` sorted runs of `RECORDS / n` records each, as one partition's runs.
fn sorted_runs(n: usize, store: &Arc<RunStore>) -> Vec<Run> {
    (0..n).map(|i| flush(&[records(RECORDS / n, 100 + i as u64)], 1, store).remove(0).remove(0)).collect()
}

/// Rows merged from `runs`.
fn merge(schema: &SchemaRef, runs: &[Run]) -> usize {
    let encoder = KeyEncoder::new(schema, &[0]).unwrap();
    let mut merger = RunMerger::new(schema.clone(), encoder, runs.to_vec(), MERGE_CHUNK_ROWS).unwrap();
    std::iter::from_fn(|| merger.next_chunk().unwrap()).map(|chunk| chunk.batch.num_rows()).sum()
}

fn kernels(c: &mut Criterion) {
    let spill =
        Arc::new(SpillDir::create(&std::env::temp_dir(), &gristmill::ids::JobId::generate()).unwrap());
    let store = Arc::new(RunStore::new(spill, RunBudget::uniform(u64::MAX)));
    // A map buffer of 8K-row batches, as the records reader hands them over.
    let whole = records(RECORDS, 3);
    let schema = whole.schema();
    let batches: Vec<RecordBatch> =
        (0..RECORDS).step_by(8192).map(|s| whole.slice(s, 8192.min(RECORDS - s))).collect();

    let mut group = c.benchmark_group("terasort");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((RECORDS * RECORD_LEN) as u64));
    group.bench_function("flush_1M_records", |b| b.iter(|| flush(&batches, 2, &store)));
    let runs = flush(&batches, 2, &store);
    group.bench_function("read_sorted_runs_1M_records", |b| {
        b.iter(|| runs.iter().flatten().map(|run| read(run).len()).sum::<usize>())
    });
    let sorted = sorted_runs(24, &store);
    group.bench_function("merge_24_runs_1M_records", |b| b.iter(|| merge(&schema, &sorted)));
    for n in [2, 8, 24] {
        let gathered: Vec<Run> = sorted_runs(n, &store)
            .iter()
            .map(|run| Run::Memory(arrow::compute::concat_batches(&schema, &read(run)).unwrap()))
            .collect();
        let name = format!("merge_{n}_gathered_runs_1M_records");
        group.bench_function(name, |b| b.iter(|| merge(&schema, &gathered)));
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
