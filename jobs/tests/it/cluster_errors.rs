//! Errors keep their kind through tasks, on a real cluster: bad input fails the job after
//! one attempt naming the file, the same panic twice fails it, and `--task-timeout` kills
//! attempts that hang.

use std::time::{Duration, Instant};

use super::cluster_support::{Cluster, ClusterSpec, wait_until};
use super::support::{s, write_parquet_strings, write_text_files};

/// The one job the driver knows, from its status page.
/// A cluster without backup attempts: attempt counts are what these tests check, and on a
/// loaded machine a slow first attempt would get a backup.
fn cluster_without_backups() -> Cluster {
    let mut spec = ClusterSpec::default();
    spec.driver_args.push("--no-speculation".into());
    Cluster::start(spec)
}

fn only_job(cluster: &Cluster) -> serde_json::Value {
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    jobs[0].clone()
}

#[test]
fn bad_utf8_fails_the_cluster_job_after_one_attempt_naming_the_file() {
    let cluster = cluster_without_backups();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    let mut data = b"good line\n".repeat(100);
    data.extend_from_slice(b"caf\xe9 au lait\n");
    std::fs::write(&path, &data).unwrap();
    let out = dir.path().join("out");

    let failed = cluster.run("wordcount", &["-i", s(&path), "-o", s(&out)]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    for needle in [s(&path), "invalid UTF-8 at byte offset 1003", "fatal error (invalid_utf8)", "map task 0"]
    {
        assert!(stderr.contains(needle), "the error names {needle:?}: {stderr}");
    }
    let job = only_job(&cluster);
    assert_eq!(job["state"]["kind"], "failed", "{job}");
    assert_eq!(
        (job["attempts_launched"].as_u64(), job["failed_attempts"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn a_corrupt_parquet_row_group_fails_the_cluster_job_after_one_attempt_naming_the_file() {
    let cluster = cluster_without_backups();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.parquet");
    let lines: Vec<String> = (0..2000).map(|i| format!("line {i} of the corpus")).collect();
    write_parquet_strings(&path, "text", &lines.iter().map(String::as_str).collect::<Vec<_>>(), 2000);
    // Garbage over the first page: the footer still plans, the task cannot decode the data.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4..68].fill(0xff);
    std::fs::write(&path, &bytes).unwrap();
    let out = dir.path().join("out");

    let failed = cluster.run("wordcount", &["-i", s(&path), "-o", s(&out)]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    for needle in [s(&path), "corrupt Parquet file", "fatal error (corrupt_input)", "map task 0"] {
        assert!(stderr.contains(needle), "the error names {needle:?}: {stderr}");
    }
    let job = only_job(&cluster);
    assert_eq!(
        (job["attempts_launched"].as_u64(), job["failed_attempts"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
}

#[test]
fn the_same_panic_twice_fails_the_cluster_job_before_its_attempts_are_used_up() {
    let cluster = cluster_without_backups();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 1, 200);
    let out = dir.path().join("out");
    let args = ["--input", s(&text), "--output", s(&out), "--chaos-stage", "map", "--panic", "1", "--always"];
    let failed = cluster.run("chaos", &args);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    for needle in ["panicked twice with the same message", "map task 0 panics on purpose", "split"] {
        assert!(stderr.contains(needle), "the error says {needle:?}: {stderr}");
    }
    let job = only_job(&cluster);
    assert_eq!(
        (job["attempts_launched"].as_u64(), job["failed_attempts"].as_u64()),
        (Some(2), Some(2)),
        "{job}"
    );
}

#[test]
fn a_task_hanging_on_every_attempt_is_killed_by_the_task_timeout_and_fails_the_job() {
    let mut spec = ClusterSpec::default();
    spec.driver_args
        .extend(["--task-timeout", "2s", "--max-attempts", "2", "--no-speculation"].map(String::from));
    let cluster = Cluster::start(spec);
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 1, 200);
    let out = dir.path().join("out");

    let started = Instant::now();
    let args = ["--input", s(&text), "--output", s(&out), "--chaos-stage", "map", "--hang", "1", "--always"];
    let mut job = cluster.spawn("chaos", &args);
    // Without the timeout the attempts hang for 10 minutes.
    wait_until("the hanging job to fail", Duration::from_secs(60), || job.try_wait().unwrap().is_some());
    let ended = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert!(!ended.status.success(), "{stderr}");
    for needle in ["failed 2 times", "timed out after 2s", "map task 0"] {
        assert!(stderr.contains(needle), "the error says {needle:?}: {stderr}");
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "two attempts of 2 s each");
    let job = only_job(&cluster);
    assert_eq!(
        (job["attempts_launched"].as_u64(), job["failed_attempts"].as_u64()),
        (Some(2), Some(2)),
        "{job}"
    );

    // The hung task processes are gone, not just forgotten.
    let tasks_left = || {
        let workers = (0..2).map(|i| cluster.worker_pid(i).to_string()).collect::<Vec<_>>().join(",");
        let ps = std::process::Command::new("ps").args(["-o", "args=", "--ppid", &workers]).output().unwrap();
        String::from_utf8_lossy(&ps.stdout).lines().filter(|l| l.contains("__gristmill-task")).count()
    };
    wait_until("the workers to kill the hung attempts", Duration::from_secs(10), || tasks_left() == 0);
}
