//! "Why is it slow": a pure reading of a job's tasks and attempts. It names the straggler
//! attempts (longer than [`STRAGGLER_FACTOR`] × their phase's median), the skewed reduce
//! partitions (rows or bytes over [`SKEW_FACTOR`] × the median partition), the time lost
//! to attempts that failed, were killed or lost, and the time tasks waited for a slot.

use serde::Serialize;

use super::attempts::AttemptOutcome;
use super::detail::{AttemptView, TaskView, median};
use crate::ids::{AttemptId, TaskId, TaskKind, WorkerId};

/// An attempt longer than this × the median successful attempt of its phase is a straggler.
pub const STRAGGLER_FACTOR: f64 = 1.5;
/// A reduce partition with more than this × the median rows or bytes is skewed.
pub const SKEW_FACTOR: f64 = 1.5;

/// An attempt that ran (or runs) much longer than its phase's median.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Straggler {
    /// The task.
    pub task: TaskId,
    /// The attempt.
    pub attempt: AttemptId,
    /// Where it ran.
    pub worker: WorkerId,
    /// How long it ran (so far, if it runs).
    pub duration_secs: f64,
    /// The median successful attempt of its phase.
    pub median_secs: f64,
    /// Still running.
    pub running: bool,
}

/// Rows and bytes of one reduce partition (its winning attempt's input).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PartitionSize {
    /// The reduce partition.
    pub partition: u32,
    /// Rows it reduced.
    pub rows: u64,
    /// Shuffle bytes it read.
    pub bytes: u64,
    /// Rows or bytes over [`SKEW_FACTOR`] × the median.
    pub skewed: bool,
}

/// Time spent in attempts whose work was thrown away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LostTime {
    /// Attempts that failed.
    pub failed_secs: f64,
    /// Attempts killed (backups that lost, attempts of an ended job).
    pub killed_secs: f64,
    /// Attempts whose worker was lost.
    pub lost_secs: f64,
    /// Attempts counted above.
    pub attempts: u32,
}

impl LostTime {
    /// All of it.
    pub fn total_secs(&self) -> f64 {
        self.failed_secs + self.killed_secs + self.lost_secs
    }
}

/// Time tasks waited for a free slot (ready to run → attempt launched).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlotWait {
    /// Summed over attempts.
    pub total_secs: f64,
    /// The longest wait.
    pub max_secs: f64,
    /// The task of the longest wait.
    pub max_task: Option<TaskId>,
}

/// Why a job is slow.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diagnosis {
    /// Attempts over [`STRAGGLER_FACTOR`] × their phase's median, longest first.
    pub stragglers: Vec<Straggler>,
    /// Every reduce partition with a winner, by partition.
    pub partitions: Vec<PartitionSize>,
    /// The median rows of a reduce partition.
    pub median_partition_rows: Option<u64>,
    /// The median bytes of a reduce partition.
    pub median_partition_bytes: Option<u64>,
    /// Time lost to failed, killed and lost attempts.
    pub lost: LostTime,
    /// Time tasks waited for slots.
    pub slot_wait: SlotWait,
    /// The findings in words, most costly first (empty when nothing stands out).
    pub findings: Vec<String>,
}

/// Reads a job's tasks and attempts: stragglers, skewed reduce partitions, time lost to
/// retries and time waiting for slots.
pub fn diagnose(tasks: &[TaskView], attempts: &[AttemptView]) -> Diagnosis {
    let mut d = Diagnosis { stragglers: stragglers(attempts), ..Diagnosis::default() };
    partitions(tasks, &mut d);
    for a in attempts {
        let lost = &mut d.lost;
        match a.outcome {
            AttemptOutcome::Failed => lost.failed_secs += a.duration_secs,
            // A preempted attempt was killed too: its time is lost the same way.
            AttemptOutcome::Killed | AttemptOutcome::Preempted => lost.killed_secs += a.duration_secs,
            AttemptOutcome::Lost => lost.lost_secs += a.duration_secs,
            AttemptOutcome::Running | AttemptOutcome::Succeeded => continue,
        }
        lost.attempts += 1;
    }
    for a in attempts {
        d.slot_wait.total_secs += a.waited_secs;
        if a.waited_secs > d.slot_wait.max_secs {
            d.slot_wait.max_secs = a.waited_secs;
            d.slot_wait.max_task = Some(a.task);
        }
    }
    d.findings = findings(&d);
    d
}

fn stragglers(attempts: &[AttemptView]) -> Vec<Straggler> {
    let mut out = Vec::new();
    for kind in [TaskKind::Map, TaskKind::Reduce] {
        let of_kind = attempts.iter().filter(|a| a.task.kind == kind);
        let done: Vec<f64> = of_kind
            .clone()
            .filter(|a| a.outcome == AttemptOutcome::Succeeded)
            .map(|a| a.duration_secs)
            .collect();
        let Some(median_secs) = median(&done) else { continue };
        let slow =
            of_kind.filter(|a| matches!(a.outcome, AttemptOutcome::Succeeded | AttemptOutcome::Running));
        out.extend(slow.filter(|a| a.duration_secs > STRAGGLER_FACTOR * median_secs).map(|a| Straggler {
            task: a.task,
            attempt: a.attempt,
            worker: a.worker.clone(),
            duration_secs: a.duration_secs,
            median_secs,
            running: a.outcome == AttemptOutcome::Running,
        }));
    }
    out.sort_by(|a, b| b.duration_secs.total_cmp(&a.duration_secs));
    out
}

fn median_u64(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut sorted: Vec<u64> = values.collect();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

fn partitions(tasks: &[TaskView], d: &mut Diagnosis) {
    let reduces = tasks.iter().filter(|t| t.task.kind == TaskKind::Reduce);
    let sizes: Vec<(u32, u64, u64)> =
        reduces.filter_map(|t| t.metrics.map(|m| (t.task.index, m.input_rows, m.input_bytes))).collect();
    d.median_partition_rows = median_u64(sizes.iter().map(|s| s.1));
    d.median_partition_bytes = median_u64(sizes.iter().map(|s| s.2));
    let over = |value: u64, median: Option<u64>| {
        sizes.len() > 1 && median.is_some_and(|m| value as f64 > SKEW_FACTOR * m as f64 && value > 0)
    };
    d.partitions = sizes
        .iter()
        .map(|&(partition, rows, bytes)| PartitionSize {
            partition,
            rows,
            bytes,
            skewed: over(rows, d.median_partition_rows) || over(bytes, d.median_partition_bytes),
        })
        .collect();
}

fn findings(d: &Diagnosis) -> Vec<String> {
    let mut found: Vec<(f64, String)> = Vec::new();
    for s in &d.stragglers {
        let verb = if s.running { "has run" } else { "ran" };
        let ratio = s.duration_secs / s.median_secs.max(1e-9);
        found.push((
            s.duration_secs - s.median_secs,
            format!(
                "straggler: {} attempt {} on {} {verb} {:.1} s, {ratio:.1}× the median {:.1} s",
                s.task, s.attempt.0, s.worker, s.duration_secs, s.median_secs
            ),
        ));
    }
    let median_rows = d.median_partition_rows.unwrap_or(0);
    for p in d.partitions.iter().filter(|p| p.skewed) {
        found.push((
            0.0,
            format!(
                "skew: reduce partition {} has {} rows and {} bytes (median {} rows, {} bytes)",
                p.partition,
                p.rows,
                p.bytes,
                median_rows,
                d.median_partition_bytes.unwrap_or(0)
            ),
        ));
    }
    let lost = d.lost.total_secs();
    if d.lost.attempts > 0 {
        found.push((
            lost,
            format!(
                "retries: {:.1} s lost in {} attempts ({:.1} s failed, {:.1} s killed, {:.1} s on lost workers)",
                lost, d.lost.attempts, d.lost.failed_secs, d.lost.killed_secs, d.lost.lost_secs
            ),
        ));
    }
    if let Some(task) = d.slot_wait.max_task.filter(|_| d.slot_wait.max_secs >= 0.5) {
        found.push((
            d.slot_wait.total_secs,
            format!(
                "slots: tasks waited {:.1} s in all for a free slot (longest {task}: {:.1} s)",
                d.slot_wait.total_secs, d.slot_wait.max_secs
            ),
        ));
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().map(|(_, text)| text).collect()
}
