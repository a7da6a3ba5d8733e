//! Bad records (`--max-bad-records N`): a CSV row with the wrong column count, a JSON
//! lines syntax error, a line of text that is not UTF-8. By default the first fails the
//! job naming the file and the line; with `N` allowed the job skips them, its output equals
//! DuckDB's (`ignore_errors=true` for CSV; the lines Python's `json` parses for JSON lines)
//! or Python's word counts over the good rows, and `_bad_records/`,
//! read by DuckDB, holds exactly the bad rows with their file, line and offset; past `N`
//! the job fails naming the last one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parquet::record::Field as ParquetField;

use crate::support::*;

/// A row the generator made bad: its 1-based line, byte offset and raw bytes (without the
/// line break).
#[derive(Clone, Debug)]
struct BadRow {
    line: u64,
    offset: u64,
    bytes: Vec<u8>,
}

/// An input file and the rows in it that are bad, in file order.
struct Input {
    path: PathBuf,
    bad: Vec<BadRow>,
}

/// Lines of `good(i)` for `i` in `0..rows`, with `bad` lines inserted after the given rows.
fn write_lines(
    path: &Path,
    header: Option<&str>,
    rows: usize,
    good: impl Fn(usize) -> Vec<u8>,
    bad: &[(usize, &[u8])],
) -> Input {
    let mut data = Vec::new();
    let mut found = Vec::new();
    let mut line = 1;
    if let Some(header) = header {
        data.extend_from_slice(header.as_bytes());
        data.push(b'\n');
        line += 1;
    }
    for i in 0..rows {
        data.extend_from_slice(&good(i));
        data.push(b'\n');
        line += 1;
        for (_, bytes) in bad.iter().filter(|(after, _)| *after == i) {
            found.push(BadRow { line, offset: data.len() as u64, bytes: bytes.to_vec() });
            data.extend_from_slice(bytes);
            data.push(b'\n');
            line += 1;
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    Input { path: path.to_owned(), bad: found }
}

fn csv_input(dir: &Path) -> Input {
    let bad: [(usize, &[u8]); 4] =
        [(500, b"lonely"), (1500, b"a,1,extra"), (2500, b"\"b, quoted\",2,3,4"), (3500, b"key3")];
    write_lines(
        &dir.join("csv/logs.csv"),
        Some("k,v"),
        4000,
        |i| format!("key{},{i}", i % 13).into_bytes(),
        &bad,
    )
}

fn json_input(dir: &Path) -> Input {
    let bad: [(usize, &[u8]); 4] = [
        (400, b"{\"k\": \"broken\", \"v\": }"),
        (1400, b"{\"k\": \"open\", \"v\": 3"),
        (2400, b"not json at all"),
        (3400, b"{\"k\": 'single quotes', \"v\": 2}"),
    ];
    let good = |i: usize| format!("{{\"k\": \"key{}\", \"v\": {i}}}", i % 13).into_bytes();
    write_lines(&dir.join("json/events.jsonl"), None, 4000, good, &bad)
}

fn text_input(dir: &Path) -> Input {
    let bad: [(usize, &[u8]); 4] = [
        (300, b"caf\xe9 au lait"),
        (1300, b"\xff\xfe binary junk"),
        (2300, b"half \xe2\x82 a euro"),
        (3300, b"latin1 \xe0 la carte"),
    ];
    let words = ["alpha", "beta", "gamma", "delta", "über", "ünïcödé", "z"];
    let good = |i: usize| {
        (0..(i % 7) + 1)
            .map(|j| words[(i * 31 + j * 7) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes()
    };
    write_lines(&dir.join("text/notes.txt"), None, 4000, good, &bad)
}

/// DuckDB's group-by of the good rows of CSV or JSON lines (key -> (sum of v, count)), or
/// Python's word counts of the good lines of text, and DuckDB's read of `_bad_records/`
/// of `out` (when it exists), as JSON.
const ORACLE: &str = r#"
import glob, json, os, sys, duckdb
kind, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
result = {}
if kind == "csv":
    reader = f"read_csv('{path}', header=true, columns={{'k': 'VARCHAR', 'v': 'BIGINT'}}, ignore_errors=true)"
elif kind == "json":
    # DuckDB's ignore_errors turns a bad JSON line into a row of nulls: Python picks the
    # lines that parse as objects, DuckDB reads those.
    good = f"{out}.good.jsonl"
    with open(path, "rb") as src, open(good, "wb") as dst:
        for line in src:
            try:
                if isinstance(json.loads(line), dict):
                    dst.write(line)
            except ValueError:
                pass
    reader = f"read_json('{good}', format='newline_delimited', columns={{'k': 'VARCHAR', 'v': 'BIGINT'}})"
if kind in ("csv", "json"):
    rows = con.execute(f"SELECT k, sum(v)::BIGINT, count(*) FROM {reader} GROUP BY k").fetchall()
    result["groups"] = {k: [s, n] for k, s, n in rows}
else:
    words = {}
    for line in open(path, "rb").read().split(b"\n"):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        for word in text.split():
            words[word] = words.get(word, 0) + 1
    result["words"] = words
bad = glob.glob(f"{out}/_bad_records/*.parquet")
if bad:
    rows = con.execute(
        f"SELECT file, line, \"offset\", reason, text FROM read_parquet('{out}/_bad_records/*.parquet') ORDER BY file, \"offset\""
    ).fetchall()
    result["bad"] = [list(r) for r in rows]
print(json.dumps(result))
"#;

fn oracle(kind: &str, input: &Input, out: &Path) -> serde_json::Value {
    serde_json::from_str(&run_python(ORACLE, &[kind, s(&input.path), s(out)]))
        .expect("the oracle prints JSON")
}

/// The engine flags: several splits, two reducers.
fn engine<'a>(input: &'a Input, out: &'a Path) -> Vec<&'a str> {
    vec!["--input", s(&input.path), "--output", s(out), "--reducers", "2", "--split-size", "8KiB"]
}

/// Runs the job that reads `kind`'s input with `extra` flags.
fn job_args<'a>(
    kind: &str,
    input: &'a Input,
    out: &'a Path,
    extra: &[&'a str],
) -> (&'static str, Vec<&'a str>) {
    let (job, flags): (&str, &[&str]) = match kind {
        "text" => ("wordcount", &[]),
        _ => ("groupby", &["--by", "k", "--sum", "v", "--count"]),
    };
    (job, [&engine(input, out)[..], flags, extra].concat())
}

fn inputs(dir: &Path) -> Vec<(&'static str, Input)> {
    vec![("csv", csv_input(dir)), ("json", json_input(dir)), ("text", text_input(dir))]
}

#[test]
fn a_bad_row_fails_the_job_by_default_naming_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, input) in inputs(dir.path()) {
        let out = dir.path().join(format!("{kind}-out"));
        let (job, args) = job_args(kind, &input, &out, &["--threads", "2"]);
        let stderr = run_err(job, &args);
        let named = input.bad.iter().any(|b| stderr.contains(&format!("line {}", b.line)));
        assert!(stderr.contains(s(&input.path)) && named, "{kind}: {stderr}");
        assert!(stderr.contains("--max-bad-records") || kind != "text", "{kind}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !out.join("_SUCCESS").exists() && !out.join("_bad_records").exists(),
            "{kind}: nothing committed"
        );
    }
}

#[test]
fn up_to_max_bad_records_rows_are_skipped_and_written_aside() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, input) in inputs(dir.path()) {
        let out = dir.path().join(format!("{kind}-out"));
        let (job, args) = job_args(kind, &input, &out, &["--max-bad-records", "5", "--threads", "2"]);
        let run = run(job, &args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{kind}: {stderr}");
        if job == "wordcount" {
            let counted = stderr.lines().any(|l| l.split_whitespace().eq(["bad_records", "4"]));
            assert!(counted, "{kind}: the summary counts them: {stderr}");
        }
        let output = read_committed(&out);
        assert_eq!(output.manifest.counters.get("bad_records"), 4, "{kind}");
        assert_eq!(output.manifest.bad_records.len(), 1, "{kind}: the manifest lists the bad records file");
        assert_eq!(output.manifest.bad_records[0].rows, 4, "{kind}");
        let oracle = oracle(kind, &input, &out);
        match kind {
            "text" => {
                let expected: BTreeMap<String, u64> =
                    serde_json::from_value(oracle["words"].clone()).unwrap();
                assert_eq!(read_word_counts(&out), expected, "word counts of the good lines");
            }
            _ => {
                let expected: BTreeMap<String, (i64, i64)> =
                    serde_json::from_value(oracle["groups"].clone()).unwrap();
                assert_eq!(groups(&output), expected, "{kind}: the groups of the good rows");
                assert_eq!(output.manifest.counters.get("map_input_records"), 4000, "{kind}");
            }
        }
        check_bad_records(kind, &input, &oracle["bad"]);
    }
}

/// The group-by's output as key -> (sum, count).
fn groups(output: &CommittedOutput) -> BTreeMap<String, (i64, i64)> {
    output
        .rows()
        .map(|row| match (&row[1], &row[2]) {
            (ParquetField::Long(sum), ParquetField::Long(count)) => (as_str(&row[0]).clone(), (*sum, *count)),
            other => panic!("sum and count are Int64: {other:?}"),
        })
        .collect()
}

/// `_bad_records/` as DuckDB read it holds exactly `input`'s bad rows.
fn check_bad_records(kind: &str, input: &Input, read: &serde_json::Value) {
    let read = read.as_array().unwrap_or_else(|| panic!("{kind}: no _bad_records/ to read"));
    assert_eq!(read.len(), input.bad.len(), "{kind}: {read:?}");
    for (row, bad) in read.iter().zip(&input.bad) {
        assert_eq!(row[0].as_str(), Some(s(&input.path)), "{kind}: file");
        assert_eq!(row[1].as_u64(), Some(bad.line), "{kind}: line of {row:?}");
        assert_eq!(row[2].as_u64(), Some(bad.offset), "{kind}: offset of {row:?}");
        assert!(!row[3].as_str().unwrap().is_empty(), "{kind}: a reason");
        assert_eq!(row[4].as_str(), Some(&*String::from_utf8_lossy(&bad.bytes)), "{kind}: text");
    }
}

#[test]
fn more_bad_rows_than_allowed_fail_the_job_naming_the_last() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, input) in inputs(dir.path()) {
        let out = dir.path().join(format!("{kind}-out"));
        // One thread: the splits are read in order, so the fourth bad row is the last.
        let (job, args) = job_args(kind, &input, &out, &["--max-bad-records", "3", "--threads", "1"]);
        let stderr = run_err(job, &args);
        let last = &input.bad[3];
        let named = format!(
            "{}: more than 3 bad records (--max-bad-records 3); the last, at line {} (byte offset {})",
            s(&input.path),
            last.line,
            last.offset
        );
        assert!(stderr.contains(&named), "{kind}: {stderr}");
        assert!(!out.join("_SUCCESS").exists(), "{kind}: nothing committed");
        let left = std::fs::read_dir(out.join("_bad_records")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{kind}: no bad records file left");
    }
}

#[test]
fn cluster_mode_keeps_each_bad_row_once_and_sums_them_over_the_map_tasks() {
    use super::cluster_support::{Cluster, ClusterSpec};
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    for (kind, input) in inputs(dir.path()) {
        let out = dir.path().join(format!("{kind}-cluster"));
        let (job, args) = job_args(kind, &input, &out, &["--max-bad-records", "5", "--threads", "2"]);
        cluster.run_ok(job, &args);
        let output = read_committed(&out);
        assert_eq!(output.manifest.counters.get("bad_records"), 4, "{kind}");
        assert_eq!(output.manifest.bad_records.len(), 1, "{kind}: the manifest lists the bad records file");
        let oracle = oracle(kind, &input, &out);
        match kind {
            "text" => {
                let expected: BTreeMap<String, u64> =
                    serde_json::from_value(oracle["words"].clone()).unwrap();
                assert_eq!(read_word_counts(&out), expected, "word counts of the good lines");
            }
            _ => {
                let expected: BTreeMap<String, (i64, i64)> =
                    serde_json::from_value(oracle["groups"].clone()).unwrap();
                assert_eq!(groups(&output), expected, "{kind}: the groups of the good rows");
            }
        }
        check_bad_records(kind, &input, &oracle["bad"]);

        // Each map task holds at most one bad row: the driver's sum passes the limit.
        let out = dir.path().join(format!("{kind}-cluster-past"));
        let (job, args) = job_args(kind, &input, &out, &["--max-bad-records", "3", "--threads", "2"]);
        let failed = cluster.run(job, &args);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "{kind}: {stderr}");
        let named =
            input.bad.iter().any(|b| stderr.contains(&format!("line {} (byte offset {})", b.line, b.offset)));
        assert!(
            stderr.contains("more than 3 bad records (--max-bad-records 3)") && named,
            "{kind}: {stderr}"
        );
        assert!(!out.join("_SUCCESS").exists(), "{kind}: nothing committed");
        let left = std::fs::read_dir(out.join("_bad_records")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{kind}: no bad records file left");
    }
}
