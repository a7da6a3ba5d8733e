//! Fair sharing with a fake clock: weighted queues, users within a queue, priorities with
//! aging, per-queue slot limits, and preemption after the timeout.

use super::*;

/// A map-only job (its map tasks write the part files) of `owner` in `queue`.
fn job(name: &str, queue: &str, owner: &str, priority: i32, maps: usize) -> JobSpec {
    JobSpec { queue: queue.into(), owner: owner.into(), ..spec(name, priority, maps, 0) }
}

/// Running attempts per job name, from a list of launches minus the attempts ended since.
fn per_job(launches: &[(WorkerId, AttemptRef)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, a) in launches {
        *out.entry(a.job.as_str().to_string()).or_default() += 1;
    }
    out
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(name, n)| (name.to_string(), *n)).collect()
}

/// Config: no speculation, workers never time out, the given queues.
fn queues(list: &[(&str, u32, Option<u32>)]) -> SchedulerConfig {
    let config = patient().with_speculation(false);
    list.iter().fold(config, |c, (name, weight, max_slots)| {
        c.with_queue(*name, QueueConfig { weight: *weight, max_slots: *max_slots })
    })
}

impl Sim {
    /// Completes every launched attempt in order (part files), relaunching freed slots, until
    /// nothing runs; returns the jobs that asked to commit.
    fn run_to_end(&mut self, mut secs: f64, mut running: Vec<AttemptRef>) -> Vec<JobId> {
        let mut committed = Vec::new();
        while let Some(a) = running.first().cloned() {
            running.remove(0);
            secs += 1.0;
            self.reduce_done(secs, &a);
            let (launches, other) = self.launches();
            running.extend(launches.into_iter().map(|(_, a)| a));
            for action in other {
                if let Action::Commit { job, .. } = action {
                    self.s.commit_finished(self.at(secs), &job, Ok(()));
                    committed.push(job);
                }
            }
        }
        committed
    }

    fn queue(&self, name: &str) -> QueueView {
        self.queue_at(0.0, name)
    }

    fn queue_at(&self, secs: f64, name: &str) -> QueueView {
        let views = self.s.queues(self.at(secs));
        views.into_iter().find(|q| q.name == name).expect("queue view")
    }
}

#[test]
fn queues_share_slots_by_weight_and_what_one_leaves_goes_to_the_other() {
    let mut sim = Sim::new(queues(&[("etl", 3, None), ("adhoc", 1, None)]), &[("w1", 4), ("w2", 4)]);
    sim.submit(0.0, job("big", "etl", "alice", 0, 20));
    sim.submit(0.0, job("small", "adhoc", "bob", 0, 20));
    // The first job took every slot at its submission; the next slots go by weight.
    let (first, _) = sim.launches();
    assert_eq!(per_job(&first), counts(&[("big", 8)]));
    let (etl, adhoc) = (sim.queue("etl"), sim.queue("adhoc"));
    assert_eq!((etl.fair_share, adhoc.fair_share), (6.0, 2.0));
    let mut freed = Vec::new();
    for (i, (_, a)) in first.iter().enumerate() {
        sim.reduce_done(1.0 + i as f64, a);
        freed.extend(sim.launches().0);
    }
    // Eight slots freed one by one: adhoc (weight 1) got 2, etl (weight 3) 6.
    assert_eq!(per_job(&freed), counts(&[("big", 6), ("small", 2)]));
    // A queue without demand leaves its share to the others.
    let mut sim = Sim::new(queues(&[("etl", 3, None), ("adhoc", 1, None)]), &[("w1", 4), ("w2", 4)]);
    sim.submit(0.0, job("small", "adhoc", "bob", 0, 20));
    assert_eq!(per_job(&sim.launches().0), counts(&[("small", 8)]));
    assert_eq!(sim.queue("adhoc").fair_share, 8.0);
}

#[test]
fn users_in_one_queue_share_its_slots_whatever_their_priorities() {
    let mut sim = Sim::new(queues(&[]), &[("w1", 2), ("w2", 2)]);
    sim.submit(0.0, job("a", "default", "alice", 10, 20));
    let (first, _) = sim.launches();
    assert_eq!(per_job(&first), counts(&[("a", 4)]));
    sim.submit(1.0, job("b", "default", "bob", 0, 20));
    assert!(sim.launches().0.is_empty(), "no free slot");
    // Freed slots go to the user with fewer running attempts: bob until he has his half,
    // then alice keeps hers.
    let mut order = Vec::new();
    for (i, (_, a)) in first.iter().enumerate() {
        sim.reduce_done(2.0 + i as f64, a);
        order.extend(sim.launches().0.into_iter().map(|(_, a)| a.job.as_str().to_string()));
    }
    assert_eq!(order, ["b", "b", "a", "a"]);
    assert_eq!((sim.queue("default").running, sim.view("b").maps.running), (4, 2));
}

#[test]
fn a_users_higher_priority_job_runs_first_within_a_queue() {
    let mut sim = Sim::new(queues(&[]), &[]);
    sim.submit(0.0, job("low", "default", "alice", 0, 2));
    sim.submit(0.0, job("high", "default", "alice", 5, 2));
    sim.s.add_worker(sim.at(1.0), w("w1"), 3);
    let order: Vec<_> =
        sim.launches().0.into_iter().map(|(_, a)| (a.job.as_str().to_string(), a.task.index)).collect();
    assert_eq!(order, [("high".to_string(), 0), ("high".to_string(), 1), ("low".to_string(), 0)]);
}

/// One slot; a low-priority job waits while high-priority jobs keep coming, one every 5 s,
/// each running 5 s. Returns the job that gets the slot at 10 s.
fn slot_at_ten_seconds(aging: Option<Duration>) -> String {
    let mut sim = Sim::new(queues(&[]).with_aging(aging), &[]);
    sim.submit(0.0, job("low", "default", "alice", 0, 1));
    sim.submit(0.0, job("high0", "default", "alice", 1, 1));
    sim.s.add_worker(sim.at(0.0), w("w1"), 1);
    assert_eq!(sim.launches().0[0].1.job.as_str(), "high0");
    sim.submit(5.0, job("high1", "default", "alice", 1, 1));
    sim.reduce_done(5.0, &at("high0", TaskId::map(0), 0));
    assert_eq!(sim.launches().0[0].1.job.as_str(), "high1");
    sim.submit(10.0, job("high2", "default", "alice", 1, 1));
    sim.reduce_done(10.0, &at("high1", TaskId::map(0), 0));
    sim.launches().0[0].1.job.as_str().to_string()
}

#[test]
fn aging_lets_a_low_priority_job_run_under_a_stream_of_high_ones() {
    // One priority point per 10 s of waiting: at 10 s, `low` (0 + 10/10) ties `high2` (1 + 0)
    // and was submitted first.
    assert_eq!(slot_at_ten_seconds(Some(Duration::from_secs(10))), "low");
    // Without aging the stream keeps it waiting.
    assert_eq!(slot_at_ten_seconds(None), "high2");
}

#[test]
fn a_queue_never_holds_more_than_its_max_slots() {
    let mut sim = Sim::new(queues(&[("capped", 1, Some(2))]), &[("w1", 4), ("w2", 4)]);
    sim.submit(0.0, job("c", "capped", "alice", 0, 10));
    let (launches, _) = sim.launches();
    assert_eq!(per_job(&launches), counts(&[("c", 2)]), "6 slots stay free");
    assert_eq!(sim.queue("capped").fair_share, 2.0);
    sim.submit(1.0, job("d", "default", "bob", 0, 10));
    assert_eq!(per_job(&sim.launches().0), counts(&[("d", 6)]));
    // A freed slot of the capped queue goes back to it (it is below its cap and its share).
    sim.reduce_done(2.0, &launches[0].1);
    assert_eq!(per_job(&sim.launches().0), counts(&[("c", 1)]));
    sim.s.tick(sim.at(100.0));
    assert!(sim.launches().0.is_empty(), "still at its cap");
}

/// Queues `a` and `b` of equal weight on 4 slots, preemption after 15 s: `a`'s job holds
/// every slot (map 4 launched last, at 1 s) when `b`'s job arrives at 2 s.
fn a_holds_every_slot_when_b_arrives() -> (Sim, Vec<AttemptRef>) {
    let config =
        queues(&[("a", 1, None), ("b", 1, None)]).with_preemption_timeout(Some(Duration::from_secs(15)));
    let mut sim = Sim::new(config, &[("w1", 2), ("w2", 2)]);
    sim.submit(0.0, job("ja", "a", "alice", 0, 6));
    let (launches, _) = sim.launches();
    sim.reduce_done(1.0, &launches[0].1);
    let (relaunched, _) = sim.launches();
    assert_eq!(relaunched.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>(), [at("ja", TaskId::map(4), 0)]);
    sim.submit(2.0, job("jb", "b", "bob", 0, 2));
    sim.s.tick(sim.at(2.0));
    assert!(sim.launches().0.is_empty());
    let running = launches[1..].iter().chain(&relaunched).map(|(_, a)| a.clone()).collect();
    (sim, running)
}

#[test]
fn no_preemption_before_the_timeout() {
    let (mut sim, _) = a_holds_every_slot_when_b_arrives();
    for secs in [10.0, 16.9] {
        sim.s.tick(sim.at(secs));
        let (launches, other) = sim.launches();
        assert!(launches.is_empty() && other.is_empty(), "at {secs} s: {launches:?} {other:?}");
    }
    let b = sim.queue_at(16.9, "b");
    assert!(b.starved_secs.is_some_and(|s| (s - 14.9).abs() < 1e-6), "{b:?}");
    assert_eq!((b.running, b.pending, b.fair_share), (0, 2, 2.0));
    assert_eq!(sim.view("ja").preempted_attempts, 0);
}

#[test]
fn after_the_timeout_the_youngest_attempts_are_preempted_rerun_and_not_failures() {
    let (mut sim, running) = a_holds_every_slot_when_b_arrives();
    sim.s.tick(sim.at(16.0));
    assert!(sim.launches().1.is_empty());
    // b has been below its share (2 of 4 slots) for 15 s: a's two youngest attempts go.
    sim.s.tick(sim.at(17.0));
    let (launches, other) = sim.launches();
    let killed: Vec<_> = other
        .iter()
        .filter_map(|a| match a {
            Action::Kill { attempt, .. } => Some(attempt.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(killed, [at("ja", TaskId::map(4), 0), at("ja", TaskId::map(3), 0)]);
    assert_eq!(per_job(&launches), counts(&[("jb", 2)]));
    let detail = sim.s.job_detail(sim.at(17.0), &jid("ja")).expect("detail");
    let preempted: Vec<_> = (detail.attempts.iter())
        .filter(|a| a.outcome == AttemptOutcome::Preempted)
        .map(|a| (a.task, a.attempt))
        .collect();
    assert_eq!(preempted, [(TaskId::map(3), AttemptId(0)), (TaskId::map(4), AttemptId(0))]);
    let view = sim.view("ja");
    assert_eq!((view.failed_attempts, view.preempted_attempts), (0, 2));
    // Everything runs to the end: the preempted tasks run again and both jobs succeed.
    let survivors = running.into_iter().filter(|a| !killed.contains(a));
    let committed = sim.run_to_end(18.0, survivors.chain(launches.into_iter().map(|(_, a)| a)).collect());
    assert_eq!(committed, [jid("jb"), jid("ja")]);
    assert_eq!(sim.view("ja").state, JobState::Succeeded);
    assert_eq!(sim.view("jb").state, JobState::Succeeded);
    let detail = sim.s.job_detail(sim.at(40.0), &jid("ja")).expect("detail");
    let mut reruns: Vec<_> = (detail.attempts.iter())
        .filter(|a| a.attempt == AttemptId(1))
        .map(|a| (a.task.index, a.outcome))
        .collect();
    reruns.sort_by_key(|(index, _)| *index);
    assert_eq!(reruns, [(3, AttemptOutcome::Succeeded), (4, AttemptOutcome::Succeeded)]);
    assert_eq!(sim.view("ja").failed_attempts, 0);
}
