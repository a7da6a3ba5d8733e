//! The `_SUCCESS` manifest: a small JSON document listing the committed part files.

use serde::{Deserialize, Serialize};

use super::{Codec, OutputFormat};
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
    /// The files of rows of input skipped as bad (`_bad_records/...`, `--max-bad-records`):
    /// not part of the output's data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_records: Vec<ManifestFile>,
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
    /// Its format, `parquet` or `records` (absent from manifests written before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Its codec, e.g. `zstd` or `gzip:9`; `none` for raw records (absent when unknown,
    /// and from manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

/// The current manifest format.
pub const MANIFEST_FORMAT: &str = "gristmill-manifest/1";

impl Manifest {
    /// The manifest of `job` (name and run id) committing `parts` (in partition order;
    /// bad records files, `_bad_records/...`, are listed apart).
    pub fn new(job: &str, job_id: &str, parts: &[super::PartFile], counters: Counters) -> Manifest {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let (bad, parts): (Vec<_>, Vec<_>) = parts.iter().partition(|p| super::is_bad_records_name(&p.name));
        Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            job: job.to_owned(),
            job_id: job_id.to_owned(),
            committed_at_ms: now.as_millis() as u64,
            rows: parts.iter().map(|p| p.rows).sum(),
            bad_records: bad.into_iter().map(|p| listed(p, Some(Codec::default()))).collect(),
            files: parts
                .into_iter()
                .map(|p| {
                    let described = super::describe_extension(&p.name);
                    let format = described.map(|(f, _)| f);
                    // Text formats' codecs are in their names; Parquet's are recorded by
                    // `with_parquet_codec`.
                    let codec = match described {
                        Some((OutputFormat::Records, _)) => Some(Codec::None.to_string()),
                        Some((_, codec)) => codec.map(str::to_owned),
                        None => None,
                    };
                    ManifestFile {
                        name: p.name.clone(),
                        partition: p.partition.0,
                        rows: p.rows,
                        bytes: p.bytes,
                        format: format.map(|f| f.name().to_owned()),
                        codec,
                    }
                })
                .collect(),
            counters,
        }
    }

    /// Every file the commit publishes: the part files and the bad records files.
    pub fn all_files(&self) -> impl Iterator<Item = &ManifestFile> {
        self.files.iter().chain(&self.bad_records)
    }

    /// Records `codec` as the codec of the Parquet files (the job writes all its part
    /// files with one).
    pub fn with_parquet_codec(mut self, codec: Codec) -> Manifest {
        for file in &mut self.files {
            if file.format.as_deref() == Some(OutputFormat::Parquet.name()) {
                file.codec = Some(codec.to_string());
            }
        }
        self
    }
}

/// How the manifest lists a bad records file (always Parquet, written with `codec`).
fn listed(part: &super::PartFile, codec: Option<Codec>) -> ManifestFile {
    ManifestFile {
        name: part.name.clone(),
        partition: part.partition.0,
        rows: part.rows,
        bytes: part.bytes,
        format: Some(OutputFormat::Parquet.name().to_owned()),
        codec: codec.map(|c| c.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_record_format_and_codec_and_old_manifests_still_parse() {
        let part = |name: &str| super::super::PartFile {
            partition: crate::ids::PartitionId(0),
            name: name.to_owned(),
            rows: 3,
            bytes: 10,
            staged: super::super::Staged::LocalFile,
        };
        let parts = [
            part("part-00000-job-x-a0.parquet"),
            part("part-00001-job-x-a0.dat"),
            part("k=a%2Fb/part-00002-job-x-a0.csv.gz"),
            part("part-00003-job-x-a0.json"),
        ];
        let manifest =
            Manifest::new("j", "job-x", &parts, Counters::default()).with_parquet_codec(Codec::Gzip(Some(9)));
        let described: Vec<_> =
            manifest.files.iter().map(|f| (f.format.as_deref(), f.codec.as_deref())).collect();
        assert_eq!(
            described,
            [
                (Some("parquet"), Some("gzip:9")),
                (Some("records"), Some("none")),
                (Some("csv"), Some("gzip")),
                (Some("json"), Some("none"))
            ]
        );
        let json = serde_json::to_string(&manifest).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);

        let old = r#"{"format":"gristmill-manifest/1","job":"j","job_id":"job-x","committed_at_ms":1,
            "files":[{"name":"part-00000-job-x-a0.parquet","partition":0,"rows":3,"bytes":10}],
            "rows":3,"counters":{}}"#;
        let old: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!((old.files[0].format.as_ref(), old.files[0].codec.as_ref()), (None, None));
    }
}
