//! An attempt's log file written from inside an executor: bounded as the worker bounds a
//! task process's piped stream ([`crate::cluster::task_logs::keep_bounded`]): past half of
//! the limit the file becomes `<name>.1` and a fresh one starts.

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
struct LogFile {
    file: Option<std::fs::File>,
    written: u64,
}

impl AttemptLog {
    /// Creates (truncates) the log at `path`, keeping at most `limit` bytes. A file that
    /// cannot be created is logged once and its lines dropped.
    pub fn create(path: PathBuf, limit: u64) -> Self {
        let file = match std::fs::File::create(&path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("warning: cannot keep an attempt's log {}: {e}", path.display());
                None
            }
        };
        AttemptLog { path, half: (limit / 2).max(1), state: Mutex::new(LogFile { file, written: 0 }) }
    }

    /// Appends `bytes`, rotating first when the file holds half the limit.
    pub fn write(&self, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.written >= self.half && state.file.is_some() {
            let _ = std::fs::rename(&self.path, rotated(&self.path));
            state.file = std::fs::File::create(&self.path).ok();
            state.written = 0;
        }
        if let Some(file) = state.file.as_mut()
            && file.write_all(bytes).is_err()
        {
            state.file = None;
        }
        state.written += bytes.len() as u64;
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
}
