//! Failure tests on a real cluster: workers killed (SIGKILL) or frozen (SIGSTOP), tasks
//! that crash, fail or hang, priorities and cancel. Every job's output is compared with a
//! fault-free local run of the same word count (same reducers, so the same part files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster_support::{Cluster, ClusterSpec, wait_until};
use super::support::{read_committed, run_ok, s, write_text_files};

/// Text in 12 splits, and a fault-free local word count of it with 3 reducers.
pub fn input_and_expected(dir: &Path) -> (PathBuf, PathBuf) {
    let text = dir.join("text");
    write_text_files(&text, 3, 2000);
    let expected = dir.join("expected");
    run_ok(
        "wordcount-records",
        &["--input", s(&text), "--output", s(&expected), "--reducers", "3", "--split-size", "30000"],
    );
    (text, expected)
}

pub fn chaos_args<'a>(text: &'a Path, out: &'a Path, faults: &[&'a str]) -> Vec<&'a str> {
    let base = ["--input", s(text), "--output", s(out), "--reducers", "3", "--split-size", "30000"];
    [&base[..], faults].concat()
}

pub fn assert_same_parts(expected: &Path, actual: &Path) {
    let (a, b) = (read_committed(expected), read_committed(actual));
    assert_eq!(a.parts.len(), b.parts.len());
    for ((_, x), (name, y)) in a.parts.iter().zip(&b.parts) {
        assert_eq!(x, y, "rows of {name}");
    }
}

/// Waits for a background job binary and asserts it succeeded.
pub fn wait_ok(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the job failed: {stderr}");
    stderr
}

fn kill_worker_while_it_runs(stage: &str) {
    // Reducers fetch all map output, so the dead worker's cannot be fetched: the driver
    // must run its map tasks again (read in place, it would still be on this host's disk).
    let env = vec![("GRISTMILL_NO_HOST_LOCAL_SHUFFLE".to_owned(), "true".to_owned())];
    let spec = if stage == "reduce" {
        ClusterSpec { env, ..ClusterSpec::default() }
    } else {
        ClusterSpec::default()
    };
    let mut cluster = Cluster::start(spec);
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    // Every task of the stage sleeps, so the kill lands while attempts run.
    let faults = ["--chaos-stage", stage, "--sleep", "1", "--sleep-ms", "1500", "--always"];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("an attempt running on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    if stage == "reduce" {
        wait_until("the reduce phase", Duration::from_secs(60), || {
            cluster.get("/api/jobs").contains("\"phase\":\"reduce\"")
        });
        wait_until("a reduce attempt on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    }
    cluster.signal_worker(0, "KILL", false);
    wait_ok(job);
    assert_same_parts(&expected, &out);
    assert_eq!(cluster.alive_workers(), 1);
    assert_lost_attempts_logged(&cluster);
}

/// The job's event log tells of the attempts its lost worker was running (no report of
/// theirs ever came).
fn assert_lost_attempts_logged(cluster: &Cluster) {
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    let id = jobs[0]["id"].as_str().unwrap();
    let events: serde_json::Value =
        serde_json::from_str(&cluster.get(&format!("/api/jobs/{id}/events"))).unwrap();
    let lost: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "task_failed" && e["kind"] == "worker_lost")
        .collect();
    assert!(!lost.is_empty(), "no lost attempt in the event log: {events}");
    for e in lost {
        assert!(e["error"].as_str().unwrap().contains("was lost"), "{e}");
        assert!(e["duration_ms"].is_u64(), "a lost attempt's end carries its duration: {e}");
    }
}

#[test]
fn a_worker_killed_during_the_map_phase_does_not_fail_the_job() {
    kill_worker_while_it_runs("map");
}

#[test]
fn a_worker_killed_during_the_reduce_phase_does_not_fail_the_job() {
    kill_worker_while_it_runs("reduce");
}

#[test]
fn a_worker_restarted_on_its_data_dir_during_the_reduce_phase_does_not_change_the_output() {
    // Reducers fetch everything, so the map output the killed worker held must be redone:
    // the restarted worker is a new member whose former output the driver never uses.
    let env = vec![("GRISTMILL_NO_HOST_LOCAL_SHUFFLE".to_owned(), "true".to_owned())];
    let mut cluster = Cluster::start(ClusterSpec { env, ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let faults = ["--chaos-stage", "reduce", "--sleep", "1", "--sleep-ms", "1500", "--always"];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("the reduce phase", Duration::from_secs(60), || {
        cluster.get("/api/jobs").contains("\"phase\":\"reduce\"")
    });
    wait_until("a reduce attempt on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    cluster.signal_worker(0, "KILL", false);
    cluster.restart_worker(0, 2);
    wait_ok(job);
    assert_same_parts(&expected, &out);
    wait_until("the restarted worker attached", Duration::from_secs(30), || cluster.alive_workers() == 2);
    // It works on its old data dir: the next job runs on both workers.
    let next = dir.path().join("next");
    cluster.run_ok("chaos", &chaos_args(&text, &next, &[]));
    assert_same_parts(&expected, &next);
    let workers: serde_json::Value = serde_json::from_str(&cluster.get("/api/workers")).unwrap();
    let working = |w: &&serde_json::Value| w["state"] == "alive" && w["tasks_completed"].as_u64() > Some(0);
    let busy = workers.as_array().unwrap().iter().filter(working).count();
    assert_eq!(busy, 2, "the restarted worker took tasks too: {workers}");
}

#[test]
fn a_worker_killed_during_a_map_only_job_does_not_fail_it_and_its_part_files_stand() {
    let mut cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = input_and_expected(dir.path());
    let expected = dir.path().join("expected-map-only");
    run_ok("chaos", &chaos_args(&text, &expected, &["--map-only"]));
    let parts = read_committed(&expected).parts.len();
    assert!(parts > 3, "a part file per map task, not per reducer: {parts}");
    let out = dir.path().join("out");
    let faults = ["--map-only", "--sleep", "1", "--sleep-ms", "1500", "--always"];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("an attempt running on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    cluster.signal_worker(0, "KILL", false);
    wait_ok(job);
    assert_same_parts(&expected, &out);
    assert_eq!(cluster.alive_workers(), 1);
}

#[test]
fn a_frozen_worker_is_declared_lost_and_its_work_redone_exactly_once() {
    let mut cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let faults = ["--chaos-stage", "map", "--sleep", "1", "--sleep-ms", "1500", "--always"];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("an attempt running on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    // The worker and its task processes stop, as on a frozen machine: its attempts get
    // backups, its heartbeats stop, and its map outputs must be recomputed.
    cluster.signal_worker(0, "STOP", true);
    wait_ok(job);
    assert_same_parts(&expected, &out);
    let status = cluster.get("/api/jobs");
    assert!(status.contains("\"kind\":\"succeeded\""), "{status}");
}

/// Hidden staging files (`.part-....inprogress`) in `dir`.
fn staging_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with('.'))).count()
    })
}

/// True when every child process of `pid` has exited (reaped or not).
fn children_exited(pid: u32) -> bool {
    let ps =
        std::process::Command::new("ps").args(["-o", "stat=", "--ppid", &pid.to_string()]).output().unwrap();
    String::from_utf8_lossy(&ps.stdout).lines().all(|state| state.trim_start().starts_with('Z'))
}

#[test]
fn reducers_of_a_frozen_worker_daemon_that_finish_after_the_commit_leave_nothing_behind() {
    let mut cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    // First reduce attempts read their partition, then take 12 s to close their part file;
    // backups (after 3 s) and retries do not sleep.
    let faults = ["--chaos-stage", "reduce", "--sleep", "1", "--sleep-ms", "12000", "--sleep-late"];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("the reduce phase", Duration::from_secs(60), || {
        cluster.get("/api/jobs").contains("\"phase\":\"reduce\"")
    });
    wait_until("a reduce attempt on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    // The daemon stops; its task processes run on and close their part files after the
    // job committed, then wait for the frozen daemon.
    cluster.signal_worker(0, "STOP", false);
    wait_ok(job);
    let daemon = cluster.worker_pid(0);
    // Its task processes exit once their attempts end (zombies until it reaps them); one
    // started just before the freeze, whose spec the daemon had not yet written into its
    // stdin, gives up after 15 s (IDLE_EXIT) rather than wait for the daemon for good.
    wait_until("the frozen worker's attempts to end", Duration::from_secs(60), || children_exited(daemon));
    assert_eq!(staging_files(&out), 0, "a late attempt's part stays hidden and is discarded");
    assert_same_parts(&expected, &out);
    // Released, the daemon reports the late attempts (or cannot): nothing may appear.
    cluster.signal_worker(0, "CONT", false);
    wait_until("the released worker to attach again", Duration::from_secs(30), || {
        cluster.alive_workers() == 2
    });
    assert_eq!(staging_files(&out), 0);
    assert_same_parts(&expected, &out);
}

#[test]
fn a_hanging_task_gets_a_backup_attempt_and_output_is_committed_once() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    // Every reducer's first attempt hangs; 3 reducers on 4 slots leave a slot for backups.
    let faults = ["--chaos-stage", "reduce", "--hang", "1"];
    cluster.run_ok("chaos", &chaos_args(&text, &out, &faults));
    assert_same_parts(&expected, &out);
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    let backups = jobs[0]["backups_launched"].as_u64().unwrap();
    assert!(backups >= 1, "hung attempts got backups: {jobs}");
}

#[test]
fn tasks_crashing_on_their_first_attempts_are_retried() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let faults = ["--chaos-stage", "both", "--crash", "0.3", "--fail", "0.3", "--chaos-seed", "3"];
    cluster.run_ok("chaos", &chaos_args(&text, &out, &faults));
    assert_same_parts(&expected, &out);
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    assert!(jobs[0]["failed_attempts"].as_u64().unwrap() >= 2, "{jobs}");
}

#[test]
fn a_task_that_always_fails_fails_the_job_clearly_and_the_cluster_runs_the_next_job() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let faults = ["--chaos-stage", "map", "--fail", "1", "--always"];
    let failed = cluster.run("chaos", &chaos_args(&text, &out, &faults));
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    for needle in
        ["error:", "map task", "text", "bytes", "failed 4 times", "worker w", "fails on purpose", "stderr"]
    {
        assert!(stderr.contains(needle), "the error names {needle}: {stderr}");
    }
    assert!(!out.join("_SUCCESS").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "a failed job leaves no part files: {leftovers:?}");

    let next = dir.path().join("next");
    cluster.run_ok("chaos", &chaos_args(&text, &next, &[]));
    assert_same_parts(&expected, &next);
    assert_eq!(cluster.alive_workers(), 2);
}

#[test]
fn a_higher_priority_job_gets_free_slots_first() {
    let spec = ClusterSpec { workers: 1, slots: 1, ..ClusterSpec::default() };
    let cluster = Cluster::start(spec);
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let slow = ["--chaos-stage", "map", "--sleep", "1", "--sleep-ms", "400", "--always"];
    let (low_out, high_out) = (dir.path().join("low"), dir.path().join("high"));
    let low =
        cluster.spawn("chaos", &[&chaos_args(&text, &low_out, &slow)[..], &["--priority", "0"]].concat());
    wait_until("the low priority job runs", Duration::from_secs(60), || cluster.running_on(0) > 0);
    let high =
        cluster.spawn("chaos", &[&chaos_args(&text, &high_out, &slow)[..], &["--priority", "10"]].concat());
    wait_ok(high);
    assert!(!low_out.join("_SUCCESS").exists(), "the high priority job finished first");
    wait_ok(low);
    assert_same_parts(&expected, &low_out);
    assert_same_parts(&expected, &high_out);
}

#[test]
fn a_cancelled_job_stops_its_tasks_and_removes_its_shuffle_data() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let slow = ["--chaos-stage", "both", "--sleep", "1", "--sleep-ms", "1000", "--always", "--detach"];
    let submitted = cluster.run("chaos", &chaos_args(&text, &out, &slow));
    assert!(submitted.status.success(), "{}", String::from_utf8_lossy(&submitted.stderr));
    let job_id = String::from_utf8(submitted.stdout).unwrap().trim().to_owned();
    assert!(job_id.starts_with("job-"), "--detach prints the job id: {job_id}");
    wait_until("map output exists", Duration::from_secs(60), || cluster.shuffle_files() > 0);
    let cancel = cluster.cli(&["cancel", &job_id]);
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancelled"));
    wait_until("attempts stopped", Duration::from_secs(20), || {
        cluster.running_on(0) + cluster.running_on(1) == 0
    });
    wait_until("shuffle data removed", Duration::from_secs(20), || cluster.shuffle_files() == 0);
    let status = cluster.cli(&["status", &job_id]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("cancelled"));
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn a_worker_stops_gracefully_on_sigterm_and_the_driver_notices() {
    let mut cluster = Cluster::start(ClusterSpec::default());
    cluster.signal_worker(0, "TERM", false);
    let status = cluster.wait_worker_exit(0, Duration::from_secs(10));
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    wait_until("the driver sees one worker", Duration::from_secs(10), || cluster.alive_workers() == 1);
}
