//! A declared schema (`--input-schema`, or [`gristmill::job::InputSpec::with_schema`] in a
//! job) replaces the schema inferred from a sample of CSV and JSON lines input: zip-code
//! keys keep their leading zeros, a column that holds whole numbers only in the sample but
//! fractions later reads as Float64, and a value that does not parse as its declared type
//! is a malformed row (file and line), skipped under `--max-bad-records`. DuckDB reading
//! the same files with the same column types is the oracle.

use std::path::Path;

use super::csv_json::{Groups, Oracle, assert_groups_equal};
use crate::support::*;

/// Writes `keys.csv` (keys `00501` and `501` alike, which inference would merge as one
/// Int64) and `late-floats.jsonl` (`x` whole in the first 1.2 MiB, fractional after), and
/// prints DuckDB's `k, sum(v), avg(x), count(*)` of each read with declared types.
const WRITE_AND_ORACLE: &str = r#"
import csv, json, sys, duckdb
out = sys.argv[1]
keys = ["00501", "501", "0042", "42", "007", "7", "10", "0010"]
with open(f"{out}/keys.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["k", "v", "x"])
    for i in range(30000):
        w.writerow([keys[i % len(keys)], i % 1000 - 100, (i % 77) / 4])
with open(f"{out}/late-floats.jsonl", "w") as f:
    for i in range(60000):
        x = i % 50 if i < 40000 else (i % 50) + 0.25
        f.write(json.dumps({"k": keys[i % 3], "v": i, "x": x}) + "\n")
cols = "{'k': 'VARCHAR', 'v': 'BIGINT', 'x': 'DOUBLE'}"
readers = {
    "csv": f"read_csv('{out}/keys.csv', header=true, columns={cols})",
    "json": f"read_json('{out}/late-floats.jsonl', format='newline_delimited', columns={cols})",
}
result = {}
for name, reader in readers.items():
    groups = duckdb.connect().execute(f"SELECT k, sum(v)::BIGINT, avg(x), count(*) FROM {reader} GROUP BY k").fetchall()
    result[name] = {"groups": groups}
print(json.dumps(result))
"#;

const SCHEMA: &str = "k:Utf8,v:Int64,x:Float64";

fn groupby(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let flags =
        ["--by", "k", "--sum", "v", "--mean", "x", "--count", "--threads", "2", "--split-size", "64KiB"];
    run("groupby", &[&["--input", s(input), "--output", s(out)][..], &flags, extra].concat())
}

fn oracles(dir: &Path) -> (Groups, Groups) {
    let json: serde_json::Value = serde_json::from_str(&run_python(WRITE_AND_ORACLE, &[s(dir)])).unwrap();
    (Oracle::from_json(&json["csv"]).groups, Oracle::from_json(&json["json"]).groups)
}

#[test]
fn a_declared_schema_replaces_the_inferred_one_for_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (csv_groups, json_groups) = oracles(dir.path());
    assert_eq!(csv_groups.len(), 8, "the oracle keeps 00501 and 501 apart");

    // Inferred, the zip-code keys are Int64: 00501 and 501 become one group.
    let inferred = dir.path().join("inferred");
    let output = groupby(&dir.path().join("keys.csv"), &inferred, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(read_committed(&inferred).rows().count(), 4, "inference merges 00501 and 501");

    for (file, groups) in [("keys.csv", &csv_groups), ("late-floats.jsonl", &json_groups)] {
        let out = dir.path().join(format!("declared-{file}"));
        let output = groupby(&dir.path().join(file), &out, &["--input-schema", SCHEMA]);
        assert!(output.status.success(), "{file}: {}", String::from_utf8_lossy(&output.stderr));
        assert_groups_equal(&dir.path().join(file), &out, groups);
    }
}

#[test]
fn a_value_that_does_not_parse_as_its_declared_type_is_a_malformed_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("k,v,x\n");
    let mut json = String::new();
    for i in 0..3000 {
        csv.push_str(&format!("k{},{i},{i}.5\n", i % 5));
        json.push_str(&format!("{{\"k\": \"k{}\", \"v\": {i}, \"x\": {i}.5}}\n", i % 5));
    }
    csv.push_str("k1,not a number,1.0\n");
    json.push_str("{\"k\": \"k1\", \"v\": \"not a number\", \"x\": 1.0}\n");
    for (name, data, line) in [("bad.csv", csv, "line 3002"), ("bad.jsonl", json, "line 3001")] {
        let input = dir.path().join(name);
        std::fs::write(&input, data).unwrap();
        let failed = groupby(&input, &dir.path().join(format!("{name}-fails")), &["--input-schema", SCHEMA]);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "{name}: a value of the wrong type fails the job");
        assert!(stderr.contains(s(&input)) && stderr.contains(line), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");

        let out = dir.path().join(format!("{name}-skips"));
        let skipped = groupby(&input, &out, &["--input-schema", SCHEMA, "--max-bad-records", "1"]);
        assert!(skipped.status.success(), "{name}: {}", String::from_utf8_lossy(&skipped.stderr));
        let output = read_committed(&out);
        assert_eq!(output.manifest.counters.get("bad_records"), 1, "{name}");
        assert_eq!(output.manifest.counters.get("map_input_records"), 3000, "{name}: the good rows");
    }
}
