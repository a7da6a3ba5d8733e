//! Criterion benchmarks of the map-side kernels: tokenize + in-mapper combine (word
//! count's mapper), hash partitioning, partition + sort + combine of map output, the
//! partition + radix sort of integer keys, and the group-by mapper's hash aggregation.
//!
//! `cargo bench --workspace --bench map_kernels`

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gristmill::job::{Emitter, Job, Mapper, Reducer};
use gristmill::partition::{HashPartitioner, Partitioner};
use gristmill::shuffle::{MapOutputBuilder, MapOutputSpec, RunBudget, RunStore, SpillDir};
use gristmill_jobs::group_ranges::ByRanges;
use gristmill_jobs::sample::{SplitMix64, Zipf, word};
use gristmill_jobs::wordcount::{CountWords, SumCounts, WordCount};

/// About 4 MiB of Zipf text as one chunk of lines, as the reader hands it to word count.
fn text_chunk() -> RecordBatch {
    let words: Vec<String> = (0..100_000).map(word).collect();
    let zipf = Zipf::new(words.len(), 1.0);
    let mut rng = SplitMix64::new(7);
    let mut out = Vec::new();
    let mut bytes = 0;
    while bytes < 4 << 20 {
        let n = 4 + rng.below(14) as usize;
        let line: Vec<&str> = (0..n).map(|_| words[zipf.sample(&mut rng)].as_str()).collect();
        let line = line.join(" ");
        bytes += line.len() + 1;
        out.push(line + "\n");
    }
    let schema = gristmill::job::InputSpec::text_chunks_schema();
    RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![out.concat()])) as ArrayRef]).unwrap()
}

/// The word-count map output of `batch` (distinct words with counts).
fn map_output(batch: &RecordBatch) -> RecordBatch {
    let job = WordCount::default();
    let mut mapper = CountWords::default();
    let mut out = Emitter::new(job.map_output().schema().clone());
    mapper.map(batch, &mut out).unwrap();
    mapper.finish(&mut out).unwrap();
    let batches = out.take_batches();
    arrow::compute::concat_batches(job.map_output().schema(), &batches).unwrap()
}

fn kernels(c: &mut Criterion) {
    let batch = text_chunk();
    let text_bytes = batch.column(0).to_data().buffers()[1].len() as u64;
    let job = WordCount::default();
    let schema = job.map_output().schema().clone();

    let mut group = c.benchmark_group("map_side");
    group.throughput(Throughput::Bytes(text_bytes));
    group.bench_function("tokenize_and_combine_4MiB", |b| {
        b.iter(|| {
            let mut mapper = CountWords::default();
            let mut out = Emitter::new(schema.clone());
            mapper.map(&batch, &mut out).unwrap();
            mapper.finish(&mut out).unwrap();
            out.buffered_rows()
        })
    });
    group.finish();

    let output = map_output(&batch);
    let spill_parent = std::env::temp_dir();
    let spill = Arc::new(SpillDir::create(&spill_parent, &gristmill::ids::JobId::generate()).unwrap());
    let store = Arc::new(RunStore::new(spill, RunBudget::uniform(u64::MAX)));
    let mut group = c.benchmark_group("shuffle");
    group.throughput(Throughput::Elements(output.num_rows() as u64));
    group.bench_function("hash_partition_words", |b| {
        let keys = [output.column(0).clone()];
        let mut parts = Vec::new();
        b.iter(|| HashPartitioner.partition(&keys, 8, &mut parts).unwrap())
    });
    group.bench_function("partition_sort_combine_words", |b| {
        b.iter(|| flush_one(&output, 8, Some(Box::new(ByRanges(SumCounts))), &store))
    });
    group.finish();
    int_key_sort(c, &store);
    groupby_mapper(c);
}

/// The group-by mapper over 2M rows of `Int32` keys drawn from 1M values (`GROUP BY id6`
/// with `sum(v2)` and `mean(v3)`, a map task's share of G1): key lookups in a table that
/// outgrows the cache, then the accumulators.
fn groupby_mapper(c: &mut Criterion) {
    use arrow::array::Float64Array;
    use gristmill_jobs::groupby::{Aggregate, Column, ColumnType, GroupByPlan};
    let column = |name: &str, ty| Column { name: name.to_owned(), ty };
    let plan = GroupByPlan {
        key: column("id6", ColumnType::Int32),
        aggregates: vec![
            Aggregate::Sum(column("v2", ColumnType::Int32)),
            Aggregate::Mean(column("v3", ColumnType::Float64)),
        ],
        filter: None,
    };
    let mut rng = SplitMix64::new(5);
    let batches: Vec<RecordBatch> = (0..2_000_000 / 8192)
        .map(|_| {
            let keys: Int32Array = (0..8192).map(|_| rng.below(1_000_000) as i32).collect();
            let v2: Int32Array = (0..8192).map(|_| rng.below(15) as i32).collect();
            let v3: Float64Array = (0..8192).map(|_| rng.below(100_000) as f64 / 1000.0).collect();
            let columns: Vec<ArrayRef> = vec![Arc::new(keys), Arc::new(v2), Arc::new(v3)];
            RecordBatch::try_from_iter(["id6", "v2", "v3"].into_iter().zip(columns)).unwrap()
        })
        .collect();
    let info = gristmill::job::TaskInfo {
        job_id: gristmill::ids::JobId::generate(),
        task: gristmill::ids::TaskId::map(0),
        attempt: gristmill::ids::AttemptId(0),
        num_partitions: 1,
        split: "bench".into(),
        input: 0,
        side: Default::default(),
    };
    let mut group = c.benchmark_group("groupby");
    group.sample_size(10);
    group.throughput(Throughput::Elements((batches.len() * 8192) as u64));
    group.bench_function("map_int_keys_1M_groups_sum_mean", |b| {
        b.iter(|| {
            let mut mapper = plan.mapper(&info).unwrap();
            let mut out = Emitter::new(plan.map_output().schema().clone());
            for batch in &batches {
                mapper.map(batch, &mut out).unwrap();
            }
            mapper.finish(&mut out).unwrap();
            out.buffered_rows()
        })
    });
    group.finish();
}

/// Partition + sort of 1M rows of `Int32` keys over a range of 1M (the group-by's id6
/// partials): the radix-sorted path for keys of at most 12 encoded bytes.
fn int_key_sort(c: &mut Criterion, store: &Arc<RunStore>) {
    let mut rng = SplitMix64::new(11);
    let keys: Vec<i32> = (0..1_000_000).map(|_| rng.below(1_000_000) as i32).collect();
    let schema = Arc::new(Schema::new(vec![Field::new("id6", DataType::Int32, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(keys)) as ArrayRef]).unwrap();
    let mut group = c.benchmark_group("shuffle");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));
    group.bench_function("partition_sort_int32_keys_1M", |b| b.iter(|| flush_one(&batch, 2, None, store)));
    group.finish();
}

/// Partitions, sorts (and combines) `batch`, keyed on its first column, as one map-side flush.
fn flush_one(
    batch: &RecordBatch,
    num_partitions: usize,
    combiner: Option<Box<dyn Reducer>>,
    store: &Arc<RunStore>,
) -> usize {
    let spec = MapOutputSpec {
        key_columns: vec![0],
        num_partitions,
        partitioner: Arc::new(HashPartitioner),
        combiner,
        store: store.clone(),
        sort: true,
    };
    let mut builder = MapOutputBuilder::new(batch.schema(), spec).unwrap();
    builder.flush(vec![batch.clone()]).unwrap();
    builder.finish().0.len()
}

criterion_group!(benches, kernels);
criterion_main!(benches);
