//! An attempt's log file written from inside an executor: bounded as the worker bounds a
//! task process's piped stream ([`crate::cluster::task_logs::keep_bounded`]): past half of
//! the limit the file becomes `<name>.1` and a fresh one starts.
//!
//! The file is created with the attempt's first line, not before: most attempts of a job
//! binary (which logs warnings only, by default) write none, and creating a file costs
//! more than a tiny attempt's work on some file systems (ext4 searches its inode table
//! for a free inode that was not just deleted). A log that was never created reads as
//! empty ([`crate::cluster::task_logs`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::cluster::task_logs::rotated;

/// One attempt's log file.
#[derive(Debug)]
pub struct AttemptLog {
    path: PathBuf,
    half: u64,
    state: Mutex<LogFile>,
}

#[derive(Debug)]
enum LogFile {
    /// Nothing written yet: no file.
    Unopened,
    Open {
        file: std::fs::File,
        written: u64,
    },
    /// The file could not be created or written: lines are dropped.
    Failed,
}

impl AttemptLog {
    /// The log at `path`, keeping at most `limit` bytes; the file is created (truncated)
    /// with the first bytes written. A file that cannot be created is reported once on
    /// stderr and its lines dropped.
    pub fn create(path: PathBuf, limit: u64) -> Self {
        AttemptLog { path, half: (limit / 2).max(1), state: Mutex::new(LogFile::Unopened) }
    }

    /// Appends `bytes`, creating the file first, or rotating it when it holds half the limit.
    pub fn write(&self, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let LogFile::Unopened = *state {
            *state = match std::fs::File::create(&self.path) {
                Ok(file) => LogFile::Open { file, written: 0 },
                Err(e) => {
                    eprintln!("warning: cannot keep an attempt's log {}: {e}", self.path.display());
                    LogFile::Failed
                }
            };
        }
        let LogFile::Open { file, written } = &mut *state else { return };
        if *written >= self.half {
            let _ = std::fs::rename(&self.path, rotated(&self.path));
            match std::fs::File::create(&self.path) {
                Ok(fresh) => (*file, *written) = (fresh, 0),
                Err(_) => return *state = LogFile::Failed,
            }
        }
        if file.write_all(bytes).is_err() {
            return *state = LogFile::Failed;
        }
        *written += bytes.len() as u64;
    }
}

/// A `tracing` writer into an attempt's log (see [`crate::logging`]).
pub(crate) struct AttemptLogWriter(pub(crate) std::sync::Arc<AttemptLog>);

impl Write for AttemptLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_the_newest_bytes_within_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m000001-a0.stderr");
        let log = AttemptLog::create(path.clone(), 8);
        for line in [b"aaaa", b"bbbb", b"cccc"] {
            log.write(line);
        }
        let (kept, truncated) = crate::cluster::task_logs::read_log(&path).unwrap();
        assert_eq!((kept.as_slice(), truncated), (&b"bbbbcccc"[..], true));
    }

    #[test]
    fn a_log_without_lines_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m000002-a0.stderr");
        let log = AttemptLog::create(path.clone(), 8);
        assert!(!path.exists(), "no file before the first line");
        log.write(b"one\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
    }
}
