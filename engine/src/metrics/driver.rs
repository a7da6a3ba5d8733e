//! The driver's metrics.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::process::own_stats;
use super::{duration_buckets, encode};
use crate::ids::TaskKind;
use crate::scheduler::{AttemptEvent, JobState, JobView, Phase, TaskCounts, WorkerState, WorkerView};

type Label = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Histograms = Family<Label, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(duration_buckets())
}

/// The driver's registry and the metrics in it.
#[derive(Debug)]
pub struct DriverMetrics {
    registry: Registry,
    jobs: Family<Label, Gauge>,
    jobs_submitted: Counter,
    jobs_ended: Family<Label, Counter>,
    tasks: Family<Labels2, Gauge>,
    attempts_launched: Family<Label, Counter>,
    attempts_finished: Family<Labels2, Counter>,
    attempt_duration: Histograms,
    workers: Family<Label, Gauge>,
    scheduling_latency: Histogram,
    commit_duration: Histogram,
    cpu_seconds: Counter<f64, AtomicU64>,
    rss_bytes: Gauge,
    slots_wanted: Gauge,
    slots_usable: Gauge,
}

/// What the gauges show, counted from the scheduler's views at a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerGauges {
    /// Jobs the scheduler knows (ended ones as long as it keeps them) by state.
    pub jobs: Vec<(&'static str, i64)>,
    /// Tasks by kind: launchable without a slot yet (pending), and with an attempt running.
    pub tasks: Vec<(&'static str, &'static str, i64)>,
    /// Workers by state: `alive`, `excluded` (alive, given no tasks for a while),
    /// `draining`, `lost`.
    pub workers: Vec<(&'static str, i64)>,
    /// What the jobs want, for an autoscaler.
    pub demand: Demand,
}

/// The slots the queued and running jobs could use now: what an autoscaler sizes the
/// cluster to (`/api/cluster` and the `gristmill_slots_*` gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Demand {
    /// Tasks ready to run that wait for a slot.
    pub pending_tasks: i64,
    /// Tasks with an attempt running.
    pub running_tasks: i64,
    /// Running plus pending: the slots that would leave no ready task waiting.
    pub slots_wanted: i64,
    /// Slots of the workers that take tasks (alive, not draining or excluded).
    pub slots_usable: i64,
}

const JOB_STATES: [&str; 6] = ["queued", "running", "committing", "succeeded", "failed", "cancelled"];

/// A job state's label.
pub fn job_state_label(state: &JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Committing => "committing",
        JobState::Succeeded => "succeeded",
        JobState::Failed(_) => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn kind_label(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Map => "map",
        TaskKind::Reduce => "reduce",
    }
}

impl SchedulerGauges {
    /// The counts of these views.
    pub fn of(jobs: &[JobView], workers: &[WorkerView]) -> Self {
        let jobs_in = |state: &str| jobs.iter().filter(|j| job_state_label(&j.state) == state).count() as i64;
        let mut tasks = Vec::new();
        let maps: fn(&JobView) -> TaskCounts = |j| j.maps;
        let reduces: fn(&JobView) -> TaskCounts = |j| j.reduces;
        for (kind, phase, counts) in [("map", Phase::Map, maps), ("reduce", Phase::Reduce, reduces)] {
            let active = jobs.iter().filter(|j| matches!(j.state, JobState::Queued | JobState::Running));
            let (mut pending, mut running) = (0, 0);
            for job in active {
                let c = counts(job);
                running += i64::from(c.running);
                if job.phase == phase {
                    pending += i64::from(c.total.saturating_sub(c.done + c.running));
                }
            }
            tasks.push((kind, "pending", pending));
            tasks.push((kind, "running", running));
        }
        let sum = |state: &str| tasks.iter().filter(|t| t.1 == state).map(|t| t.2).sum::<i64>();
        let (pending_tasks, running_tasks) = (sum("pending"), sum("running"));
        let alive = |w: &&WorkerView| w.state == WorkerState::Alive;
        let usable = |w: &&WorkerView| w.state == WorkerState::Alive && w.excluded_secs_left.is_none();
        let excluded = workers.iter().filter(alive).filter(|w| w.excluded_secs_left.is_some()).count() as i64;
        let draining = workers.iter().filter(|w| w.state == WorkerState::Draining).count() as i64;
        let alive = workers.iter().filter(alive).count() as i64;
        let slots_usable = workers.iter().filter(usable).map(|w| i64::from(w.slots)).sum();
        SchedulerGauges {
            jobs: JOB_STATES.iter().map(|s| (*s, jobs_in(s))).collect(),
            tasks,
            workers: vec![
                ("alive", alive - excluded),
                ("excluded", excluded),
                ("draining", draining),
                ("lost", workers.len() as i64 - alive - draining),
            ],
            demand: Demand {
                pending_tasks,
                running_tasks,
                slots_wanted: pending_tasks + running_tasks,
                slots_usable,
            },
        }
    }
}

impl Default for DriverMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DriverMetrics {
    /// A fresh registry with every driver metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = DriverMetrics {
            jobs: Family::default(),
            jobs_submitted: Counter::default(),
            jobs_ended: Family::default(),
            tasks: Family::default(),
            attempts_launched: Family::default(),
            attempts_finished: Family::default(),
            attempt_duration: Family::new_with_constructor(duration_histogram),
            workers: Family::default(),
            scheduling_latency: duration_histogram(),
            commit_duration: duration_histogram(),
            cpu_seconds: Counter::default(),
            rss_bytes: Gauge::default(),
            slots_wanted: Gauge::default(),
            slots_usable: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("gristmill_jobs", "Jobs the driver holds, by state", m.jobs.clone());
        registry.register("gristmill_jobs_submitted", "Jobs accepted", m.jobs_submitted.clone());
        registry.register("gristmill_jobs_ended", "Jobs that ended, by final state", m.jobs_ended.clone());
        registry.register(
            "gristmill_tasks",
            "Tasks of queued and running jobs, by kind and state (pending: ready for a slot; running: an attempt runs)",
            m.tasks.clone(),
        );
        registry.register(
            "gristmill_attempts_launched",
            "Task attempts launched (backups included), by kind",
            m.attempts_launched.clone(),
        );
        registry.register(
            "gristmill_attempts_finished",
            "Task attempts that ended, by kind and outcome (succeeded, failed, killed, lost, preempted)",
            m.attempts_finished.clone(),
        );
        registry.register(
            "gristmill_attempt_duration_seconds",
            "Run time of task attempts that ended, by kind",
            m.attempt_duration.clone(),
        );
        registry.register(
            "gristmill_workers",
            "Workers by state (alive, excluded, draining, lost)",
            m.workers.clone(),
        );
        registry.register(
            "gristmill_slots_wanted",
            "Slots the queued and running jobs could use now (running plus pending tasks), for an autoscaler",
            m.slots_wanted.clone(),
        );
        registry.register(
            "gristmill_slots_usable",
            "Slots of the workers that take tasks (alive, not draining or excluded)",
            m.slots_usable.clone(),
        );
        registry.register(
            "gristmill_scheduling_latency_seconds",
            "Time from a task becoming ready to its attempt being assigned a slot (backups excluded)",
            m.scheduling_latency.clone(),
        );
        registry.register(
            "gristmill_commit_duration_seconds",
            "Time to commit a job's output (publish the parts, write _SUCCESS)",
            m.commit_duration.clone(),
        );
        registry.register(
            "gristmill_process_cpu_seconds",
            "CPU seconds (user + system) of the driver process",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "gristmill_process_resident_memory_bytes",
            "Resident memory of the driver process",
            m.rss_bytes.clone(),
        );
        DriverMetrics { registry, ..m }
    }

    /// A job was accepted.
    pub fn job_submitted(&self) {
        self.jobs_submitted.inc();
    }

    /// A job ended in `state`.
    pub fn job_ended(&self, state: &JobState) {
        self.jobs_ended.get_or_create(&[("state", job_state_label(state))]).inc();
    }

    /// A commit took `took`.
    pub fn commit_took(&self, took: Duration) {
        self.commit_duration.observe(took.as_secs_f64());
    }

    /// Counts launches and ends of attempts; `now` is when the scheduler saw them.
    pub fn observe(&self, events: &[AttemptEvent], now: Instant) {
        for event in events {
            match event {
                AttemptEvent::Launched { attempt, backup, waited, .. } => {
                    self.attempts_launched.get_or_create(&[("kind", kind_label(attempt.task.kind))]).inc();
                    if !backup {
                        self.scheduling_latency.observe(waited.as_secs_f64());
                    }
                }
                AttemptEvent::Ended { attempt, outcome, started, .. } => {
                    let kind = kind_label(attempt.task.kind);
                    let labels = [("kind", kind), ("outcome", outcome.as_str())];
                    self.attempts_finished.get_or_create(&labels).inc();
                    let ran = now.saturating_duration_since(*started).as_secs_f64();
                    self.attempt_duration.get_or_create(&[("kind", kind)]).observe(ran);
                }
            }
        }
    }

    /// The text format, the gauges set to `gauges` and this process's stats.
    pub fn render(&self, gauges: &SchedulerGauges) -> String {
        for (state, n) in &gauges.jobs {
            self.jobs.get_or_create(&[("state", state)]).set(*n);
        }
        for (kind, state, n) in &gauges.tasks {
            self.tasks.get_or_create(&[("kind", kind), ("state", state)]).set(*n);
        }
        for (state, n) in &gauges.workers {
            self.workers.get_or_create(&[("state", state)]).set(*n);
        }
        self.slots_wanted.set(gauges.demand.slots_wanted);
        self.slots_usable.set(gauges.demand.slots_usable);
        let own = own_stats();
        raise_to(&self.cpu_seconds, own.cpu_seconds);
        self.rss_bytes.set(own.rss_bytes as i64);
        encode(&self.registry)
    }
}

/// Raises a counter that mirrors a cumulative value read elsewhere to that value.
pub(super) fn raise_to(counter: &Counter<f64, AtomicU64>, value: f64) {
    let behind = value - counter.get();
    if behind > 0.0 {
        counter.inc_by(behind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AttemptId, JobId, TaskId, WorkerId};
    use crate::scheduler::{AttemptOutcome, AttemptRef};

    #[test]
    fn attempt_events_count_by_kind_and_outcome() {
        let metrics = DriverMetrics::new();
        let now = Instant::now();
        let attempt =
            AttemptRef { job: JobId::from_string("j".into()), task: TaskId::map(0), attempt: AttemptId(0) };
        let worker = WorkerId("w1".into());
        metrics.observe(
            &[
                AttemptEvent::Launched {
                    attempt: attempt.clone(),
                    worker: worker.clone(),
                    backup: false,
                    waited: Duration::from_millis(20),
                },
                AttemptEvent::Ended { attempt, worker, outcome: AttemptOutcome::Lost, started: now },
            ],
            now + Duration::from_secs(2),
        );
        metrics.job_ended(&JobState::Succeeded);
        let text = metrics.render(&SchedulerGauges::default());
        assert!(text.contains("gristmill_attempts_launched_total{kind=\"map\"} 1"), "{text}");
        assert!(
            text.contains("gristmill_attempts_finished_total{kind=\"map\",outcome=\"lost\"} 1"),
            "{text}"
        );
        assert!(text.contains("gristmill_attempt_duration_seconds_sum{kind=\"map\"} 2.0"), "{text}");
        assert!(text.contains("gristmill_scheduling_latency_seconds_count 1"), "{text}");
        assert!(text.contains("gristmill_jobs_ended_total{state=\"succeeded\"} 1"), "{text}");
    }
}
