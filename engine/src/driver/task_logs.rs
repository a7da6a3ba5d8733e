//! `GetTaskLog`: the driver reads a job's task logs from the workers that ran its attempts
//! (found in the job's [event log](super::events): each launch names the worker and its
//! address), presenting the node certificate and the job's secret. Only the job's owner
//! (or `admin`) may read them, as only they may cancel it.

use std::time::Duration;

use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::task_logs_client::TaskLogsClient;
use gristmill_proto::v1::{
    AttemptKey, ReadTaskLogRequest, TaskKind as WireTaskKind, TaskLog, TaskLogRequest,
};
use serde_json::Value;
use tonic::Status;

use super::events::parse_task_name;
use super::state::DriverState;
use crate::ids::{JobId, TaskKind};
use crate::security::{Identity, JobSecret};

/// Bytes of logs one reply carries at most; later attempts' logs are left out past it.
const REPLY_BYTES: usize = MAX_MESSAGE_BYTES / 2;

/// An attempt as its launch event tells it.
struct Launched {
    task: String,
    kind: TaskKind,
    index: u32,
    attempt: u32,
    worker: String,
    address: String,
}

/// The logs `request` asks for, for `identity`.
pub async fn task_logs(
    state: &DriverState,
    identity: &Identity,
    request: &TaskLogRequest,
) -> Result<Vec<TaskLog>, Status> {
    let job = JobId::from_string(request.job_id.clone());
    let (owner, secret) = state.owner_and_secret(&job).ok_or_else(|| {
        Status::not_found(format!("no job {job} (or the driver no longer holds its secret)"))
    })?;
    if !identity.may_cancel(&owner) {
        return Err(Status::permission_denied(format!(
            "{identity} may not read the task logs of job {job} of user {owner}: only its owner or admin may"
        )));
    }
    let wanted = match request.task.trim() {
        "" => None,
        task => Some(parse_task_name(task).ok_or_else(|| {
            Status::invalid_argument(format!("task {task:?} is not `map N`, `mN`, `reduce N` or `rN`"))
        })?),
    };
    let events = state.events.read(job.as_str()).await.unwrap_or_default();
    let attempts: Vec<Launched> = events
        .iter()
        .filter_map(launched)
        .filter(|a| wanted.is_none_or(|(kind, index)| a.kind == kind && a.index == index))
        .filter(|a| request.attempt.is_none_or(|n| a.attempt == n))
        .collect();
    if attempts.is_empty() {
        return Err(Status::not_found(format!("job {job} has no such attempt")));
    }
    let stream = if request.stdout { "stdout" } else { "stderr" };
    let mut logs = Vec::new();
    let mut bytes = 0;
    for attempt in attempts {
        let mut log = TaskLog {
            task: attempt.task.clone(),
            attempt: attempt.attempt,
            worker: attempt.worker.clone(),
            stream: stream.to_owned(),
            ..TaskLog::default()
        };
        if bytes >= REPLY_BYTES {
            log.error = "left out: the reply is full; ask for this task alone (--task)".into();
        } else {
            match read_one(state, &job, &secret, &attempt, request.stdout).await {
                Ok((data, truncated)) => (log.data, log.truncated) = (data, truncated),
                Err(e) => log.error = e,
            }
            log.data.truncate(REPLY_BYTES.saturating_sub(bytes));
            bytes += log.data.len();
        }
        logs.push(log);
    }
    Ok(logs)
}

/// A launch event's attempt.
fn launched(event: &Value) -> Option<Launched> {
    if event["event"] != "task_launched" {
        return None;
    }
    let task = event["task"].as_str()?.to_owned();
    let (kind, index) = parse_task_name(&task)?;
    Some(Launched {
        task,
        kind,
        index,
        attempt: u32::try_from(event["attempt"].as_u64()?).ok()?,
        worker: event["worker"].as_str().unwrap_or_default().to_owned(),
        address: event["address"].as_str()?.to_owned(),
    })
}

/// One attempt's log from its worker; the error as one line.
async fn read_one(
    state: &DriverState,
    job: &JobId,
    secret: &JobSecret,
    attempt: &Launched,
    stdout: bool,
) -> Result<(Vec<u8>, bool), String> {
    let tls = state.node_tls.as_ref();
    let url =
        crate::cluster::rpc::url_with_scheme(&attempt.address, tls.is_some()).map_err(|e| e.to_string())?;
    let channel = crate::cluster::rpc::connect(&url, tls, Duration::from_secs(5))
        .await
        .map_err(|e| format!("worker {} is unreachable: {e}", attempt.worker))?;
    let mut client = TaskLogsClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let key = AttemptKey {
        job_id: job.to_string(),
        kind: match attempt.kind {
            TaskKind::Map => WireTaskKind::Map,
            TaskKind::Reduce => WireTaskKind::Reduce,
        } as i32,
        index: attempt.index,
        attempt: attempt.attempt,
    };
    let request = ReadTaskLogRequest { attempt: Some(key), job_secret: secret.expose().to_owned(), stdout };
    let reply = tokio::time::timeout(Duration::from_secs(30), client.read_task_log(request))
        .await
        .map_err(|_| format!("worker {} did not answer", attempt.worker))?
        .map_err(|status| format!("worker {}: {}", attempt.worker, status.message()))?
        .into_inner();
    Ok((reply.data, reply.truncated))
}
