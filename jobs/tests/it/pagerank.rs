//! PageRank against a sequential reference of the same variant (dangling rank spread
//! uniformly, every edge row counted), on a small skewed graph with dangling nodes,
//! self-loops, duplicate edges and ids across the whole u64 range, in several files of
//! small row groups, with small splits and several reducers.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use gristmill_jobs::sample::SplitMix64;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::record::Field as ParquetField;

use crate::support::*;

const DAMPING: f64 = 0.85;

/// Edges over 300 ids: node 0..20 are popular targets, a few nodes only ever receive
/// (dangling), some edges are self-loops, some repeat.
pub(crate) fn edges(seed: u64) -> Vec<(u64, u64)> {
    let mut rng = SplitMix64::new(seed);
    let ids: Vec<u64> = (0..300).map(|i| if i % 2 == 0 { rng.next_u64() } else { i }).collect();
    let mut edges = Vec::new();
    for _ in 0..2500 {
        let src = ids[20 + rng.below(250) as usize]; // ids[270..] never have outgoing edges
        let dst = match rng.below(10) {
            0..=3 => ids[rng.below(20) as usize],
            4 => src,
            _ => ids[rng.below(300) as usize],
        };
        edges.push((src, dst));
        if rng.below(20) == 0 {
            edges.push((src, dst));
        }
    }
    // Nodes with only a self-loop, and ones that only appear as destinations.
    edges.push((ids[3], ids[3]));
    edges.push((ids[21], 42_424_242));
    edges.push((ids[22], u64::MAX));
    edges
}

pub(crate) fn write_edges(dir: &Path, edges: &[(u64, u64)], files: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("src", DataType::UInt64, false),
        Field::new("dst", DataType::UInt64, false),
    ]));
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(300)).build();
    for (f, chunk) in edges.chunks(edges.len().div_ceil(files)).enumerate() {
        let src: ArrayRef = Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|e| e.0)));
        let dst: ArrayRef = Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|e| e.1)));
        let file = File::create(dir.join(format!("edges-{f}.parquet"))).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).unwrap();
        writer.write(&RecordBatch::try_new(schema.clone(), vec![src, dst]).unwrap()).unwrap();
        writer.close().unwrap();
    }
}

/// The sequential reference: power iteration over the node set of all ids, dangling
/// rank spread uniformly.
fn reference(edges: &[(u64, u64)], iterations: usize) -> BTreeMap<u64, f64> {
    let mut out_degree: BTreeMap<u64, usize> = BTreeMap::new();
    for &(src, dst) in edges {
        *out_degree.entry(src).or_default() += 1;
        out_degree.entry(dst).or_default();
    }
    let n = out_degree.len() as f64;
    let mut rank: BTreeMap<u64, f64> = out_degree.keys().map(|&v| (v, 1.0 / n)).collect();
    for _ in 0..iterations {
        let dangling: f64 = out_degree.iter().filter(|(_, d)| **d == 0).map(|(v, _)| rank[v]).sum();
        let mut incoming: BTreeMap<u64, f64> = rank.keys().map(|&v| (v, 0.0)).collect();
        for &(src, dst) in edges {
            *incoming.get_mut(&dst).unwrap() += rank[&src] / out_degree[&src] as f64;
        }
        rank = incoming
            .into_iter()
            .map(|(v, sum)| (v, (1.0 - DAMPING) / n + DAMPING * (sum + dangling / n)))
            .collect();
    }
    rank
}

/// The output as node -> rank, checking each part is sorted by node and no node repeats.
fn read_ranks(dir: &Path) -> BTreeMap<u64, f64> {
    let mut ranks = BTreeMap::new();
    for (name, rows) in &read_committed(dir).parts {
        let mut previous = None;
        for row in rows {
            let (ParquetField::ULong(node), ParquetField::Double(rank)) = (&row[0], &row[1]) else {
                panic!("{name}: not (UInt64, Float64): {row:?}")
            };
            assert_eq!(row.len(), 2, "node and rank only");
            assert!(previous < Some(*node), "{name} is sorted by node");
            previous = Some(*node);
            assert!(ranks.insert(*node, *rank).is_none(), "node {node} in two rows");
        }
    }
    ranks
}

#[test]
fn pagerank_equals_the_sequential_reference() {
    let dir = tempfile::tempdir().unwrap();
    let edges = edges(17);
    let input = dir.path().join("edges");
    write_edges(&input, &edges, 3);
    for (iterations, reducers) in [(1, "3"), (5, "4")] {
        let expected = reference(&edges, iterations);
        let dangling =
            expected.len() - edges.iter().map(|e| e.0).collect::<std::collections::BTreeSet<_>>().len();
        assert!(dangling >= 30, "the graph has dangling nodes: {dangling}");
        let out = dir.path().join(format!("ranks-{iterations}"));
        let k = iterations.to_string();
        let args = ["--edges", s(&input), "--iterations", &k, "--output", s(&out), "--threads", "2"];
        run_ok("pagerank", &[&args[..], &["--reducers", reducers, "--split-size", "1"]].concat());

        let got = read_ranks(&out);
        assert_eq!(got.len(), expected.len(), "K = {iterations}: one row per node");
        for (node, want) in &expected {
            let rank = got[node];
            assert!(
                (rank - want).abs() <= 1e-12 * want.abs(),
                "K = {iterations}, node {node}: {rank} vs the reference's {want}"
            );
        }
        let total: f64 = got.values().sum();
        assert!((total - 1.0).abs() < 1e-9, "K = {iterations}: ranks sum to 1, not {total}");
        assert!(!out.join("_rounds").exists(), "K = {iterations}: the scratch rounds are removed");
        let output = read_committed(&out);
        assert_eq!(output.manifest.job, "pagerank-iteration");
        assert_eq!(output.manifest.files.len(), reducers.parse::<usize>().unwrap());
    }
}

#[test]
fn pagerank_rejects_null_edges_and_leaves_no_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("src", DataType::UInt64, true),
        Field::new("dst", DataType::UInt64, true),
    ]));
    let src: ArrayRef = Arc::new(UInt64Array::from(vec![Some(1), Some(2)]));
    let dst: ArrayRef = Arc::new(UInt64Array::from(vec![Some(2), None]));
    let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), None).unwrap();
    writer.write(&RecordBatch::try_new(schema, vec![src, dst]).unwrap()).unwrap();
    writer.close().unwrap();
    let out = dir.path().join("out");
    let err = run_err("pagerank", &["--edges", s(&path), "--iterations", "2", "--output", s(&out)]);
    assert!(err.contains("1 edge ends are null") && err.contains("edges.parquet"), "{err}");
    assert!(!out.join("_rounds").exists() && !out.join("_SUCCESS").exists());
}
