//! "Why is it slow" over hand-made views.

use super::*;

fn view(task: TaskId, n: u32, outcome: AttemptOutcome, start: f64, duration: f64) -> AttemptView {
    AttemptView {
        task,
        attempt: AttemptId(n),
        worker: w("w1"),
        backup: false,
        outcome,
        error: None,
        start_secs: start,
        end_secs: (outcome != AttemptOutcome::Running).then_some(start + duration),
        duration_secs: duration,
        waited_secs: 0.0,
        metrics: None,
    }
}

fn reduce_task(index: u32, rows: u64, bytes: u64) -> TaskView {
    let metrics = AttemptMetrics { input_rows: rows, input_bytes: bytes, ..AttemptMetrics::default() };
    TaskView {
        task: TaskId::reduce(index as usize),
        split: None,
        state: TaskState::Succeeded,
        winner: Some(AttemptId(0)),
        attempts: 1,
        duration_secs: Some(1.0),
        metrics: Some(metrics),
        last_error: None,
    }
}

#[test]
fn stragglers_are_attempts_over_one_and_a_half_times_their_phase_median() {
    use AttemptOutcome::*;
    let attempts = [
        view(TaskId::map(0), 0, Succeeded, 0.0, 2.0),
        view(TaskId::map(1), 0, Succeeded, 0.0, 2.0),
        view(TaskId::map(2), 0, Succeeded, 0.0, 3.0), // exactly 1.5×: not a straggler
        view(TaskId::map(3), 0, Succeeded, 0.0, 7.0),
        view(TaskId::map(4), 0, Running, 0.0, 9.0), // still running, already slow
        view(TaskId::map(5), 0, Failed, 0.0, 50.0), // failures are lost time, not stragglers
        view(TaskId::reduce(0), 0, Succeeded, 9.0, 1.0), // its own phase's median
    ];
    let d = diagnose(&[], &attempts);
    let slow: Vec<_> =
        d.stragglers.iter().map(|s| (s.task, s.duration_secs, s.median_secs, s.running)).collect();
    assert_eq!(slow, [(TaskId::map(4), 9.0, 3.0, true), (TaskId::map(3), 7.0, 3.0, false)]);
    assert!(d.findings[0].contains("map task 5") || d.findings[0].starts_with("retries"), "{:?}", d.findings);
    assert!(
        d.findings.iter().any(|f| f.starts_with("straggler: map task 4 attempt 0 on w1 has run 9.0 s, 3.0×"))
    );
}

#[test]
fn skewed_partitions_are_measured_in_rows_and_bytes_against_the_median() {
    let tasks = [
        reduce_task(0, 100, 1000),
        reduce_task(1, 120, 1100),
        reduce_task(2, 90, 5000),
        reduce_task(3, 400, 900),
    ];
    let d = diagnose(&tasks, &[]);
    assert_eq!((d.median_partition_rows, d.median_partition_bytes), (Some(120), Some(1100)));
    let skewed: Vec<u32> = d.partitions.iter().filter(|p| p.skewed).map(|p| p.partition).collect();
    assert_eq!(skewed, [2, 3], "2 by bytes, 3 by rows");
    assert_eq!(d.partitions.len(), 4);
    assert!(d.findings.iter().any(|f| f == "skew: reduce partition 3 has 400 rows and 900 bytes (median 120 rows, 1100 bytes)"), "{:?}", d.findings);
    // One partition has nothing to compare with.
    assert!(!diagnose(&tasks[..1], &[]).partitions[0].skewed);
}

#[test]
fn time_lost_to_retries_and_waiting_for_slots_is_summed() {
    use AttemptOutcome::*;
    let mut attempts = vec![
        view(TaskId::map(0), 0, Failed, 0.0, 4.0),
        view(TaskId::map(0), 1, Killed, 4.0, 1.5),
        view(TaskId::map(0), 2, Lost, 6.0, 2.5),
        view(TaskId::map(0), 3, Succeeded, 9.0, 1.0),
        view(TaskId::map(1), 0, Succeeded, 3.0, 1.0),
    ];
    attempts[4].waited_secs = 3.0;
    attempts[1].waited_secs = 0.5;
    let d = diagnose(&[], &attempts);
    assert_eq!(
        (d.lost.failed_secs, d.lost.killed_secs, d.lost.lost_secs, d.lost.attempts),
        (4.0, 1.5, 2.5, 3)
    );
    assert_eq!(d.lost.total_secs(), 8.0);
    assert_eq!(
        (d.slot_wait.total_secs, d.slot_wait.max_secs, d.slot_wait.max_task),
        (3.5, 3.0, Some(TaskId::map(1)))
    );
    assert_eq!(
        d.findings[0],
        "retries: 8.0 s lost in 3 attempts (4.0 s failed, 1.5 s killed, 2.5 s on lost workers)"
    );
    assert!(d.findings[1].starts_with("slots: tasks waited 3.5 s in all"), "{:?}", d.findings);
}

#[test]
fn a_healthy_job_has_no_findings() {
    let attempts = [view(TaskId::map(0), 0, AttemptOutcome::Succeeded, 0.0, 1.0)];
    let d = diagnose(&[reduce_task(0, 10, 10), reduce_task(1, 11, 12)], &attempts);
    assert!(d.findings.is_empty() && d.stragglers.is_empty(), "{d:?}");
}
