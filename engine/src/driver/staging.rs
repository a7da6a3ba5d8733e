//! The staged part files a job's attempts reported: the driver publishes the winners' at
//! the commit and discards every other one (losers, backups, late and fenced attempts), so
//! nothing an attempt wrote outlives the job unless the commit lists it.

use std::collections::HashMap;

use crate::ids::PartitionId;
use crate::output::{PartFile, Staged};
use crate::scheduler::WinningPart;
use crate::storage::{Location, StorageOptions};

/// One staged part file of an attempt, as its worker reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedPart {
    /// The partition.
    pub partition: u32,
    /// The part file's path relative to the output directory.
    pub name: String,
    /// Its rows.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// How it is staged.
    pub staged: Staged,
}

/// A job's staged parts by (partition, attempt): an attempt's part file, or with Hive
/// partitioning its files (possibly none). Closed when its commit starts or it ends: parts
/// offered after that are handed back, to be discarded at once.
#[derive(Debug, Default)]
pub struct StagedParts {
    parts: HashMap<(u32, u32), Vec<StagedPart>>,
    closed: bool,
}

impl StagedParts {
    /// Keeps the `parts` `attempt` staged for `partition` for the commit, or hands them
    /// back once closed.
    pub fn offer(&mut self, partition: u32, attempt: u32, parts: Vec<StagedPart>) -> Vec<StagedPart> {
        if self.closed {
            return parts;
        }
        self.parts.entry((partition, attempt)).or_default().extend(parts);
        Vec::new()
    }

    /// Closes for the commit: the winners as part files (an error names a winner with no
    /// staged part), and every other part, to discard.
    pub fn close_for_commit(
        &mut self,
        winners: &[WinningPart],
    ) -> (Result<Vec<PartFile>, String>, Vec<StagedPart>) {
        self.closed = true;
        let mut parts = std::mem::take(&mut self.parts);
        let winners = winners
            .iter()
            .map(|w| {
                let mut files = parts.remove(&(w.partition, w.attempt.0)).ok_or_else(|| {
                    format!("partition {} attempt {} won but reported no staged part", w.partition, w.attempt)
                })?;
                files.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(files.into_iter().map(|part| PartFile {
                    partition: PartitionId(w.partition),
                    name: part.name,
                    rows: part.rows,
                    bytes: part.bytes,
                    staged: part.staged,
                }))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(|files| files.into_iter().flatten().collect());
        (winners, parts.into_values().flatten().collect())
    }

    /// Closes without a commit: every part, to discard.
    pub fn close(&mut self) -> Vec<StagedPart> {
        self.closed = true;
        std::mem::take(&mut self.parts).into_values().flatten().collect()
    }
}

/// Discards `parts` of the job's output `output`, reached with the job's `options`. Best
/// effort: a failure is logged (a store's lifecycle rule for incomplete uploads is the
/// backstop for uploads; local staging files are hidden and removed by the next commit or
/// abort of the job).
pub async fn discard_all(output: &str, options: &StorageOptions, parts: Vec<StagedPart>) {
    if parts.is_empty() {
        return;
    }
    let dir = match Location::parse_with_options_only(output, options) {
        Ok(dir) => dir,
        Err(e) => return tracing::warn!(error = %e, "cannot reach an output to discard staged parts"),
    };
    for part in parts {
        let discarded = match dir.descendant(&part.name) {
            Ok(target) => crate::output::discard(&target, &part.staged).await,
            Err(e) => Err(e),
        };
        match discarded {
            Ok(()) => tracing::debug!(part = %part.name, "discarded a staged part"),
            Err(e) => tracing::warn!(part = %part.name, error = %e, "could not discard a staged part"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AttemptId;

    fn part(partition: u32, name: &str) -> StagedPart {
        StagedPart { partition, name: name.into(), rows: 3, bytes: 7, staged: Staged::LocalFile }
    }

    fn offer(parts: &mut StagedParts, attempt: u32, part: StagedPart) -> Vec<StagedPart> {
        parts.offer(part.partition, attempt, vec![part])
    }

    fn winner(partition: u32, attempt: u32) -> WinningPart {
        WinningPart { partition, attempt: AttemptId(attempt), part_file: String::new(), rows: 3 }
    }

    #[test]
    fn the_commit_takes_the_winners_and_gives_back_the_rest() {
        let mut parts = StagedParts::default();
        assert!(offer(&mut parts, 0, part(0, "p0a0")).is_empty());
        assert!(offer(&mut parts, 1, part(0, "p0a1")).is_empty());
        assert!(offer(&mut parts, 0, part(1, "p1a0")).is_empty());
        let (winners, losers) = parts.close_for_commit(&[winner(0, 1), winner(1, 0)]);
        let names: Vec<String> = winners.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["p0a1", "p1a0"]);
        assert_eq!(losers, [part(0, "p0a0")]);
        assert_eq!(offer(&mut parts, 2, part(0, "late")), [part(0, "late")], "closed: handed back");
    }

    #[test]
    fn a_partitioned_winner_commits_all_its_files_or_none_and_losers_give_back_all() {
        let mut parts = StagedParts::default();
        parts.offer(0, 0, vec![part(0, "k=b/p0a0"), part(0, "k=a/p0a0")]);
        parts.offer(0, 1, vec![part(0, "k=a/p0a1")]);
        parts.offer(1, 0, Vec::new());
        let (winners, mut losers) = parts.close_for_commit(&[winner(0, 0), winner(1, 0)]);
        let names: Vec<String> = winners.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["k=a/p0a0", "k=b/p0a0"], "partition 1 won with no rows: no file");
        losers.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(losers, [part(0, "k=a/p0a1")]);
    }

    #[test]
    fn a_winner_without_a_staged_part_fails_the_commit_and_an_ended_job_gives_back_all() {
        let mut parts = StagedParts::default();
        offer(&mut parts, 0, part(0, "p0a0"));
        let (winners, losers) = parts.close_for_commit(&[winner(0, 0), winner(1, 0)]);
        assert!(winners.unwrap_err().contains("partition 1 attempt a0"));
        assert!(losers.is_empty());

        let mut parts = StagedParts::default();
        offer(&mut parts, 0, part(0, "p0a0"));
        assert_eq!(parts.close(), [part(0, "p0a0")]);
        assert!(!offer(&mut parts, 1, part(0, "after")).is_empty());
    }
}
