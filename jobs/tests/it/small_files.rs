//! Many small files packed into few map tasks: 10,000 text files of 4 KiB counted against
//! the sequential oracle, small Parquet files grouped against DuckDB, an error inside one
//! packed file naming that file, and packed splits travelling to cluster tasks.

use std::path::{Path, PathBuf};

use crate::csv_json::{Oracle, assert_groups_equal};
use crate::support::*;

/// Writes `files` text files of 4 KiB (tricky text cut at a character boundary) into `dir`;
/// returns their texts.
fn write_small_texts(dir: &Path, files: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..files)
        .map(|i| {
            let mut text = tricky_text(i as u64 + 7, 60);
            let mut cut = text.len().min(4096);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            std::fs::write(dir.join(format!("f{i:05}.txt")), &text).unwrap();
            text
        })
        .collect()
}

/// Runs `name` with `args`; returns its summary (stderr, then stdout, where some jobs
/// print it), failing if the job failed.
fn run_summary(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    let summary = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{name} {args:?} failed: {summary}");
    summary
}

/// The map task count of a job's summary (`... 12 map tasks`).
fn map_tasks(summary: &str) -> usize {
    let line = summary.lines().find(|l| l.contains(" map tasks")).expect("the summary counts map tasks");
    let before = line.split(" map tasks").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().expect("a count")
}

#[test]
fn ten_thousand_files_of_4_kib_run_as_a_few_map_tasks_and_equal_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let texts = write_small_texts(&input, 10_000);
    let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let out = dir.path().join("out");
    let args = ["--input", s(&input), "--output", s(&out), "--threads", "2", "--reducers", "2"];
    let summary = run_summary("wordcount", &args);
    assert_eq!(read_word_counts(&out), oracle_wordcount(&texts));
    let tasks = map_tasks(&summary);
    assert!((2..=20).contains(&tasks), "10,000 files packed into a few map tasks: {summary}");
    let counters = read_committed(&out).manifest.counters;
    assert_eq!(counters.get("map_input_bytes"), bytes, "every byte read once: {counters:?}");
    assert_eq!(counters.get("storage_get_bytes"), bytes, "local files read once: {counters:?}");
    // A split size below the files' size keeps one map task per file.
    let out = dir.path().join("unpacked");
    let few_dir = dir.path().join("few");
    let few = write_small_texts(&few_dir, 30);
    let args = ["--input", s(&few_dir), "--output", s(&out), "--split-size", "1000"];
    let expected: usize = few.iter().map(|t| t.len().div_ceil(1000)).sum();
    assert_eq!(map_tasks(&run_summary("wordcount", &args)), expected, "4 KiB files in 1000-byte splits");
    assert_eq!(read_word_counts(&out), oracle_wordcount(&few));
}

/// Writes 400 Parquet files of 100 rows (k, v, x) with pyarrow, some with two row groups,
/// and prints DuckDB's `k, sum(v), avg(x), count(*)` over all of them.
const SMALL_PARQUET: &str = r#"
import json, os, random, sys, duckdb
import pyarrow as pa, pyarrow.parquet as pq
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rnd = random.Random(9)
keys = ["a", "b,c", "ünï", "", "😀", "k" * 20]
for n in range(400):
    rows = 100
    k = [rnd.choice(keys) if rnd.random() > 0.03 else None for _ in range(rows)]
    v = [rnd.randrange(-50, 1000) if rnd.random() > 0.05 else None for _ in range(rows)]
    x = [rnd.randrange(0, 100000) / 8 if rnd.random() > 0.05 else None for _ in range(rows)]
    table = pa.table({"k": pa.array(k, pa.string()), "v": pa.array(v, pa.int64()), "x": pa.array(x, pa.float64())})
    pq.write_table(table, f"{out}/part-{n:04}.parquet", row_group_size=50 if n % 3 == 0 else 100)
con = duckdb.connect()
groups = con.execute(
    f"SELECT k, sum(v)::BIGINT, avg(x), count(*) FROM read_parquet('{out}/*.parquet') GROUP BY k"
).fetchall()
print(json.dumps({"groups": groups}))
"#;

#[test]
fn many_small_parquet_files_group_as_duckdb_groups_them_in_a_few_map_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pq");
    let printed = run_python(SMALL_PARQUET, &[s(&input)]);
    let oracle = Oracle::from_json(&serde_json::from_str(&printed).expect("the oracle prints JSON"));
    assert!(oracle.groups.contains_key(&None) && oracle.groups.len() == 7, "the data has the cases");
    let out = dir.path().join("out");
    let args = [
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--threads",
        "2",
        "--reducers",
        "2",
        "--by",
        "k",
        "--sum",
        "v",
        "--mean",
        "x",
        "--count",
    ];
    run_ok("groupby", &args);
    assert_groups_equal(&input, &out, &oracle.groups);
    // groupby prints no task count: wordcount over the same files does.
    let words = dir.path().join("words");
    let summary = run_summary("wordcount", &["--input", s(&input), "--output", s(&words), "--column", "k"]);
    let tasks = map_tasks(&summary);
    assert!((1..=10).contains(&tasks), "400 footers read, files packed: {summary}");
    assert_eq!(read_committed(&words).manifest.counters.get("map_input_records"), 40_000);
}

/// 300 small text files in `dir`, the 137th with invalid UTF-8 at a byte near 1000; its
/// path and that offset.
fn small_files_with_one_bad(dir: &Path) -> (PathBuf, usize) {
    let texts = write_small_texts(dir, 300);
    let bad = dir.join("f00137.txt");
    let mut cut = 1000;
    while !texts[137].is_char_boundary(cut) {
        cut -= 1;
    }
    let mut bytes = texts[137].as_bytes()[..cut].to_vec();
    bytes.extend_from_slice(b"\xff\xfe bad bytes\n");
    std::fs::write(&bad, bytes).unwrap();
    (bad, cut)
}

#[test]
fn an_error_inside_one_packed_file_names_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, offset) = small_files_with_one_bad(&dir.path().join("in"));
    let out = dir.path().join("out");
    let stderr = run_err("wordcount", &["--input", s(&dir.path().join("in")), "--output", s(&out)]);
    let at = format!("invalid UTF-8 at byte offset {offset}");
    for needle in [s(&bad), &at, "packed files"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    // A malformed CSV row among packed CSV files: the file and its line.
    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    for i in 0..200 {
        let extra = if i == 77 { "broken\n" } else { "" };
        std::fs::write(csv.join(format!("t{i:03}.csv")), format!("k,v\na,{i}\nb,2\n{extra}c,3\n")).unwrap();
    }
    let out = dir.path().join("csv-out");
    let stderr = run_err("groupby", &["--input", s(&csv), "--output", s(&out), "--by", "k", "--count"]);
    let needle = format!("{}: malformed row at line 4", s(&csv.join("t077.csv")));
    assert!(stderr.contains(&needle) && !stderr.contains("panicked"), "{needle}: {stderr}");
}

#[test]
fn packed_splits_in_cluster_mode_equal_the_oracle() {
    let cluster = crate::cluster_support::Cluster::start(crate::cluster_support::ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let mut texts = write_small_texts(&input, 500);
    // Compressed small files pack with the plain ones.
    for i in 0..20 {
        let text = tricky_text(900 + i, 20);
        let gz = crate::compressed_text::compress("gzip", text.as_bytes());
        std::fs::write(input.join(format!("z{i:02}.txt.gz")), gz).unwrap();
        texts.push(text);
    }
    let out = dir.path().join("out");
    cluster.run_ok("wordcount", &["--input", s(&input), "--output", s(&out), "--reducers", "2"]);
    assert_eq!(read_word_counts(&out), oracle_wordcount(&texts));
    let bad_dir = dir.path().join("bad");
    let (bad, _) = small_files_with_one_bad(&bad_dir);
    let failed = cluster.run("wordcount", &["--input", s(&bad_dir), "--output", s(&dir.path().join("o2"))]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains(s(&bad)), "{stderr}");
}
