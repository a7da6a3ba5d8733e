//! Scheduler tuning: a plain struct with defaults and `with_*` builders.

use std::time::Duration;

/// How the [`Scheduler`](super::Scheduler) retries, detects lost workers and speculates.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Failed attempts of one task (lost workers and fetch failures excluded) after which
    /// its job fails. Values below 1 count as 1.
    pub max_attempts: u32,
    /// A worker that sent no heartbeat for this long is declared lost by
    /// [`tick`](super::Scheduler::tick).
    pub heartbeat_timeout: Duration,
    /// Launch backup attempts for stragglers (the MapReduce paper's §3.6).
    pub speculation: bool,
    /// An attempt must run at least this long before it gets a backup.
    pub speculation_min_runtime: Duration,
    /// ...and longer than this many times the median duration of the job's completed tasks
    /// of the same kind.
    pub speculation_factor: f64,
    /// Ended jobs kept for the status pages; older ones are forgotten first.
    pub retained_jobs: usize,
    /// An attempt running longer is killed and counted as a failed attempt; `None`: no
    /// limit.
    pub task_timeout: Option<Duration>,
    /// A worker on which attempts of this many distinct jobs failed within
    /// [`exclusion_window`](Self::exclusion_window) gets no new tasks for
    /// [`exclusion_cooldown`](Self::exclusion_cooldown); 0 never excludes. At most half the
    /// live workers (rounded down) are excluded at once.
    pub exclude_after_jobs: usize,
    /// How far back failures count toward excluding a worker.
    pub exclusion_window: Duration,
    /// How long an excluded worker gets no new tasks.
    pub exclusion_cooldown: Duration,
    /// The number of every task's first attempt. A restarted driver starts above every
    /// attempt of its earlier runs, so attempt numbers (and the part file names made from
    /// them) never repeat across restarts.
    pub first_attempt: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_attempts: 4,
            heartbeat_timeout: Duration::from_secs(10),
            speculation: true,
            speculation_min_runtime: Duration::from_secs(5),
            speculation_factor: 2.0,
            retained_jobs: 1000,
            task_timeout: None,
            exclude_after_jobs: 2,
            exclusion_window: Duration::from_secs(300),
            exclusion_cooldown: Duration::from_secs(60),
            first_attempt: 0,
        }
    }
}

impl SchedulerConfig {
    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`heartbeat_timeout`](Self::heartbeat_timeout).
    pub fn with_heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Turns backup attempts on or off.
    pub fn with_speculation(mut self, speculation: bool) -> Self {
        self.speculation = speculation;
        self
    }

    /// Sets [`speculation_min_runtime`](Self::speculation_min_runtime).
    pub fn with_speculation_min_runtime(mut self, min_runtime: Duration) -> Self {
        self.speculation_min_runtime = min_runtime;
        self
    }

    /// Sets [`speculation_factor`](Self::speculation_factor).
    pub fn with_speculation_factor(mut self, factor: f64) -> Self {
        self.speculation_factor = factor;
        self
    }

    /// Sets [`retained_jobs`](Self::retained_jobs).
    pub fn with_retained_jobs(mut self, retained_jobs: usize) -> Self {
        self.retained_jobs = retained_jobs;
        self
    }

    /// Sets [`task_timeout`](Self::task_timeout).
    pub fn with_task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// Sets [`exclude_after_jobs`](Self::exclude_after_jobs) (0 turns exclusion off).
    pub fn with_exclude_after_jobs(mut self, jobs: usize) -> Self {
        self.exclude_after_jobs = jobs;
        self
    }

    /// Sets [`exclusion_window`](Self::exclusion_window) and
    /// [`exclusion_cooldown`](Self::exclusion_cooldown).
    pub fn with_exclusion(mut self, window: Duration, cooldown: Duration) -> Self {
        self.exclusion_window = window;
        self.exclusion_cooldown = cooldown;
        self
    }

    /// Sets [`first_attempt`](Self::first_attempt).
    pub fn with_first_attempt(mut self, first_attempt: u32) -> Self {
        self.first_attempt = first_attempt;
        self
    }

    /// How long a lone attempt must have run before it gets a backup, given the median
    /// duration of completed tasks of its kind (if any).
    pub(crate) fn straggler_threshold(&self, median: Option<Duration>) -> Duration {
        let scaled = median.map_or(Duration::ZERO, |m| {
            let secs = m.as_secs_f64() * self.speculation_factor;
            // Negative or NaN factors scale to zero, huge ones to "never".
            Duration::try_from_secs_f64(secs).unwrap_or(if secs > 0.0 {
                Duration::MAX
            } else {
                Duration::ZERO
            })
        });
        scaled.max(self.speculation_min_runtime)
    }
}
