//! Admission by memory with a fake clock: an attempt launches only where the memory it
//! gets fits what the worker's running attempts leave.

use super::*;

const MIB: u64 = 1 << 20;

/// A map-only job of `maps` tasks asking `memory` per task (`None`: the worker's share).
fn job(name: &str, maps: usize, memory: Option<u64>) -> JobSpec {
    JobSpec { task_memory: memory, ..spec(name, 0, maps, 0) }
}

fn sim_with_memory(workers: &[(&str, u32, u64)]) -> Sim {
    let mut sim = Sim::new(patient().with_speculation(false), &[]);
    for (name, slots, memory) in workers {
        sim.s.add_worker_with_memory(sim.t0, w(name), *slots, *memory);
    }
    sim
}

fn memories(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| if let Action::Launch { memory, .. } = a { Some(*memory) } else { None })
        .collect()
}

#[test]
fn a_task_that_does_not_fit_waits_and_runs_when_another_ends() {
    // Four slots but 1 GiB: three tasks of 300 MiB fit, the fourth waits for memory.
    let mut sim = sim_with_memory(&[("w1", 4, 1024 * MIB)]);
    sim.submit(0.0, job("big", 4, Some(300 * MIB)));
    let actions = sim.s.take_actions();
    assert_eq!(memories(&actions), [300 * MIB; 3], "the fourth does not fit beside three");
    let first = at("big", TaskId::map(0), 0);
    sim.reduce_done(1.0, &first);
    let (launches, _) = sim.launches();
    assert_eq!(launches, [(w("w1"), at("big", TaskId::map(3), 0))], "fits once one ended");
}

#[test]
fn without_a_job_limit_an_attempt_gets_the_worker_s_share_of_a_slot() {
    let mut sim = sim_with_memory(&[("w1", 2, 512 * MIB), ("w2", 4, 4096 * MIB)]);
    sim.submit(0.0, job("share", 6, None));
    let mut given: Vec<(String, u64)> = Vec::new();
    for action in sim.s.take_actions() {
        if let Action::Launch { worker, memory, .. } = action {
            given.push((worker.0, memory));
        }
    }
    given.sort();
    let expected = [("w1", 256), ("w1", 256), ("w2", 1024), ("w2", 1024), ("w2", 1024), ("w2", 1024)];
    assert_eq!(given, expected.map(|(w, m)| (w.to_string(), m * MIB)));
}

#[test]
fn a_small_task_goes_where_memory_is_left_and_a_too_large_job_fails_with_a_reason() {
    let mut sim = sim_with_memory(&[("small", 2, 256 * MIB), ("large", 2, 2048 * MIB)]);
    sim.submit(0.0, job("wide", 2, Some(1024 * MIB)));
    let (launches, _) = sim.launches();
    let workers: Vec<&str> = launches.iter().map(|(w, _)| w.0.as_str()).collect();
    assert_eq!(workers, ["large", "large"], "only the large worker can hold 1 GiB tasks");

    sim.submit(1.0, job("huge", 1, Some(4096 * MIB)));
    let view = sim.view("huge");
    let JobState::Failed(message) = &view.state else { panic!("{:?}", view.state) };
    assert!(message.contains("4.0 GiB") && message.contains("2.0 GiB"), "{message}");
    assert!(message.contains("--memory-limit"), "{message}");
    // The other job is untouched and still gets slots as they free.
    sim.reduce_done(2.0, &at("wide", TaskId::map(0), 0));
    assert_eq!(sim.view("wide").state, JobState::Running);
}

/// Launched attempts by job name, in order.
fn launched_jobs(sim: &mut Sim) -> Vec<String> {
    sim.launches().0.into_iter().map(|(_, a)| a.job.as_str().to_owned()).collect()
}

#[test]
fn a_task_that_does_not_fit_lets_smaller_ones_pass_until_it_has_waited_past_the_bound() {
    // 4 slots, 1 GiB: two tasks of 400 MiB run, the third waits (224 MiB left).
    let config = patient().with_speculation(false).with_memory_wait(Duration::from_secs(30));
    let mut sim = Sim::new(config, &[]);
    sim.s.add_worker_with_memory(sim.t0, w("w1"), 4, 1024 * MIB);
    sim.submit(0.0, job("big", 3, Some(400 * MIB)));
    assert_eq!(launched_jobs(&mut sim), ["big", "big"]);
    // A later job of small tasks is not blocked behind it: two fit beside the big ones.
    sim.submit(1.0, job("small", 6, Some(100 * MIB)));
    assert_eq!(launched_jobs(&mut sim), ["small", "small"], "the small tasks pass the big one");
    sim.reduce_done(2.0, &at("small", TaskId::map(0), 0));
    assert_eq!(launched_jobs(&mut sim), ["small"], "before the bound, a freed slot goes to the small job");

    // Past the bound the big task keeps the worker: freed slots stay empty until it fits.
    sim.reduce_done(31.0, &at("small", TaskId::map(1), 0));
    assert_eq!(launched_jobs(&mut sim), Vec::<String>::new(), "kept for the big task");
    sim.reduce_done(32.0, &at("small", TaskId::map(2), 0));
    assert_eq!(launched_jobs(&mut sim), Vec::<String>::new(), "224 MiB free: still kept");
    sim.reduce_done(33.0, &at("big", TaskId::map(0), 0));
    assert_eq!(launched_jobs(&mut sim), ["big", "small", "small"], "the big task first, then the rest");
}

#[test]
fn a_worker_too_small_for_the_waiting_task_still_takes_other_tasks() {
    let config = patient().with_speculation(false).with_memory_wait(Duration::from_secs(30));
    let mut sim = Sim::new(config, &[]);
    sim.s.add_worker_with_memory(sim.t0, w("large"), 2, 1024 * MIB);
    sim.s.add_worker_with_memory(sim.t0, w("small"), 2, 256 * MIB);
    sim.submit(0.0, job("big", 3, Some(600 * MIB)));
    assert_eq!(launched_jobs(&mut sim), ["big"]);
    sim.submit(1.0, job("tiny", 8, Some(100 * MIB)));
    let (launches, _) = sim.launches();
    let mut places: Vec<&str> = launches.iter().map(|(w, _)| w.0.as_str()).collect();
    places.sort();
    assert_eq!(places, ["large", "small", "small"], "tiny tasks fill what the big one leaves");
    let on_small = |a: &AttemptRef| launches.iter().any(|(w, b)| w.0 == "small" && b == a);
    assert!(on_small(&at("tiny", TaskId::map(0), 0)) && !on_small(&at("tiny", TaskId::map(1), 0)));
    // Past the bound, the large worker is kept for the big task; the small one is not.
    sim.reduce_done(40.0, &at("tiny", TaskId::map(0), 0));
    sim.reduce_done(40.0, &at("tiny", TaskId::map(1), 0));
    let (launches, _) = sim.launches();
    let places: Vec<(&str, &str)> = launches.iter().map(|(w, a)| (w.0.as_str(), a.job.as_str())).collect();
    assert_eq!(places, [("small", "tiny")], "only the worker that can never hold 600 MiB takes a tiny task");
}
