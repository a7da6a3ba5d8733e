//! The `_SUCCESS` manifest: a small JSON document listing the committed part files.

use serde::{Deserialize, Serialize};

use crate::job::Counters;

/// What `_SUCCESS` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format marker, `gristmill-manifest/1`.
    pub format: String,
    /// The job's name.
    pub job: String,
    /// The job run that wrote it.
    pub job_id: String,
    /// When the commit happened (milliseconds since the Unix epoch).
    pub committed_at_ms: u64,
    /// The part files, in partition order.
    pub files: Vec<ManifestFile>,
    /// Rows in all part files.
    pub rows: u64,
    /// The job's counters.
    pub counters: Counters,
}

/// One committed part file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The object's name within the output directory.
    pub name: String,
    /// The reduce partition it holds.
    pub partition: u32,
    /// Its rows.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The current manifest format.
pub const MANIFEST_FORMAT: &str = "gristmill-manifest/1";
