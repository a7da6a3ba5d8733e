//! Live counters: a running task process writes its counters so far (rows and bytes read,
//! bytes spilled and fetched) every [`LIVE_INTERVAL`] to [`LIVE_COUNTERS_FILE`] in its work
//! directory (written aside and renamed, so a reader never sees half a file); its worker
//! reads the files of its running attempts and sends them with each heartbeat.
//!
//! `GRISTMILL_LIVE_COUNTERS=off` (in the worker's environment, which its task processes
//! inherit) turns them off: no file is written or read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
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

/// What one running attempt's live counters are made of, and where they go.
struct Watched {
    path: PathBuf,
    progress: Arc<Progress>,
    store: Arc<RunStore>,
    extra: Arc<LiveSources>,
}

/// The attempts of this process whose live counters one thread writes (an executor runs
/// many: one thread for them all, not one each).
#[derive(Default)]
struct Ticker {
    watched: Mutex<HashMap<u64, Watched>>,
    next: AtomicU64,
}

impl Ticker {
    /// The process's ticker, its thread started on first use.
    fn get() -> &'static Ticker {
        static TICKER: OnceLock<Ticker> = OnceLock::new();
        TICKER.get_or_init(|| {
            let started = std::thread::Builder::new().name("gristmill-live".into()).spawn(|| {
                loop {
                    std::thread::sleep(LIVE_INTERVAL);
                    Ticker::get().write_all();
                }
            });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the live counters' thread");
            }
            Ticker::default()
        })
    }

    /// Writes every watched attempt's counters; under the lock, so none is written once
    /// its attempt stopped being watched (its work directory may be going).
    fn write_all(&self) {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for w in watched.values() {
            if let Err(e) = write(&w.path, &snapshot(&w.progress, &w.store, &w.extra)) {
                tracing::debug!(error = %e, "cannot write the live counters");
            }
        }
    }
}

/// Stops watching an attempt when dropped (also when the attempt panics).
struct Unwatch(u64);

impl Drop for Unwatch {
    fn drop(&mut self) {
        Ticker::get().watched.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

/// Runs `attempt` while the live counters are written into `work_dir` every
/// [`LIVE_INTERVAL`] (unless [`enabled`] says not to), by a thread of the process's that
/// writes those of all its running attempts.
pub fn with_live_counters<T>(
    work_dir: &Path,
    progress: &Arc<Progress>,
    store: &Arc<RunStore>,
    extra: &Arc<LiveSources>,
    attempt: impl FnOnce() -> T,
) -> T {
    if !enabled() {
        return attempt();
    }
    let ticker = Ticker::get();
    let id = ticker.next.fetch_add(1, Relaxed);
    let watched = Watched {
        path: work_dir.join(LIVE_COUNTERS_FILE),
        progress: progress.clone(),
        store: store.clone(),
        extra: extra.clone(),
    };
    ticker.watched.lock().unwrap_or_else(|e| e.into_inner()).insert(id, watched);
    let _unwatch = Unwatch(id);
    attempt()
}

fn write(path: &Path, counters: &BTreeMap<&'static str, u64>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec(counters).map_err(std::io::Error::other)?;
    match std::fs::write(&tmp, &json) {
        // An executor's map attempt has no work directory until it needs one (see
        // `cluster::task`); its worker removes it after the attempt, which is no longer
        // watched by then.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            std::fs::write(&tmp, &json)?;
        }
        written => written?,
    }
    std::fs::rename(tmp, path)
}

/// The live counters a task process last wrote into `work_dir`, if any.
pub fn read_live_counters(work_dir: &Path) -> Option<BTreeMap<String, u64>> {
    let bytes = std::fs::read(work_dir.join(LIVE_COUNTERS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::shuffle::{RunBudget, SpillDir};

    #[test]
    fn a_running_attempt_s_counters_appear_in_its_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(SpillDir::create(dir.path(), &JobId::from_string("j".into())).unwrap());
        let store = Arc::new(RunStore::new(spill, RunBudget::uniform(1 << 20)));
        let (progress, extra) = (Arc::new(Progress::default()), Arc::new(LiveSources::default()));
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
