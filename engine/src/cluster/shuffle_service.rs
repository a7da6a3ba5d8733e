//! A worker's shuffle service: serves partitions of the map outputs on its disk to
//! reducers, in chunks of at most [`CHUNK_BYTES`], each with its CRC-32; the stream's end
//! carries the length and CRC-32 the map task recorded, and a segment whose bytes no longer
//! match them is refused (the reducer reports a fetch failure and the map is re-run).

use std::path::PathBuf;
use std::pin::Pin;

use futures::Stream;
use gristmill_proto::CHUNK_BYTES;
use gristmill_proto::v1::shuffle_server::Shuffle;
use gristmill_proto::v1::{FetchPartitionRequest, ShuffleChunk};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::ids::{AttemptId, JobId};
use crate::shuffle::{MapOutputFiles, read_segment_checked};

/// Serves map outputs under a shuffle directory.
#[derive(Clone, Debug)]
pub struct ShuffleService {
    dir: PathBuf,
}

impl ShuffleService {
    /// A service for the map outputs under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        ShuffleService { dir }
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
        let req = request.into_inner();
        if !is_safe_id(&req.job_id) {
            return Err(Status::invalid_argument("bad job id"));
        }
        let files = MapOutputFiles::new(
            &self.dir,
            &JobId::from_string(req.job_id.clone()),
            req.map_task,
            AttemptId(req.attempt),
        );
        let index = files.read_index().map_err(|e| Status::not_found(e.to_string()))?;
        let segment = *index
            .partitions
            .get(req.partition as usize)
            .ok_or_else(|| Status::invalid_argument(format!("no partition {}", req.partition)))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let send = |chunk: ShuffleChunk| tx.blocking_send(Ok(chunk)).is_ok();
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
                    let _ = tx.blocking_send(Err(Status::data_loss(e.to_string())));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
