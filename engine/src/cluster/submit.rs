//! A job binary submitting itself to a cluster (`--driver URL`): it plans (lists inputs,
//! reads Parquet footers, samples keys for total order), uploads its own executable if the
//! driver lacks its digest, submits, and follows the job until it ends (or detaches).

use std::time::{Duration, Instant};

use gristmill_proto::v1::{BinaryChunk, BinaryRef, JobState, JobStatus, MapTaskSpec, SubmitJobRequest};
use gristmill_proto::{CHUNK_BYTES, PROTOCOL_VERSION};
use object_store::ObjectStoreExt;
use tonic::transport::Channel;

use super::binary::cached_file_digest;
use super::binary_transfer::UPLOAD_ZSTD_LEVEL;
use super::follow::Follow;
use super::payload::{JobPayload, MapSplit};
use super::rpc::{connect_driver, status_error};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId};
use crate::input::BadRecords;
use crate::job::Job;
use crate::output::{Manifest, OutputDir, SUCCESS_FILE};
use crate::plan::{JobPlan, TaskResources, plan_job};
use crate::progress::Progress;
use crate::run::JobReport;
use crate::storage::Location;

/// How to submit.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The driver, and how to authenticate to it.
    pub driver: super::rpc::DriverEndpoint,
    /// Higher runs first.
    pub priority: i32,
    /// The queue the job shares slots in.
    pub queue: String,
    /// Return once the job is queued.
    pub detach: bool,
    /// Print progress lines on stderr.
    pub show_progress: bool,
    /// How long the driver may be unreachable while following the job (it may restart).
    pub driver_timeout: Duration,
    /// What Ctrl-C does while following the job.
    pub on_interrupt: super::follow::OnInterrupt,
}

/// The default of [`Submission::driver_timeout`].
pub const DEFAULT_DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

/// What a submission ended with.
pub enum Submitted {
    /// The job was queued and the submitter detached.
    Detached {
        /// The job's id.
        job_id: String,
    },
    /// The job committed.
    Finished(JobReport),
}

/// Plans `job`, submits it to the driver and, unless detached, waits for its end.
pub fn submit<J: Job>(job: &J, config: &RunConfig, how: &Submission) -> Result<Submitted> {
    config.validate()?;
    job.validate().map_err(|e| Error::InvalidJob(e.to_string()))?;
    let started = Instant::now();
    let io = crate::local::io_runtime()?;
    // Task processes run elsewhere, in other directories: paths go out absolute.
    let output = OutputDir::new(Location::parse_with(&config.output, &config.storage_options)?);
    let mut config = config.clone();
    config.output = output.location().display();
    // The job acts with its submitter's object-store settings, wherever it runs: the driver
    // commits with these alone, never with its own environment.
    config.storage_options = config.storage_options.over_environment();
    let config = &config;
    // The job's own plan runs here, once: tasks and a recovering driver get its result
    // with the job's parameters and never run it again.
    let (planned, broadcasts) = crate::job::planned(job, config, io.handle())?;
    let job = &planned;
    crate::exec::check_planned_job(job)?;
    io.block_on(output.prepare(config.overwrite))?;
    // A total-order job's keys are sampled here, as its own job (the driver names the
    // real one), in a scratch spill directory.
    let progress = Progress::default();
    let bad_records = BadRecords::new(config.max_bad_records);
    let sampling = TaskResources {
        io: io.handle(),
        job_id: &JobId::generate(),
        attempt: AttemptId(0),
        bad_records: &bad_records,
        store: None,
        progress: &progress,
    };
    let plan = plan_job(job, config, broadcasts, &sampling)?;
    let payload = JobPayload::of_plan(job, config, &plan.tasks)?;
    io.block_on(async {
        let mut client = connect_driver(&how.driver).await?;
        let digest = upload_self(&mut client).await?;
        let request = submit_request::<J>(config, &plan, payload, digest, how)?;
        let reply =
            client.submit_job(request).await.map_err(status_error("submitting the job"))?.into_inner();
        eprintln!("submitted {} as {} to {}", J::NAME, reply.job_id, how.driver.url);
        if !reply.status_url.is_empty() {
            eprintln!("status: {}", reply.status_url);
        }
        if how.detach {
            println!("{}", reply.job_id);
            return Ok(Submitted::Detached { job_id: reply.job_id });
        }
        let follow = Follow {
            driver: &how.driver,
            job_id: &reply.job_id,
            show_progress: how.show_progress,
            driver_timeout: how.driver_timeout,
        };
        let status = match super::follow::follow_interruptible(&mut client, &follow, how.on_interrupt).await?
        {
            super::follow::Followed::Ended(status) => *status,
            super::follow::Followed::Detached => return Ok(Submitted::Detached { job_id: reply.job_id }),
        };
        finish(&output, &plan, status, started).await.map(Submitted::Finished)
    })
}

fn submit_request<J: Job>(
    config: &RunConfig,
    plan: &JobPlan,
    payload: JobPayload,
    binary_digest: String,
    how: &Submission,
) -> Result<SubmitJobRequest> {
    let map_tasks = plan
        .map_tasks
        .iter()
        .map(|task| {
            let split = MapSplit { input: task.input, split: task.split.to_spec()? };
            Ok(MapTaskSpec {
                description: task.split.describe(),
                split_payload: serde_json::to_vec(&split).map_err(|e| Error::Internal(e.to_string()))?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(SubmitJobRequest {
        protocol_version: PROTOCOL_VERSION,
        name: J::NAME.to_owned(),
        binary_digest,
        priority: how.priority,
        job_payload: serde_json::to_vec(&payload).map_err(|e| Error::Internal(e.to_string()))?,
        map_tasks,
        reducers: if plan.map_only { 0 } else { payload.num_partitions as u32 },
        output: config.output.clone(),
        // For the driver's commit (or abort) of the output, with the job's own options.
        storage_options: config.storage_options.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        input_files: plan.files as u64,
        input_bytes: plan.bytes,
        overwrite: config.overwrite,
        task_memory_bytes: if config.memory_limit_set { config.memory_limit } else { 0 },
        queue: how.queue.clone(),
    })
}

/// Ships another build of the same job instead of the running executable: the job built
/// for the workers' architecture or libc (`--target aarch64-unknown-linux-musl`), submitted
/// from a machine of another kind, which plans with its own build.
pub const JOB_BINARY_ENV: &str = "GRISTMILL_JOB_BINARY";

/// Uploads this executable (or [`JOB_BINARY_ENV`]'s) unless the driver has it; returns its
/// digest.
async fn upload_self(
    client: &mut gristmill_proto::v1::driver_client::DriverClient<Channel>,
) -> Result<String> {
    let exe = match std::env::var_os(JOB_BINARY_ENV).filter(|v| !v.is_empty()) {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(|e| Error::Rpc { what: "finding this executable".into(), cause: e.to_string() })?,
    };
    let digest = tokio::task::spawn_blocking({
        let exe = exe.clone();
        move || cached_file_digest(&exe)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let present = client
        .has_binary(BinaryRef { digest: digest.clone() })
        .await
        .map_err(status_error("asking the driver for the job binary"))?
        .into_inner()
        .present;
    if present {
        return Ok(digest);
    }
    let total_bytes = std::fs::metadata(&exe)
        .map_err(|e| Error::Rpc { what: format!("reading {}", exe.display()), cause: e.to_string() })?
        .len();
    client
        .upload_binary(compressed_chunks(exe, digest.clone(), total_bytes))
        .await
        .map_err(status_error("uploading the job binary"))?;
    Ok(digest)
}

/// The upload's chunks: `exe` zstd-compressed on a blocking thread as they are sent (never
/// the whole binary in memory). A read error ends the stream early; the driver then refuses
/// the short upload.
fn compressed_chunks(
    exe: std::path::PathBuf,
    digest: String,
    total_bytes: u64,
) -> impl futures::Stream<Item = BinaryChunk> {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let compress = || -> std::io::Result<()> {
            let file = std::fs::File::open(&exe)?;
            let mut encoder = zstd::stream::read::Encoder::new(file, UPLOAD_ZSTD_LEVEL)?;
            let mut first = Some(digest);
            loop {
                let mut data = Vec::with_capacity(CHUNK_BYTES);
                (&mut encoder).take(CHUNK_BYTES as u64).read_to_end(&mut data)?;
                if data.is_empty() && first.is_none() {
                    return Ok(());
                }
                let chunk = match first.take() {
                    Some(digest) => BinaryChunk { digest, data, total_bytes, zstd: true },
                    None => BinaryChunk { data, ..Default::default() },
                };
                if tx.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        };
        if let Err(e) = compress() {
            tracing::warn!(error = %e, path = %exe.display(), "reading this executable for upload failed");
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Turns the final status into a report, reading the committed manifest.
async fn finish(
    output: &OutputDir,
    plan: &JobPlan,
    status: JobStatus,
    started: Instant,
) -> Result<JobReport> {
    match status.state() {
        JobState::Succeeded => {}
        JobState::Cancelled => {
            return Err(Error::JobFailed {
                job: status.job_id,
                state: "was cancelled",
                message: status.error,
            });
        }
        _ => return Err(Error::JobFailed { job: status.job_id, state: "failed", message: status.error }),
    }
    let success = output.location().child(SUCCESS_FILE);
    let bytes = success
        .store()
        .get(success.path())
        .await
        .map_err(|source| Error::read(success.display(), source))?
        .bytes()
        .await
        .map_err(|source| Error::read(success.display(), source))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{} does not parse: {e}", success.display())))?;
    Ok(JobReport {
        job_id: JobId::from_string(status.job_id),
        manifest,
        input_files: plan.files,
        map_tasks: plan.map_tasks.len(),
        elapsed: started.elapsed(),
    })
}
