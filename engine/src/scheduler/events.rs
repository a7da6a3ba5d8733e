//! What happened to attempts, for observers (metrics): launches with the time their task
//! waited for a slot, and ends with their outcome. The driver drains them after every
//! event with [`Scheduler::take_attempt_events`](super::Scheduler::take_attempt_events);
//! they never change what the scheduler decides.

use std::time::{Duration, Instant};

pub use super::attempts::AttemptOutcome;
use super::types::AttemptRef;
use crate::ids::WorkerId;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AttemptId, JobId, TaskId};
    use crate::scheduler::{JobSpec, Scheduler, SchedulerConfig, TaskOutcome};

    #[test]
    fn launches_tell_how_long_their_task_waited_and_ends_how_they_ended() {
        let (t0, secs) = (Instant::now(), Duration::from_secs);
        let mut s = Scheduler::new(SchedulerConfig::default());
        let job = JobId::from_string("j".into());
        let spec = JobSpec {
            id: job.clone(),
            name: "wc".into(),
            priority: 0,
            owner: "a".into(),
            queue: "default".into(),
            map_tasks: vec!["a.txt".into()],
            reducers: 1,
            task_memory: None,
        };
        s.submit(t0, spec).unwrap();
        // No worker yet: the map task waits 2 s for a slot.
        s.add_worker(t0 + secs(2), WorkerId("w1".into()), 1);
        let map =
            |attempt| AttemptRef { job: job.clone(), task: TaskId::map(0), attempt: AttemptId(attempt) };
        let launched = |attempt: AttemptRef, worker: &str, waited| AttemptEvent::Launched {
            attempt,
            worker: WorkerId(worker.into()),
            backup: false,
            waited,
        };
        assert_eq!(s.take_attempt_events(), [launched(map(0), "w1", secs(2))]);
        // Its worker is lost 1 s later; it runs again 3 s after that, elsewhere.
        s.worker_lost(t0 + secs(3), &WorkerId("w1".into()), "gone");
        let lost = AttemptEvent::Ended {
            attempt: map(0),
            worker: WorkerId("w1".into()),
            outcome: AttemptOutcome::Lost,
            started: t0 + secs(2),
        };
        assert_eq!(s.take_attempt_events(), [lost]);
        s.add_worker(t0 + secs(6), WorkerId("w2".into()), 1);
        assert_eq!(s.take_attempt_events(), [launched(map(1), "w2", secs(3))]);
        // It succeeds: the reduce task is ready at once and launched without waiting.
        s.task_succeeded(t0 + secs(7), &map(1), TaskOutcome::MapDone, Default::default());
        let events = s.take_attempt_events();
        assert!(
            matches!(&events[0], AttemptEvent::Ended { outcome: AttemptOutcome::Succeeded, attempt, .. } if *attempt == map(1)),
            "{events:?}"
        );
        let reduce = AttemptRef { job: job.clone(), task: TaskId::reduce(0), attempt: AttemptId(0) };
        assert_eq!(events[1..], [launched(reduce, "w2", Duration::ZERO)]);
    }
}
