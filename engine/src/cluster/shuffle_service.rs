//! A worker's shuffle service: serves partitions of the map outputs on its disk to
//! reducers, in chunks of at most [`CHUNK_BYTES`], each with its CRC-32; the stream's end
//! carries the length and CRC-32 the map task recorded, and a segment whose bytes no longer
//! match them is refused (the reducer reports a fetch failure and the map is re-run).
//!
//! A job's map output is served only to callers presenting the job's secret: the worker
//! records each job's secret in [`JobSecrets`] when it starts one of its tasks, and forgets
//! it when the job's data is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use gristmill_proto::CHUNK_BYTES;
use gristmill_proto::v1::shuffle_server::Shuffle;
use gristmill_proto::v1::{FetchPartitionRequest, ShuffleChunk};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::ids::{AttemptId, JobId};
use crate::security::JobSecret;
use crate::shuffle::{MapOutputFiles, read_segment_checked};

/// The secrets of the jobs a worker holds map output of: job id -> SHA-256 of the secret
/// (the secrets themselves are not kept). Clones share one registry.
#[derive(Clone, Default)]
pub struct JobSecrets {
    digests: Arc<Mutex<HashMap<String, [u8; 32]>>>,
}

impl JobSecrets {
    /// An empty registry.
    pub fn new() -> Self {
        JobSecrets::default()
    }

    /// Records `job`'s secret (a worker does so when it starts one of the job's tasks).
    pub fn insert(&self, job: &str, secret: &JobSecret) {
        self.lock().insert(job.to_owned(), digest(secret.expose()));
    }

    /// Forgets `job`'s secret (its data was dropped): its output is served no more.
    pub fn remove(&self, job: &str) {
        self.lock().remove(job);
    }

    /// True if the registry knows `job`.
    pub fn contains(&self, job: &str) -> bool {
        self.lock().contains_key(job)
    }

    /// Checks that `presented` is `job`'s secret, comparing digests in constant time. The
    /// refusal names the job, never a secret.
    pub fn verify(&self, job: &str, presented: &str) -> Result<(), Status> {
        let expected = self.lock().get(job).copied();
        let Some(expected) = expected else {
            return Err(Status::permission_denied(format!("job {job} has no map output on this worker")));
        };
        if !same_digest(&expected, &digest(presented)) {
            return Err(Status::permission_denied(format!("wrong secret for job {job}")));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.digests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The number of jobs only: never a digest.
impl std::fmt::Debug for JobSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSecrets").field("jobs", &self.lock().len()).finish()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"gristmill-job-secret").chain_update(secret).finalize().into()
}

/// Equality of two digests in time independent of where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Serves map outputs under a shuffle directory, each job's to holders of its secret.
#[derive(Clone, Debug)]
pub struct ShuffleService {
    dir: PathBuf,
    secrets: JobSecrets,
    /// Counts the bytes sent (a worker's `/metrics`).
    served: Option<prometheus_client::metrics::counter::Counter>,
}

impl ShuffleService {
    /// A service for the map outputs under `dir`, of the jobs whose secrets are in
    /// `secrets` (shared with the worker, which records them as it starts tasks).
    pub fn new(dir: PathBuf, secrets: JobSecrets) -> Self {
        ShuffleService { dir, secrets, served: None }
    }

    /// Counts the map output bytes sent in `served`.
    pub fn with_served_bytes(self, served: prometheus_client::metrics::counter::Counter) -> Self {
        ShuffleService { served: Some(served), ..self }
    }
}

/// True for ids the engine makes: letters, digits, `-`, `_`, `.` (never a path).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<ShuffleChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Shuffle for ShuffleService {
    type FetchPartitionStream = ChunkStream;

    async fn fetch_partition(
        &self,
        request: Request<FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        // Reducers are task processes on workers: they present the node certificate.
        crate::security::authorize(&request, crate::security::Role::Node, "fetch shuffle data")?;
        let req = request.into_inner();
        if !is_safe_id(&req.job_id) {
            return Err(Status::invalid_argument("bad job id"));
        }
        self.secrets.verify(&req.job_id, &req.job_secret)?;
        let files = MapOutputFiles::new(
            &self.dir,
            &JobId::from_string(req.job_id.clone()),
            &JobSecret::from_string(req.job_secret),
            req.map_task,
            AttemptId(req.attempt),
        );
        // Not the error itself: it names the job's directory, which only its tasks may know.
        let index = files.read_index().map_err(|_| {
            Status::not_found(format!(
                "no complete output of map task {} (attempt {}) of job {}",
                req.map_task, req.attempt, req.job_id
            ))
        })?;
        let segment = *index
            .partitions
            .get(req.partition as usize)
            .ok_or_else(|| Status::invalid_argument(format!("no partition {}", req.partition)))?;
        let (tx, rx) = mpsc::channel(4);
        let served = self.served.clone();
        tokio::task::spawn_blocking(move || {
            let send = |chunk: ShuffleChunk| {
                let len = chunk.data.len() as u64;
                let sent = tx.blocking_send(Ok(chunk)).is_ok();
                if let (true, Some(served)) = (sent, &served) {
                    served.inc_by(len);
                }
                sent
            };
            // Each chunk goes out when the next one is read: the last one is sent after the
            // segment's CRC-32 check, marked last.
            // (An empty segment sends one empty chunk, whose CRC-32 is 0.)
            let mut pending = ShuffleChunk::default();
            let read = read_segment_checked(&files.data, &segment, CHUNK_BYTES, |bytes, crc32| {
                let full = std::mem::replace(
                    &mut pending,
                    ShuffleChunk { crc32, data: bytes.to_vec(), ..Default::default() },
                );
                full.data.is_empty() || send(full)
            });
            match read {
                Ok(()) => {
                    send(ShuffleChunk {
                        total_bytes: segment.len,
                        total_crc32: segment.crc32,
                        last: true,
                        ..pending
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "serving map output failed");
                    let what = format!(
                        "partition {} of map task {} (attempt {})",
                        req.partition, req.map_task, req.attempt
                    );
                    let _ =
                        tx.blocking_send(Err(Status::data_loss(format!("{what} is unreadable or corrupt"))));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures::StreamExt;

    use super::*;
    use crate::security::{Identity, PeerInfo};
    use crate::shuffle::{MapOutputIndex, Segment};

    /// Writes map task 0 (attempt 1) of `job`, one partition holding `bytes`.
    fn write_output(root: &Path, job: &str, secret: &JobSecret, bytes: &[u8]) {
        let files = MapOutputFiles::new(root, &JobId::from_string(job.into()), secret, 0, AttemptId(1));
        std::fs::create_dir_all(files.data.parent().unwrap()).unwrap();
        std::fs::write(&files.data, bytes).unwrap();
        let segment = Segment { offset: 0, len: bytes.len() as u64, crc32: crc32fast::hash(bytes), rows: 1 };
        let index = MapOutputIndex { partitions: vec![segment] };
        std::fs::write(&files.index, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Fetches partition 0 of map task 0 (attempt 1) of `job` as a worker would.
    async fn fetch(service: &ShuffleService, job: &str, secret: &str) -> Result<Vec<u8>, Status> {
        let mut request = Request::new(FetchPartitionRequest {
            job_id: job.into(),
            map_task: 0,
            attempt: 1,
            partition: 0,
            job_secret: secret.into(),
        });
        let peer = PeerInfo { addr: "127.0.0.1:9".parse().unwrap(), identity: Some(Identity::Node) };
        request.extensions_mut().insert(peer);
        let mut stream = service.fetch_partition(request).await?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes.extend_from_slice(&chunk.data);
            if chunk.last {
                return Ok(bytes);
            }
        }
        panic!("the stream ended without its last chunk");
    }

    #[tokio::test]
    async fn map_output_is_served_only_against_its_job_s_secret() {
        let root = tempfile::tempdir().unwrap();
        let secrets = JobSecrets::new();
        let (a, b) = (JobSecret::generate(), JobSecret::generate());
        secrets.insert("job-a", &a);
        secrets.insert("job-b", &b);
        let data = b"the partition's bytes, served in full".repeat(100);
        write_output(root.path(), "job-a", &a, &data);
        let service = ShuffleService::new(root.path().to_owned(), secrets.clone());

        assert_eq!(fetch(&service, "job-a", a.expose()).await.unwrap(), data);

        let refused = fetch(&service, "job-a", b.expose()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("job-a"), "{}", refused.message());
        for secret in [&a, &b] {
            assert!(!refused.message().contains(secret.expose()), "no secret in {}", refused.message());
        }
        let empty = fetch(&service, "job-a", "").await.unwrap_err();
        assert_eq!(empty.code(), tonic::Code::PermissionDenied);

        let unknown = fetch(&service, "job-c", a.expose()).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied, "{unknown:?}");
        assert!(unknown.message().contains("job-c"), "{}", unknown.message());

        // Job b's secret is right for job b, whose output simply is not here.
        let missing = fetch(&service, "job-b", b.expose()).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");

        secrets.remove("job-a");
        let forgotten = fetch(&service, "job-a", a.expose()).await.unwrap_err();
        assert_eq!(forgotten.code(), tonic::Code::PermissionDenied, "a dropped job is served no more");
    }

    #[test]
    fn the_registry_keeps_digests_and_shows_none() {
        let secrets = JobSecrets::new();
        let secret = JobSecret::from_string("plain-text-secret".into());
        secrets.clone().insert("j", &secret);
        assert!(secrets.contains("j"), "clones share the registry");
        assert!(secrets.verify("j", "plain-text-secret").is_ok());
        assert!(secrets.verify("j", "plain-text-secreT").is_err());
        assert_eq!(format!("{secrets:?}"), "JobSecrets { jobs: 1 }");
        assert!(same_digest(&digest("x"), &digest("x")));
        assert!(!same_digest(&digest("x"), &digest("y")));
    }
}
