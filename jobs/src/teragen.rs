//! The data generator and validator of the TeraSort benchmark: the sort benchmark's
//! gensort/valsort as Hadoop's TeraGen/TeraValidate implement them. Plain binaries, not
//! MapReduce jobs: `teragen` and `teravalidate`.
//!
//! * [`rand128`]: the 128-bit linear congruential generator with its skip-ahead
//!   ([`rand128::skip_ahead`], [`rand128::JUMPS`]), so that any record is computed directly;
//! * [`record`]: the 100-byte records ([`Layout::Teragen`], the default, and gensort 1.3+'s
//!   [`Layout::Gensort`]), the [`RecordGenerator`] and valsort's [`Checksum`];
//! * [`teragen()`] with a [`GenSpec`]: writes records `start .. start + records` in parallel
//!   into `part-00000.dat`, `part-00001.dat`, ... (sorted names give record order) and
//!   `_SUCCESS`;
//! * [`validate_dir`]: reads a directory's files in name order, checks that keys never
//!   decrease, and returns a [`Validation`]: record count, checksum, duplicate keys and the
//!   first [`Disorder`].
//!
//! ```
//! use gristmill_jobs::teragen::{GenSpec, Layout, teragen, validate_dir};
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("in");
//! let spec = GenSpec::new(1000).with_parts(3).with_layout(Layout::Teragen);
//! let generated = teragen(&out, &spec)?;
//! let validation = validate_dir(&out)?;
//! assert_eq!(validation.records, 1000);
//! assert_eq!(validation.checksum, generated.checksum); // order-independent
//! assert!(!validation.is_ordered()); // random keys, not sorted yet
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

mod generate;
pub mod rand128;
pub mod record;
mod validate;

pub use generate::{GenSpec, Generated, PartRange, SUCCESS_FILE, part_name, teragen};
pub use record::{Checksum, KEY_LEN, Key, Layout, RECORD_LEN, RecordGenerator};
pub use validate::{Disorder, Validation, key_hex, record_files, validate_dir, validate_files};

/// Everything that makes `teragen` or `teravalidate` fail. `Display` is one line naming
/// the path and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TeraError {
    // ---- the flags or the files are wrong: the user must fix them ----
    /// teragen's output directory holds files and `--overwrite` was not given.
    #[error("output directory {} is not empty (pass --overwrite to replace an earlier teragen output)", .path.display())]
    OutputNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// teragen's output directory holds a file teragen does not write: never deleted.
    #[error("output directory {} holds `{file}`, which teragen did not write; refusing to overwrite", .path.display())]
    ForeignFile {
        /// The directory.
        path: PathBuf,
        /// The file's name.
        file: String,
    },
    /// The record numbers would pass the last 128-bit record number.
    #[error("records {start} + {records} go past the last record number 2^128 - 1")]
    RecordRange {
        /// The first record number.
        start: u128,
        /// How many records.
        records: u64,
    },
    /// Zero part files were asked for.
    #[error("--parts must be at least 1")]
    NoParts,
    /// The input directory does not exist.
    #[error("input not found: {}", .path.display())]
    InputNotFound {
        /// The path.
        path: PathBuf,
    },
    /// A path that must be a directory is not one.
    #[error("{}: not a directory", .path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The input directory holds a subdirectory.
    #[error("{}: is a directory (teravalidate reads the files of one flat directory)", .path.display())]
    NestedDirectory {
        /// The subdirectory.
        path: PathBuf,
    },
    /// A file's size is not a whole number of records.
    #[error("{}: size {size} bytes is not a multiple of the {RECORD_LEN}-byte record", .path.display())]
    PartialRecord {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// Nothing to validate (as valsort, at least one record is required).
    #[error("{}: no records to validate", .path.display())]
    NoRecords {
        /// The input directory.
        path: PathBuf,
    },

    // ---- the system failed: fix the environment or retry ----
    /// Reading, writing, creating or removing a file failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done: `read`, `write`, `create`, `remove`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl TeraError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        TeraError::Io { action, path: path.to_owned(), source }
    }
}
