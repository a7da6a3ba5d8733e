//! The reducer's side of the shuffle: fetching one partition of a map output from the
//! worker that holds it, checking every chunk's CRC-32 and the whole stream's, into a
//! local file (written directly, no page cache) the merge then reads.

use std::path::Path;
use std::time::Duration;

use gristmill_proto::MAX_MESSAGE_BYTES;
use gristmill_proto::v1::FetchPartitionRequest;
use gristmill_proto::v1::shuffle_client::ShuffleClient;
use std::io::Write as _;

use super::payload::MapOutputSource;
use crate::ids::JobId;
use crate::security::JobSecret;
use crate::storage::DirectFile;

/// How long a fetch may wait for the next chunk before it gives up on the worker.
pub const FETCH_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a worker's shuffle service may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A map output that could not be fetched: the driver re-runs the map task.
#[derive(Debug)]
pub struct FetchError {
    /// The map task.
    pub map_task: u32,
    /// The worker that should have served it.
    pub worker: String,
    /// What went wrong.
    pub message: String,
}

/// Why a fetch failed: the map output could not be had, or this reducer could not keep it.
#[derive(Debug)]
pub enum FetchFailure {
    /// The map output could not be fetched: the driver re-runs the map task.
    Remote(FetchError),
    /// Writing the fetched bytes to this reducer's own disk failed (e.g. it is full): the
    /// reducer's own failure, which must not blame the map or its worker.
    Local(crate::Error),
}

impl From<FetchError> for FetchFailure {
    fn from(e: FetchError) -> Self {
        FetchFailure::Remote(e)
    }
}

/// The node certificate this task presents to other workers' shuffle services (loaded once).
fn node_tls() -> crate::Result<Option<crate::security::ClientTls>> {
    static TLS: std::sync::OnceLock<std::result::Result<Option<crate::security::ClientTls>, String>> =
        std::sync::OnceLock::new();
    TLS.get_or_init(|| super::rpc::node_tls_from_env().map_err(|e| e.to_string()))
        .clone()
        .map_err(|cause| crate::Error::Rpc { what: "loading the node certificate".into(), cause })
}

/// Fetches partition `partition` of `source` into `path`, presenting the job's `secret`;
/// returns its length in bytes.
pub async fn fetch_partition(
    job: &JobId,
    secret: &JobSecret,
    source: &MapOutputSource,
    partition: u32,
    path: &Path,
) -> Result<u64, FetchFailure> {
    let local =
        |e: std::io::Error| FetchFailure::Local(crate::Error::local_disk(path.display().to_string(), e));
    let fail = |message: String| FetchError {
        map_task: source.map_task,
        worker: source.worker.clone(),
        message: format!(
            "fetching partition {partition} of map task {} (attempt {}) from worker {} at {}: {message}",
            source.map_task, source.attempt, source.worker, source.address
        ),
    };
    let tls = node_tls().map_err(|e| fail(e.to_string()))?;
    let url = super::rpc::url_with_scheme(&source.address, tls.is_some()).map_err(|e| fail(e.to_string()))?;
    let channel = super::rpc::connect(&url, tls.as_ref(), CONNECT_TIMEOUT)
        .await
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let mut client = ShuffleClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = FetchPartitionRequest {
        job_id: job.to_string(),
        map_task: source.map_task,
        attempt: source.attempt,
        partition,
        job_secret: secret.expose().to_owned(),
    };
    let response = tokio::time::timeout(FETCH_IDLE_TIMEOUT, client.fetch_partition(request))
        .await
        .map_err(|_| fail("no answer".into()))?
        .map_err(|status| fail(status.message().to_owned()))?;
    let mut stream = response.into_inner();
    // Written directly, bypassing the page cache (the merge reads it once, directly too).
    // Its writes copy into a buffer and hand full 8 MiB blocks to a thread, so they block
    // this task only while the disk is two blocks behind.
    let mut file = DirectFile::create(path).map_err(local)?;
    let mut crc = crc32fast::Hasher::new();
    let mut written = 0u64;
    loop {
        let chunk = tokio::time::timeout(FETCH_IDLE_TIMEOUT, stream.message())
            .await
            .map_err(|_| fail(format!("stalled after {written} bytes")))?
            .map_err(|status| fail(status.message().to_owned()))?
            .ok_or_else(|| fail(format!("the stream ended early after {written} bytes")))?;
        let chunk_crc = crc32fast::hash(&chunk.data);
        if chunk_crc != chunk.crc32 {
            return Err(fail(format!("a chunk at byte {written} has a bad CRC-32")).into());
        }
        // The stream's CRC from the chunk's, without a second pass over the bytes.
        crc.combine(&crc32fast::Hasher::new_with_initial_len(chunk_crc, chunk.data.len() as u64));
        written += chunk.data.len() as u64;
        file.write_all(&chunk.data).map_err(local)?;
        if chunk.last {
            if chunk.total_bytes != written || chunk.total_crc32 != crc.finalize() {
                return Err(
                    fail("the partition's length or CRC-32 differs from the map output's".into()).into()
                );
            }
            break;
        }
    }
    file.finish().map_err(local)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use gristmill_proto::v1::shuffle_server::ShuffleServer;

    use super::*;
    use crate::cluster::shuffle_service::{JobSecrets, ShuffleService};
    use crate::ids::AttemptId;
    use crate::security::{ListenerLimits, SecureListener};
    use crate::shuffle::{MapOutputFiles, MapOutputIndex, Segment};

    /// Serves map task 0 (attempt 1) of `job`, one partition holding `bytes`, over plaintext.
    async fn serve(root: &Path, job: &JobId, secret: &JobSecret, bytes: &[u8]) -> String {
        let files = MapOutputFiles::new(root, job, secret, 0, AttemptId(1));
        std::fs::create_dir_all(files.data.parent().unwrap()).unwrap();
        std::fs::write(&files.data, bytes).unwrap();
        let segment = Segment { offset: 0, len: bytes.len() as u64, crc32: crc32fast::hash(bytes), rows: 1 };
        std::fs::write(
            &files.index,
            serde_json::to_vec(&MapOutputIndex { partitions: vec![segment] }).unwrap(),
        )
        .unwrap();
        let secrets = JobSecrets::new();
        secrets.insert(&job.to_string(), secret);
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = SecureListener::new(tcp, None, ListenerLimits::default()).unwrap();
        let address = listener.local_addr().to_string();
        let service = ShuffleServer::new(ShuffleService::new(root.to_owned(), secrets));
        let server = tonic::transport::Server::builder().add_service(service);
        tokio::spawn(server.serve_with_incoming(listener.into_incoming()));
        address
    }

    #[tokio::test]
    async fn a_reducer_that_cannot_keep_what_it_fetched_fails_itself_not_the_map() {
        let root = tempfile::tempdir().unwrap();
        let (job, secret) = (JobId::from_string("job-a".into()), JobSecret::generate());
        let bytes = b"one partition of map output".repeat(100);
        let address = serve(&root.path().join("shuffle"), &job, &secret, &bytes).await;
        let source =
            MapOutputSource { map_task: 0, attempt: 1, worker: "w-1".into(), address, local_dir: None };

        let fetched = root.path().join("fetched.arrows");
        let len = fetch_partition(&job, &secret, &source, 0, &fetched).await.expect("fetched");
        assert_eq!((len, std::fs::read(&fetched).unwrap()), (bytes.len() as u64, bytes));

        // The fetch directory is a file: the reducer's own disk is at fault, not the map's worker.
        std::fs::write(root.path().join("not-a-dir"), b"").unwrap();
        let unwritable = root.path().join("not-a-dir").join("fetched.arrows");
        match fetch_partition(&job, &secret, &source, 0, &unwritable).await {
            Err(FetchFailure::Local(e)) => assert!(e.to_string().contains("not-a-dir"), "{e}"),
            other => panic!("a local write failure blames the map: {other:?}"),
        }

        let gone = MapOutputSource { address: "127.0.0.1:1".into(), ..source };
        match fetch_partition(&job, &secret, &gone, 0, &fetched).await {
            Err(FetchFailure::Remote(FetchError { map_task: 0, worker, .. })) => assert_eq!(worker, "w-1"),
            other => panic!("an unreachable worker is a fetch failure: {other:?}"),
        }
    }
}
