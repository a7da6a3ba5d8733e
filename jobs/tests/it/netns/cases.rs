//! The fault matrix across hosts (#20): a secured driver on host 1 and two workers on
//! hosts 2 and 3, each in its own network namespace. Every case compares the job's part
//! files with a fault-free local run's, byte for byte, and checks the output directory
//! holds exactly the `_SUCCESS` manifest's files; or expects a clear, classified error.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Hosts;
use crate::cluster::counter;
use crate::cluster_support::{Cluster, ClusterSpec, wait_until};
use crate::support::{read_committed, run_ok, s, write_text_files};

/// The hosts of worker 0 and worker 1 (the driver is on host 1).
pub const WORKER_0: usize = 2;
pub const WORKER_1: usize = 3;
const DRIVER: usize = crate::cluster_support::DRIVER_HOST;
/// A client's host, where there is one (host 4).
const CLIENT: usize = 4;

/// Three hosts and a secured cluster across them, with `driver_args` instead of the
/// fixture's (when given). The hosts share this machine's file
/// system, so workers are told to fetch all map output over the network.
pub fn cluster(hosts: Hosts, driver_args: &[&str]) -> (Arc<Hosts>, Cluster) {
    let hosts = Arc::new(hosts);
    let mut spec = ClusterSpec {
        env: vec![("GRISTMILL_NO_HOST_LOCAL_SHUFFLE".into(), "true".into())],
        network: Some(hosts.clone()),
        ..ClusterSpec::default()
    };
    if !driver_args.is_empty() {
        spec.driver_args = driver_args.iter().map(|a| a.to_string()).collect();
    }
    (hosts, Cluster::start(spec))
}

/// Text in 12 splits.
pub fn input(dir: &Path) -> PathBuf {
    let text = dir.join("text");
    write_text_files(&text, 3, 2000);
    text
}

/// `job`'s flags: 3 reducers, 12 splits, `extra` (e.g. chaos faults, which change timing,
/// never output).
pub fn job_args<'a>(text: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    [&["--input", s(text), "--output", s(out), "--reducers", "3", "--split-size", "30000"][..], extra]
        .concat()
}

/// A fault-free local run of `job` over `text`.
pub fn expected(job: &str, text: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!("expected-{job}"));
    run_ok(job, &job_args(text, &out, &[]));
    out
}

/// Asserts `actual` holds exactly its manifest's files plus `_SUCCESS`, and the same part
/// files as `expected`, partition by partition, byte for byte (their names hold job ids).
pub fn assert_identical(expected: &Path, actual: &Path) {
    let (want, got) = (read_committed(expected), read_committed(actual));
    assert_eq!(want.parts.len(), got.parts.len(), "part files");
    assert!(!got.parts.is_empty());
    for ((a, _), (b, _)) in want.parts.iter().zip(&got.parts) {
        let (x, y) = (std::fs::read(expected.join(a)).unwrap(), std::fs::read(actual.join(b)).unwrap());
        assert!(x == y, "{b} differs from the local run's {a} ({} and {} bytes)", y.len(), x.len());
    }
}

/// Waits for a background job binary; asserts it succeeded.
fn wait_ok(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the job failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Map tasks sleep 1.5 s each, so the map phase lasts a few seconds.
const SLOW_MAPS: [&str; 7] = ["--chaos-stage", "map", "--sleep", "1", "--sleep-ms", "1500", "--always"];

/// Whether host `from` completes a TCP handshake with `addr` within a second.
fn reaches(hosts: &Hosts, from: usize, addr: std::net::SocketAddr) -> bool {
    hosts.connect(from, addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn the_harness_connects_hosts_and_cuts_them_apart() {
    let hosts = Hosts::new(3);
    let addr: std::net::SocketAddr = format!("{}:7000", hosts.ip(2)).parse().unwrap();
    // Kept open for the whole test: the kernel completes handshakes without accept().
    let _listener = hosts.in_host(2, move || std::net::TcpListener::bind(addr)).unwrap();
    assert!(reaches(&hosts, 1, addr) && reaches(&hosts, 3, addr), "hosts reach each other");
    hosts.partition(1, 2);
    assert!(!reaches(&hosts, 1, addr), "a partitioned pair does not");
    assert!(reaches(&hosts, 3, addr), "the rest of the network does");
    hosts.heal(1, 2);
    // Lost handshakes are retried after a second or more: healing shows within a few.
    let soon = Duration::from_secs(10);
    wait_until("the healed pair reaches each other", soon, || reaches(&hosts, 1, addr));
    hosts.isolate(2);
    assert!(!reaches(&hosts, 1, addr) && !reaches(&hosts, 3, addr), "an isolated host is reached by none");
    hosts.reconnect(2);
    wait_until("the host reconnected", soon, || reaches(&hosts, 1, addr) && reaches(&hosts, 3, addr));
    hosts.lose(100.0);
    assert!(!reaches(&hosts, 1, addr), "every packet lost");
}

#[test]
fn a_fault_free_run_across_three_hosts_equals_local_mode() {
    let started = Instant::now();
    let (_hosts, cluster) = cluster(Hosts::new(3), &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let out = dir.path().join("out");
    let run = cluster.run("wordcount", &job_args(&text, &out, &[]));
    let summary = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{summary}");
    let (fetched, in_place) =
        (counter(&summary, "shuffle_fetched_bytes"), counter(&summary, "shuffle_host_local_bytes"));
    assert!(fetched > 0 && in_place == 0, "all map output crosses the network: {summary}");
    assert_identical(&expected("wordcount", &text, dir.path()), &out);
    eprintln!("fault-free across hosts: {:?}", started.elapsed());
}

#[test]
fn a_job_completes_with_2_percent_loss_on_every_link() {
    let started = Instant::now();
    let hosts = Hosts::new(3);
    hosts.lose(2.0);
    let (_hosts, cluster) = cluster(hosts, &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let out = dir.path().join("out");
    cluster.run_ok("wordcount", &job_args(&text, &out, &[]));
    assert_identical(&expected("wordcount", &text, dir.path()), &out);
    eprintln!("loss: {:?}", started.elapsed());
}

#[test]
fn a_job_completes_with_200_ms_latency_and_2_percent_loss_on_every_link() {
    let started = Instant::now();
    let hosts = Hosts::new(3);
    let _slow = hosts.slow_links(Duration::from_millis(200), 2.0);
    // The links are slow, not broken: a handshake now takes two delayed frames at least.
    let probe: std::net::SocketAddr = format!("{}:7001", hosts.ip(WORKER_0)).parse().unwrap();
    let _listener = hosts.in_host(WORKER_0, move || std::net::TcpListener::bind(probe)).unwrap();
    let handshake = Instant::now();
    hosts.connect(DRIVER, probe, Duration::from_secs(10)).expect("the hosts reach each other");
    let rtt = handshake.elapsed();
    assert!(rtt >= Duration::from_millis(400), "a round trip takes two 200 ms delays: {rtt:?}");
    let (_hosts, cluster) = cluster(hosts, &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let out = dir.path().join("out");
    cluster.run_ok("wordcount", &job_args(&text, &out, &[]));
    assert_identical(&expected("wordcount", &text, dir.path()), &out);
    eprintln!("200 ms latency + 2% loss: handshake {rtt:?}, whole test {:?}", started.elapsed());
}

#[test]
fn a_worker_cut_off_from_the_driver_for_15_s_during_the_map_phase_does_not_change_the_output() {
    let started = Instant::now();
    let (hosts, cluster) = cluster(Hosts::new(3), &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let out = dir.path().join("out");
    let job = cluster.spawn("chaos", &job_args(&text, &out, &SLOW_MAPS));
    wait_until("a map attempt on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    hosts.partition(DRIVER, WORKER_0);
    std::thread::sleep(Duration::from_secs(15));
    hosts.heal(DRIVER, WORKER_0);
    wait_ok(job);
    // Declared lost while cut off (3 s without heartbeats), it attaches again.
    let workers = cluster.get("/api/workers");
    assert!(workers.contains("\"lost\"") && workers.contains("no heartbeat"), "{workers}");
    wait_until("worker 0 attaches again", Duration::from_secs(30), || cluster.alive_workers() == 2);
    assert_identical(&expected("chaos", &text, dir.path()), &out);
    eprintln!("driver-worker partition: {:?}", started.elapsed());
}

#[test]
fn workers_cut_off_from_each_other_during_the_shuffle_do_not_change_the_output() {
    let started = Instant::now();
    let (hosts, cluster) = cluster(Hosts::new(3), &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let out = dir.path().join("out");
    // Cut before any reducer fetches; held 10 s into the reduce phase.
    hosts.partition(WORKER_0, WORKER_1);
    let job = cluster.spawn("chaos", &job_args(&text, &out, &SLOW_MAPS));
    wait_until("the reduce phase", Duration::from_secs(60), || {
        let jobs = cluster.get("/api/jobs");
        jobs.contains("\"phase\":\"reduce\"") || jobs.contains("succeeded")
    });
    std::thread::sleep(Duration::from_secs(10));
    hosts.heal(WORKER_0, WORKER_1);
    wait_ok(job);
    // Every reducer needed map output of both workers: fetches failed (5 s connect timeout)
    // while they were cut off, and the lost output was recomputed.
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    assert!(jobs[0]["failed_attempts"].as_u64().unwrap() >= 1, "the cut was felt: {jobs}");
    assert_identical(&expected("chaos", &text, dir.path()), &out);
    eprintln!("worker-worker partition: {:?}", started.elapsed());
}

#[test]
fn of_two_jobs_submitted_at_once_for_one_output_one_is_refused_naming_the_other() {
    let started = Instant::now();
    let (_hosts, cluster) = cluster(Hosts::new(4), &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let out = dir.path().join("out");
    // From two client hosts at once; slow maps keep the winner running past the other.
    let args = job_args(&text, &out, &SLOW_MAPS);
    let (a, b) = (cluster.spawn_on(DRIVER, "chaos", &args), cluster.spawn_on(CLIENT, "chaos", &args));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() != b.status.success(), "exactly one is refused");
    let refused =
        String::from_utf8_lossy(if a.status.success() { &b.stderr } else { &a.stderr }).into_owned();
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    let winner =
        jobs.as_array().unwrap().iter().find(|j| j.to_string().contains("succeeded")).expect("a winner");
    let id = winner["id"].as_str().unwrap();
    for needle in ["is being written by job", id, s(&out)] {
        assert!(refused.contains(needle), "the refusal names {needle}: {refused}");
    }
    assert_identical(&expected("chaos", &text, dir.path()), &out);
    eprintln!("two jobs at once, one output: {:?}", started.elapsed());
}
