//! Live counters: a running task process writes its counters so far (rows and bytes read,
//! bytes spilled and fetched) every [`LIVE_INTERVAL`] to [`LIVE_COUNTERS_FILE`] in its work
//! directory (written aside and renamed, so a reader never sees half a file); its worker
//! reads the files of its running attempts and sends them with each heartbeat.
//!
//! `GRISTMILL_LIVE_COUNTERS=off` (in the worker's environment, which its task processes
//! inherit) turns them off: no file is written or read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::Duration;

use crate::exec::{MAP_INPUT_BYTES, MAP_INPUT_RECORDS, SHUFFLE_FETCHED_BYTES, SPILLED_BYTES};
use crate::progress::Progress;
use crate::shuffle::RunStore;

/// The file in an attempt's work directory holding its live counters (a JSON object).
pub const LIVE_COUNTERS_FILE: &str = "live-counters.json";

/// The environment variable that turns live counters off (`off`, `false` or `0`).
pub const LIVE_COUNTERS_ENV: &str = "GRISTMILL_LIVE_COUNTERS";

/// How often a task process writes its live counters.
pub const LIVE_INTERVAL: Duration = Duration::from_millis(500);

/// False when [`LIVE_COUNTERS_ENV`] turns live counters off.
pub fn enabled() -> bool {
    !matches!(std::env::var(LIVE_COUNTERS_ENV).as_deref(), Ok("off" | "false" | "0"))
}

/// What a task process reports as it runs, besides its [`Progress`].
#[derive(Debug, Default)]
pub struct LiveSources {
    /// Map output bytes fetched from other workers so far (reduce attempts).
    pub shuffle_fetched_bytes: AtomicU64,
}

/// The counters so far.
fn snapshot(progress: &Progress, store: &RunStore, extra: &LiveSources) -> BTreeMap<&'static str, u64> {
    let now = progress.snapshot();
    let mut counters = BTreeMap::new();
    let mut put = |name, value| {
        if value > 0 {
            counters.insert(name, value);
        }
    };
    put(MAP_INPUT_RECORDS, now.rows);
    put(MAP_INPUT_BYTES, now.bytes);
    put(SPILLED_BYTES, store.spilled_bytes());
    put(SHUFFLE_FETCHED_BYTES, extra.shuffle_fetched_bytes.load(Relaxed));
    counters
}

/// Runs `attempt` while a thread writes the live counters into `work_dir` every
/// [`LIVE_INTERVAL`] (unless [`enabled`] says not to).
pub fn with_live_counters<T>(
    work_dir: &Path,
    progress: &Progress,
    store: &RunStore,
    extra: &LiveSources,
    attempt: impl FnOnce() -> T,
) -> T {
    if !enabled() {
        return attempt();
    }
    let path = work_dir.join(LIVE_COUNTERS_FILE);
    std::thread::scope(|scope| {
        let (stop, stopped) = mpsc::channel::<()>();
        scope.spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LIVE_INTERVAL) {
                if let Err(e) = write(&path, &snapshot(progress, store, extra)) {
                    tracing::debug!(error = %e, "cannot write the live counters");
                }
            }
        });
        let result = attempt();
        drop(stop);
        result
    })
}

fn write(path: &Path, counters: &BTreeMap<&'static str, u64>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(counters).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, path)
}

/// The live counters a task process last wrote into `work_dir`, if any.
pub fn read_live_counters(work_dir: &Path) -> Option<BTreeMap<String, u64>> {
    let bytes = std::fs::read(work_dir.join(LIVE_COUNTERS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ids::JobId;
    use crate::shuffle::{RunBudget, SpillDir};

    #[test]
    fn a_running_attempt_s_counters_appear_in_its_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillDir::create(dir.path(), &JobId::from_string("j".into())).unwrap());
        let store = RunStore::new(spill, RunBudget::uniform(1 << 20));
        let (progress, extra) = (Progress::default(), LiveSources::default());
        extra.shuffle_fetched_bytes.store(7, Relaxed);
        let seen = with_live_counters(dir.path(), &progress, &store, &extra, || {
            progress.add_input(100, 3);
            let mut seen = None;
            for _ in 0..40 {
                std::thread::sleep(Duration::from_millis(50));
                seen = read_live_counters(dir.path()).filter(|c| c.contains_key(MAP_INPUT_RECORDS));
                if seen.is_some() {
                    break;
                }
            }
            seen
        });
        let seen = seen.expect("written within 2 s");
        assert_eq!(seen[MAP_INPUT_RECORDS], 3);
        assert_eq!(seen[MAP_INPUT_BYTES], 100);
        assert_eq!(seen[SHUFFLE_FETCHED_BYTES], 7);
    }
}
