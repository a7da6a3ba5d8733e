//! The driver's web UI on a real cluster: the HTML pages and their JSON twins after a job
//! with failed attempts, checked against the input files (bytes and lines read) and against
//! each other; the refusal of an unauthenticated peer; and the job page of a running job in
//! a real browser (headless Chromium, against a plaintext loopback driver: it cannot present
//! a client certificate or a bearer token from its command line).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::cluster_support::{Cluster, ClusterSpec, HttpAuth, wait_until};
use super::support::{s, write_text_files};

fn json(cluster: &Cluster, path: &str) -> Value {
    let body = cluster.get(path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// The id of the only job the cluster ran.
fn only_job(cluster: &Cluster) -> String {
    let jobs = json(cluster, "/api/jobs");
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    jobs[0]["id"].as_str().unwrap().to_owned()
}

fn chaos_args<'a>(text: &'a Path, out: &'a Path, faults: &[&'a str]) -> Vec<&'a str> {
    let base = ["--input", s(text), "--output", s(out), "--reducers", "3", "--split-size", "30000"];
    [&base[..], faults].concat()
}

/// The sum of a metric over the winning attempts of one kind of task.
fn winners_sum(detail: &Value, kind: &str, metric: &str) -> u64 {
    let tasks = detail["tasks"].as_array().unwrap().iter().filter(|t| t["task"]["kind"] == kind);
    tasks.map(|t| t["metrics"][metric].as_u64().unwrap_or_else(|| panic!("{metric} of {t}"))).sum()
}

#[test]
fn pages_and_their_json_twins_show_the_job_its_tasks_attempts_and_failed_attempts_errors() {
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    let files = write_text_files(&text, 3, 2000);
    let out = dir.path().join("out");
    // Every map's first attempt fails; the retries succeed.
    cluster.run_ok("chaos", &chaos_args(&text, &out, &["--chaos-stage", "map", "--fail", "1"]));
    let id = only_job(&cluster);

    // The JSON twin of the job page, against the input files.
    let detail = json(&cluster, &format!("/api/jobs/{id}"));
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["state"]["kind"], "succeeded");
    let tasks = detail["tasks"].as_array().unwrap();
    let maps = detail["maps"]["total"].as_u64().unwrap();
    assert!(maps >= 3, "{detail}");
    assert_eq!(tasks.len() as u64, maps + 3, "maps and 3 reduces");
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let lines: u64 = files.iter().map(|f| std::fs::read_to_string(f).unwrap().lines().count() as u64).sum();
    assert_eq!(winners_sum(&detail, "Map", "input_bytes"), bytes, "the splits cover the files");
    assert_eq!(winners_sum(&detail, "Map", "input_rows"), lines);
    let counters = &detail["counters"];
    assert_eq!(counters["map_input_records"].as_u64(), Some(lines));
    assert_eq!(
        winners_sum(&detail, "Reduce", "input_rows"),
        counters["reduce_input_records"].as_u64().unwrap()
    );
    assert!(winners_sum(&detail, "Map", "shuffle_written_bytes") > 0);
    assert!(winners_sum(&detail, "Reduce", "shuffle_read_bytes") > 0);
    let attempts = detail["attempts"].as_array().unwrap();
    let failed: Vec<&Value> = attempts.iter().filter(|a| a["outcome"] == "failed").collect();
    assert_eq!(failed.len() as u64, maps, "one failed first attempt per map: {detail}");
    for a in &failed {
        assert_eq!(a["attempt"], 0);
        assert!(a["error"].as_str().unwrap().contains("fails on purpose"), "{a}");
        assert!(a["metrics"].is_null(), "a failed attempt reports no counters");
    }
    let succeeded = attempts.iter().filter(|a| a["outcome"] == "succeeded").count() as u64;
    assert_eq!(succeeded, maps + 3);
    assert!(detail["diagnosis"]["lost"]["attempts"].as_u64().unwrap() >= maps, "{detail}");
    assert_eq!(detail["map_phase"]["done"].as_u64(), Some(maps));

    // The job page holds the same: every task, its split, each failed attempt's error and log link.
    let page = cluster.get(&format!("/jobs/{id}"));
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains(&id), "{page}");
    for t in tasks {
        let name =
            format!("{} task {}", t["task"]["kind"].as_str().unwrap().to_lowercase(), t["task"]["index"]);
        assert!(page.contains(&format!(">{name}<")), "{name} in the task table");
        if let Some(split) = t["split"].as_str() {
            assert!(page.contains(split), "{split}");
        }
    }
    for a in &failed {
        let (task, error) = (&a["task"], a["error"].as_str().unwrap());
        assert!(page.contains(error), "{error}");
        let slug = format!("{}-{}", task["kind"].as_str().unwrap().to_lowercase(), task["index"]);
        let link = format!("/jobs/{id}/tasks/{slug}/attempts/0/log");
        assert!(page.contains(&link), "the log link of {slug}");
        // The link leads to the attempt's stderr, kept on its worker, with the failure in it.
        let log = cluster.get(&link);
        assert!(log.contains("fails on purpose"), "{link}: {log}");
    }
    for needle in
        ["id=\"tasks\"", "<svg", "id=\"timeline\"", "Why is it slow", "retries:", "map_input_records"]
    {
        assert!(page.contains(needle), "the job page holds {needle}");
    }
    // One bar per attempt in the timeline.
    let svg = &page[page.find("id=\"timeline\"").unwrap()..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    assert_eq!(svg.matches("<rect").count(), attempts.len());

    // The cluster page and its twin; the worker pages and theirs.
    let overview = json(&cluster, "/api/cluster");
    let ids = |jobs: &Value| jobs.as_array().unwrap().iter().map(|j| j["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&overview["jobs"]), ids(&json(&cluster, "/api/jobs")));
    let index = cluster.get("/");
    assert!(index.contains(&id) && index.contains("Ended jobs"), "{index}");
    let workers = overview["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let mut attempts_on_workers = 0;
    for w in workers {
        let wid = w["id"].as_str().unwrap();
        assert!(index.contains(wid), "{wid} on /");
        let encoded = wid.replace(':', "%3A");
        let twin = json(&cluster, &format!("/api/workers/{encoded}"));
        assert_eq!(twin["id"], wid);
        let here = twin["attempts"].as_array().unwrap();
        assert!(here.iter().all(|a| a["job"] == id.as_str() && a["worker"] == wid), "{twin}");
        attempts_on_workers += here.len();
        // The worker walks its data directory at most once a second (see worker/src/observe.rs)
        // and reports it with a heartbeat: the walk before the binary came may still stand.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut resources = twin["resources"].clone();
        while resources["data_dir_bytes"].as_u64().unwrap_or(0) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            resources = json(&cluster, &format!("/api/workers/{encoded}"))["resources"].clone();
        }
        let data_dir_bytes = resources["data_dir_bytes"].as_u64().unwrap_or(0);
        assert!(data_dir_bytes > 0, "the worker reports its disk use (the job binary at least): {resources}");
        let page = cluster.get(&format!("/workers/{encoded}"));
        assert!(
            page.contains(wid)
                && page.contains(&id)
                && page.contains("id=\"worker-attempts\"")
                && page.contains("in its data directory"),
            "{page}"
        );
    }
    assert_eq!(attempts_on_workers, attempts.len(), "every attempt ran on one of the workers");

    let openapi = json(&cluster, "/api/openapi.json");
    assert!(openapi["paths"]["/api/jobs/{id}"].is_object(), "{openapi}");

    // Nothing without a certificate or a token.
    for path in [format!("/jobs/{id}"), "/".to_owned(), "/api/cluster".to_owned(), format!("/api/jobs/{id}")]
    {
        let denied = cluster.http_get(&path, HttpAuth::Nothing);
        assert!(denied.starts_with("HTTP/1.0 401") || denied.starts_with("HTTP/1.1 401"), "{path}: {denied}");
        assert!(!denied.contains(&id), "{path}");
    }
    assert!(cluster.get("/jobs/no-such-job").contains("No job no-such-job"));
}

/// The Chromium binary, or `None` where it is missing outside CI (in CI a missing browser
/// fails the test: `scripts/test` installs it).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing (scripts/test installs it)"
        );
        eprintln!("chromium is missing: the browser test needs it (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `args` (bounded by `timeout`); returns its stdout.
fn browse(browser: &str, profile: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args([
            "90",
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--window-size=1400,1000", "--hide-scrollbars"])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium starts");
    assert!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_real_browser_renders_the_job_page_of_a_running_job() {
    let Some(browser) = chromium() else { return };
    let cluster = Cluster::start(ClusterSpec { secured: false, ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 3, 2000);
    let out = dir.path().join("out");
    // Map attempts fail at first, then sleep: the job runs long enough to be looked at.
    let faults = [
        "--chaos-stage",
        "map",
        "--fail",
        "0.4",
        "--sleep",
        "0.6",
        "--sleep-ms",
        "6000",
        "--chaos-seed",
        "7",
    ];
    let job = cluster.spawn("chaos", &chaos_args(&text, &out, &faults));
    wait_until("a job with a finished map and more to run", Duration::from_secs(60), || {
        let jobs: Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap_or_default();
        jobs[0]["maps"]["done"].as_u64().unwrap_or(0) >= 1 && jobs[0]["state"]["kind"] == "running"
    });
    let id = only_job(&cluster);
    let url = format!("http://{}/jobs/{id}", cluster.http);
    let png = dir.path().join("job-page.png");
    browse(browser, &dir.path().join("profile"), &url, &[&format!("--screenshot={}", png.display())]);
    let dom = browse(browser, &dir.path().join("profile"), &url, &["--dump-dom"]);
    let shot = std::fs::read(&png).expect("the screenshot");
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let (width, height) = (
        u32::from_be_bytes(shot[16..20].try_into().unwrap()),
        u32::from_be_bytes(shot[20..24].try_into().unwrap()),
    );
    assert_eq!((width, height), (1400, 1000));
    assert!(shot.len() > 30_000, "a page with content, not a blank one: {} bytes", shot.len());
    if let Ok(keep) = std::env::var("GRISTMILL_UI_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
    assert!(dom.contains(&id), "{dom}");
    assert!(dom.contains("id=\"tasks\"") && dom.contains("map task 0"), "the task table: {dom}");
    assert!(
        dom.contains("<svg") && dom.contains("id=\"timeline\"") && dom.contains("<rect"),
        "the timeline: {dom}"
    );
    assert!(dom.contains("data-live=\"true\""), "a running job's page refreshes itself");
    let finished = job.wait_with_output().unwrap();
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
}
