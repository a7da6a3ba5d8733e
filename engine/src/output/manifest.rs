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

impl Manifest {
    /// The manifest of `job` (name and run id) committing `parts` (in partition order).
    pub fn new(job: &str, job_id: &str, parts: &[super::PartFile], counters: Counters) -> Manifest {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            job: job.to_owned(),
            job_id: job_id.to_owned(),
            committed_at_ms: now.as_millis() as u64,
            rows: parts.iter().map(|p| p.rows).sum(),
            files: parts
                .iter()
                .map(|p| ManifestFile {
                    name: p.name.clone(),
                    partition: p.partition.0,
                    rows: p.rows,
                    bytes: p.bytes,
                })
                .collect(),
            counters,
        }
    }
}
