//! Typed records against DuckDB: `revenue` (serde rows over lineitem Parquet, decimals read
//! as f64, a combiner) and `sessionize` (a secondary sort: keyed by user and time, grouped
//! by user) on Parquet and JSON lines clicks, locally and on a cluster.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cluster_support::{Cluster, ClusterSpec};
use crate::support::*;

/// Prints DuckDB's revenue per supplier, then ours, as `supplier<TAB>revenue` lines under
/// the headers `duckdb` and `ours`.
const REVENUE_SCRIPT: &str = r#"
import sys, duckdb
files, ours = sys.argv[1:3]
con = duckdb.connect()
print("duckdb")
for s, r in con.execute(f"select l_suppkey, sum(l_extendedprice * (1 - l_discount))::double from read_parquet('{files}') group by 1 order by 1").fetchall():
    print(f"{s}\t{r!r}")
print("ours")
for s, r in con.execute(f"select supplier, revenue from read_parquet('{ours}/*.parquet') order by 1").fetchall():
    print(f"{s}\t{r!r}")
"#;

fn two_tables(text: &str) -> (BTreeMap<i64, f64>, BTreeMap<i64, f64>) {
    let (mut duckdb, mut ours, mut into_ours) = (BTreeMap::new(), BTreeMap::new(), false);
    for line in text.lines() {
        match line {
            "duckdb" => into_ours = false,
            "ours" => into_ours = true,
            row => {
                let (k, v) = row.split_once('\t').unwrap();
                let table = if into_ours { &mut ours } else { &mut duckdb };
                assert!(table.insert(k.parse().unwrap(), v.parse().unwrap()).is_none(), "key {k} twice");
            }
        }
    }
    (duckdb, ours)
}

#[test]
fn revenue_with_typed_rows_and_at_the_batch_level_equals_duckdb_on_lineitem() {
    let dir = tempfile::tempdir().unwrap();
    crate::tpch_q1::generate_lineitem(dir.path());
    let input = dir.path().join("lineitem");
    let files = format!("{}/*.parquet", input.display());
    for api in ["rows", "batches"] {
        let out = dir.path().join(format!("out-{api}"));
        run_ok("revenue", &["--input", s(&input), "--output", s(&out), "--reducers", "3", "--api", api]);
        let (duckdb, ours) = two_tables(&run_python(REVENUE_SCRIPT, &[&files, s(&out)]));
        assert!(duckdb.len() > 100, "{} suppliers", duckdb.len());
        assert_eq!(duckdb.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>(), "--api {api}");
        for (supplier, want) in &duckdb {
            let got = ours[supplier];
            assert!(
                (got - want).abs() <= 1e-9 * want.abs(),
                "--api {api}, supplier {supplier}: ours {got}, duckdb {want}"
            );
        }
    }
}

/// Writes clicks (user_id, ts TIMESTAMP, url) as Parquet and JSON lines (ts in microseconds),
/// then prints DuckDB's sessions (window functions) for a gap of 30 minutes, one
/// `user<TAB>start<TAB>end<TAB>clicks` line each, start and end in microseconds.
const CLICKS_SCRIPT: &str = r#"
import sys, duckdb
parquet, jsonl = sys.argv[1:3]
con = duckdb.connect()
con.execute("""create table clicks as
  select (i * 7919) % 97 as user_id,
         timestamp '2026-01-01' + to_seconds((i % 50) * 7200 + (i * 7907) % 3000) as ts,
         'https://example.com/' || (i % 13) as url
  from range(20000) t(i)""")
con.execute(f"copy clicks to '{parquet}' (format parquet, row_group_size 3000)")
con.execute(f"copy (select user_id, epoch_us(ts) as ts, url from clicks) to '{jsonl}' (format json)")
rows = con.execute("""
  with marked as (
    select user_id, ts, case when ts - lag(ts) over (partition by user_id order by ts) > interval 30 minute
                        then 1 else 0 end as starts_session from clicks),
  numbered as (
    select user_id, ts, sum(starts_session) over (partition by user_id order by ts rows unbounded preceding) as session
    from marked)
  select user_id, epoch_us(min(ts)), epoch_us(max(ts)), count(*) from numbered group by user_id, session order by 1, 2
""").fetchall()
for row in rows:
    print("\t".join(str(v) for v in row))
"#;

/// The Arrow type of our sessions' timestamps, then our sessions:
/// `user<TAB>start<TAB>end<TAB>clicks`, start and end in microseconds, sorted.
const OUR_SESSIONS_SCRIPT: &str = r#"
import glob, sys, duckdb, pyarrow.parquet as pq
out = sys.argv[1]
con = duckdb.connect()
# pyarrow tells the unit (DuckDB reads every Parquet timestamp as microseconds).
print(pq.read_schema(sorted(glob.glob(f"{out}/*.parquet"))[0]).field("session_start").type)
for row in con.execute(f"select user_id, epoch_us(session_start), epoch_us(session_end), clicks from read_parquet('{out}/*.parquet') order by 1, 2").fetchall():
    print("\t".join(str(v) for v in row))
"#;

fn our_sessions(out: &Path) -> String {
    our_sessions_of(out, "timestamp[us]")
}

/// Our sessions, whose timestamps must be DuckDB's `column_type`.
fn our_sessions_of(out: &Path, column_type: &str) -> String {
    let text = run_python(OUR_SESSIONS_SCRIPT, &[s(out)]);
    let (found, rows) = text.split_once('\n').unwrap();
    assert_eq!(found, column_type, "sessions are timestamps of the input's unit");
    rows.to_owned()
}

#[test]
fn sessionize_reads_the_unit_of_its_timestamps_from_the_input_s_schema_when_planned() {
    let dir = tempfile::tempdir().unwrap();
    let (parquet, jsonl) = (dir.path().join("clicks.parquet"), dir.path().join("clicks.jsonl"));
    let expected = run_python(CLICKS_SCRIPT, &[s(&parquet), s(&jsonl)]);
    // The same clicks (whole seconds) with millisecond timestamps.
    let millis = dir.path().join("clicks-ms.parquet");
    let script = "import sys, duckdb\nduckdb.sql(f\"copy (select user_id, ts::timestamp_ms as ts, url from \
                  read_parquet('{sys.argv[1]}')) to '{sys.argv[2]}' (format parquet)\")";
    run_python(script, &[s(&parquet), s(&millis)]);

    let local = dir.path().join("local");
    run_ok("sessionize", &["--input", s(&millis), "--output", s(&local), "--reducers", "2"]);
    assert_eq!(our_sessions_of(&local, "timestamp[ms]"), expected, "local, millisecond Parquet");

    let cluster = Cluster::start(ClusterSpec::default());
    let on_cluster = dir.path().join("cluster");
    cluster.run_ok("sessionize", &["--input", s(&millis), "--output", s(&on_cluster), "--reducers", "3"]);
    assert_eq!(our_sessions_of(&on_cluster, "timestamp[ms]"), expected, "cluster, millisecond Parquet");

    // A `ts` that holds neither timestamps nor integer ticks fails the plan, naming the file;
    // `--time-unit` overrides what the plan would read.
    let floats = dir.path().join("floats.csv");
    std::fs::write(&floats, "user_id,ts,url\n1,1.5,a\n1,2.5,b\n").unwrap();
    let bad = dir.path().join("bad");
    let err = run_err("sessionize", &["--input", s(&floats), "--output", s(&bad)]);
    assert!(err.contains(s(&floats)) && err.contains("column `ts`") && err.contains("Float64"), "{err}");
    assert!(!bad.exists(), "no task ran");
    let forced = dir.path().join("forced");
    run_ok("sessionize", &["--input", s(&millis), "--output", s(&forced), "--time-unit", "us"]);
    // Millisecond ticks taken for microseconds: the 30-minute gap spans 1000 times as many
    // ticks, longer than the clicks' 100 hours, so each of the 97 users has one session.
    assert_eq!(our_sessions(&forced).lines().count(), 97, "read as microseconds");
}

#[test]
fn sessionize_equals_duckdb_window_functions_on_parquet_and_json_lines_locally_and_on_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (parquet, jsonl) = (dir.path().join("clicks.parquet"), dir.path().join("clicks.jsonl"));
    let expected = run_python(CLICKS_SCRIPT, &[s(&parquet), s(&jsonl)]);
    let sessions = expected.lines().count();
    let clicks: u64 = expected.lines().map(|l| l.rsplit('\t').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(clicks, 20_000);
    assert!(sessions > 97 * 20 && sessions < 15_000, "sessions of one and of several clicks: {sessions}");

    let local = dir.path().join("local");
    run_ok("sessionize", &["--input", s(&parquet), "--output", s(&local), "--reducers", "4", "--gap", "30m"]);
    assert_eq!(our_sessions(&local), expected, "local, Parquet");

    let from_json = dir.path().join("json");
    run_ok("sessionize", &["--input", s(&jsonl), "--output", s(&from_json), "--reducers", "2"]);
    assert_eq!(our_sessions(&from_json), expected, "local, JSON lines");

    let cluster = Cluster::start(ClusterSpec::default());
    let on_cluster = dir.path().join("cluster");
    let args =
        ["--input", s(&parquet), "--output", s(&on_cluster), "--reducers", "3", "--split-size", "64KiB"];
    cluster.run_ok("sessionize", &args);
    assert_eq!(our_sessions(&on_cluster), expected, "cluster, Parquet");
}

#[test]
fn a_row_that_does_not_fit_its_type_fails_the_job_naming_the_file_row_group_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, duckdb
d = sys.argv[1]
duckdb.sql(f"copy (select 1::bigint as l_suppkey, 'x' as l_extendedprice, 0.5::double as l_discount) to '{d}/text.parquet' (format parquet)")
duckdb.sql(f"copy (select NULL::bigint as l_suppkey, 2.0::double as l_extendedprice, 0.5::double as l_discount) to '{d}/null.parquet' (format parquet)")
duckdb.sql(f"copy (select 1::bigint as other) to '{d}/other.parquet' (format parquet)")
"#;
    run_python(script, &[s(dir.path())]);
    let cases = [
        ("text.parquet", "column `l_extendedprice` of type Utf8 cannot be read as Float64"),
        ("null.parquet", "column `l_suppkey` is null at row 0"),
        ("other.parquet", "no column `l_suppkey`"),
    ];
    for (file, why) in cases {
        let input = dir.path().join(file);
        let err = run_err(
            "revenue",
            &["--input", s(&input), "--output", s(&dir.path().join(format!("out-{file}")))],
        );
        assert!(err.contains(s(&input)) && err.contains(why), "{file}: {err}");
    }
}
