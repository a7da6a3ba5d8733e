//! `sched-sim`: drives the pure cluster [`Scheduler`] with a simulated clock at cluster
//! scale, with no driver, workers or network: thousands of workers, a million tasks across
//! many jobs, users and queues, random task durations, random failures and lost workers.
//!
//! It reports what the scheduler costs and how well it shares:
//! * assignments per second: launches divided by the wall time spent inside scheduler
//!   calls (the simulation's own bookkeeping is not counted);
//! * scheduling latency (simulated): how long a task was ready before it was launched;
//! * slot utilization: running attempts over usable slots, sampled every simulated second
//!   while some task is pending;
//! * memory per task: resident memory growth (`/proc/self/statm`) over the tasks submitted;
//! * Jain's fairness index over time, between queues (each queue's running attempts over
//!   its weighted fair share) and between users within each queue.
//!
//! ```text
//! cargo run --release -p gristmill --example sched-sim -- --workers 10000 --tasks 1000000
//! ```

mod fairness;
mod world;

use std::time::{Duration, Instant};

use clap::Parser;

use world::{Totals, World};

/// Scheduler simulation at cluster scale.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Workers.
    #[arg(long, default_value_t = 10_000)]
    workers: u32,
    /// Slots per worker.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Tasks in all jobs together (about 90% maps, 10% reduces).
    #[arg(long, default_value_t = 1_000_000)]
    tasks: u64,
    /// Jobs.
    #[arg(long, default_value_t = 2_000)]
    jobs: u32,
    /// Users (job owners).
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Queues, weighted 1, 2, 3, ...
    #[arg(long, default_value_t = 4)]
    queues: u32,
    /// Share of attempts that fail (retryable) part way.
    #[arg(long, default_value_t = 0.01)]
    failure_rate: f64,
    /// Share of workers lost during the run (each comes back 30 s later).
    #[arg(long, default_value_t = 0.01)]
    worker_loss_rate: f64,
    /// Shortest and longest task duration, simulated seconds.
    #[arg(long, default_value_t = 2.0)]
    min_task_secs: f64,
    /// Longest task duration.
    #[arg(long, default_value_t = 40.0)]
    max_task_secs: f64,
    /// Jobs arrive over this many simulated seconds [default: so that about twice the
    /// cluster's capacity is asked for meanwhile].
    #[arg(long)]
    arrival_secs: Option<f64>,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the fairness series every this many simulated seconds.
    #[arg(long, default_value_t = 60.0)]
    report_every_secs: f64,
}

fn main() {
    let args = Args::parse();
    // Memory first, in a fresh process: every task queued at once, nothing running.
    let rss_before = world::resident_bytes();
    let mut queued = World::new(args.clone());
    queued.submit_all();
    let per_task = world::resident_bytes().saturating_sub(rss_before) as f64 / args.tasks as f64;
    drop(queued);
    let started = Instant::now();
    let mut world = World::new(args.clone());
    let totals = world.run();
    let wall = started.elapsed();
    report(&args, &totals, per_task, wall);
}

fn report(args: &Args, t: &Totals, per_task: f64, wall: Duration) {
    let per_sec = t.launches as f64 / t.scheduler_time.as_secs_f64();
    let per_cpu_sec = t.launches as f64 / t.scheduler_cpu.as_secs_f64();
    println!(
        "sched-sim: {} workers x {} slots, {} tasks in {} jobs, {} users, {} queues",
        args.workers, args.slots, t.tasks, args.jobs, args.users, args.queues
    );
    println!(
        "  simulated       {:.0} s; wall {:.1} s, of which in the scheduler {:.2} s",
        t.simulated_secs,
        wall.as_secs_f64(),
        t.scheduler_time.as_secs_f64()
    );
    println!(
        "  scheduler calls {} ({} launches, {} failed attempts injected, {} workers lost, {} preempted)",
        t.calls, t.launches, t.failures, t.workers_lost, t.preempted
    );
    println!(
        "  assignments/s   {per_sec:.0} by wall time inside scheduler calls, {per_cpu_sec:.0} by CPU time"
    );
    println!(
        "  per launch      {:.2} us wall, {:.2} us CPU; slowest call {:.2} ms",
        t.scheduler_time.as_secs_f64() * 1e6 / t.launches as f64,
        t.scheduler_cpu.as_secs_f64() * 1e6 / t.launches as f64,
        t.slowest_call.as_secs_f64() * 1e3
    );
    let p = |q: f64| world::percentile(&t.waits, q);
    println!(
        "  latency ready->launched (simulated s): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
    println!(
        "  utilization while tasks pending: mean {:.2}% (busy / busy + free usable slots) over {} samples \
         (min {:.2}%); {:.2}% of all live slots (excluded workers' idle slots included)",
        t.utilization_mean() * 100.0,
        t.utilization.len(),
        t.utilization_min() * 100.0,
        fairness::mean(&t.utilization_alive) * 100.0
    );
    println!(
        "  memory          {per_task:.0} bytes per queued task (RSS growth, all jobs submitted); run peak RSS {:.0} MiB",
        t.rss_peak as f64 / 1048576.0
    );
    println!(
        "  Jain's index between queues (while pending): mean {:.3}, min {:.3}",
        fairness::mean(&t.jain_queues),
        fairness::min(&t.jain_queues)
    );
    println!(
        "  Jain's index between users in a queue:      mean {:.3}, min {:.3}",
        fairness::mean(&t.jain_users),
        fairness::min(&t.jain_users)
    );
    println!("  series (sim s: queues / users / utilization):");
    for (secs, q, u, util) in &t.series {
        println!("    {secs:>6.0}  {q:.3} / {u:.3} / {:.1}%", util * 100.0);
    }
}
