//! `gristmill-worker`: the worker daemon of cluster mode. See the crate docs of
//! `gristmill_worker` for what it does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use gristmill::security::certs::CertsDir;
use gristmill::security::{ListenerLimits, ServerSecurity};
use gristmill::settings::{Section, SettingsError, parse_layered, render};
use gristmill_worker::WorkerConfig;

/// Runs tasks of submitted job binaries for a Gristmill driver.
#[derive(Parser, Debug)]
#[command(name = "gristmill-worker", version = gristmill::VERSION, about)]
struct Args {
    /// The driver's URL, e.g. https://driver:7077 (http://127.0.0.1:7077 without
    /// certificates).
    #[arg(long, env = "GRISTMILL_DRIVER")]
    driver: Option<String>,
    /// Certificates directory (ca.crt, node.crt, node.key): the session with the driver, binary
    /// fetches and the shuffle service are mutual TLS. Without it, only loopback is served.
    #[arg(long, env = "GRISTMILL_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// Serve the shuffle service in plaintext off loopback (anyone who reaches it can read
    /// map output).
    #[arg(long, env = "GRISTMILL_INSECURE")]
    insecure: bool,
    /// Open connections one peer address may hold on the shuffle service.
    #[arg(long, env = "GRISTMILL_MAX_CONNECTIONS_PER_PEER", default_value_t = 256)]
    max_connections_per_peer: usize,
    /// Where the shuffle service listens (port 0 picks a free one).
    #[arg(long, env = "GRISTMILL_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    listen: String,
    /// The host:port reducers on other machines use to reach the shuffle service
    /// [default: the listening address].
    #[arg(long, env = "GRISTMILL_WORKER_ADVERTISE")]
    advertise: Option<String>,
    /// Tasks run at once [default: the number of cores].
    #[arg(long, env = "GRISTMILL_WORKER_SLOTS")]
    slots: Option<u32>,
    /// Directory for cached job binaries, map output and task scratch space
    /// [default: a fresh directory under the system temp dir].
    #[arg(long, env = "GRISTMILL_WORKER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Give up after this many seconds without reaching the driver. Meanwhile the worker
    /// keeps its map output and attaches again as soon as the driver (perhaps restarted on
    /// its journal) is back.
    #[arg(long, env = "GRISTMILL_DRIVER_TIMEOUT", default_value_t = 600)]
    driver_timeout: u64,
    /// Fetch all map output through the shuffle service, also from workers on this host
    /// (whose output reducers otherwise read straight from their shuffle directories).
    #[arg(long, env = "GRISTMILL_NO_HOST_LOCAL_SHUFFLE")]
    no_host_local_shuffle: bool,
    /// Export OpenTelemetry spans (this worker's and its task processes') with OTLP over
    /// HTTP to this base URL [default: $OTEL_EXPORTER_OTLP_ENDPOINT; none].
    #[arg(long, value_name = "URL", env = "GRISTMILL_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (off by default).
    /// With certificates it is HTTPS with the node certificate, and /metrics wants a client
    /// certificate of the cluster CA or a bearer token (gristmill cert create-token USER).
    #[arg(long, env = "GRISTMILL_WORKER_HTTP")]
    http: Option<String>,
    /// How long each attempt's stdout and stderr are kept after its job's data is dropped
    /// (e.g. 30m, 1h); `gristmill logs` reads them meanwhile.
    #[arg(long, env = "GRISTMILL_WORKER_LOG_RETENTION", value_parser = gristmill::config::parse_duration, default_value = "1h", value_name = "DURATION")]
    log_retention: std::time::Duration,
    /// How log lines are written: text, or json (one object a line); task processes log in
    /// the same format.
    #[arg(long, value_enum, default_value = "text", env = gristmill::logging::LOG_FORMAT_ENV)]
    log_format: gristmill::logging::LogFormat,
    /// Memory the worker's task processes may use together, shared evenly by the slots: each
    /// task keeps at most its share in buffers and in-memory runs, past which it spills
    /// (e.g. 6GiB) [default: 40% of the memory limit of the worker's cgroup (its container),
    /// or of the machine's memory].
    #[arg(long, env = "GRISTMILL_WORKER_MEMORY_LIMIT", value_parser = gristmill::config::parse_byte_size, value_name = "BYTES")]
    memory_limit: Option<u64>,
    /// On SIGTERM, how long running tasks may still run (they are then re-run elsewhere)
    /// before the worker, which takes no new tasks meanwhile and serves its map output until
    /// no running job needs it, exits; 0 stops at once. A second SIGTERM always stops at once.
    #[arg(long, env = "GRISTMILL_WORKER_DRAIN_TIMEOUT", value_parser = gristmill::config::parse_duration, default_value = "5m", value_name = "DURATION")]
    drain_timeout: std::time::Duration,
    /// Where attempts run: process (a new process per attempt) or executor (one long-lived
    /// process per job on this worker runs the job's attempts on its threads).
    #[arg(long, value_enum, default_value = "process", env = "GRISTMILL_WORKER_TASK_ISOLATION")]
    task_isolation: gristmill_worker::TaskIsolation,
    /// The configuration file: its [worker] table sets what no flag or environment variable
    /// does [default: gristmill.toml in --data-dir, if there].
    #[arg(long, env = "GRISTMILL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration (each value with its source) and exit.
    #[arg(long)]
    print_config: bool,
}

/// Where the worker's settings are in the configuration file.
const SETTINGS: Section = Section { table: "worker", subcommand: None };

fn main() -> ExitCode {
    let (args, layered) = match parse_layered(Args::command(), std::env::args_os().collect(), SETTINGS)
        .and_then(|layered| Ok((Args::from_arg_matches(&layered.matches)?, layered)))
    {
        Ok(parsed) => parsed,
        Err(SettingsError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("gristmill-worker: error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        if let Some(file) = &layered.file {
            println!("# configuration file: {}", file.display());
        }
        print!("{}", render(SETTINGS.table, &layered.settings));
        return ExitCode::SUCCESS;
    }
    let Some(driver) = args.driver else {
        eprintln!(
            "gristmill-worker: error: no driver: give --driver URL, GRISTMILL_DRIVER or `driver` in [worker] of the configuration file"
        );
        return ExitCode::from(2);
    };
    let otlp_endpoint = gristmill::telemetry::endpoint(args.otlp_endpoint.as_deref());
    gristmill::logging::init(args.log_format, "info", "gristmill-worker", otlp_endpoint.clone());
    let slots =
        args.slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("gristmill-worker-{}", std::process::id())));
    let security = ServerSecurity {
        certs_dir: args.certs_dir.map(CertsDir::new),
        insecure: args.insecure,
        limits: ListenerLimits {
            connections_per_peer: args.max_connections_per_peer.max(1),
            ..ListenerLimits::default()
        },
    };
    let config = WorkerConfig {
        driver,
        security,
        listen: args.listen,
        advertise: args.advertise,
        slots: slots.max(1),
        data_dir,
        driver_timeout: std::time::Duration::from_secs(args.driver_timeout),
        host_local_shuffle: !args.no_host_local_shuffle,
        otlp_endpoint,
        http: args.http,
        log_retention: args.log_retention,
        memory_limit: args.memory_limit.unwrap_or_else(gristmill::config::default_memory_limit),
        drain_timeout: args.drain_timeout,
        task_isolation: args.task_isolation,
    };
    let result = gristmill_worker::run(config);
    gristmill::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gristmill-worker: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting has an environment variable, for containers and unit files.
    #[test]
    fn every_flag_has_a_gristmill_environment_variable() {
        let command = Args::command();
        let settings: Vec<_> =
            command.get_arguments().filter(|a| gristmill::settings::is_setting(a)).collect();
        assert!(settings.len() > 10, "the worker's flags are found");
        for arg in settings {
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            assert!(env.starts_with("GRISTMILL_"), "--{} has no GRISTMILL_ variable", arg.get_id());
        }
    }
}
