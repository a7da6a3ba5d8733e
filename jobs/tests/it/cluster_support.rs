//! A real cluster on 127.0.0.1 for tests: a `gristmill driver` and workers as separate
//! processes on free ports, killed when the fixture drops. Every wait is bounded.
//!
//! Clusters are secured as in production: the fixture creates a CA, a node certificate for
//! 127.0.0.1 and a client certificate for the user `tester` with `gristmill cert`, and every
//! process (driver, workers, job binaries, the CLI) runs with `--certs-dir`. Plaintext
//! clusters (loopback only) are started with `ClusterSpec { secured: false, .. }`.
//!
//! With `ClusterSpec { network: Some(hosts), .. }` every process runs on a host of its own
//! instead ([`Hosts`], network namespaces): the driver and job binaries on host 1, worker
//! `i` on host `2 + i`, each on its host's address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::netns::Hosts;
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
    driver: Option<Child>,
    driver_args: Vec<String>,
    driver_ip: String,
    workers: Vec<Option<Child>>,
    /// Each worker's shuffle address (part of its worker id).
    addresses: Vec<String>,
    /// Each worker's `--http` address (`/metrics`, `/healthz`, `/readyz`), when started
    /// with one ([`ClusterSpec::worker_http`]).
    pub worker_http: Vec<String>,
    /// `http://127.0.0.1:PORT` of the gRPC service.
    pub url: String,
    /// `127.0.0.1:PORT` of the status pages.
    pub http: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    /// The certificates directory of a secured cluster.
    pub certs: Option<PathBuf>,
    log_level: &'static str,
    log_to_files: bool,
    network: Option<Arc<Hosts>>,
}

/// The host of the driver and job binaries in a cluster on [`Hosts`].
pub const DRIVER_HOST: usize = 1;

/// The user whose client certificate the fixture's jobs and CLI calls present.
pub const TEST_USER: &str = "tester";

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
    /// Mutual TLS with certificates (the default), or plaintext on loopback.
    pub secured: bool,
    /// `RUST_LOG` of the driver and workers.
    pub log_level: &'static str,
    /// Their stderr goes to `driver.log` and `worker-N.log` in [`Cluster::dir`] instead of
    /// the test's stderr.
    pub log_to_files: bool,
    /// Run each process on a host of its own (see the module docs), not all on loopback.
    pub network: Option<Arc<Hosts>>,
    /// Give each worker `--http` on a free port of 127.0.0.1 ([`Cluster::worker_http`]).
    pub worker_http: bool,
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
            secured: true,
            log_level: "warn",
            log_to_files: false,
            network: None,
            worker_http: false,
        }
    }
}

/// Runs `gristmill cert ARGS --certs-dir DIR`, which must succeed.
pub fn gristmill_cert(dir: &Path, args: &[&str]) {
    let out = Command::new(cluster_bin("gristmill"))
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(dir)
        .env_remove("GRISTMILL_CERTS_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "gristmill cert {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A certificates directory with a CA, a node certificate for 127.0.0.1, localhost and
/// `hosts`, and a client certificate for [`TEST_USER`].
pub fn create_certs(dir: &Path, hosts: &[String]) {
    gristmill_cert(dir, &["create-ca"]);
    let names = [
        &["create-node", "127.0.0.1", "localhost"][..],
        &hosts.iter().map(String::as_str).collect::<Vec<_>>(),
    ];
    gristmill_cert(dir, &names.concat());
    gristmill_cert(dir, &["create-client", TEST_USER]);
}

impl Cluster {
    /// Starts a driver and `spec.workers` workers and waits until all are attached.
    pub fn start(spec: ClusterSpec) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = spec.secured.then(|| dir.path().join("certs"));
        let mut env = spec.env.clone();
        if let Some(certs) = &certs {
            create_certs(certs, &spec.network.as_ref().map(|h| h.ips()).unwrap_or_default());
            env.push(("GRISTMILL_CERTS_DIR".into(), certs.display().to_string()));
            env.push(("GRISTMILL_USER".into(), TEST_USER.into()));
        }
        let ip = spec.network.as_ref().map_or("127.0.0.1".into(), |h| h.ip(DRIVER_HOST));
        let mut cluster = Cluster {
            driver: None,
            driver_args: spec.driver_args,
            driver_ip: ip.clone(),
            workers: Vec::new(),
            addresses: Vec::new(),
            worker_http: Vec::new(),
            url: String::new(),
            http: String::new(),
            env,
            dir,
            certs,
            log_level: spec.log_level,
            log_to_files: spec.log_to_files,
            network: spec.network,
        };
        cluster.launch_driver(&format!("{ip}:0"), &format!("{ip}:0"));
        for _ in 0..spec.workers {
            if spec.worker_http {
                cluster.worker_http.push(free_address());
            }
            cluster.add_worker(spec.slots);
        }
        cluster.wait_for_workers(spec.workers);
        cluster
    }

    /// Starts the driver on `listen` and `http` (with the data dir in [`Cluster::dir`]) and
    /// waits for its address line.
    fn launch_driver(&mut self, listen: &str, http: &str) {
        let mut driver = self
            .command(DRIVER_HOST, &cluster_bin("gristmill"))
            .args(["driver", "--listen", listen, "--http", http, "--data-dir"])
            .arg(self.dir.path().join("driver"))
            .args(&self.driver_args)
            .env_remove("GRISTMILL_CERTS_DIR")
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", self.log_level)
            .stdout(Stdio::piped())
            .stderr(log_sink(self.dir.path(), "driver.log", self.log_to_files))
            .spawn()
            .expect("the driver starts");
        // "gristmill driver listening on IP:P (status http://127.0.0.1:Q/api/jobs)"
        let mut line = String::new();
        BufReader::new(driver.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let grpc = line.split_whitespace().nth(4).expect("the driver prints its address").to_owned();
        self.http =
            line.split("://").nth(1).and_then(|r| r.split('/').next()).expect("an http address").to_owned();
        let scheme = if self.certs.is_some() { "https" } else { "http" };
        self.url = format!("{scheme}://{grpc}");
        self.driver = Some(driver);
    }

    /// SIGKILLs the driver (a crash: nothing is flushed or cleaned up).
    pub fn kill_driver(&mut self) {
        let mut driver = self.driver.take().expect("the driver runs");
        driver.kill().unwrap();
        driver.wait().unwrap();
    }

    /// Starts the driver again on its data dir and its former ports (workers and followers
    /// reconnect to the same URL).
    pub fn restart_driver(&mut self) {
        assert!(self.driver.is_none(), "kill the driver first");
        let port = |addr: &str| addr.rsplit(':').next().unwrap().to_owned();
        let grpc_port = port(&self.url);
        let http_port = port(&self.http);
        let ip = self.driver_ip.clone();
        self.launch_driver(&format!("{ip}:{grpc_port}"), &format!("{ip}:{http_port}"));
    }

    /// Starts one more worker.
    pub fn add_worker(&mut self, slots: u32) {
        let i = self.workers.len();
        // A fresh host has every port free.
        let address = self.network.as_ref().map_or_else(free_address, |h| format!("{}:7100", h.ip(2 + i)));
        let child = self.spawn_worker(i, slots, &address);
        self.workers.push(Some(child));
        self.addresses.push(address);
    }

    /// Worker `i`'s shuffle address (where its `Shuffle` and `BinaryPeer` services listen).
    pub fn worker_address(&self, i: usize) -> String {
        self.addresses[i].clone()
    }

    /// Starts worker `i` again, on its data dir and address, after it was killed.
    pub fn restart_worker(&mut self, i: usize, slots: u32) {
        assert!(self.workers[i].is_none(), "kill worker {i} first");
        let address = self.addresses[i].clone();
        self.workers[i] = Some(self.spawn_worker(i, slots, &address));
    }

    fn spawn_worker(&self, i: usize, slots: u32, address: &str) -> Child {
        let http = self.worker_http.get(i).map(|addr| ["--http", addr.as_str()]);
        self.command(2 + i, &cluster_bin("gristmill-worker"))
            .args(http.iter().flatten())
            .args(["--driver", &self.url, "--slots", &slots.to_string(), "--listen", address, "--data-dir"])
            // Relative, as an operator may give it: the worker resolves it before tasks run in
            // their own directories.
            .arg(format!("worker-{i}"))
            .current_dir(self.dir.path())
            .env_remove("GRISTMILL_CERTS_DIR")
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", self.log_level)
            .stdout(Stdio::null())
            .stderr(log_sink(self.dir.path(), &format!("worker-{i}.log"), self.log_to_files))
            // Its own process group, so a test can freeze it with its tasks.
            .process_group(0)
            .spawn()
            .expect("a worker starts")
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

    /// A status page's body (over HTTPS with the test user's certificate when secured).
    pub fn get(&self, path: &str) -> String {
        let response = self.http_get(path, HttpAuth::Certificate);
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    }

    /// The whole response (status line, headers, body) to `GET path`, authenticated as told.
    pub fn http_get(&self, path: &str, auth: HttpAuth) -> String {
        self.http_get_at(&self.http, path, auth)
    }

    /// The whole response to `GET path` from the HTTP server at `addr` (the driver's, a
    /// worker's), over HTTPS when the cluster is secured, authenticated as told.
    pub fn http_get_at(&self, addr: &str, path: &str, auth: HttpAuth) -> String {
        let Ok(tcp) = self.connect(addr) else { return String::new() };
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let header = match &auth {
            HttpAuth::Token(token) => format!("Authorization: Bearer {token}\r\n"),
            _ => String::new(),
        };
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{header}\r\n");
        let mut response = Vec::new();
        match &self.certs {
            None => {
                let mut tcp = tcp;
                tcp.write_all(request.as_bytes()).unwrap();
                let _ = tcp.read_to_end(&mut response);
            }
            Some(certs) => {
                let config = https_config(certs, matches!(auth, HttpAuth::Certificate));
                let host = addr.rsplit_once(':').unwrap().0.to_owned();
                let name = rustls::pki_types::ServerName::try_from(host).unwrap();
                let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                if tls.write_all(request.as_bytes()).is_ok() {
                    let _ = tls.read_to_end(&mut response);
                }
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Runs a job binary against this cluster.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.run_program(&bin(name), args)
    }

    /// Runs the job binary at `program` (one built outside this package) against this cluster.
    pub fn run_program(&self, program: &Path, args: &[&str]) -> Output {
        self.command(DRIVER_HOST, program)
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
        self.spawn_on(DRIVER_HOST, name, args)
    }

    /// Starts a job binary in the background on host `h` of the network (a client's host).
    pub fn spawn_on(&self, h: usize, name: &str, args: &[&str]) -> Child {
        self.command(h, &bin(name))
            .args(args)
            .args(["--driver", &self.url])
            .envs(self.env.iter().cloned())
            .env("GRISTMILL_PROGRESS", "plain")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("job binary starts")
    }

    /// Runs `gristmill` (jobs, status, cancel) against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(DRIVER_HOST, &cluster_bin("gristmill"))
            .args(args)
            .envs(self.env.iter().cloned())
            .env("GRISTMILL_DRIVER", &self.url)
            .output()
            .unwrap()
    }

    /// A command running `program` on host `h` of the network, or here without one.
    fn command(&self, h: usize, program: &Path) -> Command {
        command(&self.network, h, program)
    }

    /// A connection to `addr` from the driver's host.
    fn connect(&self, addr: &str) -> std::io::Result<TcpStream> {
        let Some(hosts) = &self.network else { return TcpStream::connect(addr) };
        let addr = addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        hosts.connect(DRIVER_HOST, addr, Duration::from_secs(5))
    }

    /// The fixture's temporary directory (certificates, driver and worker data dirs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
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

    /// Worker `i`'s entry in the driver's `/api/workers` (its id, state, running attempts).
    pub fn worker_view(&self, i: usize) -> serde_json::Value {
        let workers: serde_json::Value = serde_json::from_str(&self.get("/api/workers")).unwrap_or_default();
        let suffix = format!("-{}", self.addresses[i]);
        let mine = workers.as_array().and_then(|all| {
            // The newest registration of this address (an earlier one may be listed as lost).
            all.iter().rev().find(|w| w["id"].as_str().is_some_and(|id| id.ends_with(&suffix))).cloned()
        });
        mine.unwrap_or_default()
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

/// A command running `program` on host `h` of `network`, or here without one.
fn command(network: &Option<Arc<Hosts>>, h: usize, program: &Path) -> Command {
    network.as_ref().map_or_else(|| Command::new(program), |hosts| hosts.command(h, program))
}

/// Where a daemon's stderr goes: a file in `dir`, or the test's stderr.
fn log_sink(dir: &Path, name: &str, to_file: bool) -> Stdio {
    // Appended: a restarted driver logs after its former self.
    let file = || std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
    if to_file { file().into() } else { Stdio::inherit() }
}

/// How a status page request authenticates.
pub enum HttpAuth {
    /// The test user's client certificate.
    Certificate,
    /// No certificate, this bearer token.
    Token(String),
    /// Neither.
    Nothing,
}

/// A TLS client trusting the cluster CA, presenting the test user's certificate if asked.
fn https_config(certs: &Path, with_certificate: bool) -> rustls::ClientConfig {
    let tls =
        gristmill::security::ClientTls::user(&gristmill::security::certs::CertsDir::new(certs), TEST_USER)
            .unwrap();
    let config = tls.rustls().unwrap();
    if with_certificate {
        return config;
    }
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A free port on 127.0.0.1 (bound, then released for the worker to take).
pub fn free_address() -> String {
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
        if let Some(driver) = &mut self.driver {
            let _ = driver.kill();
            let _ = driver.wait();
        }
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
