//! The driver as the single committer: once every partition has a winning attempt, it
//! writes the `_SUCCESS` manifest listing exactly those part files (written last, so
//! readers see all or nothing) and deletes every other part file in the directory
//! (losing attempts, killed attempts, an overwritten result).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::ids::PartitionId;
use crate::job::Counters;
use crate::output::{MANIFEST_FORMAT, Manifest, ManifestFile, OutputDir, PartFile};
use crate::scheduler::WinningPart;
use crate::storage::Location;

/// What the committer needs to know of a job.
pub struct CommitSpec {
    /// The job's name.
    pub name: String,
    /// Its id.
    pub job_id: String,
    /// The output directory.
    pub output: String,
    /// The winning attempt of each partition, with its part file's size.
    pub winners: Vec<(WinningPart, u64)>,
    /// The counters of the winning attempts.
    pub counters: Counters,
}

/// Writes `_SUCCESS` and removes stray part files; returns (rows, files).
pub async fn commit(spec: CommitSpec) -> Result<(u64, u32)> {
    let output = OutputDir::new(Location::parse(&spec.output)?);
    let parts: Vec<PartFile> = spec
        .winners
        .iter()
        .map(|(w, bytes)| PartFile {
            partition: PartitionId(w.partition),
            name: w.part_file.clone(),
            rows: w.rows,
            bytes: *bytes,
        })
        .collect();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        job: spec.name,
        job_id: spec.job_id,
        committed_at_ms: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
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
        counters: spec.counters,
    };
    output.commit(&manifest, &parts).await?;
    Ok((manifest.rows, parts.len() as u32))
}
