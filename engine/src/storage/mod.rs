//! Storage: URLs and paths to object stores, globs and directory listings.
//!
//! Every input and output goes through [`object_store`], local files included, so the code
//! path that reads `/data/x.txt` is the one that reads `s3://bucket/x.txt`.

mod counting;
mod direct_file;
mod listing;
mod mapped;
mod options;
mod reader;
mod stores;

use std::sync::Arc;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{Error, Result};

pub use counting::{
    CountingStore, RequestStats, STORAGE_GET_BYTES, STORAGE_GET_REQUESTS, STORAGE_HEAD_REQUESTS,
    STORAGE_LIST_REQUESTS, request_stats,
};
pub(crate) use counting::{count_local_read, read_local_range};
pub use direct_file::{DirectFile, DirectReader, read_buffer_bytes, read_buffer_bytes_for, staging_name};
pub(crate) use listing::relative_to;
pub use mapped::{Footprint, footprint, map_file};
pub use options::StorageOptions;
pub use reader::ObjectReader;

/// A place in an object store: the store, a path in it, and how to show it to a user.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    /// The store's multipart uploads; `None` on the local file system.
    multipart: Option<Arc<dyn MultipartStore>>,
    path: Path,
    /// `scheme://authority` for URLs, empty for local paths.
    base: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("store", &self.store).field("location", &self.display()).finish()
    }
}

impl Location {
    /// Parses a URL (`file:///x`, `s3://bucket/x`, ...) or a plain local path, its store
    /// configured by the environment alone. A job's locations use
    /// [`parse_with`](Location::parse_with) and the job's options.
    pub fn parse(location: &str) -> Result<Location> {
        Location::parse_with(location, &StorageOptions::default())
    }

    /// Parses a URL or a plain local path, its store configured by the environment and
    /// `options` (the job's `--storage-option`s). Every place derived from it
    /// ([`child`](Location::child), [`with_path`](Location::with_path)) shares the store.
    pub fn parse_with(location: &str, options: &StorageOptions) -> Result<Location> {
        Location::parse_in(location, options, stores::Environment::Read)
    }

    /// Parses a URL or a plain local path, its store configured by `options` alone, not by
    /// this process's environment: how the driver reaches a job's output.
    pub fn parse_with_options_only(location: &str, options: &StorageOptions) -> Result<Location> {
        Location::parse_in(location, options, stores::Environment::Ignore)
    }

    fn parse_in(
        location: &str,
        options: &StorageOptions,
        environment: stores::Environment,
    ) -> Result<Location> {
        let invalid = |reason: String| Error::InvalidLocation { location: location.to_owned(), reason };
        if !location.contains("://") {
            let absolute = std::path::absolute(location).map_err(|e| invalid(e.to_string()))?;
            let path = Path::from_absolute_path(&absolute).map_err(|e| invalid(e.to_string()))?;
            return Ok(Location { store: stores::local(), multipart: None, path, base: String::new() });
        }
        let url = Url::parse(location).map_err(|e| invalid(e.to_string()))?;
        let stores::Store { objects: store, multipart } =
            stores::store_for(&url, options, environment).map_err(invalid)?;
        let (_, path) = object_store::ObjectStoreScheme::parse(&url).map_err(|e| invalid(e.to_string()))?;
        let path = Path::parse(path).map_err(|e| invalid(e.to_string()))?;
        // The host only: a URL's user info may hold credentials, which never reach messages.
        let base = match url.scheme() {
            "file" => String::new(),
            scheme => format!("{scheme}://{}", url.host_str().unwrap_or_default()),
        };
        Ok(Location { store, multipart, path, base })
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store's multipart uploads (an object store's), or `None` (the local file system).
    pub fn multipart(&self) -> Option<&Arc<dyn MultipartStore>> {
        self.multipart.as_ref()
    }

    /// The path within the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same store at another path.
    pub fn with_path(&self, path: Path) -> Location {
        Location {
            store: self.store.clone(),
            multipart: self.multipart.clone(),
            path,
            base: self.base.clone(),
        }
    }

    /// A child of this location (`self/name`).
    pub fn child(&self, name: &str) -> Location {
        self.with_path(self.path.clone().join(name))
    }

    /// A file below this location by its `relative` path (`a=1/part-0.parquet`), each
    /// segment taken as it is (already escaped: `%2F` stays `%2F`), unlike
    /// [`child`](Location::child), which escapes one name.
    pub fn descendant(&self, relative: &str) -> Result<Location> {
        let joined = if self.path.as_ref().is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.path)
        };
        let path = Path::parse(&joined).map_err(|e| Error::InvalidLocation {
            location: format!("{}/{relative}", self.display()),
            reason: e.to_string(),
        })?;
        Ok(self.with_path(path))
    }

    /// How users wrote it: a URL, or an absolute local path.
    pub fn display(&self) -> String {
        if self.base.is_empty() { format!("/{}", self.path) } else { format!("{}/{}", self.base, self.path) }
    }

    /// True for the local file system.
    pub fn is_local(&self) -> bool {
        self.base.is_empty()
    }

    /// The file system path of a local location (plain paths and `file://` URLs).
    pub fn local_file(&self) -> Option<std::path::PathBuf> {
        let local = self.is_local().then(object_store::local::LocalFileSystem::new)?;
        local.path_to_filesystem(&self.path).ok()
    }

    /// Every object below this location (recursively), sorted by path.
    pub async fn list(&self) -> Result<Vec<object_store::ObjectMeta>> {
        let prefix = (!self.path.as_ref().is_empty()).then_some(&self.path);
        let mut objects: Vec<_> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|source| Error::read(self.display(), source))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }
}

/// One input file, resolved: where it is and how large.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// Where it is.
    pub location: Location,
    /// Its size in bytes, from the listing (so readers never need suffix requests).
    pub size: u64,
    /// The Hive partition values of its directories below the listed input directory
    /// (`k=v/`, `None` for a null), outermost first: readers add them as columns.
    pub partitions: Vec<(String, Option<String>)>,
}

impl InputFile {
    /// A file without partition values.
    pub fn new(location: Location, size: u64) -> Self {
        InputFile { location, size, partitions: Vec::new() }
    }

    /// `schema` with a nullable `Utf8` column for each of the file's partition values it
    /// lacks, appended: the schema its rows are read with.
    pub fn with_partition_fields(&self, schema: &arrow::datatypes::Schema) -> arrow::datatypes::SchemaRef {
        let mut fields: Vec<arrow::datatypes::FieldRef> = schema.fields().iter().cloned().collect();
        for (name, _) in &self.partitions {
            if schema.field_with_name(name).is_err() {
                fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
                    name,
                    arrow::datatypes::DataType::Utf8,
                    true,
                )));
            }
        }
        std::sync::Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
    }

    /// The file as users name it.
    pub fn display(&self) -> String {
        self.location.display()
    }
}

/// Resolves inputs (files, directories, globs, URLs) to the files they name, in order,
/// refusing outputs that never committed: `resolve_inputs_with(inputs, options, false)`.
pub async fn resolve_inputs(inputs: &[String], options: &StorageOptions) -> Result<Vec<InputFile>> {
    resolve_inputs_with(inputs, options, false).await
}

/// Resolves inputs (files, directories, globs, URLs) to the files they name, in order.
///
/// Directories are listed recursively, skipping names that start with `_` or `.` (Hadoop's
/// hidden files, such as `_SUCCESS`). A directory whose `_SUCCESS` is a Gristmill manifest
/// (a committed output) gives exactly the files the manifest lists; other files in or below
/// it are skipped. A directory with part files (or part files still being written) but no
/// `_SUCCESS` is refused with [`Error::UncommittedInput`] unless `allow_uncommitted`; a
/// `_SUCCESS` of another tool (not a manifest) changes nothing. A path that names nothing
/// and a glob that matches nothing are errors; an empty directory is an empty input. URLs
/// are resolved with the job's `options`.
pub async fn resolve_inputs_with(
    inputs: &[String],
    options: &StorageOptions,
    allow_uncommitted: bool,
) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for input in inputs {
        let found = match split_glob(input) {
            Some((root, pattern)) => resolve_glob(input, root, pattern, options, allow_uncommitted).await?,
            None => resolve_path(input, options, allow_uncommitted).await?,
        };
        files.extend(found);
    }
    Ok(files)
}

async fn resolve_path(
    input: &str,
    options: &StorageOptions,
    allow_uncommitted: bool,
) -> Result<Vec<InputFile>> {
    let location = Location::parse_with(input, options)?;
    match location.store.head(&location.path).await {
        Ok(meta) => return Ok(vec![InputFile::new(location, meta.size)]),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => return Err(Error::read(location.display(), source)),
    }
    let local_dir = location.is_local() && std::path::Path::new(&location.display()).is_dir();
    let files = listing::list_inputs(&location, |_| true, allow_uncommitted).await?;
    if files.is_empty() && !local_dir {
        return Err(Error::InputNotFound { path: input.to_owned() });
    }
    Ok(files)
}

async fn resolve_glob(
    input: &str,
    root: &str,
    pattern: &str,
    options: &StorageOptions,
    allow_uncommitted: bool,
) -> Result<Vec<InputFile>> {
    let root_location = Location::parse_with(if root.is_empty() { "." } else { root }, options)?;
    let matcher = glob_matcher(input, pattern)?;
    let files =
        listing::list_inputs(&root_location, |relative| matcher.is_match(relative), allow_uncommitted)
            .await?;
    if files.is_empty() {
        return Err(Error::GlobMatchedNothing { pattern: input.to_owned() });
    }
    Ok(files)
}

/// Splits `a/b/*.txt` into the directory to list (`a/b`) and the pattern below it (`*.txt`).
fn split_glob(input: &str) -> Option<(&str, &str)> {
    let first_meta = input.find(['*', '?', '[', '{'])?;
    let cut = input[..first_meta].rfind('/').map_or(0, |i| i + 1);
    Some((input[..cut].trim_end_matches('/'), &input[cut..]))
}

fn glob_matcher(input: &str, pattern: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::InvalidLocation { location: input.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::listing::is_hidden;
    use super::*;

    #[test]
    fn globs_split_at_the_last_plain_directory() {
        assert_eq!(split_glob("data/2026-*/x.txt"), Some(("data", "2026-*/x.txt")));
        assert_eq!(split_glob("/abs/*.txt"), Some(("/abs", "*.txt")));
        assert_eq!(split_glob("*.txt"), Some(("", "*.txt")));
        assert_eq!(split_glob("s3://b/logs/*.parquet"), Some(("s3://b/logs", "*.parquet")));
        assert_eq!(split_glob("plain/file.txt"), None);
    }

    #[test]
    fn hidden_files_are_skipped() {
        assert!(is_hidden("_SUCCESS"));
        assert!(is_hidden("sub/.crc"));
        assert!(!is_hidden("part-00000.parquet"));
    }

    #[test]
    fn locations_display_as_written() {
        let l = Location::parse("/tmp/x/y.txt").unwrap();
        assert_eq!(l.display(), "/tmp/x/y.txt");
        assert!(l.is_local());
        let f = Location::parse("file:///tmp/z").unwrap();
        assert_eq!(f.display(), "/tmp/z");
        let err = Location::parse("nosuch://bucket/x").unwrap_err().to_string();
        assert!(err.contains("nosuch://bucket/x"), "{err}");
    }

    fn s3_options(key_id: &str) -> StorageOptions {
        StorageOptions::new([
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", key_id),
            ("aws_secret_access_key", "secret-value-never-shown"),
        ])
    }

    #[test]
    fn stores_are_shared_per_bucket_and_options() {
        let a = Location::parse_with("s3://bucket-a/x", &s3_options("one")).unwrap();
        let same = Location::parse_with("s3://bucket-a/y/z", &s3_options("one")).unwrap();
        let other_options = Location::parse_with("s3://bucket-a/x", &s3_options("two")).unwrap();
        let other_bucket = Location::parse_with("s3://bucket-b/x", &s3_options("one")).unwrap();
        assert!(Arc::ptr_eq(a.store(), same.store()), "same bucket and options: one store");
        assert!(!Arc::ptr_eq(a.store(), other_options.store()), "other credentials: another store");
        assert!(!Arc::ptr_eq(a.store(), other_bucket.store()));
        assert!(Arc::ptr_eq(a.store(), a.child("part").store()));
        assert_eq!(other_options.display(), "s3://bucket-a/x");
    }

    #[test]
    fn one_memory_store_whatever_the_options() {
        let a = Location::parse("memory:///a").unwrap();
        let b = Location::parse_with("memory:///b", &s3_options("one")).unwrap();
        assert!(Arc::ptr_eq(a.store(), b.store()));
    }

    #[test]
    fn bad_options_are_named_by_key_never_by_value() {
        let options = StorageOptions::new([("aws_no_such_setting", "secret-value-never-shown")]);
        let err = Location::parse_with("s3://bucket/x", &options).unwrap_err().to_string();
        assert!(err.contains("aws_no_such_setting"), "{err}");
        assert!(!err.contains("secret-value-never-shown"), "{err}");
    }
}
