//! Parquet codecs: files other tools wrote with every codec are read, and equal DuckDB's
//! answer on the same file; part files written with each `--compression` and
//! `--row-group-size` carry that codec, those row groups, statistics and the page index,
//! as pyarrow sees them, and hold the rows DuckDB reads back.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatchReader;
use gristmill::config::RunConfig;
use gristmill::local::run_local;
use gristmill::output::{Codec, ParquetOutput};
use gristmill::prelude::*;
use gristmill::progress::Progress;
use gristmill_jobs::wordcount::WordCount;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field as ParquetField;

use super::cluster_support::{Cluster, ClusterSpec};
use crate::support::*;

/// Writes the same table (a string key with nulls and values longer than 12 bytes, an
/// Int64 value with nulls, a filler column) with each pyarrow codec, in row groups of
/// 7000 rows, copies it with DuckDB's `COPY ... COMPRESSION zstd`, and writes it with
/// Polars' defaults.
const WRITE_SCRIPT: &str = r#"
import sys, duckdb, polars, pyarrow as pa, pyarrow.parquet as pq
d, n = sys.argv[1], 30000
keys = [None if i % 97 == 0 else f"key-{(i * 7919) % 500:04d}" + ("-longer-than-inline" if i % 5 == 0 else "")
        for i in range(n)]
values = [None if i % 31 == 0 else (i * 104729) % 100000 - 50000 for i in range(n)]
table = pa.table({"k": pa.array(keys, pa.string()), "v": pa.array(values, pa.int64()),
                  "pad": pa.array([f"row {i}" for i in range(n)])})
for codec in ["snappy", "zstd", "gzip", "lz4", "brotli", "none"]:
    pq.write_table(table, f"{d}/pyarrow-{codec}.parquet", compression=codec, row_group_size=7000)
duckdb.connect().execute(
    f"COPY (SELECT * FROM read_parquet('{d}/pyarrow-none.parquet')) TO '{d}/duckdb-zstd.parquet' "
    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 7000)")
# Polars' own Parquet writer (not arrow's), with its defaults: ZSTD, statistics, string views.
polars.from_arrow(table).write_parquet(f"{d}/polars-default.parquet", row_group_size=7000)
"#;

/// DuckDB's `SELECT k, sum(v), count(*) GROUP BY k` of each file: `index\tk\tsum\tcount` lines.
const ORACLE_SCRIPT: &str = r#"
import sys, duckdb
con = duckdb.connect()
for i, path in enumerate(sys.argv[1:]):
    rows = con.execute("SELECT k, sum(v), count(*) FROM read_parquet(?) GROUP BY k", [path]).fetchall()
    for k, total, count in rows:
        print(f"{i}\t{'NULL' if k is None else k}\t{'NULL' if total is None else total}\t{count}")
"#;

/// The codec of every column chunk of a Parquet file, as the parquet crate reads its
/// footer (it tells LZ4_RAW from Hadoop's LZ4, which pyarrow names alike).
fn codecs_of(path: &Path) -> Vec<String> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let mut codecs: Vec<String> = reader
        .metadata()
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns().iter().map(|c| codec_name(c.compression())))
        .collect();
    codecs.dedup();
    codecs
}

/// `ZSTD`, `LZ4_RAW`, ...: the codec without its level.
fn codec_name(codec: Compression) -> String {
    let name = format!("{codec:?}");
    name.split('(').next().unwrap_or_default().to_owned()
}

/// Rewrites `from` as `to` with Hadoop's LZ4 framing (Parquet's deprecated `LZ4`), which
/// pyarrow no longer writes.
fn rewrite_as_hadoop_lz4(from: &Path, to: &Path) {
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(File::open(from).unwrap()).unwrap().build().unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::LZ4)
        .set_max_row_group_row_count(Some(7000))
        .build();
    let mut writer = ArrowWriter::try_new(File::create(to).unwrap(), reader.schema(), Some(props)).unwrap();
    for batch in reader {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.close().unwrap();
}

/// A value of a group-by output row, printed as the oracle prints it.
fn text(field: &ParquetField) -> String {
    match field {
        ParquetField::Null => "NULL".to_owned(),
        ParquetField::Str(s) => s.clone(),
        ParquetField::Long(n) => n.to_string(),
        other => panic!("unexpected output value {other:?}"),
    }
}

#[test]
fn files_of_every_codec_by_pyarrow_and_duckdb_give_duckdb_s_answer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    run_python(WRITE_SCRIPT, &[s(&input)]);
    rewrite_as_hadoop_lz4(&input.join("pyarrow-none.parquet"), &input.join("hadoop-lz4.parquet"));
    let files: [(&str, &str); 9] = [
        ("pyarrow-snappy", "SNAPPY"),
        ("pyarrow-zstd", "ZSTD"),
        ("pyarrow-gzip", "GZIP"),
        ("pyarrow-lz4", "LZ4_RAW"),
        ("pyarrow-brotli", "BROTLI"),
        ("pyarrow-none", "UNCOMPRESSED"),
        ("hadoop-lz4", "LZ4"),
        ("duckdb-zstd", "ZSTD"),
        ("polars-default", "ZSTD"),
    ];
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| input.join(format!("{name}.parquet"))).collect();
    for ((name, codec), path) in files.iter().zip(&paths) {
        assert_eq!(codecs_of(path), [*codec], "{name} has the codec it is meant to test");
    }
    let path_args: Vec<&str> = paths.iter().map(|p| s(p)).collect();
    let mut expected: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for line in run_python(ORACLE_SCRIPT, &path_args).lines() {
        let (index, row) = line.split_once('\t').unwrap();
        expected.entry(index.parse().unwrap()).or_default().push(row.to_owned());
    }
    for (i, ((name, _), path)) in files.iter().zip(&paths).enumerate() {
        let out = dir.path().join(format!("out-{name}"));
        let flags = ["--by", "k", "--sum", "v", "--count", "--threads", "2", "--split-size", "1"];
        run_ok(
            "groupby",
            &[&["--input", s(path), "--output", s(&out), "--reducers", "2"], &flags[..]].concat(),
        );
        let output = read_committed(&out);
        assert_eq!(output.manifest.counters.get("map_input_records"), 30_000, "{name}: every row read");
        let mut ours: Vec<String> =
            output.rows().map(|row| row.iter().map(text).collect::<Vec<_>>().join("\t")).collect();
        ours.sort();
        let mut theirs = expected.remove(&i).unwrap_or_default();
        theirs.sort();
        assert!(theirs.len() > 500, "{name}: the oracle has the groups ({})", theirs.len());
        assert_eq!(ours, theirs, "{name}: groupby equals DuckDB");
    }
}

/// For each file given: pyarrow's view of its footer, as JSON; then DuckDB's `word, count`
/// rows of all files together, ordered by word.
const READ_BACK_SCRIPT: &str = r#"
import sys, json, duckdb, pyarrow.parquet as pq
files = sys.argv[1:]
for path in files:
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
    chunks = [group.column(c) for group in groups for c in range(meta.num_columns)]
    print(json.dumps({
        "codecs": sorted({c.compression for c in chunks}),
        "row_groups": [group.num_rows for group in groups],
        "statistics": all(c.is_stats_set and c.statistics.has_min_max for c in chunks),
        "column_index": all(c.has_column_index for c in chunks),
        "offset_index": all(c.has_offset_index for c in chunks),
    }))
rows = duckdb.connect().execute("SELECT word, count FROM read_parquet(?) ORDER BY word", [files]).fetchall()
print(json.dumps(rows))
"#;

/// Text of `words` distinct words, word `i` repeated `i % 7 + 1` times.
fn write_words(path: &Path, words: usize) -> BTreeMap<String, u64> {
    let mut text = String::new();
    for i in 0..words {
        for _ in 0..i % 7 + 1 {
            text.push_str(&format!("w{i:05} "));
        }
        text.push('\n');
    }
    std::fs::write(path, &text).unwrap();
    oracle_wordcount(&[text])
}

/// A codec as the manifest, pyarrow and the parquet crate name it.
type CodecNames = (&'static str, &'static str, &'static str);

/// Checks a committed word count written with `codec` and `row_group` rows per row group
/// against `expected`.
fn check_written(out: &Path, codec: CodecNames, row_group: u64, expected: &BTreeMap<String, u64>) {
    let (manifest_codec, pyarrow_codec, parquet_codec) = codec;
    let committed = read_committed(out);
    let mut paths = Vec::new();
    for file in &committed.manifest.files {
        assert_eq!(file.format.as_deref(), Some("parquet"), "{}", file.name);
        assert_eq!(file.codec.as_deref(), Some(manifest_codec), "{}", file.name);
        let path = out.join(&file.name);
        assert_eq!(codecs_of(&path), [parquet_codec], "{}", file.name);
        paths.push(path);
    }
    let args: Vec<&str> = paths.iter().map(|p| s(p)).collect();
    let printed = run_python(READ_BACK_SCRIPT, &args);
    let lines: Vec<&str> = printed.lines().collect();
    for (file, line) in committed.manifest.files.iter().zip(&lines) {
        let meta: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(meta["codecs"], serde_json::json!([pyarrow_codec]), "{}: {line}", file.name);
        let groups: Vec<u64> = serde_json::from_value(meta["row_groups"].clone()).unwrap();
        assert_eq!(groups.iter().sum::<u64>(), file.rows, "{}", file.name);
        assert!(groups.len() >= 2, "{}: several row groups {groups:?}", file.name);
        let (last, full) = groups.split_last().unwrap();
        assert!(full.iter().all(|&g| g == row_group) && *last <= row_group, "{}: {groups:?}", file.name);
        for key in ["statistics", "column_index", "offset_index"] {
            assert_eq!(meta[key], true, "{}: {key} in {line}", file.name);
        }
    }
    let rows: Vec<(String, u64)> = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(rows, expected.iter().map(|(w, c)| (w.clone(), *c)).collect::<Vec<_>>(), "DuckDB's rows");
}

#[test]
fn every_compression_and_row_group_size_reads_back_in_pyarrow_and_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    let expected = write_words(&input, 6000);
    let cases: [(Option<&str>, CodecNames); 8] = [
        (None, ("zstd", "ZSTD", "ZSTD")),
        (Some("snappy"), ("snappy", "SNAPPY", "SNAPPY")),
        (Some("zstd"), ("zstd", "ZSTD", "ZSTD")),
        (Some("zstd:9"), ("zstd:9", "ZSTD", "ZSTD")),
        (Some("gzip"), ("gzip", "GZIP", "GZIP")),
        (Some("gzip:9"), ("gzip:9", "GZIP", "GZIP")),
        (Some("lz4"), ("lz4", "LZ4", "LZ4_RAW")),
        (Some("none"), ("none", "UNCOMPRESSED", "UNCOMPRESSED")),
    ];
    for (i, (flag, codec)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("out-{i}"));
        let mut args = vec!["-i", s(&input), "-o", s(&out), "--reducers", "2", "--row-group-size", "1000"];
        if let Some(flag) = flag {
            args.extend(["--compression", flag]);
        }
        run_ok("wordcount", &args);
        check_written(&out, codec, 1000, &expected);
    }
    let err = run_err(
        "wordcount",
        &["-i", s(&input), "-o", s(&dir.path().join("bad")), "--compression", "zstd:99"],
    );
    assert!(err.contains("--compression") && err.contains("zstd:99"), "{err}");
}

/// Word count whose part files default to Snappy in row groups of 700 rows.
#[derive(clap::Args, Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SnappyWordCount {}

impl Job for SnappyWordCount {
    const NAME: &'static str = "snappy-wordcount";
    const ABOUT: &'static str = "test job";

    fn parquet_output(&self) -> ParquetOutput {
        ParquetOutput::default().with_compression(Codec::Snappy).with_row_group_rows(700)
    }

    fn map_output(&self) -> KeyedSchema {
        WordCount::default().map_output()
    }

    fn mapper(&self, task: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        WordCount::default().mapper(task)
    }

    fn reducer(&self, task: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        WordCount::default().reducer(task)
    }
}

/// Rows per row group of each file of a committed output.
fn row_groups_of(out: &Path) -> Vec<Vec<i64>> {
    read_committed(out)
        .manifest
        .files
        .iter()
        .map(|f| {
            let reader = SerializedFileReader::new(File::open(out.join(&f.name)).unwrap()).unwrap();
            reader.metadata().row_groups().iter().map(|rg| rg.num_rows()).collect()
        })
        .collect()
}

#[test]
fn a_job_s_own_parquet_defaults_apply_unless_the_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    write_words(&input, 3000);
    let config =
        |out: &str| RunConfig::new(vec![s(&input).to_owned()], s(&dir.path().join(out))).with_threads(2);
    let progress = Arc::new(Progress::default());

    run_local(&SnappyWordCount {}, &config("default"), &progress).unwrap();
    let out = dir.path().join("default");
    assert!(read_committed(&out).manifest.files.iter().all(|f| f.codec.as_deref() == Some("snappy")));
    for groups in row_groups_of(&out) {
        assert!(groups.len() >= 2 && groups.iter().all(|&g| g <= 700) && groups[0] == 700, "{groups:?}");
    }

    let flags = config("flags").with_compression(Some(Codec::None)).with_row_group_size(Some(5000));
    run_local(&SnappyWordCount {}, &flags, &progress).unwrap();
    let out = dir.path().join("flags");
    let manifest = read_committed(&out).manifest;
    assert!(manifest.files.iter().all(|f| f.codec.as_deref() == Some("none")), "{manifest:?}");
    assert!(manifest.files.iter().all(|f| codecs_of(&out.join(&f.name)) == ["UNCOMPRESSED"]));
    assert!(row_groups_of(&out).iter().all(|groups| groups.len() == 1), "one row group per file");
}

#[test]
fn compression_and_row_group_size_reach_cluster_tasks() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    let expected = write_words(&input, 6000);
    let out = dir.path().join("out");
    let args = ["-i", s(&input), "-o", s(&out), "--reducers", "2", "--threads", "2"];
    cluster
        .run_ok("wordcount", &[&args[..], &["--compression", "gzip:9", "--row-group-size", "1000"]].concat());
    check_written(&out, ("gzip:9", "GZIP", "GZIP"), 1000, &expected);
}
