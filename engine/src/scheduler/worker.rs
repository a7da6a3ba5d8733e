//! The scheduler's table of workers: slots, running attempts, liveness, and the indexes
//! that keep slot lookups logarithmic (the set of workers with a free slot, slot totals).
//!
//! Every change to a worker's running attempts, state or exclusion goes through a
//! [`Workers`] method that re-indexes that one worker, so the indexes cannot drift from the
//! table.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
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
    /// Leaving: it takes no new tasks, finishes (or, past its drain deadline, gives back)
    /// the ones it runs, and serves its map output until no running job needs it.
    Draining,
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
    /// Memory its tasks may use together (`u64::MAX`: it did not say).
    pub memory: u64,
    /// The memory each running attempt was given, as `running` lists them.
    pub reserved: Vec<(AttemptRef, u64)>,
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
    /// While draining: when its running attempts are given back, and whether it was told
    /// it may leave.
    pub drain: Option<Drain>,
    /// What the indexes of [`Workers`] count for it (see [`Workers::reindex`]).
    indexed: Indexed,
}

/// A draining worker's progress.
#[derive(Clone, Copy, Debug)]
pub(super) struct Drain {
    /// Attempts still running then are killed and re-run elsewhere (not failures).
    pub deadline: Instant,
    /// Told that no running job needs its data any more.
    pub released: bool,
}

/// One worker's share of the [`Workers`] totals, as last indexed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Indexed {
    free: u32,
    usable: u32,
    alive: bool,
    excluded: bool,
    /// Draining and not released yet.
    draining: bool,
}

impl Worker {
    pub fn new(now: Instant, slots: u32, memory: u64) -> Self {
        Worker {
            slots,
            memory,
            reserved: Vec::new(),
            state: WorkerState::Alive,
            last_heartbeat: now,
            running: Vec::new(),
            completed: 0,
            failures: Vec::new(),
            excluded_until: None,
            resources: None,
            drain: None,
            indexed: Indexed::default(),
        }
    }

    /// Attached and heartbeating: alive or draining.
    pub fn is_alive(&self) -> bool {
        matches!(self.state, WorkerState::Alive | WorkerState::Draining)
    }

    /// Alive (not draining) and not excluded: it may take tasks.
    fn is_usable(&self) -> bool {
        self.state == WorkerState::Alive && self.excluded_until.is_none()
    }

    /// Memory not given to running attempts.
    pub fn free_memory(&self) -> u64 {
        let reserved: u64 = self.reserved.iter().map(|(_, bytes)| bytes).sum();
        self.memory.saturating_sub(reserved)
    }

    /// The memory an attempt gets here: the job's per-task memory when it asks for some,
    /// else this worker's share per slot.
    pub fn attempt_memory(&self, requested: Option<u64>) -> u64 {
        requested.unwrap_or(self.memory / u64::from(self.slots.max(1)))
    }

    /// Takes one more attempt that needs `memory`: a slot is free and so is the memory.
    fn admits(&self, requested: Option<u64>) -> bool {
        self.free_slots() > 0 && self.attempt_memory(requested) <= self.free_memory()
    }

    pub fn free_slots(&self) -> u32 {
        if self.is_usable() { self.slots.saturating_sub(self.running.len() as u32) } else { 0 }
    }

    fn indexed_now(&self) -> Indexed {
        Indexed {
            free: self.free_slots(),
            usable: if self.is_usable() { self.slots } else { 0 },
            alive: self.is_alive(),
            excluded: self.state == WorkerState::Alive && self.excluded_until.is_some(),
            draining: self.state == WorkerState::Draining && self.drain.is_some_and(|d| !d.released),
        }
    }
}

/// The workers by id, the round-robin cursor, and the indexes over them.
#[derive(Debug, Default)]
pub(super) struct Workers {
    by_id: BTreeMap<WorkerId, Worker>,
    /// The worker that got the last launch; the next search starts after it.
    pub cursor: Option<WorkerId>,
    /// Workers with at least one free slot.
    with_free_slot: BTreeSet<WorkerId>,
    /// Draining workers not released yet.
    draining: BTreeSet<WorkerId>,
    free_slots: u64,
    usable_slots: u64,
    alive: usize,
    excluded: usize,
}

impl Workers {
    /// Free slots on usable workers.
    pub fn free_slots(&self) -> u64 {
        self.free_slots
    }

    /// Slots of the workers that may take tasks (alive, not excluded).
    pub fn usable_slots(&self) -> u64 {
        self.usable_slots
    }

    /// Live workers, and how many of them are excluded.
    pub fn alive_and_excluded(&self) -> (usize, usize) {
        (self.alive, self.excluded)
    }

    pub fn contains(&self, id: &WorkerId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The draining workers not released yet, by id.
    pub fn draining(&self) -> impl Iterator<Item = (&WorkerId, &Worker)> {
        self.draining.iter().filter_map(|id| Some((id, self.by_id.get(id)?)))
    }

    /// Every worker, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&WorkerId, &Worker)> {
        self.by_id.iter()
    }

    /// Changes one worker with `change`, then re-indexes it. None if it is unknown.
    pub fn update<T>(&mut self, id: &WorkerId, change: impl FnOnce(&mut Worker) -> T) -> Option<T> {
        let worker = self.by_id.get_mut(id)?;
        let out = change(worker);
        self.reindex(id);
        Some(out)
    }

    /// Adds a worker, replacing a known one of the same id.
    pub fn insert(&mut self, id: WorkerId, worker: Worker) {
        self.by_id.insert(id.clone(), worker);
        self.reindex(&id);
    }

    /// Brings the indexes up to date with worker `id`'s table entry.
    fn reindex(&mut self, id: &WorkerId) {
        let Some(worker) = self.by_id.get_mut(id) else { return };
        let (old, new) = (worker.indexed, worker.indexed_now());
        worker.indexed = new;
        self.free_slots = self.free_slots + u64::from(new.free) - u64::from(old.free);
        self.usable_slots = self.usable_slots + u64::from(new.usable) - u64::from(old.usable);
        self.alive = self.alive + usize::from(new.alive) - usize::from(old.alive);
        self.excluded = self.excluded + usize::from(new.excluded) - usize::from(old.excluded);
        if new.draining != old.draining {
            if new.draining {
                self.draining.insert(id.clone());
            } else {
                self.draining.remove(id);
            }
        }
        if new.free > 0 {
            if old.free == 0 {
                self.with_free_slot.insert(id.clone());
            }
        } else if old.free > 0 {
            self.with_free_slot.remove(id);
        }
    }

    /// The next worker with a free slot and the memory for an attempt of a job asking for
    /// `requested` per task (see [`Worker::attempt_memory`]), in round-robin order starting
    /// after the last one used. `avoid` is skipped when another worker fits; with `strict`
    /// it is never chosen. With `reserved`, workers with that much memory or more are kept
    /// for a task that has waited long for it, and only smaller ones are picked.
    pub fn pick(
        &self,
        avoid: Option<&WorkerId>,
        strict: bool,
        requested: Option<u64>,
        reserved: Option<u64>,
    ) -> Option<WorkerId> {
        let after = match &self.cursor {
            Some(c) => self.with_free_slot.range::<WorkerId, _>((Bound::Excluded(c), Bound::Unbounded)),
            None => self.with_free_slot.range::<WorkerId, _>(..),
        };
        let upto = self.cursor.iter().flat_map(|c| self.with_free_slot.range::<WorkerId, _>(..=c));
        let fits = |id: &&WorkerId| {
            let kept = |w: &Worker| reserved.is_some_and(|bytes| w.memory >= bytes);
            self.by_id.get(*id).is_some_and(|w| w.admits(requested) && !kept(w))
        };
        // The avoided worker is skipped once.
        let mut candidates = after.chain(upto).filter(fits);
        let first = candidates.next()?;
        if avoid != Some(first) {
            return Some(first.clone());
        }
        match candidates.next() {
            Some(second) => Some(second.clone()),
            None if strict => None,
            None => Some(first.clone()),
        }
    }

    /// True when some live worker could hold an attempt of a job asking for `requested`
    /// per task once its other attempts end (or no worker is alive to tell yet).
    pub fn could_ever_hold(&self, requested: Option<u64>) -> bool {
        let Some(bytes) = requested else { return true };
        let mut alive = self.by_id.values().filter(|w| w.is_alive()).peekable();
        alive.peek().is_none() || alive.any(|w| bytes <= w.memory)
    }

    /// The memory an attempt of a job asking for `requested` gets on `worker`.
    pub fn attempt_memory(&self, worker: &WorkerId, requested: Option<u64>) -> u64 {
        self.by_id.get(worker).map_or(requested.unwrap_or(0), |w| w.attempt_memory(requested))
    }

    /// The most memory a live worker has for its tasks (0 without one).
    pub fn largest_memory(&self) -> u64 {
        self.by_id.values().filter(|w| w.is_alive()).map(|w| w.memory).max().unwrap_or(0)
    }

    /// Notes an attempt given `memory` launched on `worker`, which becomes the round-robin
    /// cursor.
    pub fn start(&mut self, worker: &WorkerId, attempt: AttemptRef, memory: u64) {
        self.update(worker, |w| {
            w.reserved.push((attempt.clone(), memory));
            w.running.push(attempt);
        });
        self.cursor = Some(worker.clone());
    }

    /// Removes a finished or killed attempt from its worker's list, freeing its memory.
    pub fn forget(&mut self, worker: &WorkerId, attempt: &AttemptRef) {
        self.update(worker, |w| {
            w.running.retain(|a| a != attempt);
            w.reserved.retain(|(a, _)| a != attempt);
        });
    }

    pub fn is_alive(&self, worker: &WorkerId) -> bool {
        self.by_id.get(worker).is_some_and(Worker::is_alive)
    }

    /// Checks the indexes against the table (tests call this after every step).
    #[cfg(test)]
    pub fn assert_indexed(&self) {
        let with_free: BTreeSet<WorkerId> =
            self.by_id.iter().filter(|(_, w)| w.free_slots() > 0).map(|(id, _)| id.clone()).collect();
        assert_eq!(self.with_free_slot, with_free);
        let free: u64 = self.by_id.values().map(|w| u64::from(w.free_slots())).sum();
        assert_eq!(self.free_slots, free);
        let usable: u64 = self.by_id.values().filter(|w| w.is_usable()).map(|w| u64::from(w.slots)).sum();
        assert_eq!(self.usable_slots, usable);
    }
}
