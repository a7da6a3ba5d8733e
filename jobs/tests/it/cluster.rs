//! Cluster mode: a real driver and workers as separate processes on 127.0.0.1. Every
//! example job's output must equal local mode's, part file by part file; failure tests
//! kill, freeze and crash real processes and compare with a fault-free run.

use std::path::Path;
use std::time::Duration;

use gristmill_jobs::sample::SplitMix64;

use super::cluster_support::{Cluster, ClusterSpec, wait_until};
use super::support::{read_committed, run_ok, s, write_text_files};

/// Asserts two committed Parquet outputs hold the same rows in the same part files.
fn assert_same_output(local: &Path, cluster: &Path) {
    let (local, cluster) = (read_committed(local), read_committed(cluster));
    assert_eq!(local.parts.len(), cluster.parts.len(), "part files");
    for ((_, a), (name, b)) in local.parts.iter().zip(&cluster.parts) {
        assert_eq!(a, b, "rows of {name}");
    }
    assert!(!cluster.manifest.files.is_empty());
}

/// Runs `name` locally and on `cluster` with the same flags; compares the outputs.
pub(crate) fn local_vs_cluster(cluster: &Cluster, dir: &Path, name: &str, args: &[&str]) {
    let (local, remote) = (dir.join(format!("{name}-local")), dir.join(format!("{name}-cluster")));
    run_ok(name, &[args, &["--output", s(&local)]].concat());
    cluster.run_ok(name, &[args, &["--output", s(&remote)]].concat());
    if name == "terasort" {
        let (a, b) = (super::terasort::read_parts(&local).0, super::terasort::read_parts(&remote).0);
        assert!(!a.is_empty() && a == b, "terasort output differs between modes");
    } else {
        assert_same_output(&local, &remote);
    }
}

#[test]
fn compressed_text_in_cluster_mode_equals_local_mode() {
    use super::compressed_text::compress;
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    let files = write_text_files(&text, 2, 2000);
    // A compressed file's split carries its codec to the task process: read as plain text
    // there, the job would fail on invalid UTF-8.
    for (file, (tool, ext)) in files.iter().zip([("gzip", "gz"), ("zstd", "zst")]) {
        let zipped = compress(tool, &std::fs::read(file).unwrap());
        std::fs::write(file.with_extension(format!("txt.{ext}")), zipped).unwrap();
    }
    let args = ["--input", s(&text), "--reducers", "2", "--split-size", "5000", "--threads", "2"];
    local_vs_cluster(&cluster, dir.path(), "wordcount", &args);
}

#[test]
fn every_example_job_in_cluster_mode_equals_local_mode() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 3, 3000);
    let common = ["--reducers", "3", "--split-size", "20000", "--threads", "2"];
    for job in ["wordcount", "wordcount-records"] {
        local_vs_cluster(&cluster, dir.path(), job, &[&["--input", s(&text)], &common[..]].concat());
    }
    local_vs_cluster(
        &cluster,
        dir.path(),
        "grep",
        &[&["--input", s(&text), "--pattern", "al.*a"], &common[..]].concat(),
    );

    let docs = dir.path().join("docs.parquet");
    super::inverted_index::write_documents(&docs, &super::inverted_index::documents(1500, 3), 200);
    local_vs_cluster(&cluster, dir.path(), "inverted-index", &[&["--input", s(&docs)], &common[..]].concat());

    let records = dir.path().join("records");
    run_ok("teragen", &["--records", "200000", "--output", s(&records), "--parts", "3"]);
    local_vs_cluster(&cluster, dir.path(), "terasort", &[&["--input", s(&records)], &common[..]].concat());

    let lineitem = dir.path().join("lineitem");
    super::tpch_q1::generate_lineitem(&lineitem);
    local_vs_cluster(&cluster, dir.path(), "tpch-q1", &[&["--input", s(&lineitem)], &common[..]].concat());

    let g1 = dir.path().join("g1");
    super::groupby::write_g1(&g1, &super::groupby::g1_rows(20_000, 5), 2, 4000);
    let groupby = ["--input", s(&g1), "--by", "id3", "--sum", "v1", "--mean", "v3", "--count"];
    local_vs_cluster(&cluster, dir.path(), "groupby", &[&groupby[..], &common[..]].concat());

    let mut rng = SplitMix64::new(5);
    let left = super::join::side(&mut rng, &[(1, 50), (2, 3)], 2000, 5000, -1);
    let right = super::join::side(&mut rng, &[(1, 40), (3, 2)], 2000, 5000, -2);
    let (l, r) = (dir.path().join("left"), dir.path().join("right"));
    super::join::write_side(&l, &left, "id", super::join::KeyType::Int64, true, 2);
    super::join::write_side(&r, &right, "user_id", super::join::KeyType::Int64, false, 2);
    let join = ["--left", s(&l), "--left-key", "id", "--right", s(&r), "--right-key", "user_id"];
    // Broadcast (a map-only job: map tasks write the part files) and repartition.
    local_vs_cluster(&cluster, dir.path(), "join", &[&join[..], &common[..]].concat());
    let repartition = [&join[..], &common[..], &["--strategy", "repartition"]].concat();
    std::fs::create_dir_all(dir.path().join("repartition")).unwrap();
    local_vs_cluster(&cluster, &dir.path().join("repartition"), "join", &repartition);

    let edges = dir.path().join("edges");
    super::pagerank::write_edges(&edges, &super::pagerank::edges(4), 2);
    let pagerank = ["--edges", s(&edges), "--iterations", "3"];
    local_vs_cluster(&cluster, dir.path(), "pagerank", &[&pagerank[..], &common[..]].concat());

    wait_until("shuffle data removed", Duration::from_secs(10), || cluster.shuffle_files() == 0);
    let jobs = cluster.cli(&["jobs"]);
    let listing = String::from_utf8_lossy(&jobs.stdout);
    assert_eq!(listing.matches("succeeded").count(), 9 + 4, "9 jobs and pagerank's 4 rounds: {listing}");
}

/// A counter's value in a job's summary (0 when it is not there).
pub fn counter(summary: &str, name: &str) -> u64 {
    summary
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()?.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[test]
fn reducers_read_map_output_on_their_host_in_place_unless_told_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 3, 3000);
    let args = |out: &Path| -> Vec<String> {
        ["--input", s(&text), "--reducers", "3", "--split-size", "20000", "--output", s(out)]
            .map(str::to_owned)
            .to_vec()
    };
    let local = dir.path().join("local");
    run_ok("wordcount", &args(&local).iter().map(String::as_str).collect::<Vec<_>>());
    for fetch in [false, true] {
        let env = if fetch {
            vec![("GRISTMILL_NO_HOST_LOCAL_SHUFFLE".to_owned(), "true".to_owned())]
        } else {
            vec![]
        };
        let cluster = Cluster::start(ClusterSpec { env, ..ClusterSpec::default() });
        let out = dir.path().join(format!("cluster-fetch-{fetch}"));
        let run = cluster.run("wordcount", &args(&out).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let summary =
            format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        let (fetched, in_place) =
            (counter(&summary, "shuffle_fetched_bytes"), counter(&summary, "shuffle_host_local_bytes"));
        if fetch {
            assert!(fetched > 0 && in_place == 0, "fetched {fetched}, in place {in_place}:\n{summary}");
        } else {
            assert!(in_place > 0 && fetched == 0, "fetched {fetched}, in place {in_place}:\n{summary}");
        }
        assert_same_output(&local, &out);
    }
}
