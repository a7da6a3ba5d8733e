//! Executors on a real cluster: a job's attempts on a worker run in one long-lived process
//! of the job binary (`__gristmill-executor`); one killed with `kill -9` fails only its
//! attempts, which are retried; with `--task-isolation process` every attempt is a process
//! of its own again.

use std::path::Path;
use std::time::Duration;

use super::cluster_failures::{assert_same_parts, chaos_args, input_and_expected, wait_ok};
use super::cluster_support::{Cluster, ClusterSpec, HttpAuth, wait_until};
use super::support::{read_committed, s};

/// The pids of the executor processes among the children of `parent`.
/// Workers that run attempts in executors (`--task-isolation executor`; the default is a
/// process per attempt).
fn executors() -> Vec<(String, String)> {
    vec![("GRISTMILL_WORKER_TASK_ISOLATION".to_owned(), "executor".to_owned())]
}

fn executors_of(parent: u32) -> Vec<u32> {
    let ps = std::process::Command::new("ps")
        .args(["-o", "pid=,stat=,args=", "--ppid", &parent.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|line| line.contains("__gristmill-executor"))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            // A zombie is an executor that already ended.
            (!fields.next()?.starts_with('Z')).then_some(pid)
        })
        .collect()
}

/// A counter's value in a worker's `/metrics` text.
fn counter(cluster: &Cluster, worker: usize, name: &str) -> f64 {
    let response = cluster.http_get_at(&cluster.worker_http[worker], "/metrics", HttpAuth::Certificate);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// `files` text files of exactly `bytes` bytes each: with `--split-size bytes` every file
/// is a map task of its own (a file the split size long is neither cut nor packed).
fn tiny_files(dir: &Path, files: usize, bytes: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        let mut text = format!("file{i} alpha beta gamma delta\n").repeat(bytes);
        text.truncate(bytes - 1);
        text.push('\n');
        std::fs::write(dir.join(format!("f{i:04}.txt")), text).unwrap();
    }
}

#[test]
fn an_executor_killed_during_the_map_phase_fails_only_its_attempts_and_the_output_is_unchanged() {
    let cluster = Cluster::start(ClusterSpec { env: executors(), ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    // First map attempts sleep, so the kill lands while the executor runs attempts.
    let faults = ["--chaos-stage", "map", "--sleep", "1", "--sleep-ms", "1500"];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("an attempt running on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    let worker = cluster.worker_pid(0);
    let mut executors = Vec::new();
    wait_until("worker 0's executor", Duration::from_secs(30), || {
        executors = executors_of(worker);
        !executors.is_empty()
    });
    assert_eq!(executors.len(), 1, "one executor for the job on the worker: {executors:?}");
    let killed = std::process::Command::new("kill").args(["-KILL", &executors[0].to_string()]).status();
    assert!(killed.unwrap().success());
    wait_ok(job);
    // Byte-identical parts, and exactly the manifest's files in the output directory.
    assert_same_parts(&expected, &out);
    read_committed(&out);
    assert_eq!(cluster.alive_workers(), 2, "the worker daemon lived on");
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    assert!(jobs[0]["failed_attempts"].as_u64().unwrap() >= 1, "the killed attempts failed: {jobs}");
}

#[test]
fn a_job_s_many_tasks_on_one_worker_run_in_one_executor_process() {
    let cluster =
        Cluster::start(ClusterSpec { worker_http: true, env: executors(), ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tiny");
    tiny_files(&input, 40, 200);
    let out = dir.path().join("out");
    cluster.run_ok("wordcount", &["--input", s(&input), "--output", s(&out), "--split-size", "200"]);
    read_committed(&out);
    let mut attempts = 0.0;
    for worker in 0..2 {
        let started = counter(&cluster, worker, "gristmill_worker_attempts_started_total");
        let executors = counter(&cluster, worker, "gristmill_worker_executors_started_total");
        assert!(started >= 2.0, "worker {worker} ran several attempts: {started}");
        assert_eq!(executors, 1.0, "worker {worker} ran its {started} attempts in one executor");
        attempts += started;
    }
    assert!(attempts >= 40.0, "40 map tasks and the reducers: {attempts}");
}

#[test]
fn with_process_isolation_every_attempt_is_a_process_and_crashes_are_retried() {
    let env = vec![("GRISTMILL_WORKER_TASK_ISOLATION".to_owned(), "process".to_owned())];
    let cluster = Cluster::start(ClusterSpec { env, worker_http: true, ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let faults = ["--chaos-stage", "both", "--crash", "0.3", "--fail", "0.3", "--chaos-seed", "3"];
    cluster.run_ok("chaos", &chaos_args(&text, &out, &faults));
    assert_same_parts(&expected, &out);
    for worker in 0..2 {
        assert_eq!(counter(&cluster, worker, "gristmill_worker_executors_started_total"), 0.0);
    }
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    assert!(jobs[0]["failed_attempts"].as_u64().unwrap() >= 2, "{jobs}");
}

#[test]
fn broadcast_values_go_to_each_executor_once_and_reach_attempts_after_a_crash() {
    let cluster =
        Cluster::start(ClusterSpec { worker_http: true, env: executors(), ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    // Some first attempts exit their executor; every task checks the broadcast value first.
    const BYTES: usize = 100_000;
    let bytes = BYTES.to_string();
    let faults =
        ["--chaos-stage", "both", "--crash", "0.3", "--chaos-seed", "3", "--broadcast-bytes", &bytes];
    cluster.run_ok("chaos", &chaos_args(&text, &out, &faults));
    assert_same_parts(&expected, &out);
    let (mut attempts, mut executors) = (0.0, 0.0);
    for worker in 0..2 {
        let started = counter(&cluster, worker, "gristmill_worker_executors_started_total");
        let sent = counter(&cluster, worker, "gristmill_worker_broadcast_bytes_sent_total");
        // The value and a frame's few bytes of JSON around it, once per executor.
        let per_executor = sent / started;
        assert!(
            per_executor >= BYTES as f64 && per_executor < (BYTES + 100) as f64,
            "worker {worker}: {sent} bytes of broadcast values to {started} executors"
        );
        let payloads = counter(&cluster, worker, "gristmill_worker_job_payloads_received_total");
        assert_eq!(payloads, 1.0, "worker {worker}: the job's settings came with its first attempt only");
        attempts += counter(&cluster, worker, "gristmill_worker_attempts_started_total");
        executors += started;
    }
    assert!(executors >= 3.0, "a crashed executor was started again: {executors}");
    assert!(attempts > executors, "{attempts} attempts in {executors} executors");
}
