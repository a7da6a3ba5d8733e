//! A job crate outside the workspace (`examples/job-crate`: a path dependency on `gristmill`,
//! serde, no arrow or clap of its own) builds with the workspace's target directory and
//! dependency versions, and runs locally and on a secured cluster; its output and counters
//! are checked against DuckDB.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::cluster_support::{Cluster, ClusterSpec};
use crate::support::*;

/// The crate's directory.
fn job_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/job-crate")
}

/// The (name, version) of every package a `Cargo.lock` holds.
fn locked_packages(lock: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(lock).unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
    let lock: toml::Table = toml::from_str(&text).unwrap();
    let packages = lock["package"].as_array().expect("a lock lists packages");
    let field = |p: &toml::Value, key: &str| p[key].as_str().unwrap().to_owned();
    packages.iter().map(|p| (field(p, "name"), field(p, "version"))).collect()
}

#[test]
fn the_job_crate_is_locked_to_the_workspace_s_versions_and_depends_on_the_engine_alone() {
    let workspace = locked_packages(&job_crate().join("../../Cargo.lock"));
    let ours = locked_packages(&job_crate().join("Cargo.lock"));
    let foreign: Vec<_> = ours.iter().filter(|p| p.0 != "trip-stats" && !workspace.contains(p)).collect();
    assert!(
        foreign.is_empty(),
        "examples/job-crate/Cargo.lock has versions the workspace's Cargo.lock lacks: {foreign:?}; \
         make it again as examples/job-crate/README.md says"
    );
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(job_crate().join("Cargo.toml")).unwrap()).unwrap();
    let dependencies: Vec<&String> = manifest["dependencies"].as_table().unwrap().keys().collect();
    assert_eq!(dependencies, ["gristmill", "serde"], "arrow and clap come from the engine's re-exports");
}

/// Whether cargo set the variable `name` for this test process (the variables of
/// "Environment variables Cargo sets for crates", which a test sees at run time too).
fn set_by_cargo_for_this_test(name: &OsStr) -> bool {
    const NAMES: [&str; 9] = [
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    let name = name.to_string_lossy();
    NAMES.contains(&name.as_ref()) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}

/// `cargo` (this test's own) in the environment the workspace's cargo ran in: the test's
/// less what cargo added for the test. A build script's `rerun-if-env-changed` makes cargo
/// record the variable's value *in cargo's own environment* in the fingerprint it shares
/// with the workspace's build: `ring`'s names CARGO_MANIFEST_DIR and CARGO_PKG_*, so with
/// this test's values (`jobs`, `gristmill-jobs`) its build script ran again, and the next
/// workspace build, without them, ran it again and rebuilt everything above ring (rustls to
/// parquet). Not `env_clear`: what the workspace's cargo did see (RUSTFLAGS, CC,
/// RUSTUP_TOOLCHAIN, CARGO_PROFILE_*, ...) must reach this one alike.
pub(crate) fn cargo_in_the_workspace_s_environment(target_dir: &Path) -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os().filter(|(name, _)| set_by_cargo_for_this_test(name)) {
        cargo.env_remove(name);
    }
    // Cargo put the target directory and the toolchain's rustlib in front of the library
    // search path: keep only what was there before.
    let dylib_path = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let added = |dir: &Path| {
        dir.starts_with(target_dir) || dir.components().any(|c| c == Component::Normal("rustlib".as_ref()))
    };
    let kept: Vec<PathBuf> = std::env::split_paths(&dylib_path).filter(|dir| !added(dir)).collect();
    match std::env::join_paths(&kept) {
        Ok(path) if !kept.is_empty() => cargo.env("LD_LIBRARY_PATH", path),
        _ => cargo.env_remove("LD_LIBRARY_PATH"),
    };
    cargo
}

/// `cargo build` (offline, locked) of the manifest `manifest` into the target directory
/// and profile of this test's own binaries, with `args`; its output, which must be a
/// success.
fn cargo_build(manifest: &Path, args: &[&str]) -> Output {
    let target_dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR is target/tmp");
    let profile_dir = bin("wordcount").parent().unwrap().file_name().unwrap().to_str().unwrap().to_owned();
    let profile = if profile_dir == "debug" { "dev" } else { profile_dir.as_str() };
    let out = cargo_in_the_workspace_s_environment(target_dir)
        .args(["build", "--locked", "--offline", "--profile", profile, "--target-dir", s(target_dir)])
        .arg("--manifest-path")
        .arg(manifest)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", manifest.display()));
    assert!(
        out.status.success(),
        "cargo build of {}: {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the crate offline and with its lock, reusing the workspace's builds of its
/// crates.io dependencies: the crate and the engine are compiled (see
/// examples/job-crate/README.md). Returns the job binary.
fn build_job_crate() -> PathBuf {
    let started = Instant::now();
    cargo_build(&job_crate().join("Cargo.toml"), &[]);
    eprintln!("built examples/job-crate in {:.1} s", started.elapsed().as_secs_f64());
    let binary = bin("wordcount").with_file_name("trip-stats");
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// The units `cargo build --workspace --lib` would compile again (the workspace's
/// libraries and all they depend on, ring to parquet, as `cargo build --workspace --bins`
/// built them): none, unless building the job crate spoilt them. Not `--bins`: a fresh
/// build still links its binaries into the target directory again, and where `cargo test`
/// had put its own there (built with the dev-dependencies' features), the binaries other
/// tests are starting would be swapped under them.
fn workspace_units_not_fresh() -> Vec<String> {
    let workspace = job_crate().join("../../Cargo.toml");
    let out = cargo_build(&workspace, &["--workspace", "--lib", "--message-format=json"]);
    let mut stale = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if message["reason"] == "compiler-artifact" && message["fresh"] == false {
            stale.push(message["package_id"].as_str().unwrap_or("?").to_owned());
        }
    }
    stale
}

/// Writes 30,000 trips as `trips.parquet` (fares as DECIMAL(9, 2), 8 row groups) and
/// `trips.csv` into the directory `argv[1]`, then prints DuckDB's answer for a minimum
/// distance of `argv[2]`: the counters `refunds` and `short_trips`, then one
/// `zone<TAB>hour<TAB>trips<TAB>fare<TAB>mean_distance` line per group.
const TRIPS_SCRIPT: &str = r#"
import sys, duckdb
d, min_distance = sys.argv[1], float(sys.argv[2])
con = duckdb.connect()
con.execute("""create table trips as select
  'zone-' || lpad(((i * 7919) % 37)::varchar, 2, '0') as zone,
  ((i * 104729) % 24)::integer as hour,
  (case when i % 101 = 0 then -1.5 - (i % 40) else 2.5 + ((i * 31) % 9000) / 100.0 end)::decimal(9, 2) as fare,
  (((i * 17) % 300) / 10.0)::double as distance,
  case when i % 3 = 0 then 'cash' else 'card' end as payment
  from range(30000) t(i)""")
con.execute(f"copy trips to '{d}/trips.parquet' (format parquet, row_group_size 4000)")
con.execute(f"copy trips to '{d}/trips.csv' (header)")
print("refunds", con.execute("select count(*) from trips where fare < 0").fetchone()[0])
print("short_trips", con.execute("select count(*) from trips where fare >= 0 and distance < ?", [min_distance]).fetchone()[0])
for z, h, n, f, m in con.execute("""select zone, hour, count(*), sum(fare)::double, avg(distance) from trips
    where fare >= 0 and distance >= ? group by zone, hour order by zone, hour""", [min_distance]).fetchall():
    print(f"{z}\t{h}\t{n}\t{f!r}\t{m!r}")
"#;

/// Our output's rows, in the lines TRIPS_SCRIPT prints.
const OUTPUT_SCRIPT: &str = r#"
import sys, duckdb
for z, h, n, f, m in duckdb.sql(f"select zone, hour, trips, fare, mean_distance from read_parquet('{sys.argv[1]}/*.parquet') order by zone, hour").fetchall():
    print(f"{z}\t{h}\t{n}\t{f!r}\t{m!r}")
"#;

/// (zone, hour) -> (trips, fare, mean distance).
type Groups = BTreeMap<(String, i32), (u64, f64, f64)>;

fn parse_groups(lines: &str) -> Groups {
    let mut groups = Groups::new();
    for line in lines.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let key = (f[0].to_owned(), f[1].parse().unwrap());
        let value = (f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap());
        assert!(groups.insert(key, value).is_none(), "a group twice: {line}");
    }
    groups
}

/// DuckDB's answer: the counters, then the groups.
struct Expected {
    refunds: u64,
    short_trips: u64,
    groups: Groups,
}

impl Expected {
    fn parse(text: &str) -> Expected {
        let mut lines = text.splitn(3, '\n');
        let mut counter = |name: &str| {
            let line = lines.next().unwrap();
            line.strip_prefix(name).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("{line}"))
        };
        let (refunds, short_trips) = (counter("refunds"), counter("short_trips"));
        Expected { refunds, short_trips, groups: parse_groups(lines.next().unwrap_or("")) }
    }

    /// Checks a finished run and its committed output.
    fn check(&self, run: Output, out: &Path, what: &str) {
        assert!(run.status.success(), "trip-stats ({what}) failed: {}", String::from_utf8_lossy(&run.stderr));
        let counters = read_committed(out).manifest.counters;
        assert_eq!(
            (counters.get("refunds"), counters.get("short_trips")),
            (self.refunds, self.short_trips),
            "{what}"
        );
        let ours = parse_groups(&run_python(OUTPUT_SCRIPT, &[s(out)]));
        assert_eq!(ours.keys().collect::<Vec<_>>(), self.groups.keys().collect::<Vec<_>>(), "{what}: groups");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        for (key, (trips, fare, mean)) in &self.groups {
            let (our_trips, our_fare, our_mean) = ours[key];
            assert!(
                our_trips == *trips && close(our_fare, *fare) && close(our_mean, *mean),
                "{what}: {key:?}: ours {:?}, duckdb {:?}",
                ours[key],
                (trips, fare, mean)
            );
        }
    }
}

#[test]
fn a_job_crate_outside_the_workspace_runs_locally_and_on_a_cluster_as_duckdb_computes() {
    let binary = build_job_crate();
    let stale = workspace_units_not_fresh();
    assert!(stale.is_empty(), "building examples/job-crate made the workspace's build rebuild {stale:?}");
    let dir = tempfile::tempdir().unwrap();
    let expected = Expected::parse(&run_python(TRIPS_SCRIPT, &[s(dir.path()), "0.5"]));
    assert!(expected.groups.len() > 500 && expected.refunds > 0 && expected.short_trips > 0);
    let (parquet, csv) = (dir.path().join("trips.parquet"), dir.path().join("trips.csv"));

    let local = dir.path().join("local");
    let args = ["--input", s(&parquet), "--output", s(&local), "--min-distance", "0.5", "--reducers", "3"];
    expected.check(run_program(&binary, &args), &local, "local, Parquet");

    let from_csv = dir.path().join("csv");
    let args =
        ["--input", s(&csv), "--output", s(&from_csv), "--min-distance", "0.5", "--split-size", "256KiB"];
    expected.check(run_program(&binary, &args), &from_csv, "local, CSV");

    let cluster = Cluster::start(ClusterSpec::default());
    let on_cluster = dir.path().join("cluster");
    let args = [
        "--input",
        s(&parquet),
        "--output",
        s(&on_cluster),
        "--min-distance",
        "0.5",
        "--reducers",
        "2",
        "--split-size",
        "64KiB",
    ];
    expected.check(cluster.run_program(&binary, &args), &on_cluster, "cluster, Parquet");
}
