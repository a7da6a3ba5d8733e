//! Output: part files and the commit protocol.
//!
//! Each reduce attempt stages its own part file, named `part-PPPPP-<job id>-a<attempt>.parquet`
//! (sorted names give partition order; attempt-unique names mean attempts never clash),
//! invisible until committed ([`staged`]). The committer accepts one attempt per partition,
//! publishes those, discards the rest, then writes the `_SUCCESS` manifest last: output
//! without `_SUCCESS` is never complete.

mod bad_records;
mod commit;
mod dictionary;
mod lock;
mod manifest;
mod parquet_options;
pub mod staged;
mod writer;

pub use bad_records::{BAD_RECORDS_DIR, bad_records_schema, is_bad_records_name, write_bad_records};
pub use commit::OutputDir;
pub use lock::{LOCK_FILE, Lock, LockHolder};
pub use manifest::{MANIFEST_FORMAT, Manifest, ManifestFile};
pub use parquet_options::{Codec, DEFAULT_ROW_GROUP_ROWS, ParquetOutput};
pub use staged::{STAGED_NOTES_ENV, Staged, StagedNote, StagedUpload, discard, publish, read_staged_notes};
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
    /// Where it waits for the commit.
    pub staged: Staged,
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

    /// The name the manifest records: `parquet` or `records`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Records => "records",
        }
    }

    /// The format of a part file, by the extension [`part_name`] gave it.
    pub fn of_part_name(name: &str) -> Option<OutputFormat> {
        [OutputFormat::Parquet, OutputFormat::Records]
            .into_iter()
            .find(|f| name.strip_suffix(f.extension()).is_some_and(|n| n.ends_with('.')))
    }
}

/// The name of the part file of `partition` written by `attempt` of `job`.
pub fn part_name(partition: PartitionId, job: &JobId, attempt: AttemptId, format: OutputFormat) -> String {
    format!("part-{partition}-{job}-{attempt}.{}", format.extension())
}

/// True when `name` is the part file `attempt` of `job` writes for `partition`, in either
/// format: how the driver checks what a worker reports.
pub fn is_part_name_of(name: &str, partition: PartitionId, job: &JobId, attempt: AttemptId) -> bool {
    [OutputFormat::Parquet, OutputFormat::Records]
        .iter()
        .any(|f| part_name(partition, job, attempt, *f) == name)
}

/// True for names [`part_name`] makes (of any job, in any format), and for the staging
/// names of local part files still being written ([`crate::storage::staging_name`]), so that
/// those of crashed attempts are cleaned up too.
fn is_part_name(name: &str) -> bool {
    let name = unstaged(name);
    name.starts_with("part-") && (name.ends_with(".parquet") || name.ends_with(".dat"))
}

/// True for the part names (committed or staging) [`part_name`] makes for `job`, of any
/// partition, attempt and format: `part-PPPPP-<job>-a<attempt>.<ext>`.
fn is_part_of(name: &str, job: &str) -> bool {
    if !is_part_name(name) {
        return false;
    }
    let Some(rest) = unstaged(name).strip_prefix("part-") else { return false };
    let Some((partition, rest)) = rest.split_once('-') else { return false };
    let Some(rest) = rest.strip_prefix(job).and_then(|r| r.strip_prefix("-a")) else { return false };
    let Some((attempt, _extension)) = rest.split_once('.') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(partition) && digits(attempt)
}

/// True for the part names (committed or staging) [`part_name`] makes for any job:
/// `part-PPPPP-job-<id>-a<attempt>.<ext>`. Other tools' names (`part-0.parquet`) are not:
/// this is how input listing tells a job's output that did not commit from user data.
pub(crate) fn is_engine_part_name(name: &str) -> bool {
    let job = unstaged(name)
        .strip_prefix("part-")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(_, rest)| rest.rsplit_once("-a"))
        .map(|(job, _)| job);
    job.is_some_and(|job| job.starts_with("job-") && is_part_of(name, job))
}

/// The final name of a staging name (`.NAME.inprogress`); other names as they are; in
/// `_bad_records/`, the name within it.
fn unstaged(name: &str) -> &str {
    let name = name.strip_prefix(BAD_RECORDS_DIR).and_then(|n| n.strip_prefix('/')).unwrap_or(name);
    name.strip_prefix('.').and_then(|n| n.strip_suffix(".inprogress")).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_are_recognised_as_their_own_jobs_only() {
        let job = JobId::from_string("job-20260101T000000-00aa".into());
        let name = part_name(PartitionId(7), &job, AttemptId(2), OutputFormat::Parquet);
        assert_eq!(name, "part-00007-job-20260101T000000-00aa-a2.parquet");
        assert!(is_part_of(&name, job.as_str()));
        assert!(is_part_of(&crate::storage::staging_name(&name), job.as_str()), "staging names too");
        assert!(is_part_of("part-123456-job-20260101T000000-00aa-a0.dat", job.as_str()));
        for other in [
            "part-00007-job-20260101T000000-00bb-a2.parquet",
            "part-00007-job-20260101T000000-00aa-extra-a2.parquet",
            "part-00007-job-20260101T000000-00a-a2.parquet",
            "part-00007-job-20260101T000000-00aa-a2.csv",
            "part-x-job-20260101T000000-00aa-a2.parquet",
            "_SUCCESS",
        ] {
            assert!(!is_part_of(other, job.as_str()), "{other}");
        }
    }

    #[test]
    fn engine_part_names_are_told_from_other_tools_names() {
        let job = JobId::from_string("job-20260101T000000-00aa".into());
        let name = part_name(PartitionId(3), &job, AttemptId(1), OutputFormat::Records);
        assert!(is_engine_part_name(&name));
        assert!(is_engine_part_name(&crate::storage::staging_name(&name)));
        for other in
            ["part-0.parquet", "part-00000-5f2c-c000.snappy.parquet", "part-r-00000", "part-00000-job-a1.csv"]
        {
            assert!(!is_engine_part_name(other), "{other}");
        }
    }
}
