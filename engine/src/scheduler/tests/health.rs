//! Typed failure kinds, excluding failing workers, and task timeouts.

use super::*;

fn typed(kind: FailureKind, error: ErrorKind, message: &str) -> TaskFailure {
    TaskFailure { kind, error: Some(error), message: message.to_string(), stderr_tail: String::new() }
}

/// No heartbeat timeouts and no backups: ticks far ahead change nothing else.
fn quiet() -> SchedulerConfig {
    patient().with_speculation(false)
}

fn ended_message(actions: &[Action]) -> String {
    match actions.iter().find(|a| matches!(a, Action::JobEnded { .. })) {
        Some(Action::JobEnded { state: JobState::Failed(message), .. }) => message.clone(),
        _ => panic!("the job did not fail: {actions:?}"),
    }
}

fn excluded(sim: &Sim, secs: f64) -> Vec<WorkerId> {
    let workers = sim.s.workers(sim.at(secs));
    workers.into_iter().filter(|v| v.excluded_secs_left.is_some()).map(|v| v.id).collect()
}

#[test]
fn corrupt_input_fails_the_job_after_one_attempt_naming_the_split_and_kind() {
    let mut sim = Sim::new(quiet(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches();
    let corrupt = typed(FailureKind::Fatal, ErrorKind::CorruptInput, "j.txt: corrupt Parquet file");
    sim.failed(1.0, &at("j", TaskId::map(1), 0), corrupt);
    let (launches, other) = sim.launches();
    assert!(launches.is_empty(), "{launches:?}");
    let message = ended_message(&other);
    for part in ["map task 1", "split j.txt:100+100", "corrupt_input", "corrupt Parquet file"] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
    let view = sim.view("j");
    assert_eq!((view.attempts_launched, view.failed_attempts), (2, 1));
    assert!(excluded(&sim, 1.0).is_empty(), "bad input is not the worker's fault");
}

#[test]
fn the_same_panic_twice_fails_the_job_while_different_panics_are_retried() {
    let mut sim = Sim::new(quiet(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    let panic = |m: &str| typed(FailureKind::Retryable, ErrorKind::Panic, m);
    sim.failed(1.0, &at("j", TaskId::map(0), 0), panic("panicked: index 3 out of range"));
    sim.failed(2.0, &at("j", TaskId::map(0), 1), panic("panicked: index 4 out of range"));
    assert_eq!(sim.view("j").state, JobState::Running, "two different panics: retried");
    sim.launches();
    sim.failed(3.0, &at("j", TaskId::map(0), 2), panic("panicked: index 4 out of range"));
    let (launches, other) = sim.launches();
    assert!(launches.is_empty(), "{launches:?}");
    let message = ended_message(&other);
    assert!(message.contains("panicked twice with the same message"), "{message}");
    assert!(message.contains("index 4 out of range") && message.contains("j.txt:000+100"), "{message}");
    assert_eq!(sim.view("j").failed_attempts, 3, "before max_attempts (4)");
}

#[test]
fn a_reducer_s_full_disk_is_its_own_failure_and_reruns_no_map() {
    let mut sim = Sim::new(quiet(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches();
    sim.map_done(1.0, &at("j", TaskId::map(0), 0));
    sim.map_done(1.0, &at("j", TaskId::map(1), 0));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::reduce(0), 0))]);
    let full = typed(FailureKind::Retryable, ErrorKind::DiskFull, "fetched: the local disk is full");
    sim.failed(2.0, &at("j", TaskId::reduce(0), 0), full);
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::reduce(0), 1))], "the reduce alone, elsewhere");
    let view = sim.view("j");
    assert_eq!((view.maps.done, view.phase, view.failed_attempts), (2, Phase::Reduce, 1));
}

#[test]
fn a_worker_failing_attempts_of_two_jobs_is_excluded_until_its_cooldown_ends() {
    let mut sim = Sim::new(quiet(), &[("w1", 2)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.submit(0.0, spec("k", 0, 1, 1));
    sim.launches(); // both maps on w1
    sim.s.add_worker(sim.at(0.5), w("w2"), 1);
    sim.s.add_worker(sim.at(0.5), w("w3"), 1);
    sim.failed(1.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Retryable, "io"));
    assert!(excluded(&sim, 1.0).is_empty(), "one job is not enough");
    sim.failed(2.0, &at("k", TaskId::map(0), 0), fail(FailureKind::Retryable, "io"));
    assert_eq!(excluded(&sim, 2.0), [w("w1")]);
    let (launches, _) = sim.launches();
    assert!(launches.iter().all(|(worker, _)| worker != &w("w1")), "{launches:?}");

    sim.submit(3.0, spec("l", 0, 2, 1));
    sim.s.tick(sim.at(61.0));
    let (launches, _) = sim.launches();
    assert!(launches.is_empty(), "w2 and w3 are busy, w1 is excluded: {launches:?}");
    sim.s.tick(sim.at(62.0));
    let (launches, _) = sim.launches();
    let expected = vec![(w("w1"), at("l", TaskId::map(0), 0)), (w("w1"), at("l", TaskId::map(1), 0))];
    assert_eq!(launches, expected, "readmitted after 60 s");
    assert!(excluded(&sim, 62.0).is_empty());
}

#[test]
fn at_most_half_the_workers_are_excluded_and_fetch_failures_do_not_count() {
    let mut sim = Sim::new(quiet(), &[("w1", 2), ("w2", 2)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.submit(0.0, spec("k", 0, 2, 1));
    let (launches, _) = sim.launches();
    assert_eq!(launches.len(), 4);
    let on = |worker: &str| -> Vec<AttemptRef> {
        launches.iter().filter(|(w2, _)| w2 == &w(worker)).map(|(_, a)| a.clone()).collect()
    };
    for attempt in on("w1") {
        sim.failed(1.0, &attempt, fail(FailureKind::Retryable, "io"));
    }
    assert_eq!(excluded(&sim, 1.0), [w("w1")]);
    sim.launches(); // j's retry went to w1 before it was excluded
    for attempt in on("w2") {
        sim.failed(2.0, &attempt, fail(FailureKind::Retryable, "io"));
    }
    assert_eq!(excluded(&sim, 2.0), [w("w1")], "a second of two workers is never excluded");
    let (launches, _) = sim.launches();
    assert_eq!(launches.len(), 2);
    assert!(launches.iter().all(|(worker, _)| worker == &w("w2")), "{launches:?}");

    // A lone worker is never excluded; nor for fetch failures that blame another worker.
    let mut lone = Sim::new(quiet(), &[("w1", 2)]);
    lone.submit(0.0, spec("j", 0, 1, 1));
    lone.submit(0.0, spec("k", 0, 1, 1));
    lone.launches();
    lone.failed(1.0, &at("j", TaskId::map(0), 0), fail(FailureKind::Retryable, "io"));
    lone.failed(1.0, &at("k", TaskId::map(0), 0), fail(FailureKind::Retryable, "io"));
    assert!(excluded(&lone, 1.0).is_empty());
    assert_eq!(lone.launches().0.len(), 2, "retried on the lone worker");

    let mut fetching = Sim::new(quiet(), &[("w1", 2)]);
    for job in ["j", "k"] {
        fetching.submit(0.0, spec(job, 0, 1, 1));
    }
    fetching.launches();
    fetching.map_done(1.0, &at("j", TaskId::map(0), 0));
    fetching.map_done(1.0, &at("k", TaskId::map(0), 0));
    fetching.s.add_worker(fetching.at(1.5), w("w2"), 2);
    let (launches, _) = fetching.launches();
    assert!(launches.iter().all(|(worker, _)| worker == &w("w1")), "{launches:?}");
    for (_, attempt) in launches {
        let blame = FailureKind::FetchFailed { map_task: 0, worker: w("elsewhere") };
        fetching.failed(2.0, &attempt, fail(blame, "unreachable"));
    }
    assert!(excluded(&fetching, 2.0).is_empty());
}

#[test]
fn attempts_past_the_task_timeout_are_killed_and_fail_the_job_after_max_attempts() {
    let config = quiet().with_max_attempts(2).with_task_timeout(Some(Duration::from_secs(10)));
    let mut sim = Sim::new(config, &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.s.tick(sim.at(9.9));
    assert_eq!(sim.launches(), (vec![], vec![]), "not yet");
    sim.s.tick(sim.at(10.0));
    let (launches, other) = sim.launches();
    assert_eq!(other, vec![Action::Kill { worker: w("w1"), attempt: at("j", TaskId::map(0), 0) }]);
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::map(0), 1))]);
    sim.s.tick(sim.at(20.0));
    let (launches, other) = sim.launches();
    assert!(launches.is_empty());
    assert_eq!(other[0], Action::Kill { worker: w("w2"), attempt: at("j", TaskId::map(0), 1) });
    let message = ended_message(&other);
    assert!(message.contains("failed 2 times") && message.contains("timed out after 10s"), "{message}");

    // No timeout by default: a day-long attempt is left alone.
    let mut sim = Sim::new(quiet(), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    sim.launches();
    sim.s.tick(sim.at(86_400.0));
    assert_eq!(sim.launches(), (vec![], vec![]));
}
