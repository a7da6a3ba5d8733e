//! CSV and JSON lines input against DuckDB: files written by Python's `csv` and `json`
//! modules (quoting, embedded delimiters and quotes, Unicode, empty fields, `\r\n`, and
//! embedded newlines with `--csv-multiline`), read in several splits by `groupby --by k`
//! and `wordcount --column body`; DuckDB's `read_csv` / `read_json` on the same files is
//! the oracle. Malformed rows fail the job naming the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

use parquet::record::Field as ParquetField;

use crate::support::*;

/// Writes `csv/` and `json/` (two files each, the same rows) into `dir`, with line breaks
/// inside `body` values when `multiline`, and prints DuckDB's group-by and the word counts
/// of the bodies DuckDB reads, per format, as JSON.
const WRITE_AND_ORACLE: &str = r#"
import csv, json, os, random, sys, duckdb
out, multiline, FILTER = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
rnd = random.Random(22)
keys = ["plain", "a,b", 'say "hi"', "ünïcödé ✓", "tab\there", "k" * 30, "", "123abc", "😀"]
vocab = ["alpha", "beta", "x,y", '"quoted"', "δέλτα", "über", "😀", "a;b", "z"]
rows = []
for i in range(40000):
    body = " ".join(rnd.choice(vocab) for _ in range(rnd.randrange(0, 9)))
    if multiline and i % 7 == 0:
        body += "\nsecond line " + rnd.choice(vocab)
    v = rnd.randrange(-50, 1000) if rnd.random() > 0.05 else None
    x = rnd.randrange(0, 100000) / 8 if rnd.random() > 0.05 else None
    rows.append({"k": rnd.choice(keys), "v": v, "x": x, "body": body})
for fmt in ["csv", "json"]:
    os.makedirs(f"{out}/{fmt}", exist_ok=True)
half = len(rows) // 2
for n, part in enumerate([rows[:half], rows[half:]]):
    with open(f"{out}/csv/part-{n}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["k", "v", "x", "body"])
        for r in part:
            w.writerow(["" if r[c] is None else r[c] for c in ["k", "v", "x", "body"]])
    with open(f"{out}/json/part-{n}.jsonl", "w", encoding="utf-8") as f:
        for r in part:
            r = {c: val for c, val in r.items() if val is not None or rnd.random() < 0.5}
            if r.get("k") == "":
                r["k"] = None
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
columns = "{'k': 'VARCHAR', 'v': 'BIGINT', 'x': 'DOUBLE', 'body': 'VARCHAR'}"
readers = {
    "csv": f"read_csv('{out}/csv/*.csv', header=true, delim=',', quote='\"', escape='\"', columns={columns})",
    "json": f"read_json('{out}/json/*.jsonl', format='newline_delimited', columns={columns})",
}
result = {}
for fmt, reader in readers.items():
    con = duckdb.connect()
    groups = con.execute(f"SELECT k, sum(v)::BIGINT, avg(x), count(*) FROM {reader} GROUP BY k").fetchall()
    words = {}
    for (body,) in con.execute(f"SELECT body FROM {reader}").fetchall():
        for word in (body or "").split():
            words[word] = words.get(word, 0) + 1
    filtered = con.execute(f"SELECT k, sum(v)::BIGINT, avg(x), count(*) FROM {reader} WHERE {FILTER} GROUP BY k").fetchall()
    result[fmt] = {"groups": groups, "words": words, "filtered": filtered}
print(json.dumps(result))
"#;

/// One group: sum of v, mean of x, count.
pub(crate) type Group = (Option<i64>, Option<f64>, i64);
/// Groups by key.
pub(crate) type Groups = BTreeMap<Option<String>, Group>;

/// The oracle of one format: groups by key, word counts, and groups of the rows passing
/// [`FILTER`].
pub(crate) struct Oracle {
    pub(crate) groups: Groups,
    pub(crate) words: BTreeMap<String, u64>,
    pub(crate) filtered: Groups,
}

/// A filter on two columns, in the syntax DuckDB and `groupby --where` share.
const FILTER: &str = "v >= 100 and (x < 5000 or k = 'plain')";

fn write_and_oracle(dir: &Path, multiline: bool) -> BTreeMap<String, Oracle> {
    let printed = run_python(WRITE_AND_ORACLE, &[s(dir), if multiline { "1" } else { "0" }, FILTER]);
    let json: serde_json::Value = serde_json::from_str(&printed).expect("the oracle prints JSON");
    let mut oracles = BTreeMap::new();
    for format in ["csv", "json"] {
        oracles.insert(format.to_owned(), Oracle::from_json(&json[format]));
    }
    oracles
}

impl Oracle {
    /// The oracle printed as `{"groups": [[k, sum, mean, count], ...], "words": {w: n}}`,
    /// with `"filtered"` groups like `"groups"` where the oracle printed them.
    pub(crate) fn from_json(json: &serde_json::Value) -> Oracle {
        let groups = |name: &str| -> Groups {
            let parse = |g: &serde_json::Value| {
                let key = g[0].as_str().map(str::to_owned);
                (key, (g[1].as_i64(), g[2].as_f64(), g[3].as_i64().unwrap()))
            };
            json[name].as_array().map(|all| all.iter().map(parse).collect()).unwrap_or_default()
        };
        let words = json["words"]
            .as_object()
            .map(|words| words.iter().map(|(w, n)| (w.clone(), n.as_u64().unwrap())).collect())
            .unwrap_or_default();
        Oracle { groups: groups("groups"), words, filtered: groups("filtered") }
    }
}

/// The engine flags: several splits of each file, two threads, two reducers.
fn engine<'a>(input: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--input",
        s(input),
        "--output",
        s(out),
        "--threads",
        "2",
        "--reducers",
        "2",
        "--split-size",
        "200KiB",
    ]
}

fn check_groupby(input: &Path, out: &Path, extra: &[&str], groups: &Groups) {
    let flags = ["--by", "k", "--sum", "v", "--mean", "x", "--count"];
    run_ok("groupby", &[&engine(input, out)[..], &flags, extra].concat());
    assert_groups_equal(input, out, groups);
}

/// The `groupby --by k --sum v --mean x --count` output in `out` equals `groups`, and its
/// mappers got exactly the rows these count.
pub(crate) fn assert_groups_equal(input: &Path, out: &Path, groups: &Groups) {
    let output = read_committed(out);
    let rows: i64 = groups.values().map(|g| g.2).sum();
    assert_eq!(
        output.manifest.counters.get("map_input_records"),
        rows as u64,
        "the mapper got the rows that pass"
    );
    let mut ours = BTreeMap::new();
    for row in output.rows() {
        let key = match &row[0] {
            ParquetField::Null => None,
            field => Some(as_str(field).clone()),
        };
        let sum = match &row[1] {
            ParquetField::Long(n) => Some(*n),
            _ => None,
        };
        let mean = match &row[2] {
            ParquetField::Double(x) => Some(*x),
            _ => None,
        };
        let ParquetField::Long(count) = row[3] else { panic!("count is an Int64: {row:?}") };
        assert!(ours.insert(key, (sum, mean, count)).is_none(), "a key output twice");
    }
    assert_eq!(ours.keys().collect::<Vec<_>>(), groups.keys().collect::<Vec<_>>(), "{input:?}: keys");
    for (key, (sum, mean, count)) in groups {
        let (our_sum, our_mean, our_count) = ours[key];
        assert_eq!((our_sum, our_count), (*sum, *count), "{input:?}, group {key:?}");
        let close = match (our_mean, mean) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            (a, b) => a == *b,
        };
        assert!(close, "{input:?}, group {key:?}: mean {our_mean:?} against {mean:?}");
    }
}

fn check_wordcount(input: &Path, out: &Path, extra: &[&str], oracle: &Oracle) {
    run_ok("wordcount", &[&engine(input, out)[..], &["--column", "body"], extra].concat());
    assert_eq!(read_word_counts(out), oracle.words, "{input:?}: word counts");
}

#[test]
fn csv_and_json_lines_equal_duckdb_over_several_splits() {
    let dir = tempfile::tempdir().unwrap();
    let oracles = write_and_oracle(dir.path(), false);
    for (format, oracle) in &oracles {
        assert!(
            oracle.groups.contains_key(&None) && oracle.groups.len() == 9,
            "{format}: the data has the cases"
        );
        let input = dir.path().join(format);
        check_groupby(&input, &dir.path().join(format!("{format}-groups")), &[], &oracle.groups);
        check_wordcount(&input, &dir.path().join(format!("{format}-words")), &[], oracle);
        let filtered = dir.path().join(format!("{format}-filtered"));
        assert!(oracle.filtered.len() > 2 && oracle.filtered != oracle.groups, "the filter filters");
        check_groupby(&input, &filtered, &["--where", FILTER], &oracle.filtered);
    }
}

#[test]
fn multi_line_csv_fields_need_csv_multiline() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = &write_and_oracle(dir.path(), true)["csv"];
    let input = dir.path().join("csv");
    let stderr = run_err(
        "wordcount",
        &[&engine(&input, &dir.path().join("refused"))[..], &["--column", "body"]].concat(),
    );
    assert!(stderr.contains("part-") && stderr.contains("--csv-multiline"), "{stderr}");
    check_wordcount(&input, &dir.path().join("words"), &["--csv-multiline"], oracle);
    check_groupby(&input, &dir.path().join("groups"), &["--csv-multiline"], &oracle.groups);
}

#[test]
fn malformed_csv_and_json_lines_fail_naming_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("k,v\n");
    let mut json = String::new();
    for i in 0..5000 {
        csv.push_str(&format!("\"key, {i}\",{i}\n"));
        json.push_str(&format!("{{\"k\": \"key {i}\", \"v\": {i}}}\n"));
    }
    csv.push_str("short row\n");
    json.push_str("{\"k\": \"broken\", \"v\": }\n");
    let cases =
        [("bad.csv", csv, "line 5002", "incorrect number of fields"), ("bad.jsonl", json, "line 5001", "")];
    for (name, data, line, reason) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, data).unwrap();
        let out = dir.path().join(format!("{name}-out"));
        let stderr = run_err("groupby", &[&engine(&input, &out)[..], &["--by", "k", "--count"]].concat());
        assert!(stderr.contains(s(&input)) && stderr.contains(line) && stderr.contains(reason), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn csv_and_json_lines_in_cluster_mode_equal_local_mode() {
    let cluster = crate::cluster_support::Cluster::start(crate::cluster_support::ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let oracles = write_and_oracle(dir.path(), false);
    for (format, filter) in [("csv", None), ("json", None), ("csv", Some(FILTER)), ("json", Some(FILTER))] {
        let input = dir.path().join(format);
        let name = format!("{format}-{}", if filter.is_some() { "filtered" } else { "all" });
        let (local, remote) =
            (dir.path().join(format!("{name}-local")), dir.path().join(format!("{name}-cluster")));
        let mut flags = vec!["--by", "k", "--sum", "v", "--mean", "x", "--count"];
        flags.extend(filter.map(|f| ["--where", f]).into_iter().flatten());
        run_ok("groupby", &[&engine(&input, &local)[..], &flags].concat());
        cluster.run_ok("groupby", &[&engine(&input, &remote)[..], &flags].concat());
        let (local, remote) = (read_committed(&local), read_committed(&remote));
        let groups = if filter.is_some() { &oracles[format].filtered } else { &oracles[format].groups };
        assert_eq!(local.rows().count(), groups.len(), "{name}: every group");
        let rows = |parts: &[(String, Vec<Vec<ParquetField>>)]| {
            parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>()
        };
        assert_eq!(rows(&local.parts), rows(&remote.parts), "{name}: the same part files in both modes");
    }
}

/// Copies of the `csv/` and `json/` files compressed by the command-line tools, named as
/// they name them (`part-0.csv.gz`, `part-1.csv.zst`, ...), in `<format>-compressed/`.
fn compress_copies(dir: &Path) {
    for (format, ext) in [("csv", "csv"), ("json", "jsonl")] {
        let target = dir.join(format!("{format}-compressed"));
        std::fs::create_dir_all(&target).unwrap();
        for (n, (tool, suffix)) in [("gzip", "gz"), ("zstd", "zst")].into_iter().enumerate() {
            let plain = std::fs::read(dir.join(format).join(format!("part-{n}.{ext}"))).unwrap();
            let packed = crate::compressed_text::compress(tool, &plain);
            std::fs::write(target.join(format!("part-{n}.{ext}.{suffix}")), packed).unwrap();
        }
    }
}

#[test]
fn compressed_csv_and_json_lines_equal_duckdb_reading_the_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let oracles = write_and_oracle(dir.path(), false);
    compress_copies(dir.path());
    for (format, oracle) in &oracles {
        let input = dir.path().join(format!("{format}-compressed"));
        let groups = dir.path().join(format!("{format}-groups"));
        check_groupby(&input, &groups, &[], &oracle.groups);
        let counters = read_committed(&groups).manifest.counters;
        let plain: u64 = ["part-0", "part-1"]
            .iter()
            .map(|p| {
                let ext = if format == "csv" { "csv" } else { "jsonl" };
                std::fs::metadata(dir.path().join(format).join(format!("{p}.{ext}"))).unwrap().len()
            })
            .sum();
        assert_eq!(counters.get("map_input_bytes"), plain, "{format}: decompressed bytes are input bytes");
        check_wordcount(&input, &dir.path().join(format!("{format}-words")), &[], oracle);
    }
}

#[test]
fn a_malformed_row_in_a_compressed_file_names_the_file_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("k,v\n");
    for i in 0..3000 {
        csv.push_str(&format!("key {i},{i}\n"));
    }
    csv.push_str("short row\n");
    let input = dir.path().join("bad.csv.zst");
    std::fs::write(&input, crate::compressed_text::compress("zstd", csv.as_bytes())).unwrap();
    let out = dir.path().join("out");
    let stderr = run_err("groupby", &[&engine(&input, &out)[..], &["--by", "k", "--count"]].concat());
    for needle in [s(&input), "line 3002", "incorrect number of fields"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}
