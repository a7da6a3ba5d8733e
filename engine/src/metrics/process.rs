//! What the kernel says about a process (`/proc/<pid>/stat`, `/proc/<pid>/status`) and a
//! file system (`statvfs`).

use std::path::Path;

/// CPU time and resident memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU seconds it used.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

impl std::ops::Add for ProcessStats {
    type Output = ProcessStats;
    fn add(self, other: ProcessStats) -> ProcessStats {
        ProcessStats {
            cpu_seconds: self.cpu_seconds + other.cpu_seconds,
            rss_bytes: self.rss_bytes + other.rss_bytes,
        }
    }
}

/// The stats of process `pid`; `None` when it is gone (or on a system without `/proc`).
pub fn process_stats(pid: u32) -> Option<ProcessStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcessStats { cpu_seconds: cpu_seconds_of(&stat)?, rss_bytes: rss_bytes_of(&status)? })
}

/// This process's stats.
pub fn own_stats() -> ProcessStats {
    process_stats(std::process::id()).unwrap_or_default()
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) is
/// in parentheses and may hold spaces: fields are counted after its closing one.
fn cpu_seconds_of(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// `VmRSS` of a `/proc/<pid>/status`, in bytes (0 for a zombie, which has none).
fn rss_bytes_of(status: &str) -> Option<u64> {
    let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) else { return Some(0) };
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Bytes available to an unprivileged user on the file system holding `path`.
pub fn disk_free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    statvfs_available(&path)
}

/// Walks at most this many entries, so a directory of millions of files costs a heartbeat
/// a bounded time (what is past the bound is not counted).
const MAX_WALKED_ENTRIES: usize = 100_000;

/// Bytes of the regular files under `dir` (symbolic links not followed); 0 if unreadable.
pub fn dir_bytes(dir: &Path) -> u64 {
    let (mut total, mut walked) = (0u64, 0usize);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            walked += 1;
            if walked > MAX_WALKED_ENTRIES {
                return total;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[allow(unsafe_code)]
fn statvfs_available(path: &std::ffi::CStr) -> Option<u64> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` is a
    // plain C struct the call fills in (all zeroes is a valid value of it).
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (done == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[allow(unsafe_code)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_whose_command_holds_spaces_and_parentheses() {
        let stat = "4242 (gristmill (task) x) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0";
        let seconds = cpu_seconds_of(stat).unwrap();
        assert!((seconds - 400.0 / clock_ticks_per_second()).abs() < 1e-9, "{seconds}");
        assert_eq!(rss_bytes_of("Name:\tx\nVmRSS:\t    2048 kB\nThreads: 1\n"), Some(2 << 20));
        assert_eq!(rss_bytes_of("Name:\tzombie\n"), Some(0));
    }

    #[test]
    fn reads_this_process_and_this_disk() {
        let own = own_stats();
        assert!(own.rss_bytes > 0 && own.cpu_seconds >= 0.0, "{own:?}");
        assert!(disk_free_bytes(&std::env::temp_dir()).is_some());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 32]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 42);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
        assert_eq!(process_stats(u32::MAX), None);
    }
}
