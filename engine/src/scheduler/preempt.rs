//! Preemption: a queue kept below its fair share for longer than
//! [`preemption_timeout`](super::SchedulerConfig::preemption_timeout) gets slots back from
//! the queues above theirs, youngest attempts first (they lose the least work). Preempted
//! attempts are killed and their tasks run again; they do not count as failures.

use std::collections::HashMap;
use std::time::Instant;

use super::Scheduler;
use super::attempts::AttemptOutcome;
use super::types::AttemptRef;
use crate::ids::TaskKind;

/// Orders attempts that started at the same instant: job submission order, maps before
/// reduces, task index, attempt number.
type Tie = (u64, bool, u32, u32);

impl Scheduler {
    /// Preempts for every queue starved past the timeout (called by `tick`, after slots were
    /// filled).
    pub(super) fn preempt(&mut self, now: Instant) {
        let Some(timeout) = self.config.preemption_timeout else { return };
        let mut wanted = 0u64;
        // Per queue above its share: how many attempts it holds beyond it.
        let mut excess: HashMap<String, u64> = HashMap::new();
        for (name, queue, share) in self.fair.queues_mut(self.workers.usable_slots()) {
            let (running, pending) = queue.load();
            let entitled = share.floor() as u64;
            if pending == 0 || running >= entitled {
                queue.starved_since = None;
            } else {
                let since = *queue.starved_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= timeout {
                    wanted += entitled - running;
                    // The clock restarts: preempt again only if it is still starved then.
                    queue.starved_since = Some(now);
                }
            }
            let allowed = share.ceil() as u64;
            if running > allowed {
                excess.insert(name.clone(), running - allowed);
            }
        }
        // Free slots nobody could use would not help (the starved queue cannot use them
        // either), but count them so no more is taken than is missing.
        let mut wanted = wanted.saturating_sub(self.workers.free_slots());
        if wanted == 0 || excess.is_empty() {
            return;
        }
        let mut victims = self.running_in(&excess);
        // The youngest first; among equals the last launched (newest job, highest task).
        victims.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        for (_, _, attempt) in victims {
            if wanted == 0 {
                break;
            }
            let Some(left) = self.jobs.get(&attempt.job).and_then(|j| excess.get_mut(&j.queue)) else {
                continue;
            };
            if *left == 0 {
                continue;
            }
            *left -= 1;
            wanted -= 1;
            self.preempt_attempt(now, &attempt);
        }
        self.schedule(now);
    }

    /// The running attempts of jobs in the given queues: when each started, a tie-breaker,
    /// and the attempt. Reads the workers' lists: one pass over the running attempts.
    fn running_in(&self, queues: &HashMap<String, u64>) -> Vec<(Instant, Tie, AttemptRef)> {
        let mut out = Vec::new();
        for (_, worker) in self.workers.iter() {
            for attempt in &worker.running {
                let Some(job) = self.jobs.get(&attempt.job).filter(|j| queues.contains_key(&j.queue)) else {
                    continue;
                };
                let task = job.tasks(attempt.task.kind).get(attempt.task.index as usize);
                let Some(run) = task.and_then(|t| t.running.iter().find(|r| r.attempt == attempt.attempt))
                else {
                    continue;
                };
                let is_reduce = attempt.task.kind == TaskKind::Reduce;
                let tie = (job.seq, is_reduce, attempt.task.index, attempt.attempt.0);
                out.push((run.started, tie, attempt.clone()));
            }
        }
        out
    }

    /// Kills one attempt for preemption: its task is pending again, nothing is counted as
    /// failed.
    fn preempt_attempt(&mut self, now: Instant, attempt: &AttemptRef) {
        let Some(queue) = self.jobs.get(&attempt.job).map(|job| job.queue.clone()) else { return };
        let why = format!("preempted: queue {queue} is above its fair share");
        if self.requeue_attempt(now, attempt, AttemptOutcome::Preempted, why)
            && let Some(job) = self.jobs.get_mut(&attempt.job)
        {
            job.preempted_attempts += 1;
        }
    }
}
