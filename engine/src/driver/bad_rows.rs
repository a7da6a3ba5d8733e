//! The bad records of a job's map tasks (`--max-bad-records`), as their attempts report
//! them: kept by map task, so that a map task run again (its output lost with a worker)
//! replaces its rows rather than adding them twice, and summed over the job against the
//! limit. The committer writes them to `_bad_records/` with the part files.
//!
//! Each attempt fails by itself past the limit, so a report holds at most `max` rows, and
//! the job fails as soon as its sum passes `max`: at most about `2 × max` rows are held.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::input::BadRecord;

/// A job's bad records by map task.
#[derive(Debug, Default)]
pub struct JobBadRecords {
    max: u64,
    by_task: BTreeMap<u32, Vec<BadRecord>>,
}

impl JobBadRecords {
    /// None yet, `max` allowed.
    pub fn new(max: u64) -> Self {
        JobBadRecords { max, by_task: BTreeMap::new() }
    }

    /// Keeps the bad records `rows` map task `task` reported (replacing an earlier
    /// attempt's). Fails, naming the last row of `rows`, when the job now has more than
    /// allowed.
    pub fn offer(&mut self, task: u32, mut rows: Vec<BadRecord>) -> Result<(), Error> {
        crate::input::sort_bad_records(&mut rows);
        let last = rows.last().cloned();
        if rows.is_empty() {
            self.by_task.remove(&task);
        } else {
            self.by_task.insert(task, rows);
        }
        let total: usize = self.by_task.values().map(Vec::len).sum();
        match last {
            Some(last) if total as u64 > self.max => Err(crate::input::too_many_bad_records(self.max, &last)),
            _ => Ok(()),
        }
    }

    /// Takes every bad record, in file and offset order.
    pub fn take(&mut self) -> Vec<BadRecord> {
        let mut rows: Vec<BadRecord> = std::mem::take(&mut self.by_task).into_values().flatten().collect();
        crate::input::sort_bad_records(&mut rows);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(file: &str, n: u64) -> Vec<BadRecord> {
        (0..n)
            .map(|i| BadRecord {
                file: file.into(),
                line: Some(i + 1),
                offset: i,
                reason: "r".into(),
                text: "t".into(),
            })
            .collect()
    }

    #[test]
    fn a_map_task_run_again_replaces_its_rows_and_the_sum_is_checked() {
        let mut bad = JobBadRecords::new(3);
        bad.offer(1, rows("b", 2)).unwrap();
        bad.offer(1, rows("b", 2)).expect("the same task again: still 2");
        bad.offer(0, rows("a", 1)).unwrap();
        let error = bad.offer(2, rows("c", 1)).unwrap_err();
        assert!(
            error.to_string().contains("more than 3 bad records") && error.to_string().contains("c:"),
            "{error}"
        );
        let files: Vec<_> = bad.take().into_iter().map(|r| r.file).collect();
        assert_eq!(files, ["a", "b", "b", "c"]);
    }
}
