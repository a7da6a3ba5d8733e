//! Task logs on a worker: each attempt's stdout and stderr, kept bounded under the worker's
//! `logs/<job>/` directory, and the `TaskLogs` service that serves them to holders of the
//! job's secret (the driver, proxying `GetTaskLog` for the job's owner).
//!
//! A stream is written to `<attempt>.stderr` until it holds half of [`LOG_BYTES_LIMIT`];
//! then it becomes `<attempt>.stderr.1` (replacing the one before) and a fresh file starts,
//! so an attempt keeps at most the limit per stream: the newest output, the oldest dropped.

use std::path::{Path, PathBuf};

use gristmill_proto::v1::task_logs_server::TaskLogs;
use gristmill_proto::v1::{AttemptKey, ReadTaskLogRequest, TaskKind, TaskLogData};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status};

use super::shuffle_service::{JobSecrets, is_safe_id};

/// Bytes kept of each stream of an attempt (the newest; two files of half as much).
pub const LOG_BYTES_LIMIT: u64 = 8 << 20;

/// One of a task's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (logs, error messages).
    Stderr,
}

impl Stream {
    /// "stdout" or "stderr".
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The file holding `stream` of `attempt` under a worker's logs directory `root` (`None`
/// for a job id that could name a path).
pub fn log_path(root: &Path, attempt: &AttemptKey, stream: Stream) -> Option<PathBuf> {
    if !is_safe_id(&attempt.job_id) {
        return None;
    }
    let kind = if attempt.kind == TaskKind::Map as i32 { "m" } else { "r" };
    let name = format!("{kind}{:06}-a{}.{}", attempt.index, attempt.attempt, stream.as_str());
    Some(root.join(&attempt.job_id).join(name))
}

pub(crate) fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Copies `from` (a task's pipe) to `path` until its end, keeping at most `limit` bytes:
/// past half of it the file is rotated (see the module docs). Write errors are logged and
/// the rest of the stream is drained, so the task never blocks on a full pipe.
pub async fn keep_bounded(mut from: impl AsyncRead + Unpin, path: PathBuf, limit: u64) {
    let half = (limit / 2).max(1);
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!(log = %path.display(), error = %e, "cannot keep a task's log");
            None
        }
    };
    let mut written = 0u64;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A chunk larger than what is left of the file is split across a rotation.
        let mut chunk = &buffer[..n];
        while !chunk.is_empty() {
            if written >= half && file.is_some() {
                file = rotate(&path).await;
                written = 0;
            }
            let take =
                chunk.len().min(usize::try_from(half.saturating_sub(written)).unwrap_or(usize::MAX).max(1));
            if let Some(f) = file.as_mut()
                && let Err(e) = f.write_all(&chunk[..take]).await
            {
                tracing::warn!(log = %path.display(), error = %e, "cannot write a task's log");
                file = None;
            }
            written += take as u64;
            chunk = &chunk[take..];
        }
    }
    if let Some(mut f) = file {
        let _ = f.flush().await;
    }
}

async fn rotate(path: &Path) -> Option<tokio::fs::File> {
    if let Err(e) = tokio::fs::rename(path, rotated(path)).await {
        tracing::warn!(log = %path.display(), error = %e, "cannot rotate a task's log");
    }
    tokio::fs::File::create(path).await.ok()
}

/// A kept log: the rotated part, then the current one; true if older output was dropped
/// or rotated away (a rotated part exists).
pub fn read_log(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let older = match std::fs::read(rotated(path)) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let current = std::fs::read(path)?;
    let truncated = older.is_some();
    let mut bytes = older.unwrap_or_default();
    bytes.extend_from_slice(&current);
    Ok((bytes, truncated))
}

/// The last `max` bytes of a kept log, from a line start, as text.
pub fn log_tail(path: &Path, max: usize) -> String {
    let Ok((bytes, _)) = read_log(path) else { return String::new() };
    let start = bytes.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let mid_line = start > 0 && bytes[start - 1] != b'\n';
    let text = if mid_line { text.split_once('\n').map_or(&*text, |(_, rest)| rest) } else { &text };
    text.trim_end().to_owned()
}

/// Removes `job`'s logs under `root` (after the retention time). Best effort, logged.
pub fn remove_job_logs(root: &Path, job: &str) {
    if !is_safe_id(job) {
        return;
    }
    let dir = root.join(job);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a job's task logs");
    }
}

/// Removes the job log directories under `root` not modified for `retention` (left by an
/// earlier run of the worker, whose timers are gone).
pub fn sweep_expired_logs(root: &Path, retention: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let expired = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= retention);
        if expired {
            remove_job_logs(root, &entry.file_name().to_string_lossy());
        }
    }
}

/// Serves the task logs under a worker's logs directory, each job's to holders of its secret.
#[derive(Clone, Debug)]
pub struct TaskLogService {
    root: PathBuf,
    secrets: JobSecrets,
}

impl TaskLogService {
    /// Serves the logs under `root` of the jobs in `secrets` (which the worker keeps until
    /// it removes a job's logs).
    pub fn new(root: PathBuf, secrets: JobSecrets) -> Self {
        TaskLogService { root, secrets }
    }
}

#[tonic::async_trait]
impl TaskLogs for TaskLogService {
    async fn read_task_log(
        &self,
        request: Request<ReadTaskLogRequest>,
    ) -> Result<Response<TaskLogData>, Status> {
        // The driver presents the node certificate, and the job's secret.
        crate::security::authorize(&request, crate::security::Role::Node, "read task logs")?;
        let req = request.into_inner();
        let attempt = req.attempt.ok_or_else(|| Status::invalid_argument("no attempt"))?;
        let stream = if req.stdout { Stream::Stdout } else { Stream::Stderr };
        let path =
            log_path(&self.root, &attempt, stream).ok_or_else(|| Status::invalid_argument("bad job id"))?;
        self.secrets.verify(&attempt.job_id, &req.job_secret)?;
        let read = tokio::task::spawn_blocking(move || {
            let job_logs_kept = path.parent().is_some_and(Path::is_dir);
            (read_log(&path), job_logs_kept)
        });
        let (read, job_logs_kept) = read.await.map_err(|e| Status::internal(e.to_string()))?;
        match read {
            Ok((data, truncated)) => Ok(Response::new(TaskLogData { data, truncated })),
            // An executor's attempt creates its log with its first line: one that wrote
            // nothing has none, while its job's logs are kept.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && job_logs_kept => {
                Ok(Response::new(TaskLogData { data: Vec::new(), truncated: false }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Status::not_found(format!("no {} kept for this attempt", stream.as_str())))
            }
            Err(e) => Err(Status::internal(format!("reading the log: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_log_keeps_its_newest_bytes_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m000000-a0.stderr");
        let lines: String = (0..1000).map(|i| format!("line {i:04}\n")).collect();
        keep_bounded(lines.as_bytes(), path.clone(), 1000).await;
        let (bytes, truncated) = read_log(&path).unwrap();
        assert!(truncated);
        assert!(bytes.len() <= 1000, "{}", bytes.len());
        assert!(String::from_utf8(bytes).unwrap().ends_with("line 0999\n"));
        assert_eq!(log_tail(&path, 20), "line 0998\nline 0999");
    }

    #[tokio::test]
    async fn rotation_drops_the_oldest_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r000001-a2.stdout");
        // One read a chunk: a slow pipe, read 4 bytes at a time.
        let (mut tx, rx) = tokio::io::duplex(4);
        let writer = tokio::spawn(async move {
            for i in 0..100u32 {
                tx.write_all(format!("{i:03}\n").as_bytes()).await.unwrap();
            }
        });
        keep_bounded(rx, path.clone(), 80).await;
        writer.await.unwrap();
        let (bytes, truncated) = read_log(&path).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(truncated && text.len() <= 80, "{text}");
        assert!(text.ends_with("099\n") && !text.contains("000\n"), "{text}");
    }

    #[test]
    fn paths_name_the_attempt_and_refuse_unsafe_ids() {
        let attempt =
            AttemptKey { job_id: "job-1".into(), kind: TaskKind::Reduce as i32, index: 3, attempt: 1 };
        let path = log_path(Path::new("/logs"), &attempt, Stream::Stderr).unwrap();
        assert_eq!(path, Path::new("/logs/job-1/r000003-a1.stderr"));
        let evil = AttemptKey { job_id: "../x".into(), ..attempt };
        assert!(log_path(Path::new("/logs"), &evil, Stream::Stdout).is_none());
    }
}
