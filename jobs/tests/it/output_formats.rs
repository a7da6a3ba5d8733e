//! Output formats and Hive-partitioned output, read back by readers that are not ours:
//! `groupby` written as Parquet, CSV and JSON lines (plain, gzip, zstd) is read by pyarrow
//! and DuckDB and equals DuckDB's own group-by of the input; `--partition-by` output is
//! read by DuckDB with `hive_partitioning=true` (values that need escaping and nulls
//! included) and equals the unpartitioned result, and gristmill reading it back restores
//! the partition column. The manifest lists every file with its format, codec, rows and
//! bytes, and nothing else is left in the directory (locally, and on S3 no open upload).

use std::path::Path;

use crate::support::*;

/// Python helpers shared by the checks: the input, DuckDB's oracle, and readers of a
/// committed output (by its manifest, with pyarrow; and with DuckDB).
const HELPERS: &str = r#"
import json, os, sys, math, gzip, duckdb
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.csv as pcsv, pyarrow.json as pjson

KEYS = ["plain", "a/b=c", "50%", "x:y", 'say "hi"', "ünï ✓", "k" * 20, "n#1", "[x]"]

def write_input(path):
    import random
    rnd = random.Random(22)
    rows = {"k": [], "p": [], "v": [], "x": []}
    for i in range(30000):
        rows["k"].append(rnd.choice(KEYS))
        # p: a few values, some needing escaping, and nulls.
        rows["p"].append(rnd.choice(["north", "a/b=c", "50% off", None, "q?", "ü"]))
        rows["v"].append(rnd.randrange(-1000, 1000))
        rows["x"].append(rnd.randrange(0, 1 << 20) / 64)
    pq.write_table(pa.table(rows), path, row_group_size=4000)

def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b

def same_rows(ours, oracle, what):
    ours, oracle = sorted(ours, key=repr), sorted(oracle, key=repr)
    assert len(ours) == len(oracle), f"{what}: {len(ours)} rows, the oracle {len(oracle)}"
    for a, b in zip(ours, oracle):
        assert all(close(x, y) for x, y in zip(a, b)) and len(a) == len(b), f"{what}: {a} != {b}"

def manifest_files(out):
    """The manifest's files, checked against the directory: exactly those files (and
    _SUCCESS), sizes as recorded; no staging file is left."""
    m = json.load(open(os.path.join(out, "_SUCCESS")))
    present = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    listed = sorted(f["name"] for f in m["files"])
    assert present == sorted(listed + ["_SUCCESS"]), (present, listed)
    for f in m["files"]:
        assert os.path.getsize(os.path.join(out, f["name"])) == f["bytes"], f
    assert m["rows"] == sum(f["rows"] for f in m["files"])
    return m["files"]

def open_stream(path):
    return pa.input_stream(path, compression="detect")

def read_file(path, fmt):
    if fmt == "parquet":
        return pq.read_table(path)
    if fmt == "csv":
        return pcsv.read_csv(open_stream(path))
    return pjson.read_json(open_stream(path))

def pyarrow_rows(out, columns):
    rows = []
    for f in manifest_files(out):
        t = read_file(os.path.join(out, f["name"]), f["format"])
        assert t.num_rows == f["rows"], f
        rows += [tuple(r[c] for c in columns) for r in t.to_pylist()]
    return rows

def duckdb_rows(out, columns, hive=False):
    files = [os.path.join(out, f["name"]) for f in manifest_files(out)]
    fmt = json.load(open(os.path.join(out, "_SUCCESS")))["files"][0]["format"]
    reader = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json"}[fmt]
    opts = ", hive_partitioning=true" if hive else ""
    if fmt == "csv":
        # The sniffer can miss the quoting of a file whose only quoted value is rare.
        opts += ", header=true, quote='\"', escape='\"'"
    q = f"SELECT {', '.join(columns)} FROM {reader}({files!r}{opts})"
    return duckdb.sql(q).fetchall()
"#;

/// Runs `script` after the helpers.
fn py(script: &str, args: &[&str]) -> String {
    run_python(&format!("{HELPERS}\n{script}"), args)
}

fn write_input(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    py("write_input(sys.argv[1])", &[s(&input.join("data.parquet"))]);
    input
}

/// The engine flags: several map tasks, two threads, three reducers.
fn engine<'a>(input: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec!["--input", input, "--output", s(out), "--threads", "2", "--reducers", "3", "--split-size", "64KiB"]
}

#[test]
fn groupby_output_in_every_format_and_codec_reads_back_equal_to_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let flags = ["--by", "k", "--sum", "v", "--mean", "x", "--count"];
    let cases: [(&str, &[&str], &str, &str); 6] = [
        ("parquet", &[], "parquet", "zstd"),
        ("parquet-snappy", &["--compression", "snappy"], "parquet", "snappy"),
        ("csv", &["--output-format", "csv"], "csv", "none"),
        ("csv-gzip", &["--output-format", "csv", "--compression", "gzip"], "csv", "gzip"),
        ("json", &["--output-format", "json"], "json", "none"),
        ("json-zstd", &["--output-format", "json", "--compression", "zstd:5"], "json", "zstd"),
    ];
    for (name, extra, format, codec) in cases {
        let out = dir.path().join(name);
        run_ok("groupby", &[&engine(s(&input), &out)[..], &flags, extra].concat());
        let checked = py(
            r#"
out, fmt, codec, data = sys.argv[1:5]
files = manifest_files(out)
assert len(files) == 3, files
for f in files:
    assert (f["format"], f["codec"]) == (fmt, codec), f
    ext = {"none": "", "gzip": ".gz", "zstd": ".zst"}[codec] if fmt != "parquet" else ""
    assert f["name"].endswith("." + fmt + ext), f
if fmt == "csv":
    first = [f for f in files if f["rows"]][0]
    with open_stream(os.path.join(out, first["name"])) as s:
        assert s.read(20).startswith(b"k,v,x,count\n"), "a header line"
oracle = duckdb.sql(f"SELECT k, sum(v)::BIGINT, avg(x), count(*) FROM read_parquet('{data}') GROUP BY k").fetchall()
cols = ["k", "v", "x", "count"]
same_rows(pyarrow_rows(out, cols), oracle, f"{out} read by pyarrow")
same_rows(duckdb_rows(out, cols), oracle, f"{out} read by DuckDB")
print("ok", len(oracle))
"#,
            &[s(&out), format, codec, s(&input.join("data.parquet"))],
        );
        assert_eq!(checked.trim(), format!("ok {}", 9), "{name}: {checked}");
    }

    // A committed CSV output is an input like any other: grouped again by gristmill, the
    // sums are those of the Parquet output.
    let again = dir.path().join("again");
    run_ok(
        "groupby",
        &[&engine(s(&dir.path().join("csv")), &again)[..], &["--by", "k", "--sum", "v"]].concat(),
    );
    let checked = py(
        r#"
same_rows(pyarrow_rows(sys.argv[1], ["k", "v"]), pyarrow_rows(sys.argv[2], ["k", "v"]), "CSV read back")
print("ok")
"#,
        &[s(&again), s(&dir.path().join("parquet"))],
    );
    assert_eq!(checked.trim(), "ok");
}

#[test]
fn partitioned_output_is_hive_laid_out_and_reads_back_in_duckdb_and_gristmill() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let data = input.join("data.parquet");
    let flags = ["--by", "p", "--sum", "v", "--count"];
    let plain = dir.path().join("plain");
    run_ok("groupby", &[&engine(s(&input), &plain)[..], &flags].concat());
    let parted = dir.path().join("parted");
    run_ok("groupby", &[&engine(s(&input), &parted)[..], &flags, &["--partition-by", "p"]].concat());

    // Grouped again by the partition column, which only the paths hold.
    let again = dir.path().join("again");
    run_ok("groupby", &[&engine(s(&parted), &again)[..], &["--by", "p", "--sum", "v"]].concat());

    // Partitioned by an integer column, several rows per directory, written as CSV.
    let by_count = dir.path().join("by_count");
    let count_flags =
        ["--by", "k", "--sum", "v", "--count", "--partition-by", "count", "--output-format", "csv"];
    run_ok("groupby", &[&engine(s(&input), &by_count)[..], &count_flags].concat());

    let checked = py(
        r#"
plain, parted, again, by_count, data = sys.argv[1:6]
files = manifest_files(parted)
dirs = sorted({f["name"].split("/")[0] for f in files})
assert dirs == sorted(["p=north", "p=a%2Fb%3Dc", "p=50%25 off", "p=__HIVE_DEFAULT_PARTITION__", "p=q%3F", "p=ü"]), dirs
for f in files:
    assert f["name"].count("/") == 1 and f["name"].split("/")[1].startswith("part-"), f
    t = pq.read_table(os.path.join(parted, f["name"]))
    assert t.column_names == ["v", "count"], ("the partition column is left out", t.column_names)
oracle = duckdb.sql(f"SELECT p, sum(v)::BIGINT, count(*) FROM read_parquet('{data}') GROUP BY p").fetchall()
same_rows(pyarrow_rows(plain, ["p", "v", "count"]), oracle, "unpartitioned")
same_rows(duckdb_rows(parted, ["p", "v", "count"], hive=True), oracle, "partitioned, read by DuckDB")
ds_rows = __import__("pyarrow.dataset").dataset.dataset(
    [os.path.join(parted, f["name"]) for f in files], format="parquet",
    partitioning="hive", partition_base_dir=parted).to_table().to_pylist()
same_rows([(r["p"], r["v"], r["count"]) for r in ds_rows], oracle, "partitioned, read by pyarrow.dataset")
same_rows(pyarrow_rows(again, ["p", "v"]), [(p, v) for p, v, _ in oracle], "read back by gristmill")

count_oracle = duckdb.sql(f"SELECT k, sum(v)::BIGINT, count(*) FROM read_parquet('{data}') GROUP BY k").fetchall()
for f in manifest_files(by_count):
    assert f["format"] == "csv" and f["name"].startswith("count=") and f["name"].endswith(".csv"), f
same_rows(duckdb_rows(by_count, ["k", "v", "count"], hive=True), count_oracle, "partitioned CSV, read by DuckDB")
print("ok", len(files))
"#,
        &[s(&plain), s(&parted), s(&again), s(&by_count), s(&data)],
    );
    assert!(checked.starts_with("ok "), "{checked}");
}

#[test]
fn bad_output_flags_are_refused_before_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_parquet_strings(&input.join("a.parquet"), "k", &["a", "b"], 10);
    let out = dir.path().join("out");
    let base = ["--input", s(&input), "--output", s(&out), "--by", "k", "--count"];
    let missing = run_err("groupby", &[&base[..], &["--partition-by", "nope"]].concat());
    assert!(missing.contains("--partition-by nope") && missing.contains("k, count"), "{missing}");
    let everything = run_err("groupby", &[&base[..], &["--partition-by", "k,count"]].concat());
    assert!(everything.contains("every output column is a partition column"), "{everything}");
    let codec =
        run_err("groupby", &[&base[..], &["--output-format", "csv", "--compression", "snappy"]].concat());
    assert!(codec.contains("gzip, zstd or none"), "{codec}");
    let records = run_err("terasort", &["--input", s(&input), "--output", s(&out), "--output-format", "csv"]);
    assert!(records.contains("raw records"), "{records}");
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn partitioned_output_on_s3_is_exactly_the_manifest_with_no_upload_left_open() {
    use crate::s3::{boto, create_bucket, run_job, upload_dir};
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let bucket = create_bucket("parted");
    upload_dir(&input, &bucket, "in");
    let (url_in, url_out) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let flags =
        ["--by", "p", "--sum", "v", "--count", "--partition-by", "p", "--threads", "2", "--reducers", "3"];
    let (ok, stderr) =
        run_job("groupby", &[&["--input", &url_in, "--output", &url_out][..], &flags].concat());
    assert!(ok, "{stderr}");
    let local = dir.path().join("local");
    run_ok("groupby", &[&["--input", s(&input), "--output", s(&local)][..], &flags].concat());

    let listed = boto(
        r#"
import pyarrow.parquet as pq, urllib.parse
b = sys.argv[1]
keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket=b, Prefix='out/').get('Contents', []))
m = json.loads(s3.get_object(Bucket=b, Key='out/_SUCCESS')['Body'].read())
assert keys == sorted(['out/' + f['name'] for f in m['files']] + ['out/_SUCCESS']), (keys, m['files'])
assert s3.list_multipart_uploads(Bucket=b).get('Uploads', []) == [], "no open upload"
rows = []
for f in m['files']:
    head = s3.head_object(Bucket=b, Key='out/' + f['name'])
    assert head['ContentLength'] == f['bytes'], f
    t = pq.read_table(io.BytesIO(s3.get_object(Bucket=b, Key='out/' + f['name'])['Body'].read()))
    assert t.num_rows == f['rows'] and t.column_names == ['v', 'count'], f
    value = f['name'].split('/')[0].split('=', 1)[1]
    p = None if value == '__HIVE_DEFAULT_PARTITION__' else urllib.parse.unquote(value)
    rows += [json.dumps([p, r['v'], r['count']]) for r in t.to_pylist()]
print('\n'.join(sorted(rows)))
"#,
        &[&bucket],
    );
    let local_rows = py(
        r#"
rows = duckdb_rows(sys.argv[1], ["p", "v", "count"], hive=True)
print('\n'.join(sorted(json.dumps(list(r)) for r in rows)))
"#,
        &[s(&local)],
    );
    assert_eq!(listed.trim(), local_rows.trim(), "S3 and local partitioned outputs hold the same rows");
    assert_eq!(listed.trim().lines().count(), 6);
}

#[test]
fn partitioned_csv_output_in_cluster_mode_equals_local_mode() {
    use crate::cluster_support::{Cluster, ClusterSpec};
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let flags = ["--by", "k", "--sum", "v", "--count", "--partition-by", "count", "--output-format", "csv"];
    let (local, remote) = (dir.path().join("local"), dir.path().join("cluster"));
    run_ok("groupby", &[&engine(s(&input), &local)[..], &flags].concat());
    cluster.run_ok("groupby", &[&engine(s(&input), &remote)[..], &flags].concat());
    let checked = py(
        r#"
local, remote, data = sys.argv[1:4]
oracle = duckdb.sql(f"SELECT k, sum(v)::BIGINT, count(*) FROM read_parquet('{data}') GROUP BY k").fetchall()
for out in [local, remote]:
    files = manifest_files(out)
    assert all(f["name"].startswith("count=") and f["format"] == "csv" for f in files), files
    same_rows(duckdb_rows(out, ["k", "v", "count"], hive=True), oracle, out)
print("ok")
"#,
        &[s(&local), s(&remote), s(&input.join("data.parquet"))],
    );
    assert_eq!(checked.trim(), "ok");
}
