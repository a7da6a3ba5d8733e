//! Sharing slots fairly: queues by weight, users within a queue, a user's jobs by
//! priority with aging.
//!
//! Every free slot goes to the queue with the fewest running attempts per unit of weight
//! (among queues with a launchable task and under their `max_slots`), within it to the user
//! with the fewest running attempts, and within that user's jobs to the one of highest
//! *rank*. A queue or user without demand is skipped, so what it does not use goes to the
//! others (max-min fairness, the Hadoop Fair Scheduler's rule).
//!
//! A job's rank is its priority plus one point per [`aging`](super::SchedulerConfig::aging)
//! it has waited since submission: `priority × aging − submitted`, which does not change as
//! time passes, so the jobs stay in one ordered map. An old low-priority job therefore
//! overtakes newer high-priority ones and nothing starves; equal ranks run in submit order.
//!
//! The index is kept up to date by [`Scheduler::sync_job`] after every change to a job.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;

use super::Scheduler;
use super::config::QueueConfig;
use crate::ids::JobId;

/// Where a job sits among its user's runnable jobs: higher rank first, then submit order.
type JobKey = (Reverse<i128>, u64);

/// What the index counts for one job (kept on the job, to undo it on the next change).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Accounted {
    running: u64,
    pending: u64,
    /// Set while the job has a launchable task.
    key: Option<JobKey>,
}

/// One user's jobs in one queue.
#[derive(Debug, Default)]
struct User {
    running: u64,
    runnable: BTreeMap<JobKey, JobId>,
    /// Jobs counted here (running or runnable).
    jobs: usize,
}

/// One queue's configuration and load.
#[derive(Debug)]
pub(super) struct Queue {
    config: QueueConfig,
    configured: bool,
    running: u64,
    pending: u64,
    users: HashMap<String, User>,
    /// Users with a runnable job: fewest running attempts first, then by name.
    runnable_users: BTreeSet<(u64, String)>,
    /// Since when it has been below its fair share (preemption waits for the timeout).
    pub(super) starved_since: Option<Instant>,
}

impl Queue {
    fn new(config: QueueConfig, configured: bool) -> Self {
        Queue {
            config,
            configured,
            running: 0,
            pending: 0,
            users: HashMap::new(),
            runnable_users: BTreeSet::new(),
            starved_since: None,
        }
    }

    fn weight(&self) -> u64 {
        u64::from(self.config.weight.max(1))
    }

    /// Has a launchable task and room under its `max_slots`.
    fn wants_slot(&self) -> bool {
        !self.runnable_users.is_empty()
            && self.config.max_slots.is_none_or(|max| self.running < u64::from(max))
    }

    /// Attempts running and tasks launchable.
    pub fn load(&self) -> (u64, u64) {
        (self.running, self.pending)
    }

    /// What it could use now: running plus launchable, capped by `max_slots`.
    fn demand(&self) -> u64 {
        let demand = self.running + self.pending;
        self.config.max_slots.map_or(demand, |max| demand.min(u64::from(max)))
    }
}

/// One queue as status pages show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Its weight: slots are shared between queues in proportion.
    pub weight: u32,
    /// The most slots its attempts may hold, if limited.
    pub max_slots: Option<u32>,
    /// Attempts of its jobs running now.
    pub running: u64,
    /// Tasks of its jobs that could be launched now.
    pub pending: u64,
    /// The slots it is entitled to now (weighted, capped by its demand and `max_slots`,
    /// what others do not use redistributed).
    pub fair_share: f64,
    /// Seconds it has been below its fair share (preemption starts after the timeout).
    pub starved_secs: Option<f64>,
}

/// The fair-share index over queues, users and runnable jobs.
#[derive(Debug)]
pub(super) struct Fair {
    queues: BTreeMap<String, Queue>,
}

impl Fair {
    pub fn new(configured: &BTreeMap<String, QueueConfig>) -> Self {
        let mut queues: BTreeMap<String, Queue> =
            configured.iter().map(|(name, c)| (name.clone(), Queue::new(c.clone(), true))).collect();
        queues
            .entry(super::DEFAULT_QUEUE.to_owned())
            .or_insert_with(|| Queue::new(QueueConfig::default(), true));
        Fair { queues }
    }

    /// Moves a job's counts from `old` to `new`.
    pub fn update(&mut self, (queue, user): (&str, &str), id: &JobId, old: &Accounted, new: &Accounted) {
        let q = match self.queues.get_mut(queue) {
            Some(q) => q,
            None => self.queues.entry(queue.to_owned()).or_insert(Queue::new(QueueConfig::default(), false)),
        };
        q.running = q.running + new.running - old.running;
        q.pending = q.pending + new.pending - old.pending;
        let u = q.users.entry(user.to_owned()).or_default();
        let was = (u.running, !u.runnable.is_empty());
        u.running = u.running + new.running - old.running;
        if let Some(key) = &old.key {
            u.runnable.remove(key);
        }
        if let Some(key) = &new.key {
            u.runnable.insert(*key, id.clone());
        }
        let counted = |a: &Accounted| a.running > 0 || a.key.is_some();
        u.jobs = u.jobs + usize::from(counted(new)) - usize::from(counted(old));
        let now = (u.running, !u.runnable.is_empty());
        let empty = u.jobs == 0;
        if was != now {
            if was.1 {
                q.runnable_users.remove(&(was.0, user.to_owned()));
            }
            if now.1 {
                q.runnable_users.insert((now.0, user.to_owned()));
            }
        }
        if empty {
            q.users.remove(user);
        }
        if !q.configured && q.users.is_empty() {
            self.queues.remove(queue);
        }
    }

    /// The job whose task gets the next free slot (see the module documentation).
    pub fn next_job(&self) -> Option<&JobId> {
        let wanting = self.queues.values().filter(|q| q.wants_slot());
        // running / weight, compared without division; the first (by name) of equals wins.
        let queue = wanting.min_by(|a, b| (a.running * b.weight()).cmp(&(b.running * a.weight())))?;
        let (_, user) = queue.runnable_users.first()?;
        queue.users.get(user)?.runnable.values().next()
    }

    /// True if another attempt of a job in `queue` stays within its `max_slots`.
    pub fn has_room(&self, queue: &str) -> bool {
        self.queues.get(queue).is_none_or(|q| q.config.max_slots.is_none_or(|max| q.running < u64::from(max)))
    }

    /// Each queue's fair share of `slots`: weighted, capped by its demand, what a queue
    /// cannot use shared among the others (water-filling). In queue name order.
    pub fn shares(&self, slots: u64) -> Vec<f64> {
        let demands: Vec<(f64, f64)> =
            self.queues.values().map(|q| (q.demand() as f64, q.weight() as f64)).collect();
        let mut shares = vec![0.0; demands.len()];
        let mut open: Vec<usize> = (0..demands.len()).filter(|i| demands[*i].0 > 0.0).collect();
        let mut left = slots as f64;
        while !open.is_empty() && left > 0.0 {
            let per_weight = left / open.iter().map(|i| demands[*i].1).sum::<f64>();
            let (met, unmet): (Vec<usize>, Vec<usize>) =
                open.iter().partition(|i| demands[**i].0 <= per_weight * demands[**i].1);
            if met.is_empty() {
                for i in unmet {
                    shares[i] = per_weight * demands[i].1;
                }
                break;
            }
            for i in met {
                shares[i] = demands[i].0;
                left -= demands[i].0;
            }
            open = unmet;
        }
        shares
    }

    /// The queues with their shares of `slots` (name order), for preemption and views.
    pub fn queues_mut(&mut self, slots: u64) -> impl Iterator<Item = (&String, &mut Queue, f64)> {
        let shares = self.shares(slots);
        self.queues.iter_mut().zip(shares).map(|((name, q), share)| (name, q, share))
    }

    pub fn views(&self, now: Instant, slots: u64) -> Vec<QueueView> {
        let shares = self.shares(slots);
        let queues = self.queues.iter().zip(shares);
        queues
            .map(|((name, q), fair_share)| QueueView {
                name: name.clone(),
                weight: q.config.weight,
                max_slots: q.config.max_slots,
                running: q.running,
                pending: q.pending,
                fair_share,
                starved_secs: q.starved_since.map(|since| now.saturating_duration_since(since).as_secs_f64()),
            })
            .collect()
    }
}

impl Scheduler {
    /// A job's rank among its user's jobs (see the module documentation).
    fn rank(&self, priority: i32, submitted: Instant) -> i128 {
        let Some(step) = self.config.aging.filter(|s| !s.is_zero()) else { return i128::from(priority) };
        let epoch = self.epoch.unwrap_or(submitted);
        let waited_less = match submitted.checked_duration_since(epoch) {
            Some(after) => after.as_nanos() as i128,
            None => -(epoch.saturating_duration_since(submitted).as_nanos() as i128),
        };
        i128::from(priority) * step.as_nanos() as i128 - waited_less
    }

    /// Brings the fair-share index up to date with one job (after any change to it).
    pub(super) fn sync_job(&mut self, now: Instant, id: &JobId) {
        let Some(job) = self.jobs.get(id) else { return };
        let pending = job.pending_count() as u64;
        let held = job.is_held(now);
        if held && pending > 0 {
            self.held.insert(id.clone());
        }
        let runnable = pending > 0 && !held && !job.waits_for_memory;
        let new = Accounted {
            running: job.running_attempts(),
            pending: if runnable { pending } else { 0 },
            key: runnable.then(|| (Reverse(self.rank(job.priority, job.submitted)), job.seq)),
        };
        if new == job.accounted {
            return;
        }
        let old =
            std::mem::replace(&mut self.jobs.get_mut(id).expect("looked up above").accounted, new.clone());
        let job = &self.jobs[id];
        self.fair.update((&job.queue, &job.owner), id, &old, &new);
    }

    /// Syncs every job changed since the last call, and held jobs whose hold has passed.
    pub(super) fn sync_dirty(&mut self, now: Instant) {
        let released: Vec<JobId> = self
            .held
            .iter()
            .filter(|id| !self.jobs.get(*id).is_some_and(|j| j.is_held(now)))
            .cloned()
            .collect();
        for id in released {
            self.held.remove(&id);
            self.dirty.push(id);
        }
        for id in std::mem::take(&mut self.dirty) {
            self.sync_job(now, &id);
        }
    }

    /// Checks every index against the tables (tests call this after every step).
    #[cfg(test)]
    pub(super) fn assert_indexed(&self) {
        self.workers.assert_indexed();
        let mut running: BTreeMap<&str, u64> = BTreeMap::new();
        for job in self.jobs.values() {
            job.assert_indexed();
            *running.entry(&job.queue).or_default() += job.running_attempts();
        }
        for (name, queue) in &self.fair.queues {
            assert_eq!(queue.running, running.get(name.as_str()).copied().unwrap_or(0), "queue {name}");
        }
    }

    /// Slots on the workers that may take tasks (alive, not excluded), and how many of them
    /// are free.
    pub fn slot_counts(&self) -> (u64, u64) {
        (self.workers.usable_slots(), self.workers.free_slots())
    }

    /// Snapshots of every queue: weight, load and fair share.
    pub fn queues(&self, now: Instant) -> Vec<QueueView> {
        self.fair.views(now, self.workers.usable_slots())
    }
}
