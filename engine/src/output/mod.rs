//! Output: part files and the commit protocol.
//!
//! Each reduce attempt writes its own object, named `part-PPPPP-<job id>-a<attempt>.parquet`
//! (sorted names give partition order; attempt-unique names mean attempts never clash, so
//! no rename is ever needed). The committer accepts one attempt per partition, then writes
//! the `_SUCCESS` manifest last: output without `_SUCCESS` is never complete.

mod commit;
mod dictionary;
mod manifest;
mod writer;

pub use commit::OutputDir;
pub use manifest::{MANIFEST_FORMAT, Manifest, ManifestFile};
pub use writer::PartWriter;

use crate::ids::{AttemptId, JobId, PartitionId};

/// The name of the manifest that marks a committed output.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// A part file one reduce attempt wrote.
#[derive(Clone, Debug)]
pub struct PartFile {
    /// The partition it holds.
    pub partition: PartitionId,
    /// The object's name within the output directory.
    pub name: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// How part files are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Apache Parquet (`.parquet`).
    #[default]
    Parquet,
    /// Raw records: each row's binary columns back to back, no framing (`.dat`), as
    /// TeraSort writes them.
    Records,
}

impl OutputFormat {
    fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Records => "dat",
        }
    }
}

/// The name of the part file of `partition` written by `attempt` of `job`.
pub fn part_name(partition: PartitionId, job: &JobId, attempt: AttemptId, format: OutputFormat) -> String {
    format!("part-{partition}-{job}-{attempt}.{}", format.extension())
}

/// True for names [`part_name`] makes (of any job, in any format), and for the staging
/// names of local part files still being written ([`crate::storage::staging_name`]), so that
/// those of crashed attempts are cleaned up too.
fn is_part_name(name: &str) -> bool {
    let name = name.strip_prefix('.').and_then(|n| n.strip_suffix(".inprogress")).unwrap_or(name);
    name.starts_with("part-") && (name.ends_with(".parquet") || name.ends_with(".dat"))
}
