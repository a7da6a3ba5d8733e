//! Every attempt a job launched, kept after it ends (the web UI's task table, timeline and
//! "why is it slow" panel read it): where and when it ran, how it ended, its error and the
//! counters it reported. Bounded per job: past [`AttemptLog::LIMIT`] the oldest ended
//! attempts are forgotten (and counted). Records are found by (task, attempt) through an
//! index, so ending an attempt does not scan the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;

use super::types::Counters;
use crate::ids::{AttemptId, TaskId, WorkerId};

/// How an attempt ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Launched and not reported yet.
    Running,
    /// Reported success and won its task.
    Succeeded,
    /// Reported failure (an error, a crash, a timeout, a fetch failure).
    Failed,
    /// Stopped by the driver: another attempt of its task won, or the job ended.
    Killed,
    /// Its worker was lost while it ran.
    Lost,
    /// Killed to give its slot to a queue below its fair share; re-run, not a failure.
    Preempted,
}

impl AttemptOutcome {
    /// `running`, `succeeded`, `failed`, `killed`, `lost` or `preempted`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Killed => "killed",
            AttemptOutcome::Lost => "lost",
            AttemptOutcome::Preempted => "preempted",
        }
    }

    /// Failed, killed, lost or preempted: the time it ran is lost.
    pub fn is_wasted(self) -> bool {
        matches!(
            self,
            AttemptOutcome::Failed
                | AttemptOutcome::Killed
                | AttemptOutcome::Lost
                | AttemptOutcome::Preempted
        )
    }
}

/// One attempt as the scheduler remembers it.
#[derive(Clone, Debug)]
pub(super) struct AttemptRecord {
    pub task: TaskId,
    pub attempt: AttemptId,
    pub worker: WorkerId,
    /// A speculative copy of a running attempt.
    pub backup: bool,
    /// When its task was ready to run (the wait for a slot ends at `started`).
    pub ready: Instant,
    pub started: Instant,
    pub ended: Option<Instant>,
    pub outcome: AttemptOutcome,
    /// Why it failed, was killed or lost.
    pub error: Option<String>,
    /// What it reported with its success (failed attempts report none).
    pub counters: Option<Counters>,
    /// Bytes of map output it wrote (successful map attempts).
    pub shuffle_written_bytes: Option<u64>,
}

/// How an attempt ends: see [`AttemptLog::finish`].
#[derive(Clone, Debug)]
pub(super) struct AttemptEnd {
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub counters: Option<Counters>,
}

impl AttemptEnd {
    pub fn succeeded(counters: Counters) -> Self {
        AttemptEnd { outcome: AttemptOutcome::Succeeded, error: None, counters: Some(counters) }
    }

    pub fn failed(outcome: AttemptOutcome, error: impl Into<String>) -> Self {
        AttemptEnd { outcome, error: Some(error.into()), counters: None }
    }
}

/// A job's attempts in launch order.
#[derive(Clone, Debug, Default)]
pub(super) struct AttemptLog {
    /// By launch number.
    records: BTreeMap<u64, AttemptRecord>,
    /// The launch number of each remembered attempt.
    by_attempt: HashMap<(TaskId, AttemptId), u64>,
    /// The launch numbers of the remembered attempts that ended.
    ended: BTreeSet<u64>,
    next: u64,
    /// Ended attempts forgotten to stay under the limit.
    pub dropped: u64,
}

impl AttemptLog {
    /// The most attempts a job remembers.
    pub const LIMIT: usize = 10_000;

    /// Records a launch; forgets the oldest ended attempt when over the limit (the oldest
    /// attempt when none ended).
    pub fn launched(&mut self, record: AttemptRecord) {
        let seq = self.next;
        self.next += 1;
        if let Some(earlier) = self.by_attempt.insert((record.task, record.attempt), seq) {
            self.records.remove(&earlier);
            self.ended.remove(&earlier);
        }
        self.records.insert(seq, record);
        if self.records.len() > Self::LIMIT {
            let oldest = self.ended.first().copied().or_else(|| self.records.keys().next().copied());
            if let Some(old) = oldest.and_then(|seq| self.records.remove(&seq).map(|r| (seq, r))) {
                self.ended.remove(&old.0);
                self.by_attempt.remove(&(old.1.task, old.1.attempt));
                self.dropped += 1;
            }
        }
    }

    fn find_mut(&mut self, task: TaskId, attempt: AttemptId) -> Option<(u64, &mut AttemptRecord)> {
        let seq = *self.by_attempt.get(&(task, attempt))?;
        Some((seq, self.records.get_mut(&seq)?))
    }

    /// Ends a running attempt (an attempt that ended already keeps its first end).
    pub fn finish(&mut self, now: Instant, task: TaskId, attempt: AttemptId, end: AttemptEnd) {
        let Some((seq, record)) = self.find_mut(task, attempt).filter(|(_, r)| r.ended.is_none()) else {
            return;
        };
        record.ended = Some(now);
        record.outcome = end.outcome;
        record.error = end.error;
        record.counters = end.counters;
        self.ended.insert(seq);
    }

    /// Notes the map output size a map attempt reports with its success.
    pub fn note_map_output(&mut self, task: TaskId, attempt: AttemptId, bytes: u64) {
        if let Some((_, record)) = self.find_mut(task, attempt) {
            record.shuffle_written_bytes = Some(bytes);
        }
    }

    /// The recorded attempts, oldest launch first.
    pub fn iter(&self) -> impl Iterator<Item = &AttemptRecord> {
        self.records.values()
    }

    /// The recorded attempt, if it is still remembered.
    pub fn get(&self, task: TaskId, attempt: AttemptId) -> Option<&AttemptRecord> {
        self.records.get(self.by_attempt.get(&(task, attempt))?)
    }
}
