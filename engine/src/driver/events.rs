//! The event log of each job: JSON lines in `<data-dir>/events/<job>.jsonl` (submitted,
//! task launched / finished / failed / killed / preempted, committed / failed / cancelled), the history
//! a driver keeps of what happened, served at `/api/jobs/{id}/events` also after a restart.
//!
//! Events are written by a background thread: the scheduler's lock is never held across
//! disk I/O. Each line carries `ts_ms` (ms since the Unix epoch), `job` and `event`; the end
//! of an attempt carries `duration_ms` since its launch. A job's log is removed with its
//! history entry (see [`HistoryLimits`](super::HistoryLimits)). No secret is written:
//! neither the job's secret nor its storage options.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Serialize;
use serde_json::Value;

use super::journal::now_ms;
use crate::ids::TaskKind;

/// Something that happened to a job.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The driver accepted it.
    Submitted {
        /// The job binary's name.
        name: String,
        /// Who submitted it.
        owner: String,
        /// Its priority.
        priority: i32,
        /// The queue it shares slots in.
        queue: String,
        /// SHA-256 of the job binary.
        binary_digest: String,
        /// The output directory URL.
        output: String,
        /// Map tasks.
        maps: usize,
        /// Reduce tasks.
        reducers: u32,
        /// Input files and bytes.
        input_files: u64,
        /// Input bytes.
        input_bytes: u64,
    },
    /// An attempt was given to a worker.
    TaskLaunched {
        /// The task, e.g. "map 3".
        task: String,
        /// Its attempt number.
        attempt: u32,
        /// The worker.
        worker: String,
        /// The worker's service address (shuffle, task logs).
        address: String,
    },
    /// An attempt succeeded.
    TaskFinished {
        /// The task.
        task: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
        /// Its counters.
        counters: BTreeMap<String, u64>,
    },
    /// An attempt failed.
    TaskFailed {
        /// The task.
        task: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
        /// The error, one line.
        error: String,
        /// Its kind (`corrupt_input`, `panic`, ..., `worker_lost` when its worker was lost
        /// while it ran; empty if untyped).
        kind: String,
    },
    /// An attempt was killed (it lost to another, or its job ended).
    TaskKilled {
        /// The task.
        task: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
    },
    /// An attempt was killed to give its slot to a queue below its fair share; its task
    /// runs again and the attempt does not count as failed.
    TaskPreempted {
        /// The task.
        task: String,
        /// The attempt.
        attempt: u32,
        /// The worker.
        worker: String,
    },
    /// The job's output was committed.
    Committed {
        /// Part files.
        files: u32,
        /// Rows.
        rows: u64,
    },
    /// The job failed.
    Failed {
        /// Why.
        error: String,
    },
    /// A user cancelled the job.
    Cancelled,
}

/// A task's name in events and logs: "map 3", "reduce 0".
pub fn task_name(kind: TaskKind, index: u32) -> String {
    match kind {
        TaskKind::Map => format!("map {index}"),
        TaskKind::Reduce => format!("reduce {index}"),
    }
}

/// Reads a task's name as users write it: "map 3", "m3", "map3", "map-3" (the web UI's
/// links), "reduce 0", "r0".
pub fn parse_task_name(text: &str) -> Option<(TaskKind, u32)> {
    let text = text.trim().to_ascii_lowercase();
    let digits = text.find(|c: char| c.is_ascii_digit())?;
    let (kind, index) = text.split_at(digits);
    let kind = match kind.trim().trim_end_matches(['-', '_']) {
        "m" | "map" => TaskKind::Map,
        "r" | "reduce" => TaskKind::Reduce,
        _ => return None,
    };
    Some((kind, index.parse().ok()?))
}

enum Command {
    Append(String, Event),
    Flush(tokio::sync::oneshot::Sender<()>),
    Remove(String),
}

/// The driver's event logs: appends go to a background thread.
pub struct EventLog {
    dir: PathBuf,
    sender: std::sync::Mutex<mpsc::Sender<Command>>,
}

impl EventLog {
    /// Event logs under `dir` (created); starts the writer thread.
    pub fn open(dir: PathBuf) -> std::io::Result<EventLog> {
        std::fs::create_dir_all(&dir)?;
        let (sender, receiver) = mpsc::channel();
        let writer_dir = dir.clone();
        std::thread::Builder::new()
            .name("gristmill-events".into())
            .spawn(move || write_events(&writer_dir, &receiver))?;
        Ok(EventLog { dir, sender: std::sync::Mutex::new(sender) })
    }

    /// Appends `event` to `job`'s log (in the background).
    pub fn append(&self, job: &str, event: Event) {
        self.send(Command::Append(job.to_owned(), event));
    }

    /// Removes `job`'s log (its history entry is gone).
    pub fn remove(&self, job: &str) {
        self.send(Command::Remove(job.to_owned()));
    }

    fn send(&self, command: Command) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        if sender.send(command).is_err() {
            tracing::warn!("the event log writer stopped; an event is lost");
        }
    }

    /// `job`'s events so far, oldest first (every event appended before the call);
    /// `None` if it has no log.
    pub async fn read(&self, job: &str) -> Option<Vec<Value>> {
        let path = log_file(&self.dir, job)?;
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.send(Command::Flush(done));
        let _ = flushed.await;
        let text = tokio::fs::read_to_string(&path).await.ok()?;
        Some(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
    }

    /// Removes the logs of jobs not in `keep` (at start: jobs beyond the history limits).
    pub fn retain(&self, keep: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(job) = name.strip_suffix(".jsonl")
                && !keep.contains(job)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// `<dir>/<job>.jsonl`, for a job id that cannot name another path.
fn log_file(dir: &Path, job: &str) -> Option<PathBuf> {
    crate::cluster::shuffle_service::is_safe_id(job).then(|| dir.join(format!("{job}.jsonl")))
}

/// The writer thread: appends each batch of events, a line each, until the driver stops.
fn write_events(dir: &Path, commands: &mpsc::Receiver<Command>) {
    let mut launched: HashMap<(String, String, u32), u64> = HashMap::new();
    while let Ok(first) = commands.recv() {
        let mut lines: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut flushed = Vec::new();
        for command in std::iter::once(first).chain(commands.try_iter()) {
            match command {
                Command::Append(job, event) => {
                    let line = event_line(&job, event, &mut launched);
                    lines.entry(job).or_default().extend_from_slice(line.as_bytes());
                }
                Command::Flush(done) => flushed.push(done),
                Command::Remove(job) => {
                    write_lines(dir, std::mem::take(&mut lines));
                    launched.retain(|(j, _, _), _| *j != job);
                    if let Some(path) = log_file(dir, &job) {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        }
        write_lines(dir, lines);
        for done in flushed {
            let _ = done.send(());
        }
    }
}

fn write_lines(dir: &Path, lines: BTreeMap<String, Vec<u8>>) {
    for (job, bytes) in lines {
        let Some(path) = log_file(dir, &job) else { continue };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(&bytes));
        if let Err(e) = written {
            tracing::warn!(log = %path.display(), error = %e, "cannot write the job's event log");
        }
    }
}

/// One JSON line: `ts_ms`, `job`, the event's fields, and `duration_ms` for an attempt's end.
fn event_line(job: &str, event: Event, launched: &mut HashMap<(String, String, u32), u64>) -> String {
    let ts = now_ms();
    let duration = match &event {
        Event::TaskLaunched { task, attempt, .. } => {
            launched.insert((job.to_owned(), task.clone(), *attempt), ts);
            None
        }
        Event::TaskFinished { task, attempt, .. }
        | Event::TaskFailed { task, attempt, .. }
        | Event::TaskKilled { task, attempt, .. }
        | Event::TaskPreempted { task, attempt, .. } => {
            launched.remove(&(job.to_owned(), task.clone(), *attempt)).map(|at| ts.saturating_sub(at))
        }
        Event::Committed { .. } | Event::Failed { .. } | Event::Cancelled => {
            launched.retain(|(j, _, _), _| j != job);
            None
        }
        Event::Submitted { .. } => None,
    };
    let mut object = serde_json::Map::new();
    object.insert("ts_ms".into(), ts.into());
    object.insert("job".into(), job.into());
    if let Ok(Value::Object(fields)) = serde_json::to_value(&event) {
        object.extend(fields);
    }
    if let Some(ms) = duration {
        object.insert("duration_ms".into(), ms.into());
    }
    let mut line = Value::Object(object).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launched(task: &str, attempt: u32) -> Event {
        Event::TaskLaunched { task: task.into(), attempt, worker: "w1".into(), address: "127.0.0.1:1".into() }
    }

    #[tokio::test]
    async fn events_are_lines_in_order_with_durations() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path().join("events")).unwrap();
        log.append("job-1", launched("map 0", 0));
        let failed = Event::TaskFailed {
            task: "map 0".into(),
            attempt: 0,
            worker: "w1".into(),
            error: "boom".into(),
            kind: "panic".into(),
        };
        log.append("job-1", failed);
        log.append("job-1", Event::Cancelled);
        let events = log.read("job-1").await.unwrap();
        let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["task_launched", "task_failed", "cancelled"]);
        assert_eq!(events[1]["error"], "boom");
        assert!(events[1]["duration_ms"].is_u64() && events[0].get("duration_ms").is_none());
        assert!(events.iter().all(|e| e["job"] == "job-1" && e["ts_ms"].is_u64()));

        log.remove("job-1");
        assert!(log.read("job-1").await.is_none(), "removed with its history entry");
        assert!(log.read("../etc/passwd").await.is_none());
    }

    #[test]
    fn task_names_read_as_users_write_them() {
        for (text, want) in [
            ("map 3", (TaskKind::Map, 3)),
            ("m3", (TaskKind::Map, 3)),
            ("map-3", (TaskKind::Map, 3)),
            ("R0", (TaskKind::Reduce, 0)),
        ] {
            assert_eq!(parse_task_name(text), Some(want), "{text}");
        }
        assert_eq!(task_name(TaskKind::Reduce, 7), "reduce 7");
        assert!(parse_task_name("x1").is_none() && parse_task_name("map").is_none());
    }
}
