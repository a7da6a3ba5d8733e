//! Fair sharing on a real cluster: two users' jobs in two queues on two one-slot workers.
//! The first job takes both slots; the second queue, below its fair share past the short
//! `--preemption-timeout`, gets a slot back by preemption. Both jobs finish with the same
//! output as a local run, and the event logs show the preemption and both jobs holding
//! slots at once.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::cluster_failures::{assert_same_parts, input_and_expected, wait_ok};
use super::cluster_support::{Cluster, ClusterSpec, TEST_USER, gristmill_cert, wait_until};
use super::support::s;

/// Word count in `queue` (3 map tasks, one per file) whose 3 reduce tasks
/// each sleep `sleep_ms` first.
fn slow_chaos<'a>(text: &'a Path, out: &'a Path, queue: &'a str, sleep_ms: &'a str) -> Vec<&'a str> {
    vec![
        "--input",
        s(text),
        "--output",
        s(out),
        "--reducers",
        "3",
        // Each ~360 KB file weighs more than this with its open cost (64 KiB), so small-file
        // packing leaves one file per split: three map tasks.
        "--split-size",
        "400000",
        "--chaos-stage",
        "reduce",
        "--sleep",
        "1",
        "--sleep-ms",
        sleep_ms,
        "--always",
        "--queue",
        queue,
    ]
}

fn events(cluster: &Cluster, job: &str) -> Vec<Value> {
    let body = cluster.get(&format!("/api/jobs/{job}/events"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the events of {job} do not parse: {e}: {body}"))
}

/// The time of the first event named `name`.
fn first_ts(events: &[Value], name: &str) -> u64 {
    let event = events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name}: {events:?}"));
    event["ts_ms"].as_u64().expect("ts_ms")
}

#[test]
fn two_users_jobs_in_two_queues_share_a_small_cluster_and_preemption_gives_the_second_its_share() {
    let mut spec = ClusterSpec { workers: 2, slots: 1, ..ClusterSpec::default() };
    let queues = ["--queue", "etl:1", "--queue", "adhoc:1", "--preemption-timeout", "1s"];
    spec.driver_args.extend(queues.map(String::from));
    // No backups: every extra attempt below is a preemption's re-run.
    spec.driver_args.push("--no-speculation".into());
    let cluster = Cluster::start(spec);
    gristmill_cert(cluster.certs.as_deref().expect("a secured cluster"), &["create-client", "bob"]);
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = input_and_expected(dir.path());
    let (etl_out, adhoc_out) = (dir.path().join("etl"), dir.path().join("adhoc"));

    let etl = cluster.spawn("chaos", &slow_chaos(&text, &etl_out, "etl", "8000"));
    // Its maps are quick and its reduces sleep: wait until the reduces hold both slots, so
    // the adhoc job can only get one by preemption (not when a map ends).
    let etl_maps_done = || {
        let listed = cluster.cli(&["jobs", "--json"]);
        let jobs: Value = serde_json::from_slice(&listed.stdout).unwrap_or(Value::Null);
        jobs.as_array().and_then(|jobs| jobs.first()).is_some_and(|job| job["maps_done"] == 3)
    };
    wait_until("the etl job's reduces hold both slots", Duration::from_secs(60), || {
        etl_maps_done() && cluster.running_on(0) > 0 && cluster.running_on(1) > 0
    });
    let adhoc = cluster
        .spawn("chaos", &[&slow_chaos(&text, &adhoc_out, "adhoc", "8000")[..], &["--user", "bob"]].concat());
    wait_ok(etl);
    wait_ok(adhoc);
    assert_same_parts(&expected, &etl_out);
    assert_same_parts(&expected, &adhoc_out);

    let listed = cluster.cli(&["jobs", "--json"]);
    let jobs: Value = serde_json::from_slice(&listed.stdout).expect("gristmill jobs --json");
    let in_queue = |queue: &str| -> Value {
        let jobs = jobs.as_array().expect("a list of jobs");
        jobs.iter()
            .find(|j| j["queue"] == queue)
            .cloned()
            .unwrap_or_else(|| panic!("no job in {queue}: {jobs:?}"))
    };
    let (etl, adhoc) = (in_queue("etl"), in_queue("adhoc"));
    assert_eq!((etl["owner"].as_str(), adhoc["owner"].as_str()), (Some(TEST_USER), Some("bob")));
    assert!(etl["preempted_attempts"].as_u64() >= Some(1), "the etl job gave a slot up: {etl}");
    assert_eq!(etl["failed_attempts"], 0, "a preempted attempt is no failure: {etl}");
    assert_eq!((etl["state"].as_str(), adhoc["state"].as_str()), (Some("succeeded"), Some("succeeded")));

    let etl_events = events(&cluster, etl["job_id"].as_str().unwrap());
    let adhoc_events = events(&cluster, adhoc["job_id"].as_str().unwrap());
    let preempted = first_ts(&etl_events, "task_preempted");
    let etl_committed = first_ts(&etl_events, "committed");
    // adhoc got a slot while etl still ran: by the preemption, before etl finished.
    let adhoc_launched = first_ts(&adhoc_events, "task_launched");
    assert!(
        preempted <= adhoc_launched && adhoc_launched < etl_committed,
        "{etl_events:?}\n{adhoc_events:?}"
    );
    // The preempted task ran again in the etl job (a launch of attempt 1 after the preemption).
    let relaunched = etl_events.iter().any(|e| {
        e["event"] == "task_launched"
            && e["attempt"].as_u64() > Some(0)
            && e["ts_ms"].as_u64() >= Some(preempted)
    });
    assert!(relaunched, "{etl_events:?}");
}
