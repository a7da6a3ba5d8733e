//! `/metrics`, `/healthz` and `/readyz` of the driver and the workers, and live counters:
//! jobs run on a secured cluster, then the metrics are parsed with Prometheus's own Python
//! parser (`prometheus_client.parser`) and checked against the jobs, tasks and attempts the
//! driver's JSON pages report and the counters the committed manifests hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cluster_support::{Cluster, ClusterSpec, HttpAuth, cluster_bin, wait_until};
use super::support::{read_committed, run_python, s, write_text_files};

/// Samples of a scrape: `name{label="value",...}` (labels sorted) -> value.
type Samples = BTreeMap<String, f64>;

/// Parses the Prometheus text format with `prometheus_client.parser`.
pub(crate) fn parse_metrics(dir: &Path, text: &str) -> Samples {
    let file = dir.join(format!("scrape-{}.txt", text.len()));
    std::fs::write(&file, text).unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        samples[sample.name + ("{" + labels + "}" if labels else "")] = sample.value
print(json.dumps(samples))
"#;
    serde_json::from_str(&run_python(script, &[s(&file)])).unwrap()
}

/// The sum of the samples of `name` whose labels include all of `labels`.
pub(crate) fn sum(samples: &Samples, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| {
            let (sample, rest) = key.split_once('{').unwrap_or((key, ""));
            sample == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The body of a 200 response.
pub(crate) fn body_of(response: &str) -> &str {
    assert!(response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"), "{response}");
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn status_of(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn secured_cluster_with_worker_http() -> Cluster {
    // Everything fetched through the shuffle services, so bytes served = bytes fetched; no
    // backups on a slow host, so every attempt launched is one that wins.
    let env = vec![("GRISTMILL_NO_HOST_LOCAL_SHUFFLE".to_owned(), "true".to_owned())];
    let driver_args = ["--heartbeat-timeout", "3", "--no-speculation"].map(String::from).to_vec();
    Cluster::start(ClusterSpec { env, driver_args, worker_http: true, ..ClusterSpec::default() })
}

#[test]
fn driver_and_worker_metrics_count_the_jobs_run() {
    let cluster = secured_cluster_with_worker_http();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 3, 3000);
    let mut fetched = 0;
    for (i, reducers) in ["2", "3"].into_iter().enumerate() {
        let out = dir.path().join(format!("out-{i}"));
        let args =
            ["--input", s(&text), "--output", s(&out), "--reducers", reducers, "--split-size", "20000"];
        cluster.run_ok("wordcount", &args);
        fetched += read_committed(&out).manifest.counters.get("shuffle_fetched_bytes");
    }
    assert!(fetched > 0);
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    let jobs = jobs.as_array().unwrap();
    let total = |f: &dyn Fn(&serde_json::Value) -> u64| jobs.iter().map(f).sum::<u64>() as f64;
    let maps = total(&|j| j["maps"]["total"].as_u64().unwrap());
    let reduces = total(&|j| j["reduces"]["total"].as_u64().unwrap());
    let launched = total(&|j| j["attempts_launched"].as_u64().unwrap());
    assert!(maps >= 4.0, "several map tasks per job: {maps}");

    let driver = parse_metrics(dir.path(), body_of(&cluster.http_get("/metrics", HttpAuth::Certificate)));
    assert_eq!(sum(&driver, "gristmill_jobs_submitted_total", &[]), 2.0);
    assert_eq!(sum(&driver, "gristmill_jobs_ended_total", &["state=\"succeeded\""]), 2.0);
    assert_eq!(sum(&driver, "gristmill_jobs", &["state=\"succeeded\""]), 2.0);
    assert_eq!(sum(&driver, "gristmill_jobs", &["state=\"running\""]), 0.0);
    assert_eq!(sum(&driver, "gristmill_tasks", &[]), 0.0, "nothing pending or running");
    assert_eq!(sum(&driver, "gristmill_attempts_launched_total", &[]), launched);
    // One attempt per task, and it won.
    let finished = |labels: &[&str]| sum(&driver, "gristmill_attempts_finished_total", labels);
    assert_eq!(finished(&["kind=\"map\"", "outcome=\"succeeded\""]), maps);
    assert_eq!(finished(&["kind=\"reduce\"", "outcome=\"succeeded\""]), reduces);
    assert_eq!(launched, maps + reduces);
    assert_eq!(finished(&[]), launched);
    assert_eq!(sum(&driver, "gristmill_attempt_duration_seconds_count", &[]), launched);
    assert_eq!(sum(&driver, "gristmill_scheduling_latency_seconds_count", &[]), maps + reduces);
    assert_eq!(sum(&driver, "gristmill_commit_duration_seconds_count", &[]), 2.0);
    assert!(sum(&driver, "gristmill_commit_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(sum(&driver, "gristmill_workers", &["state=\"alive\""]), 2.0);
    assert_eq!(sum(&driver, "gristmill_workers", &["state=\"lost\""]), 0.0);
    assert!(sum(&driver, "gristmill_process_resident_memory_bytes", &[]) > 0.0);

    let mut started = 0.0;
    let (mut served, mut fetched_by_workers) = (0.0, 0.0);
    for addr in &cluster.worker_http {
        let worker =
            parse_metrics(dir.path(), body_of(&cluster.http_get_at(addr, "/metrics", HttpAuth::Certificate)));
        assert_eq!(sum(&worker, "gristmill_worker_slots", &[]), 2.0);
        assert_eq!(sum(&worker, "gristmill_worker_attached", &[]), 1.0);
        assert!(sum(&worker, "gristmill_worker_shuffle_disk_free_bytes", &[]) > 0.0);
        assert!(sum(&worker, "gristmill_process_resident_memory_bytes", &[]) > 0.0);
        assert!(sum(&worker, "gristmill_process_cpu_seconds_total", &[]) > 0.0);
        started += sum(&worker, "gristmill_worker_attempts_started_total", &[]);
        served += sum(&worker, "gristmill_worker_shuffle_served_bytes_total", &[]);
        fetched_by_workers += sum(&worker, "gristmill_worker_shuffle_fetched_bytes_total", &[]);
        assert_eq!(sum(&worker, "gristmill_worker_attempts_finished_total", &["outcome=\"failed\""]), 0.0);
    }
    assert_eq!(started, launched, "every attempt launched was started by a worker");
    assert_eq!(
        served, fetched as f64,
        "bytes the shuffle services sent = bytes the winning reducers fetched"
    );
    assert_eq!(fetched_by_workers, fetched as f64, "the workers' reducers fetched what the jobs counted");
    // What the workers use is shown on /api/workers too.
    let workers: serde_json::Value = serde_json::from_str(&cluster.get("/api/workers")).unwrap();
    for worker in workers.as_array().unwrap() {
        assert!(worker["resources"]["rss_bytes"].as_u64().unwrap() > 0, "{worker}");
        assert!(worker["resources"]["shuffle_disk_free_bytes"].as_u64().unwrap() > 0, "{worker}");
    }
}

#[test]
fn health_endpoints_answer_anyone_and_metrics_need_a_certificate_or_a_token() {
    let cluster = secured_cluster_with_worker_http();
    let worker = cluster.worker_http[0].clone();
    for addr in [&cluster.http, &worker] {
        for path in ["/healthz", "/readyz"] {
            let response = cluster.http_get_at(addr, path, HttpAuth::Nothing);
            assert_eq!(status_of(&response), 200, "{addr}{path}: {response}");
        }
        let refused = cluster.http_get_at(addr, "/metrics", HttpAuth::Nothing);
        assert_eq!(status_of(&refused), 401, "{addr}/metrics without credentials: {refused}");
        assert!(!refused.contains("gristmill_"), "{refused}");
        let wrong = cluster.http_get_at(addr, "/metrics", HttpAuth::Token("not-a-token".into()));
        assert_eq!(status_of(&wrong), 401, "{wrong}");
    }
    // A Prometheus scraper with a bearer token.
    let certs = cluster.certs.clone().unwrap();
    let out = Command::new(cluster_bin("gristmill"))
        .args(["cert", "create-token", "prometheus", "--certs-dir", s(&certs)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    for addr in [&cluster.http, &worker] {
        let scraped = cluster.http_get_at(addr, "/metrics", HttpAuth::Token(token.clone()));
        assert!(body_of(&scraped).contains("gristmill_process_cpu_seconds_total"), "{scraped}");
    }

    // A worker that cannot reach its driver is alive but not ready.
    let http = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let data = cluster.dir().join("detached-worker");
    let mut detached = Command::new(cluster_bin("gristmill-worker"))
        .args(["--driver", &format!("https://{nowhere}"), "--http", &http, "--data-dir", s(&data)])
        .env("GRISTMILL_CERTS_DIR", &certs)
        .env("RUST_LOG", "error")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the detached worker serves /healthz", Duration::from_secs(20), || {
        status_of(&cluster.http_get_at(&http, "/healthz", HttpAuth::Nothing)) == 200
    });
    let not_ready = cluster.http_get_at(&http, "/readyz", HttpAuth::Nothing);
    assert_eq!(status_of(&not_ready), 503, "{not_ready}");
    let metrics = body_of(&cluster.http_get_at(&http, "/metrics", HttpAuth::Certificate)).to_owned();
    assert_eq!(sum(&parse_metrics(cluster.dir(), &metrics), "gristmill_worker_attached", &[]), 0.0);
    detached.kill().unwrap();
    detached.wait().unwrap();
}

#[test]
fn live_counters_move_while_a_job_runs_and_final_counters_count_winners_only() {
    let cluster = secured_cluster_with_worker_http();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 2, 3000);
    let out = dir.path().join("out");
    // Reducers sleep after fetching their partitions: the job runs while they hold them.
    let args = [
        "--input",
        s(&text),
        "--output",
        s(&out),
        "--reducers",
        "2",
        "--split-size",
        "30000",
        "--chaos-stage",
        "reduce",
        "--sleep",
        "1",
        "--sleep-ms",
        "5000",
        "--sleep-late",
        "--always",
        "--detach",
    ];
    let job_id = cluster.run_ok("chaos", &args).trim().lines().last().unwrap().trim().to_owned();
    let mut seen = None;
    wait_until("live counters of the running reducers", Duration::from_secs(60), || {
        let view: serde_json::Value =
            serde_json::from_str(&cluster.get(&format!("/api/jobs/{job_id}"))).unwrap_or_default();
        let live = view["live_counters"]["shuffle_fetched_bytes"].as_u64().unwrap_or(0);
        if view["state"]["kind"] == "running" && live > 0 {
            seen = Some(view);
        }
        seen.is_some()
    });
    let running = seen.unwrap();
    // No reducer has won yet: the final counters have none of their bytes.
    assert_eq!(running["counters"]["shuffle_fetched_bytes"].as_u64().unwrap_or(0), 0, "{running}");
    assert!(running["live_counters"]["map_input_records"].as_u64().unwrap() > 0, "{running}");
    wait_until("the job to end", Duration::from_secs(120), || {
        let view: serde_json::Value =
            serde_json::from_str(&cluster.get(&format!("/api/jobs/{job_id}"))).unwrap_or_default();
        view["state"]["kind"] == "succeeded"
    });
    let ended: serde_json::Value =
        serde_json::from_str(&cluster.get(&format!("/api/jobs/{job_id}"))).unwrap();
    assert_eq!(ended["live_counters"], ended["counters"], "{ended}");
    let fetched = read_committed(&out).manifest.counters.get("shuffle_fetched_bytes");
    assert_eq!(ended["counters"]["shuffle_fetched_bytes"].as_u64().unwrap(), fetched);
    // The running reducers had fetched their partitions: at most the winners' total.
    assert!(running["live_counters"]["shuffle_fetched_bytes"].as_u64().unwrap() <= fetched, "{running}");
}
