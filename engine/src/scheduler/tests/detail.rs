//! The attempt log and the job and worker pages' snapshots.

use super::*;
use crate::exec::{
    MAP_INPUT_BYTES, MAP_INPUT_RECORDS, REDUCE_INPUT_RECORDS, SHUFFLE_FETCHED_BYTES, SPILLED_BYTES,
};

fn counters(pairs: &[(&str, u64)]) -> Counters {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn attempt(detail: &JobDetail, task: TaskId, n: u32) -> &AttemptView {
    let found = detail.attempts.iter().find(|a| a.task == task && a.attempt == AttemptId(n));
    found.unwrap_or_else(|| panic!("{task} attempt {n} in {:?}", detail.attempts))
}

#[test]
fn every_attempt_is_remembered_with_worker_times_outcome_error_and_counters() {
    let mut sim = Sim::new(patient().with_speculation(false), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 3, 1));
    sim.launches(); // map0 on w1, map1 on w2; map2 waits for a slot
    let map0 = at("j", TaskId::map(0), 0);
    sim.s.note_map_output(&map0, 4096);
    let c = counters(&[(MAP_INPUT_BYTES, 100), (MAP_INPUT_RECORDS, 7), (SPILLED_BYTES, 9)]);
    sim.s.task_succeeded(sim.at(2.0), &map0, TaskOutcome::MapDone, c);
    sim.failed(3.0, &at("j", TaskId::map(1), 0), fail(FailureKind::Retryable, "disk on fire"));
    sim.launches(); // map2 on w1 at 2 s, map1 again on w1's... any free slot at 3 s
    sim.s.worker_lost(sim.at(4.0), &w("w2"), "stream broke");
    let detail = sim.s.job_detail(sim.at(5.0), &jid("j")).expect("detail");

    let a = attempt(&detail, TaskId::map(0), 0);
    assert_eq!((a.worker.clone(), a.outcome, a.backup), (w("w1"), AttemptOutcome::Succeeded, false));
    assert_eq!((a.start_secs, a.end_secs, a.duration_secs, a.waited_secs), (0.0, Some(2.0), 2.0, 0.0));
    let m = a.metrics.expect("metrics of a success");
    assert_eq!((m.input_bytes, m.input_rows, m.spill_bytes, m.shuffle_written_bytes), (100, 7, 9, 4096));

    let failed = attempt(&detail, TaskId::map(1), 0);
    assert_eq!(failed.outcome, AttemptOutcome::Failed);
    assert_eq!(failed.error.as_deref(), Some("disk on fire"));
    assert_eq!((failed.end_secs, failed.metrics), (Some(3.0), None));

    // map2 was ready at submission and got w1's slot when map0 ended: it waited 2 s.
    let map2 = attempt(&detail, TaskId::map(2), 0);
    assert_eq!((map2.start_secs, map2.waited_secs), (2.0, 2.0));
    // map1's retry ran on w2 (w1 was busy with map2) and was lost with it; it was ready
    // again from its failure at 3 s.
    let retry = attempt(&detail, TaskId::map(1), 1);
    assert_eq!(
        (retry.worker.clone(), retry.outcome, retry.waited_secs),
        (w("w2"), AttemptOutcome::Lost, 0.0)
    );
    assert!(retry.error.as_deref().unwrap().contains("stream broke"), "{retry:?}");

    let task1 = &detail.tasks[1];
    assert_eq!((task1.state, task1.attempts, task1.winner), (TaskState::Pending, 2, None));
    assert_eq!(task1.last_error.as_deref(), Some("disk on fire"));
    assert_eq!(task1.split.as_deref(), Some("j.txt:100+100"));
    assert_eq!(detail.tasks[0].state, TaskState::Succeeded);
    assert_eq!(detail.tasks[0].duration_secs, Some(2.0));
    assert_eq!(detail.tasks[3].task, TaskId::reduce(0));
    assert_eq!(detail.tasks[3].split, None);
    // The JSON twin flattens the job's summary into the detail.
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["id"], "j");
    assert_eq!(json["attempts"][0]["outcome"], "succeeded");
    assert_eq!(json["tasks"][1]["task"]["kind"], "Map");
}

#[test]
fn backups_losers_and_killed_attempts_are_marked_and_reduce_metrics_read_the_shuffle() {
    let mut sim = Sim::new(patient(), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches();
    sim.map_done(3.0, &at("j", TaskId::map(0), 0));
    sim.s.tick(sim.at(6.5)); // map1 gets a backup on w1
    assert_eq!(sim.launches().0, vec![(w("w1"), at("j", TaskId::map(1), 1))]);
    sim.map_done(8.0, &at("j", TaskId::map(1), 1));
    let reduce = sim.launches().0[0].1.clone();
    let c = counters(&[(REDUCE_INPUT_RECORDS, 40), (SHUFFLE_FETCHED_BYTES, 800)]);
    let outcome = TaskOutcome::PartWritten { part_file: "p".into(), rows: 4 };
    sim.s.task_succeeded(sim.at(9.0), &reduce, outcome, c);
    let detail = sim.s.job_detail(sim.at(10.0), &jid("j")).unwrap();
    let backup = attempt(&detail, TaskId::map(1), 1);
    assert!(backup.backup && backup.outcome == AttemptOutcome::Succeeded, "{backup:?}");
    assert_eq!(backup.waited_secs, 0.0, "a backup does not wait");
    let loser = attempt(&detail, TaskId::map(1), 0);
    assert_eq!(loser.outcome, AttemptOutcome::Killed);
    assert!(loser.error.as_deref().unwrap().contains("attempt 1 of the task won"), "{loser:?}");
    // The reduce was ready when the last map output arrived, at 8 s, and launched then.
    let r = attempt(&detail, TaskId::reduce(0), 0);
    assert_eq!((r.start_secs, r.waited_secs), (8.0, 0.0));
    let m = r.metrics.unwrap();
    assert_eq!((m.input_rows, m.input_bytes, m.shuffle_read_bytes), (40, 800, 800));
    assert_eq!(detail.reduce_phase.done, 1);
    assert_eq!(detail.map_phase.eta_secs, Some(0.0));
}

#[test]
fn the_eta_is_the_median_task_times_the_tasks_left_over_the_slots() {
    let mut sim = Sim::new(patient().with_speculation(false), &[("w1", 2)]);
    sim.submit(0.0, spec("j", 0, 7, 1));
    sim.launches();
    sim.map_done(2.0, &at("j", TaskId::map(0), 0));
    sim.launches();
    sim.map_done(4.0, &at("j", TaskId::map(1), 0));
    sim.launches();
    sim.map_done(10.0, &at("j", TaskId::map(2), 0)); // took 8 s: durations 2, 4, 8
    let detail = sim.s.job_detail(sim.at(10.0), &jid("j")).unwrap();
    let maps = detail.map_phase;
    assert_eq!((maps.total, maps.done, maps.median_task_secs), (7, 3, Some(4.0)));
    assert_eq!(maps.eta_secs, Some(4.0 * 4.0 / 2.0));
    assert_eq!(detail.slots, 2);
    assert_eq!(detail.reduce_phase.eta_secs, None, "no reduce finished yet");
}

#[test]
fn the_attempt_log_is_bounded_forgetting_the_oldest_ended_attempts() {
    let mut sim = Sim::new(patient().with_speculation(false).with_max_attempts(u32::MAX), &[("w1", 1)]);
    sim.submit(0.0, spec("j", 0, 1, 1));
    let limit = 10_000u32;
    for n in 0..limit + 5 {
        let (launches, _) = sim.launches();
        assert_eq!(launches.len(), 1, "attempt {n} launched");
        sim.failed(1.0, &launches[0].1, fail(FailureKind::Retryable, "again"));
    }
    let detail = sim.s.job_detail(sim.at(2.0), &jid("j")).unwrap();
    assert_eq!(detail.attempts.len(), limit as usize);
    assert_eq!(detail.attempts_dropped, 6);
    assert_eq!(detail.attempts[0].attempt, AttemptId(6));
    assert_eq!(detail.attempts.last().unwrap().outcome, AttemptOutcome::Running);
}

#[test]
fn the_worker_detail_lists_its_attempts_and_the_map_output_it_holds() {
    let mut sim = Sim::new(patient().with_speculation(false), &[("w1", 1), ("w2", 1)]);
    sim.submit(0.0, spec("j", 0, 2, 1));
    sim.launches();
    for (task, bytes) in [(0, 1000), (1, 234)] {
        let a = at("j", TaskId::map(task), 0);
        sim.s.note_map_output(&a, bytes);
        sim.map_done(1.0, &a);
    }
    let one = sim.s.worker_detail(sim.at(2.0), &w("w1")).unwrap();
    assert_eq!((one.map_outputs_held, one.shuffle_bytes_held), (1, 1000));
    assert_eq!(one.worker.slots, 1);
    let jobs: Vec<_> = one.attempts.iter().map(|a| (a.job.as_str().to_owned(), a.attempt.task)).collect();
    // Newest first: the reduce launched on w1 after the maps.
    assert_eq!(jobs, [("j".into(), TaskId::reduce(0)), ("j".into(), TaskId::map(0))]);
    let two = sim.s.worker_detail(sim.at(2.0), &w("w2")).unwrap();
    assert_eq!((two.map_outputs_held, two.shuffle_bytes_held), (1, 234));
    assert!(sim.s.worker_detail(sim.at(2.0), &w("nope")).is_none());
}
