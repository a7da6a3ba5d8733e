//! Workers leaving on purpose: SIGTERM or `gristmill worker drain` drains a worker in the
//! middle of a job. It takes no new tasks, finishes the attempts it runs, serves its map
//! output to the reducers, and exits (status 0) once the job no longer needs it; the job
//! loses no attempt and its output equals a fault-free run's.

use std::time::Duration;

use super::cluster_failures::{assert_same_parts, chaos_args, input_and_expected, wait_ok};
use super::cluster_support::{Cluster, ClusterSpec, gristmill_cert, wait_until};

/// Two workers of two slots, no backups (every attempt launched is one the job needed), and
/// with `fetched` every shuffle byte fetched through the shuffle services (none read from
/// another worker's directory on this host).
fn cluster(fetched: bool) -> Cluster {
    let mut spec = ClusterSpec::default();
    spec.driver_args.push("--no-speculation".into());
    if fetched {
        spec.env.push(("GRISTMILL_NO_HOST_LOCAL_SHUFFLE".into(), "true".into()));
    }
    Cluster::start(spec)
}

/// Map tasks sleep 1.5 s each, so a drain lands while attempts run.
const SLOW_MAPS: [&str; 7] = ["--chaos-stage", "map", "--sleep", "1", "--sleep-ms", "1500", "--always"];

/// The one job's summary from `/api/jobs`.
fn only_job(cluster: &Cluster) -> serde_json::Value {
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    jobs[0].clone()
}

fn wait_draining(cluster: &Cluster, i: usize) {
    wait_until("the driver sees the worker draining", Duration::from_secs(20), || {
        cluster.worker_view(i)["state"] == "draining"
    });
}

#[test]
fn a_worker_sent_sigterm_mid_job_finishes_its_attempts_serves_its_output_and_exits_after_the_job() {
    let mut cluster = cluster(true);
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &SLOW_MAPS));
    wait_until("an attempt running on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    cluster.signal_worker(0, "TERM", false);
    wait_draining(&cluster, 0);
    let metrics = cluster.get("/metrics");
    assert!(metrics.contains("gristmill_workers{state=\"draining\"} 1"), "{metrics}");
    wait_ok(job);
    assert_same_parts(&expected, &out);
    let status = cluster.wait_worker_exit(0, Duration::from_secs(30));
    assert!(status.success(), "a drained worker exits cleanly: {status:?}");
    let summary = only_job(&cluster);
    assert_eq!(summary["failed_attempts"], 0, "{summary}");
    let tasks = summary["maps"]["total"].as_u64().unwrap() + summary["reduces"]["total"].as_u64().unwrap();
    assert_eq!(summary["attempts_launched"], tasks, "no attempt was lost or re-run: {summary}");
}

#[test]
fn an_admin_drains_a_worker_by_id_others_may_not_and_the_demand_is_exposed() {
    let mut cluster = cluster(false);
    let certs = cluster.certs.clone().expect("a secured cluster");
    gristmill_cert(&certs, &["create-client", "admin"]);
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let out = dir.path().join("out");
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &SLOW_MAPS));
    wait_until("an attempt running on worker 0", Duration::from_secs(60), || cluster.running_on(0) > 0);
    let demand: serde_json::Value = serde_json::from_str(&cluster.get("/api/cluster")).unwrap();
    let demand = &demand["demand"];
    let (pending, running) =
        (demand["pending_tasks"].as_i64().unwrap(), demand["running_tasks"].as_i64().unwrap());
    assert!(running > 0, "{demand}");
    assert_eq!(demand["slots_wanted"].as_i64(), Some(pending + running), "{demand}");
    assert_eq!(demand["slots_usable"], 4, "{demand}");

    let id = cluster.worker_view(0)["id"].as_str().expect("worker 0's id").to_owned();
    let refused = cluster.cli(&["worker", "drain", &id]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("may not drain workers"), "{stderr}");
    let unknown = cluster.cli(&["worker", "drain", "no-such-worker", "--user", "admin"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no worker no-such-worker"));

    let drained = cluster.cli(&["worker", "drain", &id, "--user", "admin"]);
    assert!(drained.status.success(), "{}", String::from_utf8_lossy(&drained.stderr));
    assert_eq!(String::from_utf8_lossy(&drained.stdout).trim(), format!("worker {id}: draining"));
    wait_draining(&cluster, 0);
    let demand: serde_json::Value = serde_json::from_str(&cluster.get("/api/cluster")).unwrap();
    assert_eq!(demand["demand"]["slots_usable"], 2, "a draining worker's slots are not usable");
    wait_ok(job);
    assert_same_parts(&expected, &out);
    let status = cluster.wait_worker_exit(0, Duration::from_secs(30));
    assert!(status.success(), "a drained worker exits cleanly: {status:?}");
    assert_eq!(only_job(&cluster)["failed_attempts"], 0);
}
