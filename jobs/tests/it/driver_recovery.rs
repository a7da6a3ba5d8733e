//! Driver recovery (#20): a driver SIGKILLed mid-job and restarted on its data dir resumes
//! the job from its journal; the following submitter reconnects and exits with the job's
//! result, the output is the fault-free one, and jobs that ended before the crash are
//! still listed.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::cluster_failures::input_and_expected;
use super::cluster_support::{Cluster, ClusterSpec, wait_until};
use super::support::{read_committed, s};

/// The job id a job binary printed ("submitted NAME as ID to URL").
fn submitted_id(stderr: &str) -> String {
    let line = stderr.lines().find(|l| l.starts_with("submitted ")).expect("a submitted line");
    line.split_whitespace().nth(3).expect("a job id").to_owned()
}

/// Waits (bounded) for a background job binary; returns (success, stderr).
fn wait_child(mut child: Child, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the job binary did not exit within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Map tasks done of the running job, as the driver's status page shows them.
fn maps_done(cluster: &Cluster) -> u64 {
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap_or_default();
    let running =
        jobs.as_array().and_then(|all| all.iter().find(|j| j["state"]["kind"] == "running").cloned());
    running.map_or(0, |j| j["maps"]["done"].as_u64().unwrap_or(0))
}

/// The attempt number in a part file's name (`part-P-JOB-aATTEMPT.EXT`).
fn attempt_of(name: &str) -> u64 {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem.rsplit('-')
        .next()
        .and_then(|a| a.trim_start_matches('a').parse().ok())
        .unwrap_or_else(|| panic!("no attempt in {name}"))
}

/// A cluster whose driver logs the map outputs it adopts to `driver.log`.
fn logged_cluster() -> Cluster {
    Cluster::start(ClusterSpec {
        log_level: "warn,gristmill::scheduler::adopt=info",
        log_to_files: true,
        ..ClusterSpec::default()
    })
}

/// Map outputs the restarted driver adopted from the workers holding them.
fn adopted_maps(cluster: &Cluster) -> usize {
    let log = std::fs::read_to_string(cluster.dir().join("driver.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains("adopted a map output")).count()
}

/// `gristmill jobs`' line of `job`.
fn listed(cluster: &Cluster, job: &str) -> String {
    let out = cluster.cli(&["jobs"]);
    assert!(out.status.success(), "gristmill jobs: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.starts_with(job))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{job} not listed: {stdout}"))
}

#[test]
fn a_driver_killed_mid_map_resumes_the_job_after_a_restart() {
    let mut cluster = logged_cluster();
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let args = |out: &Path| {
        let base = ["--input", s(&text), "--output", s(out), "--reducers", "3", "--split-size", "30000"];
        base.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    // A job that ends before the crash.
    let early_out = dir.path().join("early");
    let early =
        cluster.run("wordcount-records", &args(&early_out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(early.status.success(), "{}", String::from_utf8_lossy(&early.stderr));
    let early_id = submitted_id(&String::from_utf8_lossy(&early.stderr));

    let out = dir.path().join("out");
    let mut chaos = args(&out);
    chaos
        .extend(["--chaos-stage", "map", "--sleep", "1", "--sleep-ms", "1500", "--always"].map(String::from));
    let job = cluster.spawn("chaos", &chaos.iter().map(String::as_str).collect::<Vec<_>>());
    wait_until("a map attempt running", Duration::from_secs(60), || {
        cluster.running_on(0) + cluster.running_on(1) > 0
    });
    // Some maps done (their outputs are adopted after the restart), others running.
    wait_until("some maps done", Duration::from_secs(60), || maps_done(&cluster) >= 4);
    let maps_done_before = maps_done(&cluster);
    cluster.kill_driver();
    let restarted = Instant::now();
    cluster.restart_driver();
    wait_until("the workers to attach again", Duration::from_secs(60), || cluster.alive_workers() == 2);
    wait_until("a task of the resumed job", Duration::from_secs(60), || {
        cluster.running_on(0) + cluster.running_on(1) > 0
    });
    let first_task = restarted.elapsed();

    let (ok, stderr) = wait_child(job, Duration::from_secs(180));
    assert!(ok, "the following submitter failed: {stderr}");
    let id = submitted_id(&stderr);
    let a = read_committed(&expected);
    let b = read_committed(&out);
    assert_eq!(a.parts.len(), b.parts.len());
    for ((_, x), (name, y)) in a.parts.iter().zip(&b.parts) {
        assert_eq!(x, y, "rows of {name}");
    }
    assert!(listed(&cluster, &id).contains("succeeded"), "{}", listed(&cluster, &id));
    assert!(
        listed(&cluster, &early_id).contains("succeeded"),
        "the job ended before the crash is remembered"
    );
    // Attempts of the driver's second epoch are numbered from 1000 (no name of an earlier
    // attempt is reused).
    let attempts: Vec<u64> = b.parts.iter().map(|(name, _)| attempt_of(name)).collect();
    assert!(attempts.iter().all(|a| *a >= 1000), "{attempts:?}");
    let view: serde_json::Value = serde_json::from_str(&cluster.get(&format!("/api/jobs/{id}"))).unwrap();
    let adopted = adopted_maps(&cluster);
    assert!(
        adopted as u64 >= maps_done_before,
        "every map done before the crash is adopted, not run again: {adopted} < {maps_done_before}"
    );
    eprintln!(
        "driver recovery: first task of the resumed job {first_task:?} after the restart; {maps_done_before} maps were done before the crash, {adopted} adopted; attempts launched after it: {} (maps {}, reduces {})",
        view["attempts_launched"], view["maps"]["total"], view["reduces"]["total"]
    );
}

#[test]
fn a_driver_killed_mid_reduce_resumes_the_job_and_no_reducer_of_the_old_epoch_leaves_a_file() {
    let mut cluster = logged_cluster();
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    // Reducers of the first epoch read their partition, then take 4 s to close their part
    // file: the driver dies meanwhile, their workers' sessions break and kill them, and
    // what they staged must not outlive them (the new epoch's attempts do not sleep).
    let args = [
        "--input",
        s(&text),
        "--output",
        s(&out),
        "--reducers",
        "3",
        "--split-size",
        "30000",
        "--chaos-stage",
        "reduce",
        "--sleep",
        "1",
        "--sleep-ms",
        "4000",
        "--sleep-late",
    ];
    let job = cluster.spawn("chaos", &args);
    wait_until("the reduce phase", Duration::from_secs(60), || {
        cluster.get("/api/jobs").contains("\"phase\":\"reduce\"")
    });
    wait_until("a reduce attempt running", Duration::from_secs(60), || {
        cluster.running_on(0) + cluster.running_on(1) > 0
    });
    cluster.kill_driver();
    cluster.restart_driver();
    let (ok, stderr) = wait_child(job, Duration::from_secs(180));
    assert!(ok, "the following submitter failed: {stderr}");
    let hidden = || {
        std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    wait_until("the old epoch's staged parts discarded", Duration::from_secs(30), || hidden() == 0);
    let (a, b) = (read_committed(&expected), read_committed(&out));
    assert_eq!(a.parts.len(), b.parts.len());
    for ((_, x), (name, y)) in a.parts.iter().zip(&b.parts) {
        assert_eq!(x, y, "rows of {name}");
    }
    let attempts: Vec<u64> = b.parts.iter().map(|(name, _)| attempt_of(name)).collect();
    assert!(attempts.iter().all(|a| *a >= 1000), "the new epoch's attempts committed: {attempts:?}");
    // Both workers survived the driver: every map output is adopted, no map runs again.
    let id = submitted_id(&stderr);
    let view: serde_json::Value = serde_json::from_str(&cluster.get(&format!("/api/jobs/{id}"))).unwrap();
    let maps = view["maps"]["total"].as_u64().unwrap();
    assert_eq!(adopted_maps(&cluster) as u64, maps, "maps run again after the restart");
    eprintln!(
        "driver recovery (reduce phase): {maps} of {maps} map outputs adopted; attempts launched after the restart: {}",
        view["attempts_launched"]
    );
}

/// Part files visible (published) in `out`.
fn visible_parts(out: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(out) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_driver_killed_mid_commit_finishes_the_commit_after_a_restart() {
    // The driver publishes the winners one at a time, 2 s apart: it dies with one published.
    let pause = (gristmill::driver::commit::COMMIT_PAUSE_ENV.to_owned(), "2000".to_owned());
    let mut cluster = Cluster::start(ClusterSpec { env: vec![pause], ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let args = ["--input", s(&text), "--output", s(&out), "--reducers", "3", "--split-size", "30000"];
    let job = cluster.spawn("wordcount-records", &args);
    wait_until("a winner published mid-commit", Duration::from_secs(120), || !visible_parts(&out).is_empty());
    cluster.kill_driver();
    let half = visible_parts(&out);
    assert!(!out.join("_SUCCESS").exists() && half.len() < 3, "killed mid-commit: {half:?}");
    cluster.restart_driver();
    let (ok, stderr) = wait_child(job, Duration::from_secs(180));
    assert!(ok, "the following submitter failed: {stderr}");
    let (a, b) = (read_committed(&expected), read_committed(&out));
    assert_eq!(a.parts.len(), b.parts.len());
    for ((_, x), (name, y)) in a.parts.iter().zip(&b.parts) {
        assert_eq!(x, y, "rows of {name}");
    }
    // Finished, not run again: the winners are the first epoch's attempts, the published
    // ones among them.
    let attempts: Vec<u64> = b.parts.iter().map(|(name, _)| attempt_of(name)).collect();
    assert!(attempts.iter().all(|a| *a < 1000), "the begun commit was finished: {attempts:?}");
    let committed: Vec<&String> = b.parts.iter().map(|(name, _)| name).collect();
    assert!(half.iter().all(|h| committed.contains(&h)), "{half:?} not in {committed:?}");
}
