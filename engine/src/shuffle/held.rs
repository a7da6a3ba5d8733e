//! The complete map outputs a worker still holds, found by listing its own shuffle
//! directory: a worker re-attaching to a restarted driver reports them, and the driver
//! adopts those its journal names instead of running their maps again.

use std::path::Path;

use super::map_file::is_job_dir_name;

/// One complete map output: its index file exists (written last, see [`super::MapOutputFiles`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldOutput {
    /// The job.
    pub job_id: String,
    /// The map task.
    pub map_task: u32,
    /// The attempt that wrote it.
    pub attempt: u32,
}

/// The complete map outputs under `shuffle_dir` of the jobs `wanted` accepts (the worker
/// asks for the jobs whose secret it still knows: only those it can serve), sorted.
/// Unreadable entries are skipped: an output not reported is simply computed again.
pub fn held_map_outputs(shuffle_dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<HeldOutput> {
    let mut held = Vec::new();
    let Ok(entries) = std::fs::read_dir(shuffle_dir) else { return held };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(job) = name.to_str().and_then(job_of_dir) else { continue };
        if !wanted(job) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else { continue };
        for file in files.flatten() {
            if let Some((map_task, attempt)) = file.file_name().to_str().and_then(parse_index_name) {
                held.push(HeldOutput { job_id: job.to_owned(), map_task, attempt });
            }
        }
    }
    held.sort();
    held
}

/// The job of a job shuffle directory's name `<job id>.<tag>`.
fn job_of_dir(name: &str) -> Option<&str> {
    let (job, _) = name.rsplit_once('.')?;
    is_job_dir_name(name, job).then_some(job)
}

/// (map task, attempt) of an index file's name `m<task:06>-a<attempt>.index`.
fn parse_index_name(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_prefix('m')?.strip_suffix(".index")?;
    let (task, attempt) = stem.split_once("-a")?;
    Some((task.parse().ok()?, attempt.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AttemptId, JobId};
    use crate::security::JobSecret;
    use crate::shuffle::MapOutputFiles;

    fn write(shuffle: &Path, job: &str, task: u32, attempt: u32, complete: bool) {
        let files = MapOutputFiles::new(
            shuffle,
            &JobId::from_string(job.into()),
            &JobSecret::from_string(format!("secret of {job}")),
            task,
            AttemptId(attempt),
        );
        std::fs::create_dir_all(files.data.parent().unwrap()).unwrap();
        std::fs::write(&files.data, b"rows").unwrap();
        if complete {
            std::fs::write(&files.index, b"{}").unwrap();
        }
    }

    #[test]
    fn lists_complete_outputs_of_wanted_jobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let shuffle = dir.path();
        write(shuffle, "job-a", 0, 1000, true);
        write(shuffle, "job-a", 12, 3, true);
        write(shuffle, "job-a", 5, 1001, false);
        write(shuffle, "job-b", 1, 0, true);
        std::fs::create_dir(shuffle.join("stray")).unwrap();
        std::fs::write(shuffle.join("job-a.notatag"), b"").unwrap();

        let held = held_map_outputs(shuffle, |job| job == "job-a");
        let found: Vec<(&str, u32, u32)> =
            held.iter().map(|h| (h.job_id.as_str(), h.map_task, h.attempt)).collect();
        assert_eq!(found, [("job-a", 0, 1000), ("job-a", 12, 3)], "incomplete and unwanted are left out");
        assert_eq!(held_map_outputs(shuffle, |_| true).len(), 3);
        assert!(held_map_outputs(&shuffle.join("missing"), |_| true).is_empty());
    }

    #[test]
    fn index_names_parse_and_others_do_not() {
        assert_eq!(parse_index_name("m000003-a1001.index"), Some((3, 1001)));
        assert_eq!(parse_index_name("m000003-a1001.data"), None);
        assert_eq!(parse_index_name("m000003-a1001.index.tmp"), None);
        assert_eq!(parse_index_name("mx-a1.index"), None);
    }
}
