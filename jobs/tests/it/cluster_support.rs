//! A real cluster on 127.0.0.1 for tests: a `gristmill driver` and workers as separate
//! processes on free ports, killed when the fixture drops. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::bin;

/// `gristmill` and `gristmill-worker`, built next to the job binaries (`scripts/test` runs
/// `cargo build --workspace --bins` first).
pub fn cluster_bin(name: &str) -> PathBuf {
    let path = bin("wordcount").with_file_name(name);
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// A driver and its workers.
pub struct Cluster {
    driver: Child,
    workers: Vec<Option<Child>>,
    /// Each worker's shuffle address (part of its worker id).
    addresses: Vec<String>,
    /// `http://127.0.0.1:PORT` of the gRPC service.
    pub url: String,
    /// `127.0.0.1:PORT` of the status pages.
    pub http: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

/// How to start a cluster.
pub struct ClusterSpec {
    /// Workers to start.
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
    /// Extra driver flags.
    pub driver_args: Vec<String>,
    /// Environment of every process (driver, workers, job binaries), e.g. AWS_* for S3.
    pub env: Vec<(String, String)>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            workers: 2,
            slots: 2,
            driver_args: vec![
                "--heartbeat-timeout".into(),
                "3".into(),
                "--speculation-after".into(),
                "3".into(),
            ],
            env: Vec::new(),
        }
    }
}

impl Cluster {
    /// Starts a driver and `spec.workers` workers and waits until all are attached.
    pub fn start(spec: ClusterSpec) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut driver = Command::new(cluster_bin("gristmill"))
            .args(["driver", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("driver"))
            .args(&spec.driver_args)
            .envs(spec.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the driver starts");
        // "gristmill driver listening on 127.0.0.1:P (status http://127.0.0.1:Q/api/jobs)"
        let mut line = String::new();
        BufReader::new(driver.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let grpc = line.split_whitespace().nth(4).expect("the driver prints its address").to_owned();
        let http = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("an http address")
            .to_owned();
        let mut cluster = Cluster {
            driver,
            workers: Vec::new(),
            addresses: Vec::new(),
            url: format!("http://{grpc}"),
            http,
            env: spec.env,
            dir,
        };
        for _ in 0..spec.workers {
            cluster.add_worker(spec.slots);
        }
        cluster.wait_for_workers(spec.workers);
        cluster
    }

    /// Starts one more worker.
    pub fn add_worker(&mut self, slots: u32) {
        let i = self.workers.len();
        let address = free_address();
        let child = Command::new(cluster_bin("gristmill-worker"))
            .args(["--driver", &self.url, "--slots", &slots.to_string(), "--listen", &address, "--data-dir"])
            .arg(self.dir.path().join(format!("worker-{i}")))
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group, so a test can freeze it with its tasks.
            .process_group(0)
            .spawn()
            .expect("a worker starts");
        self.workers.push(Some(child));
        self.addresses.push(address);
    }

    /// Waits until `n` workers are alive.
    pub fn wait_for_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.alive_workers() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{n} workers did not attach within 60 s: {}", self.get("/api/workers"));
    }

    /// Workers the driver sees alive.
    pub fn alive_workers(&self) -> usize {
        let workers: serde_json::Value = serde_json::from_str(&self.get("/api/workers")).unwrap_or_default();
        workers.as_array().map_or(0, |w| w.iter().filter(|w| w["state"] == "alive").count())
    }

    /// A status page's body.
    pub fn get(&self, path: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(&self.http) else { return String::new() };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.http).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    }

    /// Runs a job binary against this cluster.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        Command::new(bin(name))
            .args(args)
            .args(["--driver", &self.url])
            .envs(self.env.iter().cloned())
            .env("GRISTMILL_PROGRESS", "off")
            .output()
            .expect("job binary starts")
    }

    /// Runs a job that must succeed; returns its stdout.
    pub fn run_ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.run(name, args);
        assert!(
            out.status.success(),
            "{name} {args:?} failed in cluster mode: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts a job binary in the background against this cluster.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Child {
        Command::new(bin(name))
            .args(args)
            .args(["--driver", &self.url])
            .env("GRISTMILL_PROGRESS", "plain")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("job binary starts")
    }

    /// Runs `gristmill` (jobs, status, cancel) against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(cluster_bin("gristmill")).args(args).env("GRISTMILL_DRIVER", &self.url).output().unwrap()
    }

    /// Worker `i`'s process id.
    pub fn worker_pid(&self, i: usize) -> u32 {
        self.workers[i].as_ref().expect("the worker runs").id()
    }

    /// Waits (bounded) for worker `i` to exit; returns its exit status.
    pub fn wait_worker_exit(&mut self, i: usize, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.workers[i].as_mut().expect("the worker runs");
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.workers[i] = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("worker {i} did not exit within {limit:?}");
    }

    /// Attempts running on worker `i`, as the driver sees them.
    pub fn running_on(&self, i: usize) -> usize {
        let workers: serde_json::Value = serde_json::from_str(&self.get("/api/workers")).unwrap_or_default();
        let suffix = format!("-{}", self.addresses[i]);
        workers.as_array().map_or(0, |all| {
            all.iter()
                .filter(|w| w["state"] == "alive" && w["id"].as_str().is_some_and(|id| id.ends_with(&suffix)))
                .map(|w| w["running"].as_array().map_or(0, Vec::len))
                .sum()
        })
    }

    /// Sends `signal` (e.g. "KILL") to worker `i`; `group` sends it to its tasks too.
    pub fn signal_worker(&mut self, i: usize, signal: &str, group: bool) {
        let pid = self.worker_pid(i);
        let target = if group { format!("-{pid}") } else { pid.to_string() };
        let status = Command::new("kill").args([&format!("-{signal}"), "--", &target]).status().unwrap();
        assert!(status.success());
        if signal == "KILL" {
            let mut child = self.workers[i].take().unwrap();
            let _ = child.wait();
        }
    }

    /// Files left in the workers' shuffle directories.
    pub fn shuffle_files(&self) -> usize {
        (0..self.workers.len())
            .map(|i| count_files(&self.dir.path().join(format!("worker-{i}")).join("shuffle")))
            .sum()
    }
}

/// A free port on 127.0.0.1 (bound, then released for the worker to take).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for worker in self.workers.iter_mut().flatten() {
            let _ = Command::new("kill").args(["-CONT", "--", &format!("-{}", worker.id())]).status();
            let _ = worker.kill();
            let _ = worker.wait();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Waits (bounded) until `done` holds.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}
