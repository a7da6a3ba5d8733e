//! The worker's cache of job binaries: fetched from the driver once per digest, verified
//! against the digest, stored executable under it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use gristmill::cluster::binary::BinaryStore;
use gristmill::cluster::rpc::{DriverEndpoint, connect_driver};
use gristmill_proto::v1::BinaryRef;
use tokio::sync::Mutex;

/// Cached job binaries.
pub struct BinaryCache {
    store: BinaryStore,
    driver: DriverEndpoint,
    /// One lock per digest, so concurrent tasks of one job fetch it once.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl BinaryCache {
    /// A cache in `store`, fetching from the driver at `driver`.
    pub fn new(store: BinaryStore, driver: DriverEndpoint) -> Self {
        BinaryCache { store, driver, fetching: Mutex::new(HashMap::new()) }
    }

    /// The path of the binary with `digest`, fetching it first if needed.
    pub async fn get(&self, digest: &str) -> Result<PathBuf, String> {
        let lock = self.fetching.lock().await.entry(digest.to_owned()).or_default().clone();
        let _guard = lock.lock().await;
        if self.store.contains(digest) {
            return Ok(self.store.path(digest));
        }
        let mut client = connect_driver(&self.driver).await.map_err(|e| e.to_string())?;
        let mut stream = client
            .fetch_binary(BinaryRef { digest: digest.to_owned() })
            .await
            .map_err(|s| format!("fetching job binary {digest}: {}", s.message()))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) =
            stream.message().await.map_err(|s| format!("fetching job binary {digest}: {}", s.message()))?
        {
            bytes.extend_from_slice(&chunk.data);
        }
        let store = self.store.clone();
        let digest = digest.to_owned();
        tokio::task::spawn_blocking(move || store.put(&digest, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}
