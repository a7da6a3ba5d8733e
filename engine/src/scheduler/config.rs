//! Scheduler tuning: a plain struct with defaults and `with_*` builders.

use std::collections::BTreeMap;
use std::time::Duration;

/// One queue's share of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Slots are shared between queues in proportion to their weights (values below 1
    /// count as 1).
    pub weight: u32,
    /// The most slots the queue's attempts may hold at once; `None`: no limit.
    pub max_slots: Option<u32>,
}

impl QueueConfig {
    /// Parses the driver's `--queue NAME:WEIGHT[:MAX_SLOTS]` (e.g. `etl:3`, `adhoc:1:16`).
    pub fn parse_flag(text: &str) -> Result<(String, QueueConfig), String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(format!("`{text}`: the queue needs a name (NAME:WEIGHT[:MAX_SLOTS])"));
        }
        let number = |what: &str, part: Option<&str>| -> Result<Option<u32>, String> {
            part.map(|p| p.trim().parse::<u32>().map_err(|e| format!("`{text}`: bad {what} `{p}`: {e}")))
                .transpose()
        };
        let weight = number("weight", parts.next())?.unwrap_or(1);
        let max_slots = number("max slots", parts.next())?;
        if weight == 0 || parts.next().is_some() {
            return Err(format!("`{text}`: expected NAME:WEIGHT[:MAX_SLOTS] with a weight of at least 1"));
        }
        Ok((name.to_owned(), QueueConfig { weight, max_slots }))
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { weight: 1, max_slots: None }
    }
}

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
    /// Queues by name. A job names its queue at submission; unlisted queues (and
    /// `default`, unless listed) get [`QueueConfig::default`].
    pub queues: BTreeMap<String, QueueConfig>,
    /// A queue below its fair share for this long gets slots back from queues above
    /// theirs (their youngest attempts are preempted); `None`: never preempt.
    pub preemption_timeout: Option<Duration>,
    /// A job gains one point of priority for each `aging` since its submission (among one
    /// user's jobs in one queue), so no job starves; `None` or zero: no aging.
    pub aging: Option<Duration>,
    /// A task that does not fit the memory any worker has free lets tasks of other jobs
    /// behind it run meanwhile, but once it has waited this long, workers that could hold
    /// it take no other job's tasks until it runs (so a large task is never starved).
    pub memory_wait: Duration,
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
            queues: BTreeMap::new(),
            preemption_timeout: Some(Duration::from_secs(15)),
            aging: Some(Duration::from_secs(60)),
            memory_wait: Duration::from_secs(30),
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

    /// Adds (or replaces) a queue.
    pub fn with_queue(mut self, name: impl Into<String>, queue: QueueConfig) -> Self {
        self.queues.insert(name.into(), queue);
        self
    }

    /// Sets [`preemption_timeout`](Self::preemption_timeout).
    pub fn with_preemption_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.preemption_timeout = timeout;
        self
    }

    /// Sets [`memory_wait`](Self::memory_wait).
    pub fn with_memory_wait(mut self, wait: Duration) -> Self {
        self.memory_wait = wait;
        self
    }

    /// Sets [`aging`](Self::aging).
    pub fn with_aging(mut self, aging: Option<Duration>) -> Self {
        self.aging = aging;
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

#[cfg(test)]
mod tests {
    use super::QueueConfig;

    #[test]
    fn queue_flags_name_a_weight_and_maybe_a_slot_limit() {
        let parse = QueueConfig::parse_flag;
        assert_eq!(parse("etl:3"), Ok(("etl".into(), QueueConfig { weight: 3, max_slots: None })));
        assert_eq!(parse("adhoc:1:16"), Ok(("adhoc".into(), QueueConfig { weight: 1, max_slots: Some(16) })));
        assert_eq!(parse("plain"), Ok(("plain".into(), QueueConfig::default())));
        for bad in [":2", "q:0", "q:x", "q:1:2:3", "q:1:-4"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
