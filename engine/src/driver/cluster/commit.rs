//! The driver as the single committer: once every partition has a winning attempt, it
//! writes the `_SUCCESS` manifest listing exactly those part files (written last, so
//! readers see all or nothing) and deletes every other part file in the directory
//! (losing attempts, killed attempts, an overwritten result).

use crate::error::Result;
use crate::ids::PartitionId;
use crate::job::Counters;
use crate::output::{Manifest, OutputDir, PartFile};
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
    let manifest = Manifest::new(&spec.name, &spec.job_id, &parts, spec.counters);
    output.commit(&manifest, &parts).await?;
    Ok((manifest.rows, parts.len() as u32))
}
