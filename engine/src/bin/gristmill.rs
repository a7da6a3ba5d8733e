//! `gristmill`: the cluster's command line: run a driver, list, inspect and cancel jobs.
//!
//! ```text
//! gristmill driver --listen 127.0.0.1:7077 --http 127.0.0.1:8080
//! gristmill jobs | gristmill status JOB | gristmill wait JOB | gristmill cancel JOB
//! gristmill logs JOB [--task T] [--attempt A] [--stdout]
//! gristmill cert create-ca --certs-dir certs     # then create-node, create-client, create-token
//! gristmill config show [driver|worker] [FLAGS]  # the effective settings and their sources
//! gristmill up --workers 2                       # a secured cluster on this machine
//! ```

#[path = "gristmill/client.rs"]
mod client;
#[path = "gristmill/config_show.rs"]
mod config_show;
#[path = "gristmill/up.rs"]
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use gristmill::cluster::rpc::DriverEndpoint;
use gristmill::config::{parse_byte_size, parse_duration};
use gristmill::driver::{
    BinaryDistribution, BinaryLimits, DEFAULT_MAX_WORKER_SLOTS, DEFAULT_PEER_FANOUT, DriverConfig,
    HistoryLimits, serve,
};
use gristmill::logging::LogFormat;
use gristmill::scheduler::{QueueConfig, SchedulerConfig};
use gristmill::security::certs::{self, CertsDir};
use gristmill::security::{ListenerLimits, ServerSecurity, client_tls, tokens};
use gristmill::settings::{Section, SettingsError, parse_layered};

/// Gristmill cluster commands.
#[derive(Parser)]
#[command(name = "gristmill", version = gristmill::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Export OpenTelemetry spans (the driver's jobs, phases and task attempts) with OTLP
    /// over HTTP to this base URL [default: $OTEL_EXPORTER_OTLP_ENDPOINT; none].
    #[arg(long, global = true, value_name = "URL", env = "GRISTMILL_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// How log lines are written: text, or json (one object a line).
    #[arg(long, global = true, value_enum, default_value = "text", env = gristmill::logging::LOG_FORMAT_ENV)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a driver: accepts workers and jobs, schedules tasks, commits output.
    Driver(DriverArgs),
    /// Lists the driver's jobs, newest first.
    Jobs {
        /// Print a JSON array of the jobs.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one job; exits 0 unless it failed or was cancelled (1).
    Status {
        /// The job's id.
        job: String,
        /// Print the status as a JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follows a job until it ends (through driver restarts); exits 0 if it succeeded, 1 if
    /// it failed or was cancelled.
    Wait {
        /// The job's id.
        job: String,
        /// Print nothing, only exit with the job's result.
        #[arg(long, short)]
        quiet: bool,
        /// Seconds the driver may be unreachable before giving up (exit 2).
        #[arg(long, env = "GRISTMILL_DRIVER_TIMEOUT", value_name = "SECS", default_value_t = 300)]
        driver_timeout: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints the stderr (or stdout) of a job's task attempts, read from the workers that ran
    /// them (kept for --log-retention after the job ends); only for the job's owner.
    Logs {
        /// The job's id.
        job: String,
        /// Only this task: `map 3` (or `m3`), `reduce 0` (or `r0`).
        #[arg(long)]
        task: Option<String>,
        /// Only this attempt.
        #[arg(long)]
        attempt: Option<u32>,
        /// Stdout instead of stderr.
        #[arg(long)]
        stdout: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancels a job: its tasks are killed and its shuffle data removed.
    Cancel {
        /// The job's id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acts on a worker.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Creates the cluster's certificates and tokens.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Shows the daemons' configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Runs a cluster on this machine: a driver and N workers, secured with certificates of
    /// a new CA, until Ctrl-C (SIGINT) or SIGTERM stops them all.
    Up(up::UpArgs),
}

#[derive(Subcommand)]
enum WorkerCommand {
    /// Drains a worker as SIGTERM does: it takes no new tasks, finishes its running ones (up
    /// to its --drain-timeout) and exits once no running job needs its map output. Admin only.
    Drain {
        /// The worker's id (as on the web UI's front page).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration of the driver or a worker as a TOML table, each
    /// value with its source (flag, env, file, default); secrets redacted.
    Show {
        /// Whose configuration.
        #[arg(value_enum, default_value = "driver")]
        daemon: config_show::Daemon,
        /// The daemon's flags, as it would be started with them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

// Named as CockroachDB's `cert create-*` commands, which users already know.
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
enum CertCommand {
    /// Creates the cluster CA: ca.crt and ca.key (keep ca.key off the nodes).
    CreateCa(CertArgs),
    /// Creates node.crt and node.key for the driver and workers, valid for the given host
    /// names and IP addresses (every name they are reached at).
    CreateNode {
        /// Host names and IP addresses.
        #[arg(required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        args: CertArgs,
    },
    /// Creates client.USER.crt and client.USER.key: USER is the identity jobs run as.
    CreateClient {
        /// The user's name (`admin` may cancel anyone's job).
        user: String,
        #[command(flatten)]
        args: CertArgs,
    },
    /// Creates a bearer token for USER for the status pages (printed once; stored hashed in
    /// the certificates directory, where the driver reads it).
    CreateToken {
        /// The user's name.
        user: String,
        #[command(flatten)]
        args: CertArgs,
    },
}

#[derive(clap::Args)]
struct CertArgs {
    /// The certificates directory (created 0700).
    #[arg(long, env = "GRISTMILL_CERTS_DIR")]
    certs_dir: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
}

/// How a server is secured.
#[derive(clap::Args)]
struct ServerSecurityArgs {
    /// Certificates directory (ca.crt, node.crt, node.key): all gRPC is mutual TLS and the
    /// status pages are HTTPS. Without it, only loopback addresses are served.
    #[arg(long, env = "GRISTMILL_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// Serve plaintext off loopback without authentication (anyone who reaches the port can
    /// run code on every worker).
    #[arg(long, env = "GRISTMILL_INSECURE")]
    insecure: bool,
    /// Open connections one peer address may hold.
    #[arg(long, env = "GRISTMILL_MAX_CONNECTIONS_PER_PEER", default_value_t = 256)]
    max_connections_per_peer: usize,
}

impl ServerSecurityArgs {
    fn to_security(&self) -> ServerSecurity {
        ServerSecurity {
            certs_dir: self.certs_dir.clone().map(CertsDir::new),
            insecure: self.insecure,
            limits: ListenerLimits {
                connections_per_peer: self.max_connections_per_peer.max(1),
                ..ListenerLimits::default()
            },
        }
    }
}

#[derive(clap::Args)]
struct DriverArgs {
    /// Where the gRPC service listens.
    #[arg(long, env = "GRISTMILL_DRIVER_LISTEN", default_value = "127.0.0.1:7077")]
    listen: String,
    /// Where the web UI, the JSON status pages, /metrics, /healthz and /readyz are served
    /// (e.g. 127.0.0.1:8080).
    #[arg(long, env = "GRISTMILL_DRIVER_HTTP")]
    http: Option<String>,
    /// Where job binaries and the driver's journal are stored; a driver restarted on the
    /// same directory resumes its unfinished jobs [default: a fresh directory under the
    /// system temp dir, so nothing is resumed].
    #[arg(long, env = "GRISTMILL_DRIVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Attempts per task before the job fails.
    #[arg(long, env = "GRISTMILL_DRIVER_MAX_ATTEMPTS", default_value_t = 4)]
    max_attempts: u32,
    /// Seconds without a heartbeat before a worker is declared lost.
    #[arg(long, env = "GRISTMILL_DRIVER_HEARTBEAT_TIMEOUT", default_value_t = 10.0)]
    heartbeat_timeout: f64,
    /// Milliseconds between worker heartbeats.
    #[arg(long, env = "GRISTMILL_DRIVER_HEARTBEAT_INTERVAL_MS", default_value_t = 500)]
    heartbeat_interval_ms: u64,
    /// Seconds a task must run before it may get a backup attempt.
    #[arg(long, env = "GRISTMILL_DRIVER_SPECULATION_AFTER", default_value_t = 5.0)]
    speculation_after: f64,
    /// Never launch backup attempts.
    #[arg(long, env = "GRISTMILL_DRIVER_NO_SPECULATION")]
    no_speculation: bool,
    /// Kill a task attempt that runs longer than this (e.g. 30s, 5m) and count it as a
    /// failed attempt [default: no limit].
    #[arg(long, env = "GRISTMILL_DRIVER_TASK_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    task_timeout: Option<Duration>,
    /// A queue jobs may name with `--queue` on submission, as NAME:WEIGHT[:MAX_SLOTS]
    /// (repeatable): slots are shared between queues in proportion to their weights, and a
    /// queue's attempts never hold more than MAX_SLOTS. Unlisted queues (and `default`) have
    /// weight 1 and no limit.
    #[arg(
        long = "queue",
        env = "GRISTMILL_DRIVER_QUEUES",
        value_delimiter = ',',
        value_name = "NAME:WEIGHT[:MAX_SLOTS]",
        value_parser = QueueConfig::parse_flag
    )]
    queues: Vec<(String, QueueConfig)>,
    /// How long a queue may stay below its fair share before the youngest attempts of
    /// queues above theirs are preempted (e.g. 15s, 1m; 0 never preempts).
    #[arg(
        long,
        env = "GRISTMILL_DRIVER_PREEMPTION_TIMEOUT",
        value_parser = parse_duration,
        value_name = "DURATION",
        default_value = "15s"
    )]
    preemption_timeout: Duration,
    /// A job gains one point of priority per this much waiting since its submission, so
    /// no job starves behind higher priorities (0 turns aging off).
    #[arg(
        long,
        env = "GRISTMILL_DRIVER_PRIORITY_AGING",
        value_parser = parse_duration,
        value_name = "DURATION",
        default_value = "60s"
    )]
    priority_aging: Duration,
    /// Most task slots one worker may advertise.
    #[arg(long, env = "GRISTMILL_DRIVER_MAX_WORKER_SLOTS", default_value_t = DEFAULT_MAX_WORKER_SLOTS)]
    max_worker_slots: u32,
    /// Largest job binary accepted for upload, e.g. 512MiB.
    #[arg(long, env = "GRISTMILL_DRIVER_MAX_BINARY_BYTES", value_parser = parse_byte_size, default_value = "1GiB")]
    max_binary_bytes: u64,
    /// Job binaries kept; past it the least recently used one no running job needs is removed.
    #[arg(long, env = "GRISTMILL_DRIVER_MAX_STORED_BINARIES", default_value_t = 64)]
    max_stored_binaries: usize,
    /// An object-store URL (e.g. s3://bucket/prefix) job binaries are put in once, stripped
    /// and compressed, for workers to fetch from [default: workers fetch from each other
    /// and from the driver].
    #[arg(long, env = "GRISTMILL_DRIVER_BINARY_STORE", value_name = "URL")]
    binary_store: Option<String>,
    /// Fetches of a job binary one source (a worker that has it, or the driver) serves at
    /// once; more fetchers are sent to other workers.
    #[arg(long, env = "GRISTMILL_DRIVER_BINARY_PEER_FANOUT", default_value_t = DEFAULT_PEER_FANOUT)]
    binary_peer_fanout: usize,
    #[command(flatten)]
    security: ServerSecurityArgs,
    /// The configuration file: its [driver] table sets what no flag or environment variable
    /// does [default: gristmill.toml in --data-dir, if there].
    #[arg(long, env = "GRISTMILL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The driver's URL (https://HOST:PORT when secured).
    #[arg(long, env = "GRISTMILL_DRIVER", default_value = "127.0.0.1:7077")]
    driver: String,
    /// Certificates directory holding ca.crt and client.USER.crt.
    #[arg(long, env = "GRISTMILL_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// The user whose client certificate to present [default: the only one in the
    /// certificates directory, else $USER].
    #[arg(long, env = "GRISTMILL_USER")]
    user: Option<String>,
}

impl ClientArgs {
    fn endpoint(&self) -> gristmill::Result<DriverEndpoint> {
        let tls = match &self.certs_dir {
            Some(dir) => Some(client_tls(&CertsDir::new(dir), self.user.as_deref())?),
            None => None,
        };
        DriverEndpoint::new(&self.driver, tls)
    }
}

/// The exit code of a client command that could not ask (or of bad usage, as clap's).
const CANNOT_ASK: u8 = 2;

/// Where the driver's settings are in the command line and the configuration file.
const DRIVER_SETTINGS: Section = Section { table: "driver", subcommand: Some("driver") };

fn main() -> ExitCode {
    let cli = match parse_layered(Cli::command(), std::env::args_os().collect(), DRIVER_SETTINGS)
        .and_then(|layered| Ok(Cli::from_arg_matches(&layered.matches)?))
    {
        Ok(cli) => cli,
        Err(SettingsError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(CANNOT_ASK);
        }
    };
    let service = if matches!(cli.command, Command::Driver(_)) { "gristmill-driver" } else { "gristmill" };
    let endpoint = gristmill::telemetry::endpoint(cli.otlp_endpoint.as_deref());
    gristmill::logging::init(cli.log_format, "info", service, endpoint);
    let is_client = !matches!(cli.command, Command::Driver(_) | Command::Cert(_) | Command::Up(_));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Driver(args) => run_driver(args).await,
            Command::Jobs { json, client } => client::list(&client.endpoint()?, json).await,
            Command::Status { job, json, client } => client::status(&client.endpoint()?, job, json).await,
            Command::Wait { job, quiet, driver_timeout, client } => {
                let timeout = Duration::from_secs(driver_timeout);
                client::wait(&client.endpoint()?, job, quiet, timeout).await
            }
            Command::Cancel { job, client } => client::cancel(&client.endpoint()?, job).await,
            Command::Logs { job, task, attempt, stdout, client } => {
                let query = client::LogsQuery { job_id: job, task, attempt, stdout };
                client::logs(&client.endpoint()?, query).await
            }
            Command::Worker(WorkerCommand::Drain { id, client }) => {
                client::drain_worker(&client.endpoint()?, id).await
            }
            Command::Cert(command) => cert(command),
            Command::Config(ConfigCommand::Show { daemon, args }) => config_show::show(daemon, args),
            Command::Up(args) => Ok(up::run(args).await),
        }
    });
    drop(runtime);
    gristmill::telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if is_client { ExitCode::from(CANNOT_ASK) } else { ExitCode::FAILURE }
        }
    }
}

async fn run_driver(args: DriverArgs) -> gristmill::Result<ExitCode> {
    let scheduler = SchedulerConfig::default()
        .with_max_attempts(args.max_attempts.max(1))
        .with_heartbeat_timeout(Duration::from_secs_f64(args.heartbeat_timeout.max(0.1)))
        .with_speculation(!args.no_speculation)
        .with_speculation_min_runtime(Duration::from_secs_f64(args.speculation_after.max(0.0)))
        .with_task_timeout(args.task_timeout)
        .with_preemption_timeout(Some(args.preemption_timeout).filter(|t| !t.is_zero()))
        .with_aging(Some(args.priority_aging).filter(|t| !t.is_zero()));
    let scheduler =
        args.queues.into_iter().fold(scheduler, |config, (name, queue)| config.with_queue(name, queue));
    let config = DriverConfig {
        listen: args.listen,
        http: args.http,
        data_dir: args
            .data_dir
            .unwrap_or_else(|| std::env::temp_dir().join(format!("gristmill-driver-{}", std::process::id()))),
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms.max(10)),
        scheduler,
        security: args.security.to_security(),
        max_worker_slots: args.max_worker_slots.max(1),
        binaries: BinaryLimits {
            max_binary_bytes: args.max_binary_bytes,
            max_stored_binaries: args.max_stored_binaries.max(1),
            ..BinaryLimits::default()
        },
        history: HistoryLimits::default(),
        distribution: BinaryDistribution {
            store: args.binary_store,
            peer_fanout: args.binary_peer_fanout.max(1),
        },
    };
    let scheme = config.security.scheme();
    serve(config, |addrs| {
        // One line a script can wait for.
        match addrs.http {
            Some(http) => {
                println!("gristmill driver listening on {} (status {scheme}://{http}/api/jobs)", addrs.grpc)
            }
            None => println!("gristmill driver listening on {}", addrs.grpc),
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn cert(command: CertCommand) -> gristmill::Result<ExitCode> {
    let fail = gristmill::Error::Security;
    match command {
        CertCommand::CreateCa(args) => {
            certs::create_ca(&CertsDir::new(&args.certs_dir), args.overwrite).map_err(fail)?;
            println!("created {}/ca.crt and ca.key", args.certs_dir.display());
        }
        CertCommand::CreateNode { hosts, args } => {
            certs::create_node(&CertsDir::new(&args.certs_dir), &hosts, args.overwrite).map_err(fail)?;
            println!("created {}/node.crt and node.key for {}", args.certs_dir.display(), hosts.join(", "));
        }
        CertCommand::CreateClient { user, args } => {
            certs::create_client(&CertsDir::new(&args.certs_dir), &user, args.overwrite).map_err(fail)?;
            println!("created {}/client.{user}.crt and client.{user}.key", args.certs_dir.display());
        }
        CertCommand::CreateToken { user, args } => {
            let token = tokens::create_token(&CertsDir::new(&args.certs_dir), &user).map_err(fail)?;
            eprintln!("a bearer token for {user} (shown once; only its hash is kept):");
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting of the driver and of `up` has an environment variable, for containers
    /// and unit files.
    #[test]
    fn every_daemon_flag_has_a_gristmill_environment_variable() {
        let command = Cli::command();
        for name in ["driver", "up"] {
            let sub = command.find_subcommand(name).unwrap();
            let globals = command.get_arguments().filter(|a| a.is_global_set());
            let settings: Vec<_> =
                sub.get_arguments().chain(globals).filter(|a| gristmill::settings::is_setting(a)).collect();
            assert!(settings.len() >= 6, "{name}'s flags are found");
            for arg in settings {
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
                assert!(
                    env.starts_with("GRISTMILL_"),
                    "{name} --{} has no GRISTMILL_ variable",
                    arg.get_id()
                );
            }
        }
    }
}
