//! Job history and task logs (#21): each job's event log on the driver, ended jobs listed and
//! their events served after a driver restart, task stderr kept on the workers and read with
//! `gristmill logs` (only by the job's owner), `--log-format json`, exit codes and `--json`
//! of `gristmill wait` / `status` / `jobs`, and `--version`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::cluster_failures::input_and_expected;
use super::cluster_support::{
    Cluster, ClusterSpec, HttpAuth, TEST_USER, cluster_bin, gristmill_cert, wait_until,
};
use super::support::{bin, read_committed, s};

/// The message of a chaos task failing on purpose (its stderr, and the event's error).
const FAILS_ON_PURPOSE: &str = "fails on purpose";

/// The job id a job binary printed ("submitted NAME as ID to URL").
fn submitted_id(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("submitted ")).unwrap_or_else(|| panic!("{stderr}"));
    line.split_whitespace().nth(3).expect("a job id").to_owned()
}

/// Chaos word count over `text` whose map tasks fail their first attempt (or every attempt).
fn chaos(cluster: &Cluster, text: &Path, out: &Path, always: bool) -> Output {
    let mut args = vec!["--input", s(text), "--output", s(out), "--reducers", "3", "--split-size", "30000"];
    args.extend(["--fail", "1"]);
    if always {
        args.push("--always");
    }
    cluster.run("chaos", &args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn events(cluster: &Cluster, job: &str) -> Vec<Value> {
    let body = cluster.get(&format!("/api/jobs/{job}/events"));
    serde_json::from_str::<Value>(&body)
        .unwrap_or_else(|e| panic!("the events of {job} do not parse: {e}: {body}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// `gristmill ARGS` against the cluster as `user` (with that user's client certificate).
fn cli_as(cluster: &Cluster, user: &str, args: &[&str]) -> Output {
    Command::new(cluster_bin("gristmill"))
        .args(args)
        .args(["--driver", &cluster.url, "--certs-dir", s(cluster.certs.as_ref().unwrap()), "--user", user])
        .env_remove("GRISTMILL_CERTS_DIR")
        .env_remove("GRISTMILL_USER")
        .output()
        .unwrap()
}

#[test]
fn events_task_logs_exit_codes_and_history_survive_a_driver_restart() {
    let mut cluster = Cluster::start(ClusterSpec { log_to_files: true, ..ClusterSpec::default() });
    let (text, expected) = input_and_expected(cluster.dir());
    let out = cluster.dir().join("out");
    let ok = chaos(&cluster, &text, &out, false);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let good = submitted_id(&ok);
    let failing = chaos(&cluster, &text, &cluster.dir().join("out-failed"), true);
    assert_eq!(failing.status.code(), Some(1), "{}", String::from_utf8_lossy(&failing.stderr));
    let bad = submitted_id(&failing);

    // The event log: submitted, every map's failed first attempt and its retry, committed.
    let log = events(&cluster, &good);
    assert_eq!(log.first().unwrap()["event"], "submitted", "{log:?}");
    assert_eq!(log[0]["owner"], "tester");
    assert!(log[0].get("secret").is_none() && !log[0].to_string().contains("job_secret"));
    let failed = named(&log, "task_failed");
    let map_failures: Vec<_> =
        failed.iter().filter(|e| e["task"].as_str().unwrap().starts_with("map ")).collect();
    assert!(map_failures.len() >= 12, "each of the 12 maps failed once: {failed:?}");
    assert!(failed.iter().all(|e| e["error"].as_str().unwrap().contains(FAILS_ON_PURPOSE)), "{failed:?}");
    assert!(failed.iter().all(|e| e["duration_ms"].is_u64() && e["worker"].is_string()));
    let launched = named(&log, "task_launched");
    assert!(launched.len() >= 12 * 2 + 3, "{} launches", launched.len());
    let finished = named(&log, "task_finished");
    assert!(finished.len() >= 12 + 3, "{finished:?}");
    assert!(
        finished.iter().all(|e| e["counters"].as_object().is_some_and(|c| !c.is_empty())),
        "{finished:?}"
    );
    let committed = named(&log, "committed");
    assert_eq!(committed.len(), 1);
    // The rows of a fault-free local run of the same word count.
    let expected_rows = read_committed(&expected).manifest.rows;
    assert_eq!(committed[0]["rows"].as_u64(), Some(expected_rows), "{:?}", committed[0]);
    // After every attempt that counted (a backup still running may be killed later).
    let at = |e: &Value| log.iter().position(|x| x == e).unwrap();
    assert!(finished.iter().all(|f| at(f) < at(committed[0])), "{log:?}");
    assert!(cluster.dir().join(format!("driver/events/{good}.jsonl")).is_file());
    let bad_log = events(&cluster, &bad);
    let bad_end = named(&bad_log, "failed");
    assert_eq!(bad_end.len(), 1, "{bad_log:?}");
    assert!(bad_end[0]["error"].as_str().unwrap().contains(FAILS_ON_PURPOSE), "{bad_log:?}");

    // Exit codes and --json.
    for (verb, job, code) in
        [("wait", &good, 0), ("status", &good, 0), ("wait", &bad, 1), ("status", &bad, 1)]
    {
        let out = cluster.cli(&[verb, job]);
        assert_eq!(out.status.code(), Some(code), "gristmill {verb} {job}: {}", stdout(&out));
    }
    assert_eq!(cluster.cli(&["status", "job-none"]).status.code(), Some(2));
    let status: Value = serde_json::from_str(&stdout(&cluster.cli(&["status", &good, "--json"]))).unwrap();
    assert_eq!(
        (status["job_id"].as_str(), status["state"].as_str()),
        (Some(good.as_str()), Some("succeeded"))
    );
    assert_eq!(status["rows"].as_u64(), Some(expected_rows));

    // Task logs: the failed first attempt's stderr, from the worker that ran it.
    let logs = cluster.cli(&["logs", &good]);
    assert!(logs.status.success(), "{}", String::from_utf8_lossy(&logs.stderr));
    let text_out = stdout(&logs);
    assert!(text_out.contains("==> map 0 attempt 0 on worker w"), "{text_out}");
    assert!(text_out.contains(&format!("chaos: map task 0 attempt a0 {FAILS_ON_PURPOSE}")), "{text_out}");
    let one = stdout(&cluster.cli(&["logs", &good, "--task", "m3", "--attempt", "0"]));
    assert!(one.contains("==> map 3 attempt 0") && !one.contains("==> map 0 "), "{one}");
    assert!(one.contains(&format!("map task 3 attempt a0 {FAILS_ON_PURPOSE}")), "{one}");
    let page = cluster.http_get(&format!("/jobs/{good}/tasks/m3/attempts/0/log"), HttpAuth::Certificate);
    assert!(status_is(&page, 200) && page.contains(FAILS_ON_PURPOSE), "{page}");

    // Another user may not read them, with a certificate or a token.
    let certs = cluster.certs.clone().unwrap();
    gristmill_cert(&certs, &["create-client", "mallory"]);
    let refused = cli_as(&cluster, "mallory", &["logs", &good]);
    assert_eq!(refused.status.code(), Some(2));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("may not read the task logs") && !why.contains(FAILS_ON_PURPOSE), "{why}");
    let token = token_for(&certs, "mallory");
    let page = cluster.http_get(&format!("/jobs/{good}/tasks/m3/attempts/0/log"), HttpAuth::Token(token));
    assert!(status_is(&page, 403) && !page.contains(FAILS_ON_PURPOSE), "{page}");
    assert!(cli_as(&cluster, "tester", &["logs", &good]).status.success(), "the owner may");

    // After a restart: both ended jobs listed, their events served, their logs readable.
    cluster.kill_driver();
    cluster.restart_driver();
    let listed: Value = serde_json::from_str(&stdout(&cluster.cli(&["jobs", "--json"]))).unwrap();
    let state_of = |job: &str| {
        listed.as_array().unwrap().iter().find(|j| j["job_id"] == job).map(|j| j["state"].clone())
    };
    assert_eq!(state_of(&good), Some("succeeded".into()), "{listed}");
    assert_eq!(state_of(&bad), Some("failed".into()), "{listed}");
    let api: Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    let ids: Vec<&str> = api.as_array().unwrap().iter().filter_map(|j| j["id"].as_str()).collect();
    assert!(ids.contains(&good.as_str()) && ids.contains(&bad.as_str()), "{api}");
    assert_eq!(events(&cluster, &good), log, "the same events after the restart");
    cluster.wait_for_workers(2);
    let again = stdout(&cluster.cli(&["logs", &good, "--task", "map 3", "--attempt", "0"]));
    assert!(again.contains(FAILS_ON_PURPOSE), "{again}");
    assert_eq!(cluster.cli(&["status", &bad]).status.code(), Some(1));
}

fn status_is(response: &str, code: u16) -> bool {
    response.starts_with(&format!("HTTP/1.0 {code}")) || response.starts_with(&format!("HTTP/1.1 {code}"))
}

fn token_for(certs: &Path, user: &str) -> String {
    let out = Command::new(cluster_bin("gristmill"))
        .args(["cert", "create-token", user, "--certs-dir", s(certs)])
        .output()
        .unwrap();
    assert!(out.status.success());
    stdout(&out).trim().to_owned()
}

#[test]
fn json_logs_carry_the_task_s_ids_and_log_files_hold_no_colour() {
    let env = vec![("GRISTMILL_LOG_FORMAT".to_owned(), "json".to_owned())];
    let spec =
        ClusterSpec { env, log_level: "warn,gristmill=info", log_to_files: true, ..ClusterSpec::default() };
    let cluster = Cluster::start(spec);
    let (text, _) = input_and_expected(cluster.dir());
    let ok = chaos(&cluster, &text, &cluster.dir().join("out"), false);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let job = submitted_id(&ok);

    for file in ["driver.log", "worker-0.log", "worker-1.log"] {
        let log = std::fs::read_to_string(cluster.dir().join(file)).unwrap();
        assert!(!log.contains("\x1b["), "{file} holds ANSI escape codes");
        assert!(log.lines().count() > 0, "{file} is empty");
        for line in log.lines() {
            let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: {e}: {line}"));
            assert!(parsed["level"].is_string() && parsed["timestamp"].is_string(), "{line}");
        }
    }
    // Every line a task wrote is JSON naming its job, task and attempt.
    let logs = cluster.cli(&["logs", &job]);
    assert!(logs.status.success(), "{}", String::from_utf8_lossy(&logs.stderr));
    let all = stdout(&logs);
    assert!(!all.contains("\x1b["));
    let mut task_lines = 0;
    let mut failures = 0;
    let mut header = String::new();
    for line in all.lines() {
        if line.starts_with("==> ") {
            header = line.to_owned();
            continue;
        }
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let span = &parsed["span"];
        assert_eq!(span["job"], job.as_str(), "{line}");
        // "==> map 3 attempt 0 on worker ...": the span names the same task and attempt.
        let task = header.trim_start_matches("==> ").split(" attempt ").next().unwrap();
        assert_eq!(span["task"], task, "{line} under {header}");
        let attempt: u64 =
            header.split(" attempt ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(span["attempt"].as_u64(), Some(attempt), "{line}");
        task_lines += 1;
        failures +=
            usize::from(parsed["fields"]["error"].as_str().is_some_and(|e| e.contains(FAILS_ON_PURPOSE)));
    }
    assert!(task_lines >= 12 * 2, "{all}");
    assert!(failures >= 12, "each map's first attempt logged its failure: {all}");
}

#[test]
fn every_binary_prints_its_version_with_the_git_revision() {
    let binaries = [
        cluster_bin("gristmill"),
        cluster_bin("gristmill-worker"),
        bin("wordcount"),
        bin("groupby"),
        bin("teragen"),
    ];
    let mut revisions = Vec::new();
    for binary in binaries {
        let out = Command::new(&binary).arg("--version").output().unwrap();
        assert!(out.status.success(), "{} --version", binary.display());
        let line = stdout(&out);
        let revision = line.split("(git ").nth(1).and_then(|r| r.split(')').next()).unwrap_or_default();
        assert!(!revision.is_empty() && revision != "unknown", "{}: {line}", binary.display());
        revisions.push(revision.to_owned());
    }
    revisions.dedup();
    assert_eq!(revisions.len(), 1, "one revision: {revisions:?}");
    // A commit of this repository (perhaps older than HEAD: the build re-runs on checkouts only).
    let known = Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", &format!("{}^{{commit}}", revisions[0])])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(known.status.success(), "{} is not a commit here", revisions[0]);
}

/// Starts a chaos job whose map tasks sleep 20 s, following it with stdin not a terminal.
fn spawn_slow_chaos(
    cluster: &Cluster,
    text: &Path,
    out: &Path,
    extra: &[&str],
    stdin: std::process::Stdio,
) -> std::process::Child {
    let certs = cluster.certs.as_ref().unwrap();
    Command::new(bin("chaos"))
        .args([
            "--input",
            s(text),
            "--output",
            s(out),
            "--reducers",
            "2",
            "--sleep",
            "1",
            "--sleep-ms",
            "20000",
        ])
        .args(["--driver", &cluster.url, "--certs-dir", s(certs), "--user", TEST_USER, "--progress", "off"])
        .args(extra)
        .env_remove("GRISTMILL_CERTS_DIR")
        .stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The id of the job that runs now.
fn running_job(cluster: &Cluster) -> String {
    let mut id = String::new();
    wait_until("a job runs", Duration::from_secs(30), || {
        let jobs: Value =
            serde_json::from_str(&stdout(&cluster.cli(&["jobs", "--json"]))).unwrap_or_default();
        let running = jobs.as_array().and_then(|all| all.iter().find(|j| j["state"] == "running").cloned());
        id = running.map(|j| j["job_id"].as_str().unwrap().to_owned()).unwrap_or_default();
        !id.is_empty()
    });
    id
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn ctrl_c_detaches_from_a_job_or_cancels_it_when_asked() {
    let cluster = Cluster::start(ClusterSpec::default());
    let (text, _) = input_and_expected(cluster.dir());

    // Not on a terminal: the submitter detaches and the job keeps running.
    let child = spawn_slow_chaos(&cluster, &text, &cluster.dir().join("out-1"), &[], Stdio::null());
    let job = running_job(&cluster);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("detached: job {job} keeps running")) && stderr.contains("gristmill wait"),
        "{stderr}"
    );
    let status: Value = serde_json::from_str(&stdout(&cluster.cli(&["status", &job, "--json"]))).unwrap();
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(cluster.cli(&["cancel", &job]).status.code(), Some(0));
    assert_eq!(cluster.cli(&["wait", &job, "--quiet"]).status.code(), Some(1), "cancelled");

    // --cancel-on-interrupt: the job is cancelled and the submitter exits with its end.
    let child = spawn_slow_chaos(
        &cluster,
        &text,
        &cluster.dir().join("out-2"),
        &["--cancel-on-interrupt"],
        Stdio::null(),
    );
    let job = running_job(&cluster);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cancelling job {job}")), "{stderr}");
    let status = cluster.cli(&["status", &job]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stdout(&status).contains("cancelled"), "{}", stdout(&status));

    // On a terminal: the submitter asks, and "y" cancels the job.
    let (mut terminal, stdin) = pseudo_terminal();
    let child = spawn_slow_chaos(&cluster, &text, &cluster.dir().join("out-3"), &[], stdin);
    let job = running_job(&cluster);
    interrupt(&child);
    // The terminal holds the answer until the submitter reads its line.
    terminal.write_all(b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cancel job {job}? [y/N]")), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout(&cluster.cli(&["status", &job])).contains("cancelled"));
}

/// A pseudo-terminal: its controlling side, and its terminal side as a child's stdin.
#[allow(unsafe_code)]
fn pseudo_terminal() -> (std::fs::File, Stdio) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut controller, mut terminal) = (-1, -1);
    let (name, termios, size) = (std::ptr::null_mut(), std::ptr::null(), std::ptr::null());
    // SAFETY: openpty writes two new file descriptors into the two ints; the null name,
    // termios and window size are documented as allowed.
    let done = unsafe { libc::openpty(&mut controller, &mut terminal, name, termios, size) };
    assert_eq!(done, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe { (std::fs::File::from_raw_fd(controller), Stdio::from(OwnedFd::from_raw_fd(terminal))) }
}
