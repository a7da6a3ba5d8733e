//! Secure by default, in real processes on 127.0.0.1: plaintext only on loopback, mutual
//! TLS everywhere else, each refusal a clear one-line error, and no secret on disk or in
//! logs. (The gRPC refusals are also tested in-process in the engine's driver tests.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster_support::{Cluster, ClusterSpec, HttpAuth, TEST_USER, cluster_bin, gristmill_cert};
use super::support::{s, write_text_files};

/// Runs `gristmill ARGS` with `env`, no inherited certificates; returns (success, stderr).
fn gristmill(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(cluster_bin("gristmill"))
        .args(args)
        .env_remove("GRISTMILL_CERTS_DIR")
        .env_remove("GRISTMILL_USER")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The one error line of a failed command.
fn error_line(stderr: &str) -> &str {
    stderr.lines().rev().find(|l| l.starts_with("error:") || l.contains("error:")).unwrap_or("")
}

#[test]
fn plaintext_is_refused_off_loopback_and_insecure_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (ok, stderr) = gristmill(&["driver", "--listen", "0.0.0.0:0", "--data-dir", s(&data)], &[]);
    assert!(!ok, "the driver must refuse plaintext on 0.0.0.0");
    let line = error_line(&stderr);
    assert!(
        line.contains("refusing to serve plaintext on 0.0.0.0:0") && line.contains("--certs-dir"),
        "{stderr}"
    );

    let worker = Command::new(cluster_bin("gristmill-worker"))
        .args(["--driver", "http://127.0.0.1:9", "--listen", "0.0.0.0:0", "--data-dir", s(&data)])
        .env_remove("GRISTMILL_CERTS_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&worker.stderr);
    assert!(!worker.status.success());
    assert!(stderr.contains("refusing to serve plaintext on 0.0.0.0:0"), "{stderr}");

    // --insecure warns on every start (here on loopback, so no traffic leaves the host).
    let mut driver = Command::new(cluster_bin("gristmill"))
        .args(["driver", "--listen", "127.0.0.1:0", "--insecure", "--data-dir", s(&data)])
        .env_remove("GRISTMILL_CERTS_DIR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = driver.stderr.take().unwrap();
    let mut first = String::new();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let n = stderr.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = driver.kill();
    let _ = driver.wait();
    first.push_str(&reader.join().unwrap());
    assert!(first.contains("--insecure"), "a warning on start: {first}");
}

#[test]
fn status_pages_need_a_certificate_or_a_token() {
    let cluster = Cluster::start(ClusterSpec { workers: 1, ..ClusterSpec::default() });
    let certs = cluster.certs.clone().unwrap();
    let denied = cluster.http_get("/api/jobs", HttpAuth::Nothing);
    assert!(denied.starts_with("HTTP/1.0 401") || denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(!denied.contains("\"owner\""));

    let out = Command::new(cluster_bin("gristmill"))
        .args(["cert", "create-token", "viewer", "--certs-dir", s(&certs)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!std::fs::read_to_string(certs.join("tokens")).unwrap().contains(&token), "stored hashed");
    let with_token = cluster.http_get("/api/workers", HttpAuth::Token(token.clone()));
    assert!(with_token.contains(" 200 ") && with_token.contains("\"alive\""), "{with_token}");
    let wrong = cluster.http_get("/api/workers", HttpAuth::Token(format!("{token}0")));
    assert!(wrong.contains(" 401 "), "{wrong}");
    let with_cert = cluster.http_get("/api/workers", HttpAuth::Certificate);
    assert!(with_cert.contains(" 200 "), "{with_cert}");
}

#[test]
fn clients_without_a_valid_certificate_are_refused_with_one_line() {
    let cluster = Cluster::start(ClusterSpec { workers: 1, ..ClusterSpec::default() });
    let certs = cluster.certs.clone().unwrap();
    let url = cluster.url.as_str();

    // No certificates: told to give --certs-dir.
    let (ok, stderr) = gristmill(&["jobs", "--driver", url], &[]);
    assert!(!ok);
    assert!(error_line(&stderr).contains("--certs-dir"), "{stderr}");

    // A client certificate of another CA.
    let foreign = tempfile::tempdir().unwrap();
    gristmill_cert(foreign.path(), &["create-ca"]);
    gristmill_cert(foreign.path(), &["create-client", TEST_USER]);
    std::fs::copy(certs.join("ca.crt"), foreign.path().join("ca.crt")).unwrap();
    let (ok, stderr) = gristmill(&["jobs", "--driver", url, "--certs-dir", s(foreign.path())], &[]);
    assert!(!ok, "a certificate of another CA is refused");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // An expired certificate of the cluster's CA.
    let expired = gristmill::security::certs::Validity { from_days: -30, until_days: -1 };
    let dir = gristmill::security::certs::CertsDir::new(&certs);
    gristmill::security::certs::create_client_valid(&dir, "expired", expired, false).unwrap();
    let (ok, stderr) =
        gristmill(&["jobs", "--driver", url, "--certs-dir", s(&certs), "--user", "expired"], &[]);
    assert!(!ok, "an expired certificate is refused: {stderr}");

    // A node certificate may not act as a client.
    let node_as_client = tempfile::tempdir().unwrap();
    for (from, to) in
        [("ca.crt", "ca.crt"), ("node.crt", "client.node2.crt"), ("node.key", "client.node2.key")]
    {
        std::fs::copy(certs.join(from), node_as_client.path().join(to)).unwrap();
    }
    let (ok, stderr) = gristmill(&["jobs", "--driver", url, "--certs-dir", s(node_as_client.path())], &[]);
    assert!(!ok);
    assert!(error_line(&stderr).contains("needs a client certificate"), "{stderr}");

    // The right certificate works.
    let (ok, stderr) =
        gristmill(&["jobs", "--driver", url, "--certs-dir", s(&certs), "--user", TEST_USER], &[]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_worker_presenting_a_client_certificate_cannot_attach() {
    let cluster = Cluster::start(ClusterSpec { workers: 0, ..ClusterSpec::default() });
    let certs = cluster.certs.clone().unwrap();
    let fake = tempfile::tempdir().unwrap();
    for (from, to) in
        [("ca.crt", "ca.crt"), ("client.tester.crt", "node.crt"), ("client.tester.key", "node.key")]
    {
        std::fs::copy(certs.join(from), fake.path().join(to)).unwrap();
    }
    let out = Command::new(cluster_bin("gristmill-worker"))
        .args(["--driver", &cluster.url, "--driver-timeout", "2", "--certs-dir", s(fake.path())])
        .arg("--data-dir")
        .arg(fake.path().join("data"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("user tester may not attach as a worker"), "{stderr}");
    assert_eq!(cluster.alive_workers(), 0);
}

#[test]
fn users_cancel_only_their_own_jobs() {
    let cluster = Cluster::start(ClusterSpec { workers: 1, ..ClusterSpec::default() });
    let certs = cluster.certs.clone().unwrap();
    gristmill_cert(&certs, &["create-client", "mallory"]);
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 2, 200);
    let out =
        cluster.run("wordcount", &["--input", s(&text), "--output", s(&dir.path().join("out")), "--detach"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let listed = cluster.cli(&["jobs"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(TEST_USER), "jobs show their owner");
    let (ok, stderr) = gristmill(
        &["cancel", &job, "--driver", &cluster.url, "--certs-dir", s(&certs), "--user", "mallory"],
        &[],
    );
    assert!(!ok);
    let line = error_line(&stderr);
    assert!(line.contains("user mallory may not cancel job") && line.contains(TEST_USER), "{stderr}");
    let own = cluster.cli(&["cancel", &job]);
    assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    Scanner::default().scan(dir, needle)
}

/// Scans directories again and again, skipping files unchanged (length, modification time)
/// since they were found clean: the job binaries are large.
#[derive(Default)]
struct Scanner {
    clean: std::collections::HashMap<std::path::PathBuf, (u64, std::time::SystemTime)>,
}

impl Scanner {
    fn scan(&mut self, dir: &Path, needle: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return found };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                found.extend(self.scan(&path, needle));
                continue;
            }
            let stamp = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if self.clean.get(&path) == Some(&stamp) {
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) if bytes.windows(needle.len()).any(|w| w == needle) => {
                    found.push(path.display().to_string())
                }
                Ok(_) => {
                    self.clean.insert(path, stamp);
                }
                Err(_) => {}
            }
        }
        found
    }
}

#[test]
fn storage_secrets_never_reach_disk_logs_or_pages() {
    let canary = format!("canary{}", gristmill::security::secret::random_hex(12));
    let spec = ClusterSpec {
        log_level: "debug,h2=info,hyper=info,tonic=info,rustls=info",
        log_to_files: true,
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(spec);
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    write_text_files(&text, 3, 3000);
    let output = dir.path().join("out");
    let option = format!("aws_secret_access_key={canary}");
    let args = [
        "--input",
        s(&text),
        "--output",
        s(&output),
        "--reducers",
        "3",
        "--split-size",
        "20000",
        "--storage-option",
        &option,
    ];
    let mut job = cluster.spawn("wordcount", &args);
    // During the job: the driver's and workers' directories (binaries, shuffle, task
    // scratch space) and their logs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut scans = 0;
    let mut scanner = Scanner::default();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the job did not end");
        let found = scanner.scan(cluster.dir(), canary.as_bytes());
        assert!(found.is_empty(), "the secret is on disk while the job runs: {found:?}");
        scans += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = job.wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(scans > 0);
    for text in [String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)] {
        assert!(!text.contains(&canary), "the submitter printed the secret");
    }
    // After: every file of the cluster (logs included), the output, the status pages.
    assert!(cluster.dir().join("driver.log").is_file());
    let found = files_containing(cluster.dir(), canary.as_bytes());
    assert!(found.is_empty(), "the secret is on disk: {found:?}");
    assert!(files_containing(&output, canary.as_bytes()).is_empty(), "the output holds the secret");
    for page in ["/api/jobs", "/api/workers"] {
        assert!(!cluster.get(page).contains(&canary), "{page} shows the secret");
    }
    let jobs = cluster.get("/api/jobs");
    let id = jobs.split("\"id\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    assert!(!cluster.get(&format!("/api/jobs/{id}")).contains(&canary));
    let status = cluster.cli(&["status", &id]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains(&canary));
}
