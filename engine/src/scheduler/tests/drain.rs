//! Draining workers: no new tasks, running ones finish (or are given back at the
//! deadline, not as failures), released once no running job needs their map output.

use super::*;

/// No heartbeat timeouts and no backups: ticks far ahead change nothing else.
fn quiet() -> SchedulerConfig {
    patient().with_speculation(false)
}

fn released(actions: &[Action]) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReleaseWorker { worker } => Some(worker.clone()),
            _ => None,
        })
        .collect()
}

fn state_of(sim: &Sim, worker: &str) -> WorkerState {
    let views = sim.s.workers(sim.t0);
    views.into_iter().find(|v| v.id == w(worker)).expect("worker view").state
}

#[test]
fn a_draining_worker_finishes_its_attempts_gets_no_new_ones_and_leaves_when_its_output_is_not_needed() {
    let mut sim = Sim::new(quiet(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 3, 1));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w1"), at("j", TaskId::map(0), 0)), (w("w2"), at("j", TaskId::map(1), 0))]);
    assert!(sim.s.drain_worker(sim.at(1.0), &w("w1"), Duration::from_secs(60)));
    assert_eq!(state_of(&sim, "w1"), WorkerState::Draining);
    assert_eq!(sim.launches(), (vec![], vec![]));
    // Its running attempt finishes and counts; the freed slot is not used.
    sim.map_done(2.0, &at("j", TaskId::map(0), 0));
    assert_eq!(sim.launches(), (vec![], vec![]), "no new task on a draining worker");
    sim.map_done(3.0, &at("j", TaskId::map(1), 0));
    assert_eq!(sim.launches().0, vec![(w("w2"), at("j", TaskId::map(2), 0))]);
    // Idle, but it holds map 0's output, which the reduce still reads.
    sim.s.tick(sim.at(4.0));
    assert!(released(&sim.launches().1).is_empty(), "released while its output is needed");
    sim.map_done(5.0, &at("j", TaskId::map(2), 0));
    let (launches, _) = sim.launches();
    assert_eq!(launches, vec![(w("w2"), at("j", TaskId::reduce(0), 0))]);
    sim.s.tick(sim.at(6.0));
    assert!(released(&sim.launches().1).is_empty(), "released while the reduce runs");
    sim.reduce_done(7.0, &at("j", TaskId::reduce(0), 0));
    sim.launches();
    sim.s.tick(sim.at(8.0));
    assert_eq!(released(&sim.launches().1), vec![w("w1")]);
    // Released once; the job lost nothing to the drain.
    sim.s.tick(sim.at(9.0));
    assert!(released(&sim.launches().1).is_empty(), "released twice");
    let job = sim.view("j");
    assert_eq!((job.failed_attempts, job.attempts_launched), (0, 4));
}

#[test]
fn past_its_deadline_a_draining_worker_s_attempts_run_elsewhere_without_counting_as_failures() {
    let mut sim = Sim::new(quiet(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("m", 0, 2, 1));
    sim.launches();
    assert!(sim.s.drain_worker(sim.at(1.0), &w("w1"), Duration::from_secs(10)));
    // Draining again keeps the first deadline.
    assert!(sim.s.drain_worker(sim.at(2.0), &w("w1"), Duration::from_secs(600)));
    sim.s.tick(sim.at(5.0));
    assert_eq!(sim.launches(), (vec![], vec![]));
    sim.s.tick(sim.at(11.5));
    let (launches, other) = sim.launches();
    assert!(launches.is_empty(), "w2 is busy: {launches:?}");
    assert!(
        other.contains(&Action::Kill { worker: w("w1"), attempt: at("m", TaskId::map(0), 0) }),
        "{other:?}"
    );
    // It holds no map output (its map never finished): the idle worker is released at once.
    assert_eq!(released(&other), vec![w("w1")]);
    sim.map_done(12.0, &at("m", TaskId::map(1), 0));
    assert_eq!(sim.launches().0, vec![(w("w2"), at("m", TaskId::map(0), 1))]);
    let job = sim.view("m");
    assert_eq!(job.failed_attempts, 0, "a drained attempt is not a failure");
}

#[test]
fn only_attached_workers_drain_and_a_lost_draining_worker_is_never_released() {
    let mut sim = Sim::new(quiet(), &[("w1", 1)]);
    assert!(!sim.s.drain_worker(sim.at(0.0), &w("nobody"), Duration::from_secs(1)));
    sim.s.worker_lost(sim.at(0.0), &w("w1"), "gone");
    assert!(!sim.s.drain_worker(sim.at(0.5), &w("w1"), Duration::from_secs(1)), "a lost worker drains");
    sim.s.add_worker(sim.at(1.0), w("w2"), 1);
    sim.submit(1.0, spec("j", 0, 1, 1));
    sim.launches();
    assert!(sim.s.drain_worker(sim.at(2.0), &w("w2"), Duration::from_secs(1)));
    sim.s.worker_lost(sim.at(2.5), &w("w2"), "its session ended");
    sim.s.tick(sim.at(10.0));
    assert!(released(&sim.launches().1).is_empty());
    assert!(matches!(state_of(&sim, "w2"), WorkerState::Lost { .. }));
}
