//! The join against DuckDB's inner join of the same files, on skewed keys: a key frequent
//! on both sides, one with more left rows than a merged chunk holds, one with that many
//! right rows, many unique keys (on both sides, on one side only), null keys, a column
//! name on both sides; several files, many row groups, small splits, several reducers.
//! The multisets of output rows must be equal.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use gristmill_jobs::sample::SplitMix64;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use parquet::record::Field as ParquetField;

use crate::support::*;

/// Prints DuckDB's inner join of the two sides, a row per line, tab-separated: `\N` for
/// null, floats as `repr` (round-trippable).
const DUCKDB_JOIN: &str = r#"
import sys, duckdb
left, right, left_key, right_key = sys.argv[1:5]
con = duckdb.connect()
query = f"""select l.*, r.* from read_parquet('{left}') l
            join read_parquet('{right}') r on l.{left_key} = r.{right_key}"""
for row in con.execute(query).fetchall():
    print("\t".join("\\N" if v is None else repr(v) if isinstance(v, float) else str(v) for v in row))
"#;

/// Key column types the test covers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyType {
    Int32,
    Int64,
    UInt64,
    Utf8,
}

impl KeyType {
    /// The key column holding `keys` (as numbers; strings are `k<number>`, unsigned keys
    /// have the top bit flipped, so non-negative ones land above `i64::MAX`).
    fn column(self, keys: &[Option<i64>]) -> ArrayRef {
        match self {
            KeyType::Int32 => Arc::new(Int32Array::from_iter(keys.iter().map(|k| k.map(|k| k as i32)))),
            KeyType::Int64 => Arc::new(Int64Array::from_iter(keys.iter().copied())),
            KeyType::UInt64 => Arc::new(UInt64Array::from_iter(
                keys.iter().map(|k| k.map(|k| (k as u64).wrapping_add(1 << 63))),
            )),
            KeyType::Utf8 => {
                Arc::new(StringArray::from_iter(keys.iter().map(|k| k.map(|k| format!("k{k}")))))
            }
        }
    }

    fn data_type(self) -> DataType {
        match self {
            KeyType::Int32 => DataType::Int32,
            KeyType::Int64 => DataType::Int64,
            KeyType::UInt64 => DataType::UInt64,
            KeyType::Utf8 => DataType::Utf8,
        }
    }
}

/// One side's rows: key, name, and a payload (left: Float64 score, right: Int32 qty).
pub(crate) struct Side {
    pub(crate) keys: Vec<Option<i64>>,
    names: Vec<Option<String>>,
    payload: Vec<Option<i64>>,
}

/// A side with `hot` keys repeated (key, count), `unique` rows of keys drawn from
/// `1000..1000 + spread` (some keys land on both sides, most on one), `only` keys on this
/// side alone, and some null keys; rows shuffled.
pub(crate) fn side(
    rng: &mut SplitMix64,
    hot: &[(i64, usize)],
    unique: usize,
    spread: u64,
    only: i64,
) -> Side {
    let mut keys: Vec<Option<i64>> = Vec::new();
    for &(key, count) in hot {
        keys.extend(std::iter::repeat_n(Some(key), count));
    }
    keys.extend((0..unique).map(|_| Some(1000 + rng.below(spread) as i64)));
    keys.extend((0..20).map(|i| Some(only - i)));
    keys.extend((0..15).map(|_| None));
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let names = (0..keys.len())
        .map(|i| match rng.below(10) {
            0 => None,
            1 => Some(format!("ü-{i}")),
            _ => Some(format!("n{}", rng.below(1000))),
        })
        .collect();
    let payload = (0..keys.len())
        .map(|_| (rng.below(12) != 0).then(|| rng.below(1_000_000) as i64 - 500_000))
        .collect();
    Side { keys, names, payload }
}

/// Writes `side` as `files` Parquet files under `dir` (1500 rows per row group), with columns `key_name` (of `key_type`), `name` and `score` (left, Float64) or
/// `qty` (right, Int32).
pub(crate) fn write_side(
    dir: &Path,
    side: &Side,
    key_name: &str,
    key_type: KeyType,
    left: bool,
    files: usize,
) {
    std::fs::create_dir_all(dir).unwrap();
    let payload_field = if left {
        Field::new("score", DataType::Float64, true)
    } else {
        Field::new("qty", DataType::Int32, true)
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new(key_name, key_type.data_type(), true),
        Field::new("name", DataType::Utf8, true),
        payload_field,
    ]));
    let rows_per_file = side.keys.len().div_ceil(files);
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(1500)).build();
    for (f, start) in (0..side.keys.len()).step_by(rows_per_file).enumerate() {
        let range = start..(start + rows_per_file).min(side.keys.len());
        let payload: ArrayRef = if left {
            Arc::new(Float64Array::from_iter(
                side.payload[range.clone()].iter().map(|v| v.map(|v| v as f64 / 7.0)),
            ))
        } else {
            Arc::new(Int32Array::from_iter(side.payload[range.clone()].iter().map(|v| v.map(|v| v as i32))))
        };
        let columns = vec![
            key_type.column(&side.keys[range.clone()]),
            Arc::new(StringArray::from_iter(side.names[range].iter().cloned())) as ArrayRef,
            payload,
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let file = File::create(dir.join(format!("part-{f}.parquet"))).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
}

/// A field as DuckDB prints it (floats through `f64` so both sides spell them alike).
fn text(field: &ParquetField) -> String {
    match field {
        ParquetField::Null => "\\N".to_owned(),
        ParquetField::Int(v) => v.to_string(),
        ParquetField::Long(v) => v.to_string(),
        ParquetField::ULong(v) => v.to_string(),
        ParquetField::Double(v) => format!("{v:?}"),
        ParquetField::Str(s) => s.clone(),
        other => panic!("unexpected output value {other:?}"),
    }
}

/// DuckDB's rows, floats normalized like [`text`], sorted.
fn duckdb_rows(
    left: &Path,
    right: &Path,
    left_key: &str,
    right_key: &str,
    float_column: usize,
) -> Vec<String> {
    let glob = |dir: &Path| format!("{}/*.parquet", s(dir));
    let out = run_python(DUCKDB_JOIN, &[&glob(left), &glob(right), left_key, right_key]);
    let mut rows: Vec<String> = out
        .lines()
        .map(|line| {
            let fields: Vec<String> = line
                .split('\t')
                .enumerate()
                .map(|(i, v)| {
                    if i == float_column && v != "\\N" {
                        format!("{:?}", v.parse::<f64>().unwrap())
                    } else {
                        v.to_owned()
                    }
                })
                .collect();
            fields.join("\t")
        })
        .collect();
    rows.sort();
    rows
}

/// Our rows, sorted, and the output column names.
fn our_rows(out: &Path) -> (Vec<String>, Vec<String>) {
    let output = read_committed(out);
    let mut rows: Vec<String> =
        output.rows().map(|row| row.iter().map(text).collect::<Vec<_>>().join("\t")).collect();
    rows.sort();
    let first = out.join(&output.manifest.files[0].name);
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(first).unwrap()).unwrap();
    let names = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    (rows, names)
}

fn join_args<'a>(left: &'a str, left_key: &'a str, right: &'a str, right_key: &'a str) -> Vec<&'a str> {
    vec!["--left", left, "--left-key", left_key, "--right", right, "--right-key", right_key]
}

#[test]
fn join_equals_duckdb_on_keys_frequent_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(11);
    // Key 1: frequent on both sides. Key 2: more left rows than a merged chunk (32K) holds,
    // so its left rows are carried across chunks. Key 3: as many right rows, streamed.
    let left = side(&mut rng, &[(1, 300), (2, 34_000), (3, 2)], 12_000, 40_000, -100);
    let right = side(&mut rng, &[(1, 250), (2, 2), (3, 34_000)], 12_000, 40_000, -200);
    let (left_dir, right_dir) = (dir.path().join("left"), dir.path().join("right"));
    write_side(&left_dir, &left, "id", KeyType::Int64, true, 2);
    write_side(&right_dir, &right, "user_id", KeyType::Int64, false, 3);
    let expected = duckdb_rows(&left_dir, &right_dir, "id", "user_id", 2);
    assert!(expected.len() > 300 * 250 + 2 * 68_000, "the hot keys dominate: {} rows", expected.len());

    let runs = [
        ("repartition", "3", "1"),
        ("repartition", "1", "64MiB"),
        ("broadcast", "3", "1"),
        ("broadcast", "1", "64MiB"),
    ];
    for (strategy, reducers, split) in runs {
        let what = format!("{strategy}, reducers {reducers}, split {split}");
        let out = dir.path().join(format!("out-{strategy}-{reducers}-{split}"));
        let sides = join_args(s(&left_dir), "id", s(&right_dir), "user_id");
        let engine = ["--output", s(&out), "--threads", "2", "--reducers", reducers, "--split-size", split];
        run_ok("join", &[&sides[..], &engine[..], &["--strategy", strategy]].concat());
        let (rows, names) = our_rows(&out);
        assert_eq!(names, ["id", "name", "score", "user_id", "right_name", "qty"]);
        assert_eq!(rows.len(), expected.len(), "{what}: row count");
        let first_difference = rows.iter().zip(&expected).find(|(a, b)| a != b);
        assert!(first_difference.is_none(), "{what}: {first_difference:?}");

        let output = read_committed(&out);
        let counters = &output.manifest.counters;
        if strategy == "repartition" {
            assert_eq!(output.manifest.files.len(), reducers.parse::<usize>().unwrap());
            let input_rows = (left.keys.len() + right.keys.len()) as u64;
            assert_eq!(counters.get("map_input_records"), input_rows);
            assert_eq!(counters.get("join_null_keys"), 30, "null keys never match");
            assert_eq!(counters.get("reduce_input_records"), input_rows - 30);
        } else {
            // Map-only: one part file per map task over the streamed (larger) side.
            let (streamed, files) =
                if dir_bytes(&left_dir) > dir_bytes(&right_dir) { (&left, 2) } else { (&right, 3) };
            assert_eq!(counters.get("map_input_records"), streamed.keys.len() as u64, "{what}");
            assert_eq!(counters.get("join_null_keys"), 15, "{what}: the streamed side's null keys");
            assert_eq!(counters.get("map_output_records"), expected.len() as u64, "{what}");
            assert_eq!(counters.get("reduce_input_records"), 0, "{what}: nothing shuffled");
            // A split per row group (of 1500 rows) with 1-byte splits; with 64 MiB ones the
            // small files are packed into one split.
            let parts = output.manifest.files.len();
            let splits = if split == "1" { streamed.keys.len().div_ceil(1500 * files) * files } else { 1 };
            assert!(parts >= splits, "{what}: {parts} part files for {splits} or more splits");
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

#[test]
fn join_equals_duckdb_for_each_key_type() {
    for (i, key_type) in [KeyType::Int32, KeyType::UInt64, KeyType::Utf8].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SplitMix64::new(20 + i as u64);
        let left = side(&mut rng, &[(5, 120), (6, 40)], 2_000, 3_000, -100);
        let right = side(&mut rng, &[(5, 90), (7, 50)], 2_000, 3_000, -200);
        let (left_dir, right_dir) = (dir.path().join("left"), dir.path().join("right"));
        write_side(&left_dir, &left, "k", key_type, true, 2);
        write_side(&right_dir, &right, "k", key_type, false, 2);
        let expected = duckdb_rows(&left_dir, &right_dir, "k", "k", 2);
        // The default strategy broadcasts sides this small; a limit of 1 byte repartitions.
        for (strategy, files) in
            [(&["--strategy", "auto"][..], None), (&["--broadcast-limit", "1"][..], Some(4))]
        {
            let out = dir.path().join(format!("out-{}", strategy[1]));
            let sides = join_args(s(&left_dir), "k", s(&right_dir), "k");
            let engine = ["--output", s(&out), "--threads", "2", "--reducers", "4", "--split-size", "1"];
            run_ok("join", &[&sides[..], &engine[..], strategy].concat());
            let (rows, names) = our_rows(&out);
            assert_eq!(names, ["k", "name", "score", "right_k", "right_name", "qty"], "{key_type:?}");
            assert!(rows.len() > 120 * 90, "{key_type:?} {strategy:?}: the hot key matched");
            assert!(
                rows == expected,
                "{key_type:?} {strategy:?}: {} rows, DuckDB {}",
                rows.len(),
                expected.len()
            );
            let output = read_committed(&out);
            let shuffled = output.manifest.counters.get("reduce_input_records");
            match files {
                Some(files) => assert_eq!((output.manifest.files.len(), shuffled > 0), (files, true)),
                None => assert_eq!(shuffled, 0, "{key_type:?}: broadcast, nothing shuffled"),
            }
        }
    }
}

#[test]
fn join_names_both_files_and_columns_when_keys_differ_or_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(3);
    let rows = side(&mut rng, &[], 50, 100, -1);
    let (left_dir, right_dir) = (dir.path().join("left"), dir.path().join("right"));
    write_side(&left_dir, &rows, "id", KeyType::Int64, true, 1);
    write_side(&right_dir, &rows, "id", KeyType::Utf8, false, 1);
    let out = dir.path().join("out");
    let args = join_args(s(&left_dir), "id", s(&right_dir), "id");
    let err = run_err("join", &[&args[..], &["--output", s(&out)]].concat());
    assert!(
        err.contains("`id` of")
            && err.contains("left/part-0.parquet is Int64")
            && err.contains("right/part-0.parquet is Utf8"),
        "{err}"
    );
    let args = join_args(s(&left_dir), "id", s(&right_dir), "nope");
    let err = run_err("join", &[&args[..], &["--output", s(&out)]].concat());
    assert!(err.contains("--right-key `nope`") && err.contains("right/part-0.parquet"), "{err}");
    // An empty side fails the plan too, naming the flag and the path.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let args = join_args(s(&left_dir), "id", s(&empty), "id");
    let err = run_err("join", &[&args[..], &["--output", s(&out)]].concat());
    assert!(err.contains(&format!("--right {} holds no files", s(&empty))), "{err}");
    assert!(!out.exists(), "the plan failed before any task ran");
}
