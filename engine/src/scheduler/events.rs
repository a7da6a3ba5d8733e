//! What happened to attempts, for observers (metrics): launches with the time their task
//! waited for a slot, and ends with their outcome. The driver drains them after every
//! event with [`Scheduler::take_attempt_events`](super::Scheduler::take_attempt_events);
//! they never change what the scheduler decides.

use std::time::{Duration, Instant};

use super::types::AttemptRef;
use crate::ids::WorkerId;

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// Its result was accepted.
    Succeeded,
    /// It failed (its report, a fetch failure, a timeout).
    Failed,
    /// It was killed: another attempt won, or its job ended or began committing.
    Killed,
    /// Its worker was lost while it ran.
    Lost,
}

impl AttemptOutcome {
    /// `succeeded`, `failed`, `killed` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Killed => "killed",
            AttemptOutcome::Lost => "lost",
        }
    }
}

/// One thing that happened to an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptEvent {
    /// It was launched.
    Launched {
        /// Which.
        attempt: AttemptRef,
        /// Where.
        worker: WorkerId,
        /// A backup of a straggler (it did not wait: its task was running).
        backup: bool,
        /// How long its task had been ready (launchable) before it got a slot.
        waited: Duration,
    },
    /// It ended.
    Ended {
        /// Which.
        attempt: AttemptRef,
        /// Where it ran.
        worker: WorkerId,
        /// How.
        outcome: AttemptOutcome,
        /// When it was launched.
        started: Instant,
    },
}
