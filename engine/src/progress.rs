//! Progress of a running job: counters the runner bumps, and a reporter that shows them
//! (a progress bar on a terminal, plain lines otherwise).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shared progress counters of one job.
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<&'static str>,
    tasks_total: AtomicU64,
    tasks_done: AtomicU64,
    bytes: AtomicU64,
    rows: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// `plan`, `map`, `reduce` or `commit`.
    pub phase: &'static str,
    /// Tasks of the phase.
    pub tasks_total: u64,
    /// Tasks of the phase that finished.
    pub tasks_done: u64,
    /// Input bytes read so far.
    pub bytes: u64,
    /// Input rows read so far.
    pub rows: u64,
}

impl Progress {
    /// Enters a phase with `tasks` tasks.
    pub fn start_phase(&self, phase: &'static str, tasks: usize) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
        self.tasks_done.store(0, Relaxed);
        self.tasks_total.store(tasks as u64, Relaxed);
    }

    /// One task of the phase finished.
    pub fn task_done(&self) {
        self.tasks_done.fetch_add(1, Relaxed);
    }

    /// Input was read.
    pub fn add_input(&self, bytes: u64, rows: u64) {
        self.bytes.fetch_add(bytes, Relaxed);
        self.rows.fetch_add(rows, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            phase: *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            tasks_total: self.tasks_total.load(Relaxed),
            tasks_done: self.tasks_done.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            rows: self.rows.load(Relaxed),
        }
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// A progress bar.
    Bar,
    /// A plain line on each phase change and every few seconds.
    Plain,
    /// Nothing.
    Off,
}

/// Shows a job's [`Progress`] on stderr until dropped.
pub struct ProgressReporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressReporter {
    /// Starts showing `progress` in `mode`.
    pub fn start(progress: Arc<Progress>, mode: ProgressMode) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bar = match mode {
            ProgressMode::Off => None,
            ProgressMode::Bar => Some(true),
            ProgressMode::Plain => Some(false),
            ProgressMode::Auto => Some(std::io::stderr().is_terminal()),
        };
        let thread = bar.map(|bar| {
            let stop = stop.clone();
            std::thread::spawn(
                move || if bar { show_bar(&progress, &stop) } else { show_lines(&progress, &stop) },
            )
        });
        ProgressReporter { stop, thread }
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn describe(s: &ProgressSnapshot) -> String {
    format!("{} read, {} rows", human_bytes(s.bytes), s.rows)
}

fn show_bar(progress: &Progress, stop: &AtomicBool) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>7} [{bar:30}] {pos}/{len} tasks  {msg}  {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    while !stop.load(Relaxed) {
        let s = progress.snapshot();
        bar.set_prefix(s.phase);
        bar.set_length(s.tasks_total);
        bar.set_position(s.tasks_done);
        bar.set_message(describe(&s));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn show_lines(progress: &Progress, stop: &AtomicBool) {
    let mut last_phase = "";
    let mut last_line = Instant::now();
    while !stop.load(Relaxed) {
        let s = progress.snapshot();
        if s.phase != last_phase || last_line.elapsed() >= Duration::from_secs(5) {
            if !s.phase.is_empty() {
                eprintln!("[{}] {}/{} tasks, {}", s.phase, s.tasks_done, s.tasks_total, describe(&s));
            }
            last_phase = s.phase;
            last_line = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn phases_reset_task_counts() {
        let p = Progress::default();
        p.start_phase("map", 4);
        p.task_done();
        p.add_input(10, 2);
        assert_eq!(
            p.snapshot(),
            ProgressSnapshot { phase: "map", tasks_total: 4, tasks_done: 1, bytes: 10, rows: 2 }
        );
        p.start_phase("reduce", 2);
        assert_eq!(p.snapshot().tasks_done, 0);
    }
}
