//! Seeded chaos rounds across hosts (#20): each round runs the `chaos` job (whose tasks
//! crash and fail on their own, seeded) while one fault drawn from the seed hits the
//! cluster: a worker frozen with its tasks, a worker cut off from every host, the workers cut
//! off from each other, a task process killed, the driver killed and restarted on its data
//! dir, or a worker killed with its tasks and restarted on its data dir. Every round's output must equal a
//! fault-free local run byte for byte and hold exactly its manifest's files.
//!
//! `GRISTMILL_CHAOS_ROUNDS` (default 3, as CI runs it) and `GRISTMILL_CHAOS_SEED` (default
//! 2026) choose the run: `GRISTMILL_CHAOS_ROUNDS=100 cargo test --test it chaos_rounds`.

use std::process::Child;
use std::time::{Duration, Instant};

use gristmill_jobs::sample::SplitMix64;

use super::Hosts;
use super::cases::{WORKER_0, WORKER_1, assert_identical, cluster, expected, input, job_args};
use crate::cluster_support::{Cluster, wait_until};

/// One fault of a round.
#[derive(Debug)]
enum Fault {
    /// Worker `i`'s daemon and tasks stopped (SIGSTOP) for a while: declared lost, redone.
    Freeze(usize),
    /// Worker `i`'s host cut off from every host for a while.
    Isolate(usize),
    /// The two workers cut off from each other (the driver still reaches both).
    SplitWorkers,
    /// One running task process of worker `i` killed (SIGKILL).
    KillTask(usize),
    /// The driver killed (SIGKILL), restarted on its data dir after a while.
    KillDriver,
    /// Worker `i` killed with its tasks (SIGKILL), restarted on its data dir after a while.
    KillWorker(usize),
}

impl Fault {
    fn draw(rng: &mut SplitMix64) -> Fault {
        let worker = rng.below(2) as usize;
        match rng.below(6) {
            0 => Fault::Freeze(worker),
            1 => Fault::Isolate(worker),
            2 => Fault::SplitWorkers,
            3 => Fault::KillDriver,
            4 => Fault::KillWorker(worker),
            _ => Fault::KillTask(worker),
        }
    }

    /// Starts the fault, holds it `hold`, and ends it.
    fn strike(&self, cluster: &mut Cluster, hosts: &Hosts, hold: Duration) {
        let host = |i: usize| if i == 0 { WORKER_0 } else { WORKER_1 };
        match *self {
            Fault::Freeze(i) => {
                cluster.signal_worker(i, "STOP", true);
                std::thread::sleep(hold);
                cluster.signal_worker(i, "CONT", true);
            }
            Fault::Isolate(i) => {
                hosts.isolate(host(i));
                std::thread::sleep(hold);
                hosts.reconnect(host(i));
            }
            Fault::SplitWorkers => {
                hosts.partition(WORKER_0, WORKER_1);
                std::thread::sleep(hold);
                hosts.heal(WORKER_0, WORKER_1);
            }
            Fault::KillDriver => {
                cluster.kill_driver();
                std::thread::sleep(hold.min(Duration::from_secs(3)));
                cluster.restart_driver();
            }
            Fault::KillWorker(i) => {
                cluster.signal_worker(i, "KILL", true);
                std::thread::sleep(hold.min(Duration::from_secs(3)));
                cluster.restart_worker(i, 2);
            }
            Fault::KillTask(i) => {
                let tasks = children(cluster.worker_pid(i));
                if let Some(pid) = tasks.first() {
                    let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
            }
        }
    }
}

/// The live child processes of `pid` (a worker's task processes).
fn children(pid: u32) -> Vec<u32> {
    let ps = std::process::Command::new("ps")
        .args(["-o", "pid=,stat=", "--ppid", &pid.to_string()])
        .output()
        .expect("ps runs");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            (!fields.next()?.starts_with('Z')).then_some(pid)
        })
        .collect()
}

/// Waits for a job binary at most `limit`; asserts it succeeded.
fn wait_ok_within(mut job: Child, limit: Duration, round: u64) {
    let deadline = Instant::now() + limit;
    while job.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = job.kill();
            panic!("round {round}: the job did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = job.wait_with_output().unwrap();
    assert!(out.status.success(), "round {round}: the job failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn chaos_rounds_across_hosts_never_change_the_output() {
    let (rounds, seed) = (env_or("GRISTMILL_CHAOS_ROUNDS", 3), env_or("GRISTMILL_CHAOS_SEED", 2026));
    let (hosts, mut cluster) = cluster(Hosts::new(3), &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = input(dir.path());
    let expected = expected("chaos", &text, dir.path());
    let mut rng = SplitMix64::new(seed);
    let started = Instant::now();
    for round in 0..rounds {
        let fault = Fault::draw(&mut rng);
        let (delay, hold) =
            (Duration::from_millis(rng.below(3000)), Duration::from_millis(2000 + rng.below(6000)));
        let out = dir.path().join(format!("out-{round}"));
        let task_seed = (seed + round).to_string();
        let faults = [
            "--chaos-stage",
            "both",
            "--chaos-seed",
            &task_seed,
            "--crash",
            "0.1",
            "--fail",
            "0.1",
            "--sleep",
            "0.3",
            "--sleep-ms",
            "800",
        ];
        let job = cluster.spawn("chaos", &job_args(&text, &out, &faults));
        std::thread::sleep(delay);
        fault.strike(&mut cluster, &hosts, hold);
        wait_ok_within(job, Duration::from_secs(240), round);
        assert_identical(&expected, &out);
        eprintln!("chaos round {round} (seed {seed}): {fault:?} after {delay:?} for {hold:?}: identical");
        wait_until("both workers attached", Duration::from_secs(60), || cluster.alive_workers() == 2);
    }
    eprintln!("chaos: {rounds} rounds, seed {seed}, 0 wrong outputs, 0 stray files, {:?}", started.elapsed());
}
