//! Group-by against a sequential oracle: a G1-like dataset (db-benchmark's group-by table:
//! string keys id1-id3, Int32 keys id4-id6, Int32 v1 v2, Float64 v3) in several Parquet files
//! of several row groups, with null values, null keys, keys longer than a string view's
//! inline 12 bytes and groups whose values are all null; every group's sums compared
//! exactly, means within 1e-9 relative, every key once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use gristmill_jobs::sample::SplitMix64;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::record::Field as ParquetField;

use crate::support::*;

/// One row of the G1 table (only the columns the queries use are kept for the oracle).
#[derive(Clone, Debug)]
pub(crate) struct G1Row {
    id1: String,
    id3: Option<String>,
    id4: i32,
    id6: Option<i32>,
    v1: Option<i32>,
    v2: Option<i32>,
    v3: Option<f64>,
}

/// The id3 key whose rows all have null values (longer than 12 bytes, so not inline).
const ALL_NULL_ID3: &str = "id-with-only-null-values";
/// The id6 key whose rows all have null values.
const ALL_NULL_ID6: i32 = -7;

/// `rows` G1-like rows: id3 of about 2000 values (one in ten longer than 12 bytes), id6 of
/// about 5000, about 1% null keys, 5% null values, and one all-null group per key.
pub(crate) fn g1_rows(rows: usize, seed: u64) -> Vec<G1Row> {
    let mut rng = SplitMix64::new(seed);
    (0..rows)
        .map(|_| {
            let k3 = rng.below(2000);
            let mut row = G1Row {
                id1: format!("id{:03}", rng.below(20)),
                id3: Some(if k3.is_multiple_of(10) {
                    format!("id{k3:010}-long")
                } else {
                    format!("id{k3:010}")
                }),
                id4: rng.below(20) as i32 + 1,
                id6: Some(rng.below(5000) as i32 + 1),
                v1: Some(rng.below(5) as i32 + 1),
                v2: Some(rng.below(15) as i32 + 1),
                v3: Some((rng.below(1_000_000) as f64) / 10_000.0),
            };
            match rng.below(100) {
                0 => row.id3 = None,
                1 => row.id6 = None,
                2 => row.id3 = Some(ALL_NULL_ID3.to_owned()),
                3 => row.id6 = Some(ALL_NULL_ID6),
                _ => {}
            }
            let all_null = row.id3.as_deref() == Some(ALL_NULL_ID3) || row.id6 == Some(ALL_NULL_ID6);
            if all_null || rng.below(20) == 0 {
                row.v1 = None;
            }
            if all_null || rng.below(20) == 0 {
                row.v2 = None;
            }
            if all_null || rng.below(20) == 0 {
                row.v3 = None;
            }
            row
        })
        .collect()
}

/// Writes `rows` as `files` Parquet files of G1's nine columns, `per_group` rows per row group.
pub(crate) fn write_g1(dir: &Path, rows: &[G1Row], files: usize, per_group: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let strings = ["id1", "id2", "id3"].map(|n| Field::new(n, DataType::Utf8, true));
    let ints = ["id4", "id5", "id6", "v1", "v2"].map(|n| Field::new(n, DataType::Int32, true));
    let fields: Vec<Field> =
        strings.into_iter().chain(ints).chain([Field::new("v3", DataType::Float64, true)]).collect();
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(per_group)).build();
    for (i, chunk) in rows.chunks(rows.len().div_ceil(files)).enumerate() {
        let file = File::create(dir.join(format!("g1-{i}.parquet"))).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone())).unwrap();
        for batch in chunk.chunks(per_group) {
            let strings = |f: fn(&G1Row) -> Option<String>| -> ArrayRef {
                Arc::new(batch.iter().map(f).collect::<StringArray>())
            };
            let ints = |f: fn(&G1Row) -> Option<i32>| -> ArrayRef {
                Arc::new(batch.iter().map(f).collect::<Int32Array>())
            };
            let columns = vec![
                strings(|r| Some(r.id1.clone())),
                strings(|r| r.id3.as_ref().map(|k| format!("{k}x"))),
                strings(|r| r.id3.clone()),
                ints(|r| Some(r.id4)),
                ints(|r| r.id6.map(|k| k % 100)),
                ints(|r| r.id6),
                ints(|r| r.v1),
                ints(|r| r.v2),
                Arc::new(batch.iter().map(|r| r.v3).collect::<Float64Array>()),
            ];
            writer.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
        }
        writer.close().unwrap();
    }
}

/// An output or oracle value.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Double(f64),
}

fn value(field: &ParquetField) -> Value {
    match field {
        ParquetField::Null => Value::Null,
        ParquetField::Int(n) => Value::Int(i64::from(*n)),
        ParquetField::Long(n) => Value::Int(*n),
        ParquetField::Str(s) => Value::Text(s.clone()),
        ParquetField::Double(x) => Value::Double(*x),
        other => panic!("unexpected output value {other:?}"),
    }
}

fn same(ours: &Value, oracle: &Value) -> bool {
    match (ours, oracle) {
        (Value::Double(a), Value::Double(b)) => (a - b).abs() <= 1e-9 * b.abs().max(f64::MIN_POSITIVE),
        _ => ours == oracle,
    }
}

/// What the oracle computes per group: an integer sum, a float sum, a mean or a row count.
#[derive(Clone, Copy)]
enum Agg {
    SumInt(fn(&G1Row) -> Option<i32>),
    SumFloat(fn(&G1Row) -> Option<f64>),
    MeanInt(fn(&G1Row) -> Option<i32>),
    MeanFloat(fn(&G1Row) -> Option<f64>),
    Count,
}

/// The sequential oracle: `SELECT key, aggs... GROUP BY key` over `rows`, as key -> values.
fn oracle(rows: &[G1Row], key: fn(&G1Row) -> Value, aggs: &[Agg]) -> BTreeMap<String, Vec<Value>> {
    let mut groups: BTreeMap<String, (Value, Vec<&G1Row>)> = BTreeMap::new();
    for row in rows {
        let k = key(row);
        groups.entry(format!("{k:?}")).or_insert_with(|| (k, Vec::new())).1.push(row);
    }
    let mean = |values: Vec<f64>| {
        if values.is_empty() {
            Value::Null
        } else {
            Value::Double(values.iter().sum::<f64>() / values.len() as f64)
        }
    };
    groups
        .into_iter()
        .map(|(name, (k, members))| {
            let mut values = vec![k];
            for agg in aggs {
                values.push(match *agg {
                    Agg::SumInt(f) => {
                        let v: Vec<i64> = members.iter().filter_map(|r| f(r)).map(i64::from).collect();
                        if v.is_empty() { Value::Null } else { Value::Int(v.iter().sum()) }
                    }
                    Agg::SumFloat(f) => {
                        let v: Vec<f64> = members.iter().filter_map(|r| f(r)).collect();
                        if v.is_empty() { Value::Null } else { Value::Double(v.iter().sum()) }
                    }
                    Agg::MeanInt(f) => mean(members.iter().filter_map(|r| f(r)).map(f64::from).collect()),
                    Agg::MeanFloat(f) => mean(members.iter().filter_map(|r| f(r)).collect()),
                    Agg::Count => Value::Int(members.len() as i64),
                });
            }
            (name, values)
        })
        .collect()
}

/// A query: its flags, the oracle's key and aggregates.
type Query = (&'static [&'static str], fn(&G1Row) -> Value, Vec<Agg>);

/// How the reducers receive the partials.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ReduceWay {
    /// Unordered, merged by hash: three reducers, default memory.
    Hashed,
    /// Too large for the reduce budget (`--memory-limit 1` makes it 1 MiB): sorted on the
    /// reduce side, with spills, and merged by key ranges; one reducer.
    SortedOnReduceSide,
}

/// Runs groupby on `input` with `flags` and checks its output against `expected`.
fn check_groupby(
    input: &Path,
    out: &Path,
    flags: &[&str],
    expected: &BTreeMap<String, Vec<Value>>,
    rows: usize,
    way: ReduceWay,
) {
    let (reducers, memory) = match way {
        ReduceWay::Hashed => ("3", "4GiB"),
        ReduceWay::SortedOnReduceSide => ("1", "1"),
    };
    let engine = [
        "--input",
        s(input),
        "--output",
        s(out),
        "--threads",
        "2",
        "--split-size",
        "1",
        "--reducers",
        reducers,
        "--memory-limit",
        memory,
    ];
    run_ok("groupby", &[&engine[..], flags].concat());
    let output = read_committed(out);
    assert_eq!(output.manifest.counters.get("map_input_records"), rows as u64, "every row was read");
    assert_eq!(output.parts.len(), reducers.parse::<usize>().unwrap());
    let partials = output.manifest.counters.get("map_output_records");
    assert!(partials > expected.len() as u64, "several map tasks emitted partials of a group ({partials})");
    assert_eq!(output.manifest.counters.get("reduce_input_records"), partials, "{way:?}");
    // Only the sorted way cuts the partials into key groups.
    let sorted_groups = if way == ReduceWay::Hashed { 0 } else { expected.len() as u64 };
    assert_eq!(output.manifest.counters.get("reduce_input_groups"), sorted_groups, "{way:?}");
    let mut ours = BTreeMap::new();
    for row in output.rows() {
        let values: Vec<Value> = row.iter().map(value).collect();
        let key = format!("{:?}", values[0]);
        assert!(ours.insert(key.clone(), values).is_none(), "{flags:?}: key {key} is output twice");
    }
    assert_eq!(ours.len(), expected.len(), "{flags:?}: groups");
    for (key, theirs) in expected {
        let mine = ours.get(key).unwrap_or_else(|| panic!("{flags:?}: no group {key}"));
        let agree = mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(a, b)| same(a, b));
        assert!(agree, "{flags:?}, group {key}: ours {mine:?}, oracle {theirs:?}");
    }
}

#[test]
fn groupby_equals_the_oracle_on_g1_queries() {
    let dir = tempfile::tempdir().unwrap();
    let rows = g1_rows(50_000, 11);
    let input = dir.path().join("g1");
    write_g1(&input, &rows, 4, 3000);
    let id3 = |r: &G1Row| r.id3.clone().map_or(Value::Null, Value::Text);
    let id6 = |r: &G1Row| r.id6.map_or(Value::Null, |k| Value::Int(i64::from(k)));
    let id4 = |r: &G1Row| Value::Int(i64::from(r.id4));
    let queries: [Query; 3] = [
        (
            &["--by", "id3", "--sum", "v1", "--mean", "v3"],
            id3,
            vec![Agg::SumInt(|r| r.v1), Agg::MeanFloat(|r| r.v3)],
        ),
        (
            &["--by", "id6", "--sum", "v2", "--mean", "v3", "--count"],
            id6,
            vec![Agg::SumInt(|r| r.v2), Agg::MeanFloat(|r| r.v3), Agg::Count],
        ),
        (
            &["--by", "id4", "--mean", "v1", "--count", "--sum", "v3"],
            id4,
            vec![Agg::MeanInt(|r| r.v1), Agg::Count, Agg::SumFloat(|r| r.v3)],
        ),
    ];
    for (i, (flags, key, aggs)) in queries.into_iter().enumerate() {
        let expected = oracle(&rows, key, &aggs);
        let all_null = expected.values().filter(|v| v[1..].contains(&Value::Null)).count();
        let null_key = expected.values().filter(|v| v[0] == Value::Null).count();
        if i < 2 {
            assert!(expected.len() > 1000 && all_null == 1 && null_key == 1, "the data has the cases");
        }
        // id4's 20 groups make too few partials to exceed the 1 MiB budget.
        let ways = if i < 2 {
            &[ReduceWay::Hashed, ReduceWay::SortedOnReduceSide][..]
        } else {
            &[ReduceWay::Hashed]
        };
        for &way in ways {
            let out = dir.path().join(format!("out-{i}-{way:?}"));
            check_groupby(&input, &out, flags, &expected, rows.len(), way);
        }
    }
}

#[test]
fn groupby_errors_name_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("g1");
    write_g1(&input, &g1_rows(100, 3), 1, 100);
    let out = dir.path().join("out");
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--by", "id3", "--sum", "v9"], &["v9", "no column"]),
        (&["--by", "id0", "--count"], &["id0", "no column"]),
        (&["--by", "id6", "--mean", "id1"], &["id1", "Utf8"]),
        (&["--by", "v3", "--count"], &["v3", "Float64"]),
        (&["--by", "id6", "--sum", "v1", "--mean", "v1"], &["v1", "--sum v1", "--mean v1"]),
    ];
    for (flags, needles) in cases {
        let stderr = run_err("groupby", &[&["--input", s(&input), "--output", s(&out)], flags].concat());
        assert!(needles.iter().all(|n| stderr.contains(n)), "{flags:?}: {stderr}");
        assert!(!out.join("_SUCCESS").exists());
    }
    let stderr = run_err("groupby", &["--input", s(&input), "--output", s(&out), "--by", "id3"]);
    assert!(stderr.contains("at least one"), "{stderr}");
}

#[test]
fn groupby_where_skips_row_groups_and_counts_only_matching_rows() {
    let dir = tempfile::tempdir().unwrap();
    // Sorted by id4 (1..=20), so most row groups lie wholly outside `id4 <= 5`.
    let mut rows = g1_rows(40_000, 5);
    rows.sort_by_key(|r| r.id4);
    let input = dir.path().join("g1-sorted");
    write_g1(&input, &rows, 2, 2000);
    let keep = |r: &G1Row| r.id4 <= 5 && (r.v3.is_some_and(|v| v < 50.0) || r.id1 == "id007");
    let kept: Vec<G1Row> = rows.iter().filter(|r| keep(r)).cloned().collect();
    let id3 = |r: &G1Row| r.id3.clone().map_or(Value::Null, Value::Text);
    let expected = oracle(&kept, id3, &[Agg::SumInt(|r| r.v1), Agg::Count]);
    let out = dir.path().join("out");
    let filter = "id4 <= 5 and (v3 < 50 or id1 = 'id007')";
    let flags = ["--by", "id3", "--sum", "v1", "--count", "--where", filter];
    check_groupby(&input, &out, &flags, &expected, kept.len(), ReduceWay::Hashed);
    let counters = read_committed(&out).manifest.counters;
    let (skipped, groups) = (counters.get("input_row_groups_skipped"), 40_000 / 2000);
    assert!(skipped >= 14, "row groups of id4 > 5 are not read: {skipped} of {groups} skipped");
    assert!(counters.get("input_bytes_skipped") > 0);

    let bad = run_err(
        "groupby",
        &[
            "--input",
            s(&input),
            "--output",
            s(&dir.path().join("x")),
            "--by",
            "id3",
            "--count",
            "--where",
            "nope < 3",
        ],
    );
    assert!(bad.contains("--where") && bad.contains("nope"), "{bad}");
}
