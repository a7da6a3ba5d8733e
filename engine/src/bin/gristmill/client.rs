//! The client commands of `gristmill`: `jobs`, `status`, `wait`, `cancel`, `logs`,
//! `worker drain`.
//!
//! Exit codes: `status` and `wait` exit 0 for a succeeded job and 1 for a failed or
//! cancelled one (`status` of a job still running exits 0); every client command exits 2
//! when it cannot ask (no such job, the driver unreachable, a refusal).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use gristmill::cluster::follow::{Follow, follow};
use gristmill::cluster::rpc::{DriverEndpoint, connect_driver, state_name, status_error};
use gristmill_proto::v1::{DrainWorkerRequest, JobRef, JobState, JobStatus, ListJobsRequest, TaskLogRequest};
use serde_json::json;

/// The exit code of a job that failed or was cancelled.
pub const JOB_FAILED: u8 = 1;

/// The exit code for a job's state: 1 for failed or cancelled, else 0.
pub fn exit_for(state: JobState) -> ExitCode {
    match state {
        JobState::Failed | JobState::Cancelled => ExitCode::from(JOB_FAILED),
        _ => ExitCode::SUCCESS,
    }
}

pub async fn list(driver: &DriverEndpoint, as_json: bool) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let jobs =
        client.list_jobs(ListJobsRequest {}).await.map_err(status_error("listing jobs"))?.into_inner().jobs;
    if as_json {
        let jobs: Vec<_> = jobs.iter().map(status_json).collect();
        println!("{}", serde_json::Value::Array(jobs));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<18} {:<12} {:<10} {:<10} {:>4} {:>11} {:>11} {:>9}",
        "JOB", "NAME", "OWNER", "QUEUE", "STATE", "PRIO", "MAPS", "REDUCES", "SECONDS"
    );
    for job in jobs {
        println!(
            "{:<28} {:<18} {:<12} {:<10} {:<10} {:>4} {:>11} {:>11} {:>9.1}",
            job.job_id,
            job.name,
            job.owner,
            job.queue,
            state_name(job.state()),
            job.priority,
            format!("{}/{}", job.maps_done, job.maps_total),
            format!("{}/{}", job.reduces_done, job.reduces_total),
            job.elapsed_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(driver: &DriverEndpoint, job_id: String, as_json: bool) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let what = format!("asking for job {job_id}");
    let job = client.get_job(JobRef { job_id }).await.map_err(status_error(what))?.into_inner();
    if as_json {
        println!("{}", status_json(&job));
    } else {
        print_status(&job);
    }
    Ok(exit_for(job.state()))
}

/// Follows the job to its end (through driver restarts, for up to `driver_timeout`).
pub async fn wait(
    driver: &DriverEndpoint,
    job_id: String,
    quiet: bool,
    driver_timeout: Duration,
) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let how = Follow { driver, job_id: &job_id, show_progress: !quiet, driver_timeout };
    let job = follow(&mut client, &how).await?;
    if !quiet {
        print_status(&job);
    }
    Ok(exit_for(job.state()))
}

pub async fn cancel(driver: &DriverEndpoint, job_id: String) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let what = format!("cancelling job {job_id}");
    let job = client.cancel_job(JobRef { job_id }).await.map_err(status_error(what))?.into_inner();
    print_status(&job);
    Ok(ExitCode::SUCCESS)
}

/// Asks the driver to drain a worker.
pub async fn drain_worker(driver: &DriverEndpoint, worker_id: String) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let what = format!("draining worker {worker_id}");
    let request = DrainWorkerRequest { worker_id: worker_id.clone() };
    let reply = client.drain_worker(request).await.map_err(status_error(what))?.into_inner();
    println!("worker {worker_id}: {}", reply.state);
    Ok(ExitCode::SUCCESS)
}

/// What `gristmill logs` shows.
pub struct LogsQuery {
    pub job_id: String,
    pub task: Option<String>,
    pub attempt: Option<u32>,
    pub stdout: bool,
}

/// Prints the asked attempts' logs, each headed by its task, attempt and worker.
pub async fn logs(driver: &DriverEndpoint, query: LogsQuery) -> gristmill::Result<ExitCode> {
    let mut client = connect_driver(driver).await?;
    let what = format!("reading the task logs of job {}", query.job_id);
    let request = TaskLogRequest {
        job_id: query.job_id,
        task: query.task.unwrap_or_default(),
        attempt: query.attempt,
        stdout: query.stdout,
    };
    let logs = client.get_task_log(request).await.map_err(status_error(what))?.into_inner().logs;
    let mut out = std::io::stdout().lock();
    let mut unread = 0;
    for log in logs {
        let _ = writeln!(
            out,
            "==> {} attempt {} on worker {} ({}) <==",
            log.task, log.attempt, log.worker, log.stream
        );
        if !log.error.is_empty() {
            unread += 1;
            let _ = writeln!(out, "(not available: {})", log.error);
        } else if log.truncated {
            let _ = writeln!(out, "(older output was rotated; the newest is shown)");
        }
        let _ = out.write_all(&log.data);
        if !log.data.is_empty() && !log.data.ends_with(b"\n") {
            let _ = writeln!(out);
        }
    }
    let _ = out.flush();
    Ok(if unread > 0 { ExitCode::from(JOB_FAILED) } else { ExitCode::SUCCESS })
}

/// A job's status as a JSON object (`gristmill jobs --json`, `gristmill status --json`).
pub fn status_json(job: &JobStatus) -> serde_json::Value {
    let counters: std::collections::BTreeMap<&String, &u64> = job.counters.iter().collect();
    json!({
        "job_id": job.job_id,
        "name": job.name,
        "owner": job.owner,
        "queue": job.queue,
        "state": state_name(job.state()),
        "priority": job.priority,
        "maps_done": job.maps_done,
        "maps_total": job.maps_total,
        "reduces_done": job.reduces_done,
        "reduces_total": job.reduces_total,
        "failed_attempts": job.failed_attempts,
        "backup_attempts": job.backup_attempts,
        "preempted_attempts": job.preempted_attempts,
        "elapsed_seconds": job.elapsed_seconds,
        "input_files": job.input_files,
        "input_bytes": job.input_bytes,
        "rows": job.rows,
        "files": job.files,
        "error": job.error,
        "counters": counters,
    })
}

pub fn print_status(job: &JobStatus) {
    println!("job       {}", job.job_id);
    println!("name      {}", job.name);
    println!("owner     {}", job.owner);
    println!("state     {}", state_name(job.state()));
    println!("queue     {}", job.queue);
    println!("priority  {}", job.priority);
    println!("maps      {}/{}", job.maps_done, job.maps_total);
    println!("reduces   {}/{}", job.reduces_done, job.reduces_total);
    let (failed, backups, preempted) = (job.failed_attempts, job.backup_attempts, job.preempted_attempts);
    println!("attempts  {failed} failed, {backups} backups, {preempted} preempted");
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
