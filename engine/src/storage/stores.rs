//! Object stores by URL: S3 (`s3://`, `s3a://`), GCS (`gs://`), Azure (`az://`,
//! `abfss://`, ...), `memory://` and local files, configured from the standard environment
//! variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and a job's [`StorageOptions`].
//!
//! Stores are built once per scheme, bucket and options and shared by every path in them
//! (one HTTP connection pool per bucket and credentials; one `memory://` store per
//! process, so tests can use it). The cache is keyed by a digest of the options, so no
//! string built from it holds a credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::{CountingStore, StorageOptions};

/// What a store is cached under: `scheme://bucket` and a digest of the options (never
/// their text).
#[derive(Clone, PartialEq, Eq, Hash)]
struct StoreKey {
    base: String,
    options: [u8; 32],
    environment: Environment,
}

/// Whether a store reads the process's `AWS_*`, `GOOGLE_*`, `AZURE_*` variables under the
/// job's options. The driver ignores its own: it commits each job with that job's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Environment {
    /// The environment, then the options on top (job binaries and their tasks).
    Read,
    /// The options alone (the driver, acting for a job).
    Ignore,
}

/// A store, and its multipart-upload face where it has one (every object store; not the
/// local file system): staged part files are uploads the committer completes.
#[derive(Clone)]
pub(super) struct Store {
    pub objects: Arc<dyn ObjectStore>,
    pub multipart: Option<Arc<dyn MultipartStore>>,
}

static STORES: OnceLock<Mutex<HashMap<StoreKey, Store>>> = OnceLock::new();

/// (Client options such as `allow_http` and timeouts come from the environment and the
/// job's options, e.g. `AWS_ALLOW_HTTP=true`.)
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

/// The store serving `url` with `options` (shared per scheme, bucket and options).
/// Errors name the URL's scheme and an option's key at most, never a value.
pub(super) fn store_for(
    url: &Url,
    options: &StorageOptions,
    environment: Environment,
) -> Result<Store, String> {
    let (scheme, _) =
        ObjectStoreScheme::parse(url).map_err(|_| format!("unsupported URL scheme `{}`", url.scheme()))?;
    let key = StoreKey {
        base: format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
        // Options configure remote stores only: one `memory://` store per process.
        options: if scheme == ObjectStoreScheme::Memory { [0; 32] } else { options.digest() },
        environment,
    };
    let stores = STORES.get_or_init(Default::default);
    if let Some(store) = stores.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(store.clone());
    }
    let store = build(scheme, url, options, environment)?;
    // Two threads may both build a store; the first one cached is the one everybody uses.
    let mut stores = stores.lock().unwrap_or_else(|e| e.into_inner());
    Ok(stores.entry(key).or_insert(store).clone())
}

fn build(
    scheme: ObjectStoreScheme,
    url: &Url,
    options: &StorageOptions,
    environment: Environment,
) -> Result<Store, String> {
    static TLS: Once = Once::new();
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let store = match scheme {
        ObjectStoreScheme::Local => return Ok(Store { objects: local(), multipart: None }),
        ObjectStoreScheme::Memory => with_multipart(InMemory::new()),
        ObjectStoreScheme::AmazonS3 => {
            let builder = if environment == Environment::Read {
                AmazonS3Builder::from_env()
            } else {
                AmazonS3Builder::new()
            };
            let mut builder = builder.with_url(url.as_str());
            for (k, v) in options.iter() {
                builder = builder.with_config(k.parse().map_err(|_| unknown_option(k, "S3"))?, v);
            }
            with_multipart(builder.with_retry(retry()).build().map_err(|e| e.to_string())?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let builder = if environment == Environment::Read {
                GoogleCloudStorageBuilder::from_env()
            } else {
                GoogleCloudStorageBuilder::new()
            };
            let mut builder = builder.with_url(url.as_str());
            for (k, v) in options.iter() {
                builder = builder.with_config(k.parse().map_err(|_| unknown_option(k, "GCS"))?, v);
            }
            with_multipart(builder.with_retry(retry()).build().map_err(|e| e.to_string())?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let builder = if environment == Environment::Read {
                MicrosoftAzureBuilder::from_env()
            } else {
                MicrosoftAzureBuilder::new()
            };
            let mut builder = builder.with_url(url.as_str());
            for (k, v) in options.iter() {
                builder = builder.with_config(k.parse().map_err(|_| unknown_option(k, "Azure"))?, v);
            }
            with_multipart(builder.with_retry(retry()).build().map_err(|e| e.to_string())?)
        }
        _ => return Err(format!("unsupported URL scheme `{}`", url.scheme())),
    };
    Ok(Store { objects: Arc::new(CountingStore::new(store.objects, false)), multipart: store.multipart })
}

/// `store` through both faces (the object face is wrapped for counting by the caller).
fn with_multipart<S: ObjectStore + MultipartStore>(store: S) -> Store {
    let store = Arc::new(store);
    Store { objects: store.clone(), multipart: Some(store) }
}

/// The local file system (one per process), its requests counted.
pub(super) fn local() -> Arc<dyn ObjectStore> {
    static LOCAL: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    LOCAL.get_or_init(|| Arc::new(CountingStore::new(Arc::new(LocalFileSystem::new()), true))).clone()
}

/// The object-store variables of this process's environment (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*` that name a store setting), as options: a submitter hands them to its job, so
/// the driver and the workers act with the submitter's settings, not their own.
pub(super) fn environment_options() -> Vec<(String, String)> {
    use object_store::aws::AmazonS3ConfigKey;
    use object_store::azure::AzureConfigKey;
    use object_store::gcp::GoogleConfigKey;
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter_map(|(name, value)| {
            let key = name.to_ascii_lowercase();
            let known = (name.starts_with("AWS_") && key.parse::<AmazonS3ConfigKey>().is_ok())
                || (name.starts_with("GOOGLE_") && key.parse::<GoogleConfigKey>().is_ok())
                || (name.starts_with("AZURE_") && key.parse::<AzureConfigKey>().is_ok());
            known.then_some((key, value))
        })
        .collect()
}

fn unknown_option(key: &str, store: &str) -> String {
    format!("unknown {store} storage option `{key}`")
}
