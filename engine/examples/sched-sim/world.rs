//! The simulated cluster: a clock, an event queue, jobs arriving, attempts ending (or
//! failing), workers lost and coming back; every scheduler call timed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use gristmill::ids::{JobId, TaskKind, WorkerId};
use gristmill::scheduler::{
    Action, AttemptEvent, AttemptOutcome, AttemptRef, FailureKind, JobSpec, QueueConfig, Scheduler,
    SchedulerConfig, TaskFailure, TaskOutcome,
};

use super::Args;
use super::fairness;

/// What the run measured.
#[derive(Default)]
pub struct Totals {
    pub tasks: u64,
    pub calls: u64,
    pub launches: u64,
    pub failures: u64,
    pub workers_lost: u64,
    pub preempted: u64,
    pub scheduler_time: Duration,
    /// CPU time of this thread inside scheduler calls (not inflated when the machine is
    /// shared and the process waits for a core).
    pub scheduler_cpu: Duration,
    pub slowest_call: Duration,
    /// Simulated seconds each (non-backup) launch waited since its task was ready.
    pub waits: Vec<f32>,
    /// Running attempts over running attempts plus free slots of workers that may take
    /// tasks, while tasks are pending.
    pub utilization: Vec<f64>,
    /// The same over every live worker's slots (excluded workers' idle slots count).
    pub utilization_alive: Vec<f64>,
    pub jain_queues: Vec<f64>,
    pub jain_users: Vec<f64>,
    /// (simulated s, Jain between queues, Jain between users, utilization)
    pub series: Vec<(f64, f64, f64, f64)>,
    pub rss_peak: u64,
    pub simulated_secs: f64,
}

impl Totals {
    pub fn utilization_mean(&self) -> f64 {
        fairness::mean(&self.utilization)
    }

    pub fn utilization_min(&self) -> f64 {
        fairness::min(&self.utilization)
    }
}

enum Ev {
    Arrive(usize),
    End { attempt: AttemptRef, fail: bool },
    Lose(u32),
    Return(u32),
    Commit(JobId),
    Tick,
}

struct SimJob {
    spec: Option<JobSpec>,
    queue: usize,
    user: u32,
    /// Tasks without a successful attempt.
    unfinished: u64,
    ended: bool,
}

pub struct World {
    args: Args,
    rng: Rng,
    s: Scheduler,
    t0: Instant,
    now_ms: u64,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    pending_events: HashMap<u64, Ev>,
    next_event: u64,
    jobs: Vec<SimJob>,
    by_id: HashMap<JobId, usize>,
    live: HashMap<AttemptRef, usize>,
    alive_workers: u64,
    jobs_left: usize,
    totals: Totals,
}

fn worker_id(i: u32) -> WorkerId {
    WorkerId(format!("w{i:05}"))
}

impl World {
    pub fn new(args: Args) -> Self {
        let mut config = SchedulerConfig::default().with_heartbeat_timeout(Duration::from_secs(86_400));
        for q in 0..args.queues {
            config = config.with_queue(format!("q{q}"), QueueConfig { weight: q + 1, max_slots: None });
        }
        let mut world = World {
            rng: Rng(args.seed.max(1)),
            s: Scheduler::new(config),
            t0: Instant::now(),
            now_ms: 0,
            heap: BinaryHeap::new(),
            pending_events: HashMap::new(),
            next_event: 0,
            jobs: Vec::new(),
            by_id: HashMap::new(),
            live: HashMap::new(),
            alive_workers: 0,
            jobs_left: args.jobs as usize,
            totals: Totals::default(),
            args,
        };
        world.plan_jobs();
        world
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn at(&mut self, delay_secs: f64, ev: Ev) {
        let when = self.now_ms + (delay_secs.max(0.0) * 1000.0) as u64;
        self.heap.push(Reverse((when, self.next_event)));
        self.pending_events.insert(self.next_event, ev);
        self.next_event += 1;
    }

    /// Job sizes (random, summing to `--tasks`), owners, queues, priorities and arrivals.
    fn plan_jobs(&mut self) {
        let a = &self.args;
        let (jobs, tasks) = (u64::from(a.jobs.max(1)), a.tasks.max(2 * u64::from(a.jobs.max(1))));
        let mean_secs = (a.min_task_secs + a.max_task_secs) / 2.0;
        let capacity = f64::from(a.workers) * f64::from(a.slots);
        let arrival = a.arrival_secs.unwrap_or(tasks as f64 * mean_secs / capacity / 2.0);
        let weights: Vec<f64> = (0..jobs).map(|_| 0.1 + 1.8 * self.rng.unit()).collect();
        let total_weight: f64 = weights.iter().sum();
        let mut left = tasks;
        for (j, w) in weights.iter().enumerate() {
            let size = if j as u64 == jobs - 1 {
                left
            } else {
                ((tasks as f64 * w / total_weight) as u64).clamp(2, left)
            };
            left -= size;
            let reducers = (size / 10).max(1);
            let maps = size - reducers;
            let user = self.rng.below(u64::from(self.args.users.max(1))) as u32;
            let queue = (user % self.args.queues.max(1)) as usize;
            let id = JobId::from_string(format!("job-{j:05}"));
            let spec = JobSpec {
                id: id.clone(),
                name: "sim".into(),
                priority: self.rng.below(4) as i32,
                owner: format!("user{user:03}"),
                queue: format!("q{queue}"),
                map_tasks: (0..maps).map(|m| format!("{id}/part-{m:05}")).collect(),
                reducers: reducers as u32,
            };
            self.by_id.insert(id, j);
            self.jobs.push(SimJob { spec: Some(spec), queue, user, unfinished: size, ended: false });
            self.totals.tasks += size;
            let when = arrival * j as f64 / jobs as f64;
            self.at(when, Ev::Arrive(j));
        }
    }

    /// Submits every job at once to a cluster without workers (nothing launches): for the
    /// memory a queued task costs.
    pub fn submit_all(&mut self) {
        for j in 0..self.jobs.len() {
            let spec = self.jobs[j].spec.take().expect("submitted once");
            self.s.submit(self.t0, spec).expect("fresh job id");
        }
    }

    pub fn run(&mut self) -> Totals {
        for w in 0..self.args.workers {
            let slots = self.args.slots;
            self.call(|s, now| s.add_worker(now, worker_id(w), slots));
            self.alive_workers += 1;
        }
        let losses = (f64::from(self.args.workers) * self.args.worker_loss_rate) as u32;
        let horizon = self.totals.tasks as f64 * (self.args.min_task_secs + self.args.max_task_secs)
            / 2.0
            / (f64::from(self.args.workers) * f64::from(self.args.slots));
        for _ in 0..losses {
            let (worker, when) =
                (self.rng.below(u64::from(self.args.workers)) as u32, self.rng.unit() * horizon);
            self.at(when, Ev::Lose(worker));
        }
        self.at(1.0, Ev::Tick);
        while let Some(Reverse((when, seq))) = self.heap.pop() {
            self.now_ms = when;
            let Some(ev) = self.pending_events.remove(&seq) else { continue };
            self.step(ev);
            if self.jobs_left == 0 {
                break;
            }
        }
        self.totals.simulated_secs = self.now_ms as f64 / 1000.0;
        std::mem::take(&mut self.totals)
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(j) => {
                let spec = self.jobs[j].spec.take().expect("arrives once");
                self.call(|s, now| s.submit(now, spec).expect("fresh job id"));
            }
            Ev::End { attempt, fail } => {
                if !self.live.contains_key(&attempt) {
                    return; // killed, lost or preempted meanwhile
                }
                if fail {
                    self.totals.failures += 1;
                    let failure = TaskFailure {
                        kind: FailureKind::Retryable,
                        error: None,
                        message: "simulated failure".into(),
                        stderr_tail: String::new(),
                    };
                    self.call(|s, now| s.task_failed(now, &attempt, failure));
                } else {
                    let outcome = match attempt.task.kind {
                        TaskKind::Map => TaskOutcome::MapDone,
                        TaskKind::Reduce => TaskOutcome::PartWritten { part_file: String::new(), rows: 0 },
                    };
                    self.call(|s, now| s.task_succeeded(now, &attempt, outcome, Default::default()));
                }
            }
            Ev::Lose(w) => {
                self.totals.workers_lost += 1;
                self.alive_workers -= 1;
                self.call(|s, now| s.worker_lost(now, &worker_id(w), "simulated loss"));
                self.at(30.0, Ev::Return(w));
            }
            Ev::Return(w) => {
                let slots = self.args.slots;
                self.alive_workers += 1;
                self.call(|s, now| s.add_worker(now, worker_id(w), slots));
            }
            Ev::Commit(job) => self.call(|s, now| s.commit_finished(now, &job, Ok(()))),
            Ev::Tick => {
                self.call(|s, now| s.tick(now));
                self.sample();
                self.at(1.0, Ev::Tick);
            }
        }
    }

    /// One scheduler call, timed, then what it asked for carried out.
    fn call<T>(&mut self, f: impl FnOnce(&mut Scheduler, Instant) -> T) -> T {
        let now = self.now();
        let (started, cpu_started) = (Instant::now(), thread_cpu());
        let out = f(&mut self.s, now);
        let actions = self.s.take_actions();
        let events = self.s.take_attempt_events();
        let took = started.elapsed();
        self.totals.scheduler_cpu += thread_cpu().saturating_sub(cpu_started);
        self.totals.scheduler_time += took;
        self.totals.slowest_call = self.totals.slowest_call.max(took);
        self.totals.calls += 1;
        self.observe(events);
        for action in actions {
            match action {
                Action::Commit { job, .. } => self.at(0.5, Ev::Commit(job)),
                Action::JobEnded { job, .. } => {
                    let j = self.by_id[&job];
                    self.jobs[j].ended = true;
                    self.jobs[j].unfinished = 0;
                    self.jobs_left -= 1;
                }
                Action::Launch { .. }
                | Action::Kill { .. }
                | Action::DropJobData { .. }
                | Action::ReleaseWorker { .. } => {}
            }
        }
        out
    }

    fn observe(&mut self, events: Vec<AttemptEvent>) {
        for event in events {
            match event {
                AttemptEvent::Launched { attempt, backup, waited, .. } => {
                    self.totals.launches += 1;
                    if !backup {
                        self.totals.waits.push(waited.as_secs_f32());
                    }
                    let a = &self.args;
                    let secs = a.min_task_secs + self.rng.unit() * (a.max_task_secs - a.min_task_secs);
                    let fail = self.rng.unit() < self.args.failure_rate;
                    let at = if fail { secs * self.rng.unit() } else { secs };
                    self.live.insert(attempt.clone(), self.by_id[&attempt.job]);
                    self.at(at, Ev::End { attempt, fail });
                }
                AttemptEvent::Ended { attempt, outcome, .. } => {
                    let Some(j) = self.live.remove(&attempt) else { continue };
                    match outcome {
                        AttemptOutcome::Succeeded => {
                            self.jobs[j].unfinished = self.jobs[j].unfinished.saturating_sub(1)
                        }
                        AttemptOutcome::Preempted => self.totals.preempted += 1,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Utilization and fairness, once a simulated second.
    fn sample(&mut self) {
        let now = self.now();
        let queues = self.s.queues(now);
        let pending: u64 = queues.iter().map(|q| q.pending).sum();
        let running: u64 = queues.iter().map(|q| q.running).sum();
        let slots = self.alive_workers * u64::from(self.args.slots);
        let (_, free) = self.s.slot_counts();
        self.totals.rss_peak = self.totals.rss_peak.max(resident_bytes());
        if pending == 0 || slots == 0 || running + free == 0 {
            return;
        }
        // Busy over busy plus free slots that could take a task (excluded workers still
        // finish what they run, but take nothing new).
        let utilization = running as f64 / (running + free) as f64;
        self.totals.utilization.push(utilization);
        self.totals.utilization_alive.push(running as f64 / slots as f64);
        if !self.now_ms.is_multiple_of(10_000) {
            return;
        }
        let by_queue: Vec<(f64, f64)> = queues.iter().map(|q| (q.running as f64, q.fair_share)).collect();
        let jain_queues = fairness::jain_against_shares(&by_queue);
        let jain_users = self.jain_users(queues.iter().map(|q| q.running as f64).collect());
        self.totals.jain_queues.push(jain_queues);
        self.totals.jain_users.push(jain_users);
        let every = (self.args.report_every_secs * 1000.0) as u64;
        if every > 0 && self.now_ms.is_multiple_of(every) {
            self.totals.series.push((self.now_ms as f64 / 1000.0, jain_queues, jain_users, utilization));
        }
    }

    /// Jain's index between the users of each queue (each user's running attempts against
    /// an equal split of the queue's running attempts, capped by the user's unfinished
    /// tasks), averaged over the queues with two or more users waiting.
    fn jain_users(&self, queue_running: Vec<f64>) -> f64 {
        let mut running: HashMap<(usize, u32), f64> = HashMap::new();
        for &j in self.live.values() {
            *running.entry((self.jobs[j].queue, self.jobs[j].user)).or_default() += 1.0;
        }
        let mut demand: HashMap<(usize, u32), f64> = HashMap::new();
        for job in self.jobs.iter().filter(|j| j.spec.is_none() && !j.ended) {
            *demand.entry((job.queue, job.user)).or_default() += job.unfinished as f64;
        }
        let queue_names: Vec<usize> = (0..self.args.queues as usize).collect();
        let mut indexes = Vec::new();
        for q in queue_names {
            let users: Vec<(f64, f64)> = (demand.iter().filter(|((queue, _), _)| *queue == q))
                .map(|(key, d)| (running.get(key).copied().unwrap_or(0.0), *d))
                .collect();
            let slots = queue_running.get(q).copied().unwrap_or(0.0);
            if users.len() >= 2 && slots > 0.0 {
                indexes.push(fairness::jain_equal_split(&users, slots));
            }
        }
        if indexes.is_empty() { 1.0 } else { fairness::mean(&indexes) }
    }
}

/// CPU time this thread has used.
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Resident memory of this process (`/proc/self/statm`), bytes.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn percentile(values: &[f32], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[rank])
}

/// xorshift64*: fast, seeded, good enough for a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
