//! The scheduler's table of workers: slots, running attempts, liveness.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::types::AttemptRef;
use crate::ids::{JobId, WorkerId};

/// Whether a worker may receive tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Registered and heartbeating.
    Alive,
    /// Declared lost (stream broke or heartbeats stopped); it must register again.
    Lost {
        /// Why it was declared lost.
        reason: String,
    },
}

/// One registered worker.
#[derive(Debug)]
pub(super) struct Worker {
    pub slots: u32,
    pub state: WorkerState,
    pub last_heartbeat: Instant,
    /// Attempts launched here and not yet finished, in launch order.
    pub running: Vec<AttemptRef>,
    pub completed: u64,
    /// Counted failures here, oldest first: when and of which job (for exclusion).
    pub failures: Vec<(Instant, JobId)>,
    /// Excluded from new tasks until then (ended by `tick`).
    pub excluded_until: Option<Instant>,
    /// What it uses, as of its last heartbeat that said.
    pub resources: Option<crate::metrics::WorkerResources>,
}

impl Worker {
    pub fn new(now: Instant, slots: u32) -> Self {
        Worker {
            slots,
            state: WorkerState::Alive,
            last_heartbeat: now,
            running: Vec::new(),
            completed: 0,
            failures: Vec::new(),
            excluded_until: None,
            resources: None,
        }
    }

    pub fn is_alive(&self) -> bool {
        self.state == WorkerState::Alive
    }

    pub fn free_slots(&self) -> u32 {
        if self.is_alive() && self.excluded_until.is_none() {
            self.slots.saturating_sub(self.running.len() as u32)
        } else {
            0
        }
    }

    pub fn forget(&mut self, attempt: &AttemptRef) {
        self.running.retain(|a| a != attempt);
    }
}

/// The workers by id, plus the round-robin cursor.
#[derive(Debug, Default)]
pub(super) struct Workers {
    pub by_id: BTreeMap<WorkerId, Worker>,
    /// The worker that got the last launch; the next search starts after it.
    pub cursor: Option<WorkerId>,
}

impl Workers {
    pub fn free_slots(&self) -> u64 {
        self.by_id.values().map(|w| u64::from(w.free_slots())).sum()
    }

    /// The next worker with a free slot in round-robin order, starting after the last one
    /// used. `avoid` is skipped when another worker has a free slot; with `strict` it is
    /// never chosen.
    pub fn pick(&self, avoid: Option<&WorkerId>, strict: bool) -> Option<WorkerId> {
        let cursor = self.cursor.as_ref();
        let after = self.by_id.iter().filter(|(id, _)| cursor.is_none_or(|c| *id > c));
        let upto = self.by_id.iter().filter(|(id, _)| cursor.is_some_and(|c| *id <= c));
        let mut fallback = None;
        for (id, worker) in after.chain(upto) {
            if worker.free_slots() == 0 {
                continue;
            }
            if avoid == Some(id) {
                fallback = fallback.or(Some(id));
            } else {
                return Some(id.clone());
            }
        }
        if strict { None } else { fallback.cloned() }
    }

    /// Removes a finished or killed attempt from its worker's list.
    pub fn forget(&mut self, worker: &WorkerId, attempt: &AttemptRef) {
        if let Some(w) = self.by_id.get_mut(worker) {
            w.forget(attempt);
        }
    }

    pub fn is_alive(&self, worker: &WorkerId) -> bool {
        self.by_id.get(worker).is_some_and(Worker::is_alive)
    }
}
