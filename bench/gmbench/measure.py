"""One timed run: wall time, peak RSS of the whole process tree, exit status."""

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    returncode: int
    loadavg: str  # /proc/loadavg just before the run
    log_tail: str = ""


def timed(argv: list[str], env: dict, log: Path, timeout: float) -> Run:
    """Runs `argv` to completion under `/usr/bin/time`. Peak RSS is the larger of the biggest
    single process's maximum RSS (as `time` reports it) and the largest sum of RSS over the
    process tree seen by a sampler every 50 ms (so the JVM behind PySpark and its Python
    driver count together). The harness's own wait4 figure is not used: on Linux it includes
    the RSS of the forked harness before exec."""
    load = Path("/proc/loadavg").read_text().strip()
    rss_file = log.with_suffix(".maxrss")
    argv = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] + argv
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(timeout, kill_group, [proc.pid])
        killer.start()
        _, status, _ = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        kill_group(proc.pid)  # leftovers (a JVM the Python parent did not wait for)
    peak = max(max_rss_kib(rss_file) * 1024, sampler.peak)
    tail = "" if proc.returncode == 0 else log.read_text(errors="replace")[-2000:]
    if seconds >= timeout:
        tail = f"timed out after {timeout:.0f} s\n" + tail
    return Run(seconds, peak, proc.returncode, load, tail)


def max_rss_kib(path: Path) -> int:
    """The `%M` that /usr/bin/time wrote (its last line; 0 if it wrote none)."""
    try:
        last = path.read_text().strip().splitlines()[-1]
        return int(last) if last.isdigit() else 0
    except (OSError, IndexError):
        return 0


def kill_group(pgid: int) -> None:
    """Ends what is left of the run's own process group (it was started in a new session)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.peak, self._done = root, 0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, tree_rss(self.root))

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_rss(root: int) -> int:
    parents, rss = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * PAGE
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(rss.get(pid, 0) for pid in tree)
