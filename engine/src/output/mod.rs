//! Output: part files and the commit protocol.
//!
//! Each reduce attempt stages its own part file, named `part-PPPPP-<job id>-a<attempt>.parquet`
//! (sorted names give partition order; attempt-unique names mean attempts never clash),
//! invisible until committed ([`staged`]). The committer accepts one attempt per partition,
//! publishes those, discards the rest, then writes the `_SUCCESS` manifest last: output
//! without `_SUCCESS` is never complete.
//!
//! Part files are Parquet, CSV (`.csv`, with a header line) or JSON lines (`.json`), the
//! text formats optionally gzip or zstd compressed (`.csv.gz`, `.json.zst`); see
//! [`OutputLayout`]. With Hive partitioning (`--partition-by`, [`hive`]) an attempt writes
//! one part file per value of the partition columns, `COL=value/part-...`, all staged and
//! published (or discarded) together; their names are paths relative to the output
//! directory.

mod bad_records;
mod commit;
mod dictionary;
pub mod hive;
mod layout;
mod lock;
mod manifest;
mod parquet_options;
pub mod staged;
mod writer;

pub use bad_records::{BAD_RECORDS_DIR, bad_records_schema, is_bad_records_name, write_bad_records};
pub use commit::OutputDir;
pub use layout::OutputLayout;
pub use lock::{LOCK_FILE, Lock, LockHolder};
pub use manifest::{MANIFEST_FORMAT, Manifest, ManifestFile};
pub use parquet_options::{Codec, DEFAULT_ROW_GROUP_ROWS, ParquetOutput};
pub use staged::{STAGED_NOTES_ENV, Staged, StagedNote, StagedUpload, discard, publish, read_staged_notes};
pub use writer::{OutputWriter, PartName, PartWriter};

use crate::ids::{AttemptId, JobId, PartitionId};

/// The name of the manifest that marks a committed output.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// A part file one reduce attempt wrote.
#[derive(Clone, Debug)]
pub struct PartFile {
    /// The partition it holds.
    pub partition: PartitionId,
    /// The object's path relative to the output directory: its name, or with Hive
    /// partitioning `COL=value/.../name`.
    pub name: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Where it waits for the commit.
    pub staged: Staged,
}

/// How part files are written.
///
/// What [`Job::output_format`](crate::job::Job::output_format) returns (Parquet by
/// default); `--output-format` overrides it, except for [`OutputFormat::Records`].
///
/// ```
/// use gristmill::output::OutputFormat;
///
/// assert_eq!(OutputFormat::default(), OutputFormat::Parquet);
/// assert_eq!(OutputFormat::Json.name(), "json");
/// assert!(OutputFormat::Csv.is_text() && !OutputFormat::Parquet.is_text());
/// assert_eq!(OutputFormat::of_part_name("part-00003-j1-a0.csv.gz"), Some(OutputFormat::Csv));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Apache Parquet (`.parquet`).
    #[default]
    Parquet,
    /// Raw records: each row's binary columns back to back, no framing (`.dat`), as
    /// TeraSort writes them. A job's own format, never a flag's.
    #[value(skip)]
    Records,
    /// CSV with a header line (`.csv`).
    Csv,
    /// JSON lines: one object per row (`.json`).
    Json,
}

/// Every format, for recognising names.
const FORMATS: [OutputFormat; 4] =
    [OutputFormat::Parquet, OutputFormat::Records, OutputFormat::Csv, OutputFormat::Json];

/// The suffixes compressed text part files get after their format's extension, with the
/// codec's name the manifest records.
const TEXT_CODEC_SUFFIXES: [(&str, &str); 2] = [(".gz", "gzip"), (".zst", "zstd")];

impl OutputFormat {
    fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Records => "dat",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }

    /// The name the manifest records: `parquet`, `records`, `csv` or `json`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Records => "records",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }

    /// True for the text formats (CSV, JSON lines), which gzip or zstd may compress.
    pub fn is_text(self) -> bool {
        matches!(self, OutputFormat::Csv | OutputFormat::Json)
    }

    /// The format of a part file, by the extension [`part_name`] gave it.
    pub fn of_part_name(name: &str) -> Option<OutputFormat> {
        describe_extension(name).map(|(format, _)| format)
    }
}

/// The format of a part file and, for text, its codec's name (`none`, `gzip`, `zstd`), by
/// the extension of `name` (a path or a name).
pub(crate) fn describe_extension(name: &str) -> Option<(OutputFormat, Option<&'static str>)> {
    let (stem, codec) = TEXT_CODEC_SUFFIXES
        .iter()
        .find_map(|(suffix, codec)| name.strip_suffix(suffix).map(|stem| (stem, Some(*codec))))
        .unwrap_or((name, None));
    let format =
        FORMATS.into_iter().find(|f| stem.strip_suffix(f.extension()).is_some_and(|n| n.ends_with('.')))?;
    match (format.is_text(), codec) {
        (true, codec) => Some((format, Some(codec.unwrap_or("none")))),
        (false, None) => Some((format, None)),
        (false, Some(_)) => None,
    }
}

/// The name of the part file of `partition` written by `attempt` of `job`, with the
/// extension of `layout`'s format and text codec.
pub fn part_name(partition: PartitionId, job: &JobId, attempt: AttemptId, layout: &OutputLayout) -> String {
    format!("part-{partition}-{job}-{attempt}.{}{}", layout.format.extension(), layout.text_suffix())
}

/// True when `name` is a part file `attempt` of `job` writes for `partition`, in any
/// format: how the driver checks what a worker reports. With Hive partitioning the name is
/// a path whose directories are `COL=value` segments ([`hive::is_partition_path`]).
pub fn is_part_name_of(name: &str, partition: PartitionId, job: &JobId, attempt: AttemptId) -> bool {
    let (dirs, file) = name.rsplit_once('/').unwrap_or(("", name));
    let prefix = format!("part-{partition}-{job}-{attempt}.");
    (dirs.is_empty() || hive::is_partition_path(dirs))
        && file
            .strip_prefix(&prefix)
            .is_some_and(|extension| extension.split('.').count() <= 2 && describe_extension(file).is_some())
}

/// True for names [`part_name`] makes (of any job, in any format), and for the staging
/// names of local part files still being written ([`crate::storage::staging_name`]), so that
/// those of crashed attempts are cleaned up too.
fn is_part_name(name: &str) -> bool {
    let name = unstaged(name);
    name.starts_with("part-") && describe_extension(name).is_some()
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
        let name = part_name(PartitionId(7), &job, AttemptId(2), &OutputLayout::default());
        assert_eq!(name, "part-00007-job-20260101T000000-00aa-a2.parquet");
        assert!(is_part_of(&name, job.as_str()));
        assert!(is_part_of(&crate::storage::staging_name(&name), job.as_str()), "staging names too");
        assert!(is_part_of("part-123456-job-20260101T000000-00aa-a0.dat", job.as_str()));
        for other in [
            "part-00007-job-20260101T000000-00bb-a2.parquet",
            "part-00007-job-20260101T000000-00aa-extra-a2.parquet",
            "part-00007-job-20260101T000000-00a-a2.parquet",
            "part-00007-job-20260101T000000-00aa-a2.txt",
            "part-00007-job-20260101T000000-00aa-a2.parquet.gz",
            "part-x-job-20260101T000000-00aa-a2.parquet",
            "_SUCCESS",
        ] {
            assert!(!is_part_of(other, job.as_str()), "{other}");
        }
    }

    #[test]
    fn engine_part_names_are_told_from_other_tools_names() {
        let job = JobId::from_string("job-20260101T000000-00aa".into());
        let name = part_name(PartitionId(3), &job, AttemptId(1), &OutputLayout::records());
        assert!(is_engine_part_name(&name));
        assert!(is_engine_part_name(&crate::storage::staging_name(&name)));
        for other in
            ["part-0.parquet", "part-00000-5f2c-c000.snappy.parquet", "part-r-00000", "part-00000-job-a1.csv"]
        {
            assert!(!is_engine_part_name(other), "{other}");
        }
    }

    #[test]
    fn text_part_names_carry_their_codec_and_partitioned_names_are_an_attempts_own() {
        let job = JobId::from_string("job-20260101T000000-00aa".into());
        let layout = OutputLayout::default()
            .with_format(OutputFormat::Csv)
            .with_text_codec(crate::output::Codec::Gzip(None))
            .unwrap();
        let name = part_name(PartitionId(1), &job, AttemptId(0), &layout);
        assert_eq!(name, "part-00001-job-20260101T000000-00aa-a0.csv.gz");
        assert_eq!(describe_extension(&name), Some((OutputFormat::Csv, Some("gzip"))));
        assert_eq!(describe_extension("x.json"), Some((OutputFormat::Json, Some("none"))));
        assert_eq!(describe_extension("x.parquet"), Some((OutputFormat::Parquet, None)));
        assert!(is_engine_part_name(&name));
        let nested = format!("k=a%2Fb/n=3/{name}");
        assert!(is_part_name_of(&nested, PartitionId(1), &job, AttemptId(0)));
        for other in [
            format!("../{name}"),
            format!("k=a/../{name}"),
            format!("plain/{name}"),
            format!(".k=a/{name}"),
            "k=a/part-00001-job-20260101T000000-00aa-a1.csv.gz".to_owned(),
        ] {
            assert!(!is_part_name_of(&other, PartitionId(1), &job, AttemptId(0)), "{other}");
        }
    }
}
