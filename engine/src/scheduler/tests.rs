//! The scheduler driven as a state machine with a fake clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::error::ErrorKind;
use crate::ids::{AttemptId, TaskId, TaskKind};

mod detail;
mod diagnose;
mod drain;
mod fair;
mod health;

fn w(name: &str) -> WorkerId {
    WorkerId(name.to_string())
}

fn jid(name: &str) -> JobId {
    JobId::from_string(name.to_string())
}

fn spec(name: &str, priority: i32, maps: usize, reducers: u32) -> JobSpec {
    JobSpec {
        id: jid(name),
        name: name.to_string(),
        priority,
        owner: "alice".into(),
        queue: DEFAULT_QUEUE.into(),
        map_tasks: (0..maps).map(|i| format!("{name}.txt:{i}00+100")).collect(),
        reducers,
    }
}

fn at(job: &str, task: TaskId, attempt: u32) -> AttemptRef {
    AttemptRef { job: jid(job), task, attempt: AttemptId(attempt) }
}

/// Defaults, but workers never time out (for tests that tick far ahead without heartbeats).
fn patient() -> SchedulerConfig {
    SchedulerConfig::default().with_heartbeat_timeout(Duration::from_secs(3600))
}

fn fail(kind: FailureKind, message: &str) -> TaskFailure {
    TaskFailure { kind, error: None, message: message.to_string(), stderr_tail: String::new() }
}

/// A scheduler, a fake clock and short-hands for reports.
struct Sim {
    s: Scheduler,
    t0: Instant,
}

impl Sim {
    fn new(config: SchedulerConfig, workers: &[(&str, u32)]) -> Self {
        let t0 = Instant::now();
        let mut s = Scheduler::new(config);
        for (name, slots) in workers {
            s.add_worker(t0, w(name), *slots);
        }
        Sim { s, t0 }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn submit(&mut self, secs: f64, job: JobSpec) {
        let now = self.at(secs);
        self.s.submit(now, job).expect("submit");
    }

    fn map_done(&mut self, secs: f64, a: &AttemptRef) {
        let now = self.at(secs);
        let counters = BTreeMap::from([("records".to_string(), 10)]);
        self.s.task_succeeded(now, a, TaskOutcome::MapDone, counters);
    }

    fn reduce_done(&mut self, secs: f64, a: &AttemptRef) {
        let now = self.at(secs);
        let outcome =
            TaskOutcome::PartWritten { part_file: format!("part-{}-{}", a.task.index, a.attempt), rows: 5 };
        self.s.task_succeeded(now, a, outcome, BTreeMap::from([("rows".to_string(), 5)]));
    }

    fn failed(&mut self, secs: f64, a: &AttemptRef, failure: TaskFailure) {
        let now = self.at(secs);
        self.s.task_failed(now, a, failure);
    }

    /// Drains the actions, returning the launches as (worker, attempt) pairs and the rest.
    fn launches(&mut self) -> (Vec<(WorkerId, AttemptRef)>, Vec<Action>) {
        self.s.assert_indexed();
        let mut launches = Vec::new();
        let mut other = Vec::new();
        for action in self.s.take_actions() {
            match action {
                Action::Launch { worker, attempt, .. } => launches.push((worker, attempt)),
                a => other.push(a),
            }
        }
        (launches, other)
    }

    fn view(&self, job: &str) -> JobView {
        self.s.job(self.t0, &jid(job)).expect("job view")
    }
}

#[test]
fn fills_slots_round_robin_with_fresh_attempt_ids() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 2), ("w2", 2)]);
    sim.submit(0.0, spec("j", 0, 5, 1));
    let (launches, other) = sim.launches();
    assert!(other.is_empty());
    let expected = [("w1", 0), ("w2", 1), ("w1", 2), ("w2", 3)];
    let got: Vec<_> = launches.iter().map(|(wk, a)| (wk.0.as_str(), a.task.index)).collect();
    assert_eq!(got, expected);
    assert!(launches.iter().all(|(_, a)| a.attempt == AttemptId(0) && a.task.kind == TaskKind::Map));
    assert_eq!(sim.view("j").state, JobState::Running);
    // The fifth map waits for a slot; it gets the first one that frees.
    sim.map_done(1.0, &at("j", TaskId::map(1), 0));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(4), 0))]);
}

#[test]
fn higher_priority_first_then_submit_order() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[]);
    sim.submit(0.0, spec("a", 0, 1, 1));
    sim.submit(0.0, spec("b", 0, 1, 1));
    sim.submit(0.0, spec("c", 5, 1, 1));
    assert_eq!(sim.view("a").state, JobState::Queued);
    sim.s.add_worker(sim.at(1.0), w("w1"), 2);
    let (launches, _) = sim.launches();
    let jobs: Vec<_> = launches.iter().map(|(_, a)| a.job.as_str().to_string()).collect();
    assert_eq!(jobs, ["c", "a"]);
    sim.map_done(2.0, &at("c", TaskId::map(0), 0));
    // c's reduce outranks b's map.
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("c", TaskId::reduce(0), 0))]);
}

#[test]
fn reduces_wait_for_every_map_and_carry_map_outputs() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 2), ("w2", 2)]);
    sim.submit(0.0, spec("j", 0, 2, 2));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    assert!(sim.launches().0.is_empty(), "no slow start");
    sim.map_done(2.0, &at("j", TaskId::map(1), 0));
    let actions = sim.s.take_actions();
    let expected_outputs = [
        MapOutputRef { map_task: 0, attempt: AttemptId(0), worker: w("w1") },
        MapOutputRef { map_task: 1, attempt: AttemptId(0), worker: w("w2") },
    ];
    assert_eq!(actions.len(), 2);
    for (i, action) in actions.iter().enumerate() {
        let Action::Launch { attempt, map_outputs, .. } = action else { panic!("{action:?}") };
        assert_eq!(attempt, &at("j", TaskId::reduce(i), 0));
        assert_eq!(&map_outputs[..], &expected_outputs[..]);
    }
}

#[test]
fn zero_maps_go_straight_to_reduce_and_duplicates_are_rejected() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 0, 1));
    let actions = sim.s.take_actions();
    assert!(matches!(&actions[..], [Action::Launch { attempt, map_outputs, .. }]
        if attempt.task == TaskId::reduce(0) && map_outputs.is_empty()));
    let err = sim.s.submit(sim.t0, spec("j", 0, 1, 1));
    assert_eq!(err, Err(SubmitError::DuplicateJob { job: jid("j") }));
}

#[test]
fn a_map_only_job_commits_its_map_tasks_part_files_and_keeps_them_when_a_worker_dies() {
    let mut sim = Sim::new(patient(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 3, 0));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 0)), (w("w2"), at("j", TaskId::map(1), 0))]);
    // A map task of a map-only job must report a part file, not shuffle output.
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 1))], "retried");
    sim.reduce_done(2.0, &at("j", TaskId::map(0), 1)); // on w1: a part file
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(2), 0))]);
    sim.s.worker_lost(sim.at(3.0), &w("w1"), "killed");
    let (launches, _) = sim.launches();
    // map2 was running on w1 and is re-run; map0's part file is in storage and stands.
    assert!(launches.is_empty(), "w2 is busy: {launches:?}");
    assert_eq!(sim.view("j").maps.done, 1);
    sim.reduce_done(4.0, &at("j", TaskId::map(1), 0));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(2), 1))]);
    sim.reduce_done(5.0, &at("j", TaskId::map(2), 1));
    let actions = sim.s.take_actions();
    let Some(Action::Commit { winners, .. }) = actions.last() else { panic!("{actions:?}") };
    let parts: Vec<_> = winners.iter().map(|p| (p.partition, p.attempt.0, p.part_file.as_str())).collect();
    assert_eq!(parts, [(0, 1, "part-0-a1"), (1, 0, "part-1-a0"), (2, 1, "part-2-a1")]);
    assert_eq!(sim.view("j").state, JobState::Committing);
}

#[test]
fn a_map_only_job_without_input_commits_an_empty_output_at_once() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 0, 0));
    let actions = sim.s.take_actions();
    assert!(matches!(&actions[..], [Action::Commit { winners, .. }] if winners.is_empty()), "{actions:?}");
}

#[test]
fn a_failed_attempt_is_retried_on_another_worker_when_one_is_free() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(1), 0)); // w2 frees; round-robin would pick w1 next
    sim.failed(2.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Retryable, "disk full"));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(0), 1))]);
    // Then it avoids w2, where it failed last.
    sim.failed(3.0, &at("j", TaskId::map(0), 1), fail(FailureKind::Retryable, "disk full"));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 2))]);
    assert_eq!(sim.view("j").failed_attempts, 2);
    // With only the same worker free, it is retried there.
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.failed(1.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Retryable, "disk full"));
    assert_eq!(sim.launches().0, vec![(w("w1"), at("j", TaskId::map(0), 1))]);
}

#[test]
fn max_attempts_fail_the_job_with_full_context_and_others_go_on() {
    let config = SchedulerConfig::default().with_max_attempts(2);
    let mut sim = Sim::new(config, &[("w1", 2), ("w2", 1)]);
    sim.submit(0.0, spec("j", 1, 3, 1));
    sim.submit(0.0, spec("k", 0, 1, 1));
    sim.launches(); // j: map0 w1, map1 w2, map2 w1
    sim.failed(1.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Retryable, "boom"));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 1))]);
    let last = TaskFailure {
        kind: FailureKind::Retryable,
        error: Some(ErrorKind::UserCode),
        message: "user code: bad number".into(),
        stderr_tail: "thread panicked at x.rs:3\n".into(),
    };
    sim.failed(2.0, &at("j", TaskId::map(0), 1), last);
    let (launches, other) = sim.launches();
    let Some(Action::JobEnded { state: JobState::Failed(msg), .. }) = other.last() else {
        panic!("{other:?}")
    };
    for part in
        ["map task 0", "j.txt:000+100", "failed 2 times", "a1", "w1", "bad number", "panicked at x.rs:3"]
    {
        assert!(msg.contains(part), "{part:?} missing from {msg:?}");
    }
    let kills: Vec<_> = other.iter().filter(|a| matches!(a, Action::Kill { .. })).collect();
    assert_eq!(kills.len(), 2, "map1 and map2 still ran: {other:?}");
    let drops: Vec<_> = other.iter().filter(|a| matches!(a, Action::DropJobData { .. })).collect();
    assert_eq!(drops.len(), 2, "both workers ran j: {other:?}");
    // The freed slots go to the other job (round-robin continues after w1).
    assert_eq!(launches, vec![(w("w2"), at("k", TaskId::map(0), 0))]);
    assert!(matches!(sim.view("k").state, JobState::Running));
}

#[test]
fn a_fatal_failure_fails_the_job_at_once() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.failed(1.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Fatal, "no such column"));
    let (launches, other) = sim.launches();
    assert!(launches.is_empty());
    assert!(
        matches!(&other[..], [Action::DropJobData { .. }, Action::JobEnded { state: JobState::Failed(m), .. }]
        if m.contains("fatal") && m.contains("no such column"))
    );
}

#[test]
fn a_lost_worker_reruns_its_attempts_without_counting_them() {
    let config = SchedulerConfig::default().with_max_attempts(1);
    let mut sim = Sim::new(config, &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches(); // map0 on w1
    sim.s.worker_lost(sim.at(1.0), &w("w1"), "stream closed");
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(0), 1))]);
    assert!(!sim.s.heartbeat(sim.at(2.0), &w("w1")));
    // A late report from the lost attempt changes nothing.
    sim.map_done(2.0, &at("j", TaskId::map(0), 0));
    assert_eq!(sim.view("j").maps.done, 0);
    let view = sim.s.workers(sim.at(2.0));
    assert!(matches!(&view[0].state, WorkerState::Lost { reason } if reason == "stream closed"));
}

#[test]
fn map_outputs_on_a_lost_worker_are_recomputed_while_reduces_need_them() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 2));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(0), 0)); // on w1
    sim.map_done(1.0, &at("j", TaskId::map(1), 0)); // on w2
    sim.launches(); // reduce0 on w1, reduce1 on w2
    sim.reduce_done(2.0, &at("j", TaskId::reduce(0), 0));
    sim.launches();
    sim.s.worker_lost(sim.at(3.0), &w("w2"), "killed");
    let (launches, _) = sim.launches();
    // map1 (output on w2) runs again; reduce1 waits for it; reduce0 stays done.
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(1), 1))]);
    let view = sim.view("j");
    assert_eq!((view.maps.done, view.reduces.done, view.phase), (1, 1, Phase::Map));
    sim.map_done(4.0, &at("j", TaskId::map(1), 1));
    let actions = sim.s.take_actions();
    let Some(Action::Launch { attempt, map_outputs, worker }) = actions.first() else {
        panic!("{actions:?}")
    };
    assert_eq!((worker, attempt), (&w("w1"), &at("j", TaskId::reduce(1), 1)));
    assert_eq!(map_outputs[1], MapOutputRef { map_task: 1, attempt: AttemptId(1), worker: w("w1") });
}

#[test]
fn tick_declares_silent_workers_lost_and_re_registration_revives_them() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1), ("w2", 1)]);
    assert!(sim.s.heartbeat(sim.at(5.0), &w("w1")));
    sim.s.tick(sim.at(9.0));
    assert!(sim.s.workers(sim.at(9.0)).iter().all(|v| v.state == WorkerState::Alive));
    sim.submit(9.5, spec("j", 0, 2, 1));
    sim.launches(); // map0 w1, map1 w2
    sim.s.tick(sim.at(10.0));
    assert!(!sim.s.heartbeat(sim.at(10.0), &w("w2")), "w2 was silent for 10s");
    assert!(sim.s.heartbeat(sim.at(10.0), &w("w1")));
    assert!(!sim.s.heartbeat(sim.at(10.0), &w("nobody")));
    sim.s.add_worker(sim.at(11.0), w("w2"), 1);
    let (launches, other) = sim.launches();
    assert_eq!(other, vec![Action::DropJobData { worker: w("w2"), job: jid("j") }]);
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(1), 1))]);
    assert!(sim.s.heartbeat(sim.at(12.0), &w("w2")));
}

#[test]
fn a_fetch_failure_reruns_the_map_without_counting_against_the_reduce() {
    let config = SchedulerConfig::default().with_max_attempts(1);
    let mut sim = Sim::new(config, &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    sim.map_done(1.0, &at("j", TaskId::map(1), 0)); // on w2
    sim.launches(); // reduce0 a0 on w1
    let fetch = FailureKind::FetchFailed { map_task: 1, worker: w("w2") };
    sim.failed(2.0, &at("j", TaskId::reduce(0), 0), fail(fetch.clone(), "connection refused"));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(1), 1))], "map1 reruns, reduce waits");
    sim.map_done(3.0, &at("j", TaskId::map(1), 1));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::reduce(0), 1))]);
    // A fetch failure naming a worker that does not hold the output only retries the reduce.
    let stale = FailureKind::FetchFailed { map_task: 1, worker: w("w9") };
    assert_ne!(stale, fetch);
    sim.failed(4.0, &at("j", TaskId::reduce(0), 1), fail(stale, "stale"));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::reduce(0), 2))]);
    assert_eq!(sim.view("j").state, JobState::Running);
}

#[test]
fn fetch_failures_are_capped_per_job() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    sim.launches();
    let limit = 4 + 10;
    for attempt in 0..=limit {
        // The reported holder is not where the output is: only the reduce reruns.
        let kind = FailureKind::FetchFailed { map_task: 0, worker: w("elsewhere") };
        sim.failed(2.0, &at("j", TaskId::reduce(0), attempt), fail(kind, "unreachable"));
    }
    let actions = sim.s.take_actions();
    let Some(Action::JobEnded { state: JobState::Failed(msg), .. }) = actions.last() else { panic!() };
    assert!(msg.contains("too many shuffle fetch failures (15 > 14)"), "{msg}");
}

#[test]
fn a_straggler_gets_one_backup_and_the_first_success_wins() {
    let mut sim = Sim::new(patient(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches(); // map0 w1, map1 w2
    sim.map_done(3.0, &at("j", TaskId::map(0), 0)); // median 3s -> threshold max(5, 6) = 6s
    sim.s.tick(sim.at(5.5));
    assert!(sim.launches().0.is_empty());
    sim.s.tick(sim.at(6.5));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(1), 1))]);
    sim.s.tick(sim.at(20.0));
    assert!(sim.launches().0.is_empty(), "only one backup");
    assert_eq!(sim.view("j").backups_launched, 1);
    sim.map_done(21.0, &at("j", TaskId::map(1), 1));
    let actions = sim.s.take_actions();
    assert_eq!(actions[0], Action::Kill { worker: w("w2"), attempt: at("j", TaskId::map(1), 0) });
    // The loser's late success is ignored: no second reduce launch, counters unchanged.
    sim.map_done(22.0, &at("j", TaskId::map(1), 0));
    assert!(sim.s.take_actions().is_empty());
    let view = sim.view("j");
    assert_eq!(view.counters.get("records"), Some(&20));
    assert_eq!(view.maps.done, 2);
}

#[test]
fn no_backup_on_the_same_worker_nor_while_tasks_are_pending() {
    let mut sim = Sim::new(patient(), &[("w1", 2)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.s.tick(sim.at(60.0));
    assert!(sim.launches().0.is_empty(), "the only free slot is on the straggler's worker");
    let off = patient().with_speculation(false);
    let mut sim = Sim::new(off, &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.s.tick(sim.at(60.0));
    assert!(sim.launches().0.is_empty(), "speculation off");
}

#[test]
fn a_failure_beside_a_running_backup_does_not_make_the_task_pending() {
    let mut sim = Sim::new(patient(), &[("w1", 1), ("w2", 1), ("w3", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches(); // map0 a0 on w1
    sim.s.tick(sim.at(6.0));
    let (launches, _) = sim.launches();
    assert_eq!(launches.len(), 1, "backup a1");
    sim.failed(7.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Retryable, "oom"));
    assert!(sim.launches().0.is_empty(), "a1 still runs");
    assert_eq!(sim.view("j").maps.running, 1);
}

#[test]
fn commit_happens_once_then_cleanup() {
    let mut sim = Sim::new(patient(), &[("w1", 2), ("w2", 2)]);
    sim.submit(0.0, spec("j", 0, 1, 2));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    sim.launches(); // reduce0 w2, reduce1 w1
    sim.s.tick(sim.at(10.0));
    sim.launches(); // backups of both reduces
    sim.reduce_done(11.0, &at("j", TaskId::reduce(1), 0));
    sim.reduce_done(12.0, &at("j", TaskId::reduce(0), 1));
    let actions = sim.s.take_actions();
    let kills = actions.iter().filter(|a| matches!(a, Action::Kill { .. })).count();
    assert_eq!(kills, 2, "both losers killed: {actions:?}");
    let Some(Action::Commit { winners, .. }) = actions.last() else { panic!("{actions:?}") };
    let parts: Vec<_> = winners.iter().map(|p| (p.partition, p.attempt.0, p.part_file.as_str())).collect();
    assert_eq!(parts, [(0, 1, "part-0-a1"), (1, 0, "part-1-a0")]);
    assert_eq!(sim.view("j").state, JobState::Committing);
    sim.reduce_done(13.0, &at("j", TaskId::reduce(0), 0)); // loser: ignored
    assert!(!sim.s.cancel(sim.at(13.0), &jid("j")), "too late to cancel");
    assert!(sim.s.take_actions().is_empty());
    sim.s.commit_finished(sim.at(14.0), &jid("j"), Ok(()));
    let actions = sim.s.take_actions();
    assert_eq!(
        actions,
        vec![
            Action::DropJobData { worker: w("w1"), job: jid("j") },
            Action::DropJobData { worker: w("w2"), job: jid("j") },
            Action::JobEnded { job: jid("j"), state: JobState::Succeeded },
        ]
    );
    sim.s.commit_finished(sim.at(15.0), &jid("j"), Ok(()));
    assert!(sim.s.take_actions().is_empty());
    let view = sim.view("j");
    assert_eq!((view.phase, view.elapsed_secs), (Phase::Ended, 14.0));
    assert_eq!(view.counters.get("rows"), Some(&10), "one winner per partition");
}

#[test]
fn a_failed_commit_fails_the_job() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 0, 1));
    sim.launches();
    sim.reduce_done(1.0, &at("j", TaskId::reduce(0), 0));
    sim.s.take_actions();
    sim.s.commit_finished(sim.at(2.0), &jid("j"), Err("cannot write _SUCCESS".into()));
    let state = JobState::Failed("cannot write _SUCCESS".into());
    assert_eq!(sim.s.take_actions().last(), Some(&Action::JobEnded { job: jid("j"), state }));
}

#[test]
fn cancel_kills_cleans_up_and_reports() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.submit(0.0, spec("k", 0, 1, 1));
    sim.launches();
    assert!(sim.s.cancel(sim.at(1.0), &jid("j")));
    let (launches, other) = sim.launches();
    assert_eq!(
        other,
        vec![
            Action::Kill { worker: w("w1"), attempt: at("j", TaskId::map(0), 0) },
            Action::Kill { worker: w("w2"), attempt: at("j", TaskId::map(1), 0) },
            Action::DropJobData { worker: w("w1"), job: jid("j") },
            Action::DropJobData { worker: w("w2"), job: jid("j") },
            Action::JobEnded { job: jid("j"), state: JobState::Cancelled },
        ]
    );
    assert_eq!(launches, vec![(w("w1"), at("k", TaskId::map(0), 0))]);
    assert!(!sim.s.cancel(sim.at(1.0), &jid("j")));
    assert!(!sim.s.cancel(sim.at(1.0), &jid("nope")));
}

#[test]
fn stale_and_unknown_events_are_ignored() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.map_done(1.0, &at("nope", TaskId::map(0), 0));
    sim.map_done(1.0, &at("j", TaskId::map(7), 0));
    sim.map_done(1.0, &at("j", TaskId::map(0), 3));
    sim.failed(1.0, &at("j", TaskId::reduce(0), 0), fail(FailureKind::Fatal, "x"));
    sim.s.worker_lost(sim.at(1.0), &w("ghost"), "?");
    sim.s.commit_finished(sim.at(1.0), &jid("j"), Ok(()));
    assert!(sim.s.take_actions().is_empty());
    assert_eq!(sim.view("j").state, JobState::Running);
    // A reduce outcome for a map task is a (counted) failure, not a success.
    let wrong = TaskOutcome::PartWritten { part_file: "p".into(), rows: 1 };
    sim.s.task_succeeded(sim.at(2.0), &at("j", TaskId::map(0), 0), wrong, BTreeMap::new());
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 1))]);
    assert!(sim.s.cancel(sim.at(3.0), &jid("j")));
    sim.s.take_actions();
    sim.map_done(4.0, &at("j", TaskId::map(0), 1));
    assert!(sim.s.take_actions().is_empty());
}

#[test]
fn views_serialize_and_ended_jobs_are_bounded() {
    let config = SchedulerConfig::default().with_retained_jobs(1);
    let mut sim = Sim::new(config, &[("w1", 1)]);
    sim.submit(0.0, spec("a", 0, 1, 1));
    sim.submit(0.0, spec("b", 0, 1, 1));
    let json = serde_json::to_value(sim.s.jobs(sim.at(1.0))).expect("json");
    assert_eq!(json[0]["state"]["kind"], "running");
    assert_eq!(json[1]["state"]["kind"], "queued");
    assert_eq!(json[0]["maps"]["running"], 1);
    let workers = serde_json::to_value(sim.s.workers(sim.at(1.0))).expect("json");
    assert_eq!(workers[0]["running"][0]["task"]["kind"], "Map");
    sim.s.cancel(sim.at(2.0), &jid("a"));
    sim.s.cancel(sim.at(2.0), &jid("b"));
    let ids: Vec<_> = sim.s.jobs(sim.at(3.0)).into_iter().map(|v| v.id).collect();
    assert_eq!(ids, [jid("b")]);
}

#[test]
fn straggler_threshold_is_bounded_below_and_safe_for_odd_factors() {
    let base = SchedulerConfig::default();
    assert_eq!(base.straggler_threshold(None), Duration::from_secs(5));
    assert_eq!(base.straggler_threshold(Some(Duration::from_secs(4))), Duration::from_secs(8));
    let nan = base.clone().with_speculation_factor(f64::NAN);
    assert_eq!(nan.straggler_threshold(Some(Duration::from_secs(4))), Duration::from_secs(5));
    let huge = base.with_speculation_factor(f64::INFINITY);
    assert_eq!(huge.straggler_threshold(Some(Duration::from_secs(4))), Duration::MAX);
}

#[test]
fn attempts_start_at_the_configured_first_attempt() {
    let config = SchedulerConfig::default().with_first_attempt(2000);
    let mut sim = Sim::new(config, &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 2000))]);
    // An attempt below the base (of an earlier driver) is unknown: its report is ignored.
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    assert!(sim.s.take_actions().is_empty());
    assert_eq!(sim.view("j").maps.done, 0);
}

#[test]
fn ended_jobs_can_be_forgotten_and_running_ones_cannot() {
    let mut sim = Sim::new(SchedulerConfig::default(), &[("w1", 1)]);
    sim.submit(0.0, spec("a", 0, 1, 1));
    sim.submit(0.0, spec("b", 0, 1, 1));
    assert!(!sim.s.forget(&jid("a")), "a running job stays");
    sim.s.cancel(sim.at(1.0), &jid("a"));
    assert!(sim.s.forget(&jid("a")));
    assert!(!sim.s.has_job(&jid("a")));
    let ids: Vec<_> = sim.s.jobs(sim.at(2.0)).into_iter().map(|v| v.id).collect();
    assert_eq!(ids, [jid("b")]);
}
