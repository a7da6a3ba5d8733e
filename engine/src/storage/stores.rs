//! Object stores by URL: S3 (`s3://`, `s3a://`), GCS (`gs://`), Azure (`az://`,
//! `abfss://`, ...), `memory://` and local files, configured from the standard environment
//! variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and `--storage-option key=value` flags.
//!
//! Stores are built once per scheme and bucket and shared by every path in them (one HTTP
//! connection pool per bucket; one `memory://` store per process, so tests can use it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::CountingStore;

/// `key=value` settings applied to every store built after [`set_storage_options`].
static OPTIONS: OnceLock<Vec<(String, String)>> = OnceLock::new();
static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();

/// Sets the `--storage-option` pairs (once per process, before any store is built).
/// Keys are object_store's config keys, e.g. `aws_endpoint`, `aws_region`,
/// `aws_access_key_id`, `google_service_account`, `azure_storage_account_name`.
pub fn set_storage_options(options: Vec<(String, String)>) {
    let _ = OPTIONS.set(options);
}

fn options() -> &'static [(String, String)] {
    OPTIONS.get().map(Vec::as_slice).unwrap_or_default()
}

/// (Client options such as `allow_http` and timeouts come from the environment and
/// `--storage-option`, e.g. `AWS_ALLOW_HTTP=true`.)
///
/// Transient errors (timeouts, 5xx, throttling) are retried with exponential backoff for
/// at most this long; permanent ones (404, 403) fail at once.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 6,
        retry_timeout: Duration::from_secs(30),
    }
}

/// The store serving `url` (shared per scheme and bucket).
pub(super) fn store_for(url: &Url) -> Result<Arc<dyn ObjectStore>, String> {
    let (scheme, _) =
        ObjectStoreScheme::parse(url).map_err(|_| format!("unsupported URL scheme `{}`", url.scheme()))?;
    let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let stores = STORES.get_or_init(Default::default);
    if let Some(store) = stores.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(store.clone());
    }
    let store = build(scheme, url)?;
    stores.lock().unwrap_or_else(|e| e.into_inner()).insert(key, store.clone());
    Ok(store)
}

fn build(scheme: ObjectStoreScheme, url: &Url) -> Result<Arc<dyn ObjectStore>, String> {
    static TLS: Once = Once::new();
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => return Ok(local()),
        ObjectStoreScheme::Memory => Arc::new(InMemory::new()),
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in options() {
                builder = builder.with_config(k.parse().map_err(|_| unknown_option(k, "S3"))?, v);
            }
            Arc::new(builder.with_retry(retry()).build().map_err(|e| e.to_string())?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (k, v) in options() {
                builder = builder.with_config(k.parse().map_err(|_| unknown_option(k, "GCS"))?, v);
            }
            Arc::new(builder.with_retry(retry()).build().map_err(|e| e.to_string())?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options() {
                builder = builder.with_config(k.parse().map_err(|_| unknown_option(k, "Azure"))?, v);
            }
            Arc::new(builder.with_retry(retry()).build().map_err(|e| e.to_string())?)
        }
        _ => return Err(format!("unsupported URL scheme `{}`", url.scheme())),
    };
    Ok(Arc::new(CountingStore::new(store, false)))
}

/// The local file system (one per process), its requests counted.
pub(super) fn local() -> Arc<dyn ObjectStore> {
    static LOCAL: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    LOCAL.get_or_init(|| Arc::new(CountingStore::new(Arc::new(LocalFileSystem::new()), true))).clone()
}

fn unknown_option(key: &str, store: &str) -> String {
    format!("unknown {store} storage option `{key}`")
}
