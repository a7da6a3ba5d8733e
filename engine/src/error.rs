//! Typed errors, grouped by what the caller should do about them.
//!
//! Every variant carries the context a user needs to act: the path or URL, the task and the
//! split. `Display` is one line that already includes the cause, because that line is what
//! the CLI prints on failure.

mod kind;

pub use kind::ErrorKind;
pub(crate) use kind::{PANICKED, is_disk_full};

use crate::ids::TaskId;

/// What user code (mappers, reducers, job constructors) returns on failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The result type of user code.
pub type JobResult<T> = std::result::Result<T, BoxError>;

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make a job fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the input is wrong: the user must fix the input or the flags ----
    /// An input path or URL names nothing.
    #[error("input not found: {path}")]
    InputNotFound {
        /// The path or URL as the user gave it.
        path: String,
    },
    /// A glob matched no file.
    #[error("input glob matched no files: {pattern}")]
    GlobMatchedNothing {
        /// The glob as the user gave it.
        pattern: String,
    },
    /// A URL or path could not be understood.
    #[error("invalid location {location}: {reason}")]
    InvalidLocation {
        /// The URL or path.
        location: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Text input with bytes that are not UTF-8.
    #[error(
        "{path}: invalid UTF-8 at byte offset {offset}{} (pass --replace-invalid-utf8 to replace bad bytes, \
         or --max-bad-records N to skip up to N bad rows)",
        line_note(.line)
    )]
    InvalidUtf8 {
        /// The file.
        path: String,
        /// Absolute byte offset of the first bad byte in the file.
        offset: u64,
        /// The 1-based line it is on, when counted.
        line: Option<u64>,
    },
    /// An input directory holds part files (or part files still being written) but no
    /// `_SUCCESS`: the output of a job that did not commit.
    #[error("{path} is not a committed output (no _SUCCESS); pass --allow-uncommitted to read it anyway")]
    UncommittedInput {
        /// The directory.
        path: String,
    },
    /// A compressed text file that cannot be decompressed: cut short, or corrupt.
    #[error("{problem} {codec} stream in {path} at compressed byte {offset}: {cause}")]
    CorruptCompressed {
        /// The file.
        path: String,
        /// `truncated` or `corrupt`.
        problem: &'static str,
        /// The codec: `gzip`, `zstd`, `bzip2`, `xz`.
        codec: &'static str,
        /// Compressed bytes the decoder had taken when it failed.
        offset: u64,
        /// The decoder's complaint.
        cause: String,
    },
    /// A Parquet file that cannot be decoded.
    #[error("{path}: corrupt Parquet file{location}: {source}")]
    CorruptParquet {
        /// The file.
        path: String,
        /// Where in the file, e.g. " (row groups 0-3)"; empty for the footer.
        location: String,
        /// The decoder's complaint.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file that uses a feature this build cannot decode (a codec compiled out,
    /// LZO, encryption): the file may be fine, but retrying will not help.
    #[error("{path}: unsupported Parquet feature{location}: {source}")]
    UnsupportedParquet {
        /// The file.
        path: String,
        /// Where in the file, e.g. " (row groups 0-3)"; empty for the footer.
        location: String,
        /// The decoder's complaint, naming the feature.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A file of fixed-size records that is not one.
    #[error("{path}: {cause}")]
    BadRecordFile {
        /// The file.
        path: String,
        /// What is wrong.
        cause: String,
    },
    /// A CSV or JSON lines row that cannot be decoded: wrong column count, a value that
    /// does not parse as its column's type, a JSON syntax error.
    #[error("{path}: malformed row at {location}: {reason}")]
    MalformedRow {
        /// The file.
        path: String,
        /// Where: `line 12 (byte offset 3456)`, or the byte offset alone.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// More bad rows than `--max-bad-records` allows: names the last one found.
    #[error(
        "{path}: more than {max} bad records (--max-bad-records {max}); the last, at {location}: {reason}"
    )]
    TooManyBadRecords {
        /// The bad records allowed.
        max: u64,
        /// The last bad row's file.
        path: String,
        /// Its place: `line 12 (byte offset 3456)`, or the byte offset alone.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Parquet file lacks a column the job reads.
    #[error("{path}: no column `{column}` (the file has: {available})")]
    MissingColumn {
        /// The file.
        path: String,
        /// The column the job asked for.
        column: String,
        /// The file's columns, comma separated.
        available: String,
    },
    /// A Parquet column has a type the job cannot read.
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// Its type in the file.
        found: String,
        /// The type the job declared.
        expected: String,
    },
    /// A job's row filter cannot be applied to a file's column (a literal that does not
    /// convert to the column's type, say).
    #[error("{path}: filter `{filter}`: {reason}")]
    Filter {
        /// The file.
        path: String,
        /// The filter, or the comparison at fault.
        filter: String,
        /// What is wrong.
        reason: String,
    },

    // ---- storage failed: maybe transient, maybe permissions ----
    /// Reading from storage failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path or URL.
        path: String,
        /// The storage error.
        #[source]
        source: object_store::Error,
    },
    /// Writing to storage failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path or URL.
        path: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// Writing, serving or fetching map output failed (cluster mode).
    #[error("shuffle of {what} failed: {cause}")]
    Shuffle {
        /// The map output (file, or job/map/partition).
        what: String,
        /// The cause.
        cause: String,
    },

    /// Map output read in place does not match the checksum its map wrote.
    #[error("map output {path} is corrupt: {cause}")]
    CorruptMapOutput {
        /// The map output file.
        path: String,
        /// What did not match.
        cause: String,
    },

    /// Certificates, keys or a listening address refused by the security settings.
    #[error("{0}")]
    Security(#[from] crate::security::SecurityError),

    /// Talking to a driver or worker failed (cluster mode).
    #[error("{what}: {cause}")]
    Rpc {
        /// What was attempted, with the peer's address.
        what: String,
        /// The cause.
        cause: String,
    },

    /// A cluster job ended without committing.
    #[error("job {job} {state}: {message}")]
    JobFailed {
        /// The job's id.
        job: String,
        /// `failed` or `was cancelled`.
        state: &'static str,
        /// Why.
        message: String,
    },

    /// The store refused the request: the credentials are invalid, or they lack the
    /// permission. Never retried.
    #[error("access denied to {path} (invalid credentials or missing permission): {source}")]
    AccessDenied {
        /// The path or URL.
        path: String,
        /// The storage error.
        #[source]
        source: BoxError,
    },

    /// Spilling to local disk failed (not writable, disk full, ...).
    #[error("spill to {path} failed: {cause}")]
    Spill {
        /// The spill file or directory.
        path: String,
        /// The cause.
        cause: String,
    },

    /// A local disk (spill, scratch or fetch directory) is full: this attempt's own
    /// failure, never its inputs' or their workers'.
    #[error("{path}: the local disk is full: {cause}")]
    DiskFull {
        /// The file or directory written.
        path: String,
        /// The cause.
        cause: String,
    },

    // ---- the output is in a state we must not touch ----
    /// The output already holds a committed result.
    #[error("output {path} already holds a committed result (_SUCCESS); pass --overwrite to replace it")]
    OutputExists {
        /// The output directory.
        path: String,
    },

    // ---- the job's own code failed ----
    /// User code (a mapper, combiner or reducer) returned an error or panicked.
    #[error("{stage} {message}")]
    UserCode {
        /// Which user code: `mapper`, `combiner`, `reducer`, with "failed:" or "panicked:".
        stage: &'static str,
        /// Its message.
        message: String,
    },
    /// A task failed: user code returned an error or panicked, or its data was bad.
    #[error("{task} failed on {split}: {cause}")]
    Task {
        /// The task.
        task: TaskId,
        /// What it was processing (file and byte range, row groups, or partition).
        split: String,
        /// The cause's kind (the cause itself is flattened to a line).
        kind: ErrorKind,
        /// The cause, one line.
        cause: String,
    },
    /// The job is defined inconsistently (schema, keys, parameters).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// The run configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A `--partition-by` column the output cannot be partitioned by.
    #[error("--partition-by {column}: {reason}")]
    PartitionBy {
        /// The column (or columns) as given.
        column: String,
        /// What is wrong.
        reason: String,
    },

    // ---- a bug in the engine or its libraries ----
    /// An Arrow kernel failed where the engine expected success.
    #[error("internal error: {context}: {source}")]
    Arrow {
        /// What the engine was doing.
        context: String,
        /// The Arrow error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// Any other internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// False for failures another attempt would meet again (a bad job or bad input);
    /// true for I/O, lost processes and user code that may be flaky. See
    /// [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// A failed read of `path`: [`Error::AccessDenied`] when the store refused the
    /// credentials or the permission, else [`Error::Read`].
    pub fn read(path: impl Into<String>, source: object_store::Error) -> Error {
        let path = path.into();
        if is_access_denied(&source) {
            return Error::AccessDenied { path, source: Box::new(source) };
        }
        Error::Read { path, source }
    }

    /// A failed read of the local file `path` made without the object store, reported as
    /// the store would report it.
    pub fn local_read(path: impl Into<String>, source: std::io::Error) -> Error {
        Error::read(path, object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(source) })
    }

    /// A failed write of `path`: [`Error::AccessDenied`] when the store refused the
    /// credentials or the permission, else [`Error::Write`].
    pub fn write(path: impl Into<String>, source: BoxError) -> Error {
        let path = path.into();
        if is_access_denied(source.as_ref()) {
            return Error::AccessDenied { path, source };
        }
        Error::Write { path, source }
    }

    /// Wraps an Arrow error with what the engine was doing.
    pub fn arrow(context: impl Into<String>) -> impl FnOnce(arrow::error::ArrowError) -> Error {
        let context = context.into();
        move |source| Error::Arrow { context, source }
    }
}

/// True when `error` or one of its causes is a store's refusal of the credentials or the
/// permission (HTTP 401 or 403), however it was wrapped (I/O, Parquet errors).
pub(crate) fn is_access_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(store) = e.downcast_ref::<object_store::Error>() {
            return match store {
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => true,
                // Listings report every failure as `Generic`, and the HTTP error inside it is
                // not a public type: its message carries the status.
                object_store::Error::Generic { .. } => {
                    let message = store.to_string();
                    ["status code: 401 ", "status code: 403 "].iter().any(|s| message.contains(s))
                }
                _ => false,
            };
        }
        // `io::Error::source` skips the error it wraps: look at that one first.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && is_access_denied(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// ` (line N)` when the line is known.
fn line_note(line: &Option<u64>) -> String {
    line.map(|line| format!(" (line {line})")).unwrap_or_default()
}
