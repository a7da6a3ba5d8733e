//! Identifier newtypes: jobs, tasks, attempts and partitions are never bare integers.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Identifies one run of a job, e.g. `job-20261125T221313-3f9a`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobId(String);

impl JobId {
    /// A fresh id from the wall clock and the process id (unique per machine and second).
    pub fn generate() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = now.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        let salt = (now.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
        JobId(format!(
            "job-{y:04}{m:02}{d:02}T{:02}{:02}{:02}-{salt:04x}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Which phase a task belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Reads a split, maps, partitions, sorts and combines.
    Map,
    /// Merges one partition of every map output, reduces and writes one part file.
    Reduce,
}

/// Identifies a task within a job: its kind and its index (split number or partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// Map or reduce.
    pub kind: TaskKind,
    /// Split index for map tasks, partition index for reduce tasks.
    pub index: u32,
}

impl TaskId {
    /// The map task of split `index`.
    pub fn map(index: usize) -> Self {
        TaskId { kind: TaskKind::Map, index: index as u32 }
    }

    /// The reduce task of partition `index`.
    pub fn reduce(index: usize) -> Self {
        TaskId { kind: TaskKind::Reduce, index: index as u32 }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TaskKind::Map => write!(f, "map task {}", self.index),
            TaskKind::Reduce => write!(f, "reduce task {}", self.index),
        }
    }
}

/// The number of one try at running a task (0 for the first attempt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptId(pub u32);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// A reduce partition: the output of reduce task `i` is part file `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:05}", self.0)
    }
}

/// Identifies a worker of a cluster, e.g. `w3-127.0.0.1:7101` (assigned by the driver).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(pub String);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JobId {
    /// A job id given by text (parsed from a request or a path).
    pub fn from_string(id: String) -> Self {
        JobId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn job_ids_have_the_documented_shape() {
        let id = JobId::generate();
        assert!(id.as_str().starts_with("job-2"), "{id}");
        assert_eq!(id.as_str().len(), "job-20261125T221313-3f9a".len());
    }
}
