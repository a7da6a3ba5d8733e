//! The worker's `BinaryPeer` service: serves the job binaries in its cache to other
//! workers the driver sends its way, on the same listener (and with the same mutual TLS)
//! as its shuffle service, to node certificates only. A binary it is still fetching is
//! served once it has it, verified; what it sends is the compressed copy it received.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use gristmill::cluster::binary::is_digest;
use gristmill::cluster::binary_transfer::send_chunks;
use gristmill::security::{Role, authorize};
use gristmill_proto::v1::binary_peer_server::BinaryPeer;
use gristmill_proto::v1::{BinaryChunk, BinaryRef};
use prometheus_client::metrics::counter::Counter;
use tonic::{Request, Response, Status};

use crate::binaries::BinaryCache;

/// How long a request waits for this worker's own fetch of the binary.
const HOLDER_WAIT: Duration = Duration::from_secs(120);

/// Serves cached job binaries to other workers.
pub struct PeerBinaries {
    cache: Arc<BinaryCache>,
    served: Counter,
}

impl PeerBinaries {
    /// Serves the binaries of `cache`, counting the bytes sent in `served`.
    pub fn new(cache: Arc<BinaryCache>, served: Counter) -> Self {
        PeerBinaries { cache, served }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<BinaryChunk, Status>> + Send>>;

#[tonic::async_trait]
impl BinaryPeer for PeerBinaries {
    type FetchBinaryStream = ChunkStream;

    async fn fetch_binary(&self, request: Request<BinaryRef>) -> Result<Response<ChunkStream>, Status> {
        // Job binaries are for the cluster's nodes only, as on the driver.
        authorize(&request, Role::Node, "fetch job binaries")?;
        let digest = request.into_inner().digest;
        if !is_digest(&digest) {
            return Err(Status::invalid_argument("not a job binary digest"));
        }
        if self.cache.held(&digest, HOLDER_WAIT).await.is_none() {
            return Err(Status::not_found(format!("this worker has no job binary {digest}")));
        }
        let served = self.served.clone();
        let chunks = send_chunks(self.cache.store(), digest).await?.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                served.inc_by(chunk.data.len() as u64);
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}
