//! `gristmill up`: a whole cluster on this machine in one command, for trying Gristmill and
//! for development. A driver and `--workers` workers run as child processes of `up`, secured
//! with certificates of a CA made in `DATA_DIR/certs` (kept for the next `up`); their logs go
//! to `DATA_DIR/logs`. Ctrl-C (SIGINT) or SIGTERM stops them all; so does the end of `up`
//! by any other means, since each child gets SIGTERM when `up` dies (`PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use gristmill::security::certs::{self, CertsDir};

/// How long children get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often `up` looks whether a child died.
const POLL: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct UpArgs {
    /// Workers to start.
    #[arg(long, env = "GRISTMILL_UP_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Task slots of each worker [default: the cores divided among the workers].
    #[arg(long, env = "GRISTMILL_UP_SLOTS")]
    slots: Option<u32>,
    /// Where the driver's journal and binaries, the workers' data, the certificates and the
    /// logs are kept.
    #[arg(long, env = "GRISTMILL_UP_DATA_DIR", default_value = "gristmill-up")]
    data_dir: PathBuf,
    /// Where the driver's gRPC service listens (port 0: any free port).
    #[arg(long, env = "GRISTMILL_UP_LISTEN", default_value = "127.0.0.1:7077")]
    listen: String,
    /// Where the web UI is served (port 0: any free port).
    #[arg(long, env = "GRISTMILL_UP_HTTP", default_value = "127.0.0.1:8080")]
    http: String,
    /// Plaintext on loopback, without certificates.
    #[arg(long, env = "GRISTMILL_UP_INSECURE")]
    insecure: bool,
}

/// Why `up` could not start its cluster.
#[derive(Debug, thiserror::Error)]
enum UpError {
    #[error("{what}: {cause}")]
    Setup { what: String, cause: String },
    #[error("the driver did not say where it listens (see {log})")]
    DriverSilent { log: String },
}

fn setup(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpError {
    let what = what.into();
    move |e| UpError::Setup { what, cause: e.to_string() }
}

/// `gristmill-worker` (or another Gristmill binary) beside this one, else on `PATH`.
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(name))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs the cluster until a signal stops it (exit 0) or one of its processes dies (exit 1).
pub async fn run(args: UpArgs) -> ExitCode {
    let mut children = Vec::new();
    let started = start(&args, &mut children);
    let code = match started {
        Ok(()) => supervise(&mut children).await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    stop(&mut children);
    code
}

/// A process `up` started, with the name it is reported by.
struct Daemon {
    name: String,
    child: Child,
}

fn start(args: &UpArgs, children: &mut Vec<Daemon>) -> Result<(), UpError> {
    let dir = std::path::absolute(&args.data_dir).map_err(setup("the data directory"))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(setup(format!("creating {}", logs.display())))?;
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "gristmill".into());
    let certs = (!args.insecure).then(|| dir.join("certs"));
    if let Some(certs) = &certs {
        ensure_certs(certs, &user)?;
    }
    let security = |command: &mut Command| {
        command.env_remove("GRISTMILL_CERTS_DIR").env_remove("GRISTMILL_CONFIG");
        match &certs {
            Some(certs) => command.arg("--certs-dir").arg(certs),
            None => command,
        };
    };

    let driver_log = logs.join("driver.log");
    let mut driver = Command::new(sibling_binary("gristmill"));
    driver
        .args(["driver", "--listen", &args.listen, "--http", &args.http, "--data-dir"])
        .arg(dir.join("driver"));
    security(&mut driver);
    let mut driver = spawn(driver, "driver", &driver_log)?;
    let line = first_line(&mut driver.child).trim_end().to_owned();
    children.push(driver);
    // "gristmill driver listening on IP:P (status SCHEME://IP:Q/api/jobs)"
    let log = driver_log.display().to_string();
    let grpc = line.split_whitespace().nth(4).ok_or(UpError::DriverSilent { log: log.clone() })?.to_owned();
    let ui = line.split_once("(status ").and_then(|(_, rest)| rest.strip_suffix("/api/jobs)"));
    let ui = ui.ok_or(UpError::DriverSilent { log })?.to_owned();
    let scheme = if certs.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{grpc}");

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = args.slots.unwrap_or((cores / args.workers.max(1)).max(1) as u32);
    for i in 0..args.workers {
        let mut worker = Command::new(sibling_binary("gristmill-worker"));
        worker.arg("--driver").arg(&url).arg("--slots").arg(slots.to_string());
        worker.arg("--data-dir").arg(dir.join(format!("worker-{i}")));
        // The whole cluster stops together: a worker has no one to drain to.
        worker.args(["--drain-timeout", "0"]);
        security(&mut worker);
        let name = format!("worker {i}");
        children.push(spawn(worker, &name, &logs.join(format!("worker-{i}.log")))?);
    }

    say(&format!("GRISTMILL_DRIVER={url}"));
    if let Some(certs) = &certs {
        say(&format!("GRISTMILL_CERTS_DIR={}", certs.display()));
        say(&format!("GRISTMILL_USER={user}"));
    }
    say(&format!("# web UI: {ui}/"));
    if let Some(certs) = &certs {
        say(&format!(
            "#   (a token for it: gristmill cert create-token {user} --certs-dir {})",
            certs.display()
        ));
    }
    let workers = args.workers;
    say(&format!(
        "# {workers} workers with {slots} slots each; logs in {}; Ctrl-C stops them all",
        logs.display()
    ));
    Ok(())
}

/// Prints a line for the user; a closed stdout (a script that read what it needed) does not
/// stop the cluster.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A CA, a node certificate for this machine's loopback names and a client certificate for
/// `user`, unless an earlier `up` made them.
fn ensure_certs(dir: &Path, user: &str) -> Result<(), UpError> {
    let certs = CertsDir::new(dir);
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e: gristmill::security::SecurityError| UpError::Setup { what, cause: e.to_string() }
    };
    if !dir.join("ca.crt").exists() {
        certs::create_ca(&certs, false).map_err(fail("creating the CA"))?;
    }
    if !dir.join("node.crt").exists() {
        let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        certs::create_node(&certs, &hosts, false).map_err(fail("creating the node certificate"))?;
    }
    if !dir.join(format!("client.{user}.crt")).exists() {
        certs::create_client(&certs, user, false).map_err(fail("creating the client certificate"))?;
    }
    Ok(())
}

/// Starts `command` in a process group of its own (a Ctrl-C at the terminal reaches `up`
/// alone, which stops the cluster in order), its stderr in `log`, and SIGTERM for it when
/// `up` dies.
fn spawn(mut command: Command, name: &str, log: &Path) -> Result<Daemon, UpError> {
    let log_file = std::fs::File::create(log).map_err(setup(format!("creating {}", log.display())))?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file).process_group(0);
    exit_with_parent(&mut command);
    let child =
        command.spawn().map_err(setup(format!("starting the {name} ({:?})", command.get_program())))?;
    Ok(Daemon { name: name.to_owned(), child })
}

/// Asks the kernel to SIGTERM the child when `up` dies, even by SIGKILL. The signal follows
/// the death of the spawning *thread*: children are spawned from the main thread, which
/// lives as long as `up`.
#[allow(unsafe_code)]
fn exit_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl, getppid
    // and _exit, which are async-signal-safe; it touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // `up` died before prctl: nobody would stop this child.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// The first line the child writes on stdout (the driver's address line); the rest is
/// drained on a thread so the child never blocks on a full pipe.
fn first_line(child: &mut Child) -> String {
    let Some(stdout) = child.stdout.take() else { return String::new() };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    line
}

/// Waits for SIGINT or SIGTERM (exit 0) or the death of a child (exit 1).
async fn supervise(children: &mut [Daemon]) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        eprintln!("error: cannot watch for signals");
        return ExitCode::FAILURE;
    };
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = interrupt.recv() => return ExitCode::SUCCESS,
            _ = terminate.recv() => return ExitCode::SUCCESS,
            _ = poll.tick() => {
                for daemon in children.iter_mut() {
                    if let Ok(Some(status)) = daemon.child.try_wait() {
                        eprintln!("error: the {} exited ({status}); stopping the cluster", daemon.name);
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
}

/// SIGTERM to the workers, then (once they ended) to the driver, so no worker sees its
/// driver go first; SIGKILL to what still runs after the grace time.
fn stop(children: &mut Vec<Daemon>) {
    // The driver is the first child; the workers follow.
    let first_worker = children.len().min(1);
    let (driver, workers) = children.split_at_mut(first_worker);
    stop_all(workers);
    stop_all(driver);
    children.clear();
}

fn stop_all(daemons: &mut [Daemon]) {
    for daemon in daemons.iter() {
        terminate(&daemon.child);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && daemons.iter_mut().any(|d| matches!(d.child.try_wait(), Ok(None))) {
        std::thread::sleep(POLL / 2);
    }
    for daemon in daemons.iter_mut() {
        if matches!(daemon.child.try_wait(), Ok(None)) {
            eprintln!("the {} did not stop in {STOP_GRACE:?}: killed", daemon.name);
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
    }
}

/// Sends SIGTERM to a child that has not been reaped.
#[allow(unsafe_code)]
fn terminate(child: &Child) {
    // SAFETY: kill(2) with the pid of our own unreaped child: it cannot name another process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}
