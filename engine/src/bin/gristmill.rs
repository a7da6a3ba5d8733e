//! `gristmill`: the cluster's command line: run a driver, list, inspect and cancel jobs.
//!
//! ```text
//! gristmill driver --listen 127.0.0.1:7077 --http 127.0.0.1:8080
//! gristmill jobs | gristmill status JOB | gristmill cancel JOB
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gristmill::cluster::rpc::{connect_driver, state_name};
use gristmill::driver::cluster::{DriverConfig, serve};
use gristmill::scheduler::SchedulerConfig;
use gristmill_proto::v1::{JobRef, JobStatus, ListJobsRequest};

/// Gristmill cluster commands.
#[derive(Parser)]
#[command(name = "gristmill", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a driver: accepts workers and jobs, schedules tasks, commits output.
    Driver(DriverArgs),
    /// Lists the driver's jobs, newest first.
    Jobs(ClientArgs),
    /// Shows one job.
    Status {
        /// The job's id.
        job: String,
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
}

#[derive(clap::Args)]
struct DriverArgs {
    /// Where the gRPC service listens.
    #[arg(long, default_value = "127.0.0.1:7077")]
    listen: String,
    /// Where the JSON status pages are served (e.g. 127.0.0.1:8080).
    #[arg(long)]
    http: Option<String>,
    /// Where job binaries are stored [default: a directory under the system temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Attempts per task before the job fails.
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
    /// Seconds without a heartbeat before a worker is declared lost.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_timeout: f64,
    /// Milliseconds between worker heartbeats.
    #[arg(long, default_value_t = 500)]
    heartbeat_interval_ms: u64,
    /// Seconds a task must run before it may get a backup attempt.
    #[arg(long, default_value_t = 5.0)]
    speculation_after: f64,
    /// Never launch backup attempts.
    #[arg(long)]
    no_speculation: bool,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The driver's URL.
    #[arg(long, env = "GRISTMILL_DRIVER", default_value = "http://127.0.0.1:7077")]
    driver: String,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
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
            Command::Jobs(client) => list(&client.driver).await,
            Command::Status { job, client } => status(&client.driver, job).await,
            Command::Cancel { job, client } => cancel(&client.driver, job).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_driver(args: DriverArgs) -> gristmill::Result<ExitCode> {
    let scheduler = SchedulerConfig::default()
        .with_max_attempts(args.max_attempts.max(1))
        .with_heartbeat_timeout(Duration::from_secs_f64(args.heartbeat_timeout.max(0.1)))
        .with_speculation(!args.no_speculation)
        .with_speculation_min_runtime(Duration::from_secs_f64(args.speculation_after.max(0.0)));
    let config = DriverConfig {
        listen: args.listen,
        http: args.http,
        data_dir: args
            .data_dir
            .unwrap_or_else(|| std::env::temp_dir().join(format!("gristmill-driver-{}", std::process::id()))),
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms.max(10)),
        scheduler,
    };
    serve(config, |addrs| {
        // One line a script can wait for.
        match addrs.http {
            Some(http) => {
                println!("gristmill driver listening on {} (status http://{http}/api/jobs)", addrs.grpc)
            }
            None => println!("gristmill driver listening on {}", addrs.grpc),
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn list(driver: &str) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let jobs = client
        .list_jobs(ListJobsRequest {})
        .await
        .map_err(gristmill::cluster::rpc::status_error("listing jobs"))?
        .into_inner()
        .jobs;
    println!(
        "{:<28} {:<18} {:<10} {:>4} {:>11} {:>11} {:>9}",
        "JOB", "NAME", "STATE", "PRIO", "MAPS", "REDUCES", "SECONDS"
    );
    for job in jobs {
        println!(
            "{:<28} {:<18} {:<10} {:>4} {:>11} {:>11} {:>9.1}",
            job.job_id,
            job.name,
            state_name(job.state()),
            job.priority,
            format!("{}/{}", job.maps_done, job.maps_total),
            format!("{}/{}", job.reduces_done, job.reduces_total),
            job.elapsed_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(driver: &str, job_id: String) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let what = format!("asking for job {job_id}");
    let job = client
        .get_job(JobRef { job_id })
        .await
        .map_err(gristmill::cluster::rpc::status_error(what))?
        .into_inner();
    print_status(&job);
    Ok(ExitCode::SUCCESS)
}

async fn cancel(driver: &str, job_id: String) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let what = format!("cancelling job {job_id}");
    let job = client
        .cancel_job(JobRef { job_id })
        .await
        .map_err(gristmill::cluster::rpc::status_error(what))?
        .into_inner();
    print_status(&job);
    Ok(ExitCode::SUCCESS)
}

fn print_status(job: &JobStatus) {
    println!("job       {}", job.job_id);
    println!("name      {}", job.name);
    println!("state     {}", state_name(job.state()));
    println!("priority  {}", job.priority);
    println!("maps      {}/{}", job.maps_done, job.maps_total);
    println!("reduces   {}/{}", job.reduces_done, job.reduces_total);
    println!("attempts  {} failed, {} backups", job.failed_attempts, job.backup_attempts);
    println!("elapsed   {:.1} s", job.elapsed_seconds);
    if job.files > 0 {
        println!("output    {} rows in {} files", job.rows, job.files);
    }
    if !job.error.is_empty() {
        println!("error     {}", job.error);
    }
    let mut counters: Vec<_> = job.counters.iter().collect();
    counters.sort();
    for (name, value) in counters {
        println!("  {name:<24} {value}");
    }
}
