//! Live counters: the latest counters each running attempt reported with its worker's
//! heartbeat, so a job's counters move while its tasks run. `/api/jobs/{id}` shows them as
//! `live_counters`: the winning attempts' counters (the final `counters`, each partition's
//! winner counted once) plus, for each task still running, its furthest running attempt's.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ids::{AttemptId, JobId, TaskId};
use crate::scheduler::{AttemptRef, Counters};

/// Counters by job, task and attempt.
type ByJob = HashMap<JobId, HashMap<TaskId, HashMap<AttemptId, Counters>>>;

/// Running attempts' counters, by job, task and attempt.
#[derive(Debug, Default)]
pub struct LiveCounters {
    by_job: Mutex<ByJob>,
}

impl LiveCounters {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByJob> {
        self.by_job.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest counters of a running attempt.
    pub fn record(&self, attempt: &AttemptRef, counters: Counters) {
        let mut by_job = self.lock();
        let tasks = by_job.entry(attempt.job.clone()).or_default();
        tasks.entry(attempt.task).or_default().insert(attempt.attempt, counters);
    }

    /// An attempt ended: its final counters (if it won) are the scheduler's.
    pub fn forget_attempt(&self, attempt: &AttemptRef) {
        let mut by_job = self.lock();
        let Some(tasks) = by_job.get_mut(&attempt.job) else { return };
        if let Some(attempts) = tasks.get_mut(&attempt.task) {
            attempts.remove(&attempt.attempt);
            if attempts.is_empty() {
                tasks.remove(&attempt.task);
            }
        }
        if tasks.is_empty() {
            by_job.remove(&attempt.job);
        }
    }

    /// A job ended.
    pub fn forget_job(&self, job: &JobId) {
        self.lock().remove(job);
    }

    /// `finished` (the winners' counters) plus the furthest running attempt of each task
    /// (the one with the largest counters).
    pub fn overlay(&self, job: &JobId, finished: &Counters) -> Counters {
        let mut sum = finished.clone();
        let by_job = self.lock();
        let Some(tasks) = by_job.get(job) else { return sum };
        for attempts in tasks.values() {
            let furthest =
                attempts.values().max_by_key(|c| c.values().fold(0u64, |a, v| a.saturating_add(*v)));
            for (name, value) in furthest.into_iter().flatten() {
                let total = sum.entry(name.clone()).or_insert(0);
                *total = total.saturating_add(*value);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(task: TaskId, attempt: u32) -> AttemptRef {
        AttemptRef { job: JobId::from_string("j".into()), task, attempt: AttemptId(attempt) }
    }

    fn counters(rows: u64) -> Counters {
        [("map_input_records".to_owned(), rows)].into_iter().collect()
    }

    #[test]
    fn the_furthest_running_attempt_of_each_task_counts_once() {
        let live = LiveCounters::default();
        let job = JobId::from_string("j".into());
        live.record(&at(TaskId::map(0), 0), counters(10));
        live.record(&at(TaskId::map(0), 1), counters(30)); // a backup further along
        live.record(&at(TaskId::map(1), 0), counters(5));
        assert_eq!(live.overlay(&job, &counters(100)), counters(135));
        live.forget_attempt(&at(TaskId::map(0), 1));
        assert_eq!(live.overlay(&job, &counters(100)), counters(115));
        live.forget_job(&job);
        assert_eq!(live.overlay(&job, &counters(100)), counters(100));
    }
}
