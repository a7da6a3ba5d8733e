#!/usr/bin/env python3
"""Peak anonymous memory (RssAnon, sampled every 5 ms from /proc/PID/status) of TeraSort,
join and group-by in local mode under several --memory-limit values (issue #23).

    python3 bench/memory_peak.py --bin-dir "$CARGO_TARGET_DIR/release" --work /tmp/mem-bench

Writes a Markdown table on stdout. Needs pyarrow (for the join and group-by inputs). The
join is the repartition join (shuffled, the path the limit governs): a broadcast join's
build side is held whole, outside the shuffle's budget.
RssAnon leaves out the mapped input and spill files in the page cache: it is the
process's own memory, what a container's limit charges first and cannot reclaim.
"""
import argparse
import random
import subprocess
import time
from pathlib import Path

LIMITS = ["16MiB", "64MiB", "256MiB", "1GiB"]


def rss_anon(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak(cmd: list[str]) -> tuple[int, float]:
    """Runs cmd; returns (peak RssAnon in bytes, seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={"GRISTMILL_PROGRESS": "off", "PATH": "/usr/bin:/bin"})
    top = 0
    while proc.poll() is None:
        top = max(top, rss_anon(proc.pid))
        time.sleep(0.005)
    err = proc.stderr.read().decode()
    if proc.returncode:
        raise SystemExit(f"{cmd} failed: {err[-2000:]}")
    return top, time.monotonic() - start


def make_inputs(bin_dir: Path, work: Path, records: int) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    tera = work / "tera"
    if not (tera / "_SUCCESS").exists():
        subprocess.run([str(bin_dir / "teragen"), "--records", str(records), "--parts", "4",
                        "--output", str(tera), "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    rng = random.Random(1)
    g1 = work / "g1"
    if not g1.exists():
        g1.mkdir()
        for part in range(4):
            n = 1_000_000
            pq.write_table(pa.table({
                "id3": [f"id{rng.randrange(100_000):010}" for _ in range(n)],
                "v1": [rng.randrange(1, 6) for _ in range(n)],
                "v3": [rng.random() * 100 for _ in range(n)],
            }), g1 / f"g1-{part}.parquet", row_group_size=256_000)
    left, right = work / "orders", work / "lineitem"
    if not left.exists():
        left.mkdir()
        right.mkdir()
        orders = 1_000_000
        pq.write_table(pa.table({
            "o_orderkey": list(range(orders)),
            "o_comment": [f"order comment {rng.random():.12f}" for _ in range(orders)],
        }), left / "orders.parquet", row_group_size=256_000)
        items = 3_000_000
        pq.write_table(pa.table({
            "l_orderkey": [rng.randrange(orders) for _ in range(items)],
            "l_quantity": [rng.randrange(1, 50) for _ in range(items)],
            "l_comment": [f"item {rng.random():.10f}" for _ in range(items)],
        }), right / "lineitem.parquet", row_group_size=256_000)
    return {"tera": tera, "g1": g1, "orders": left, "lineitem": right}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--records", type=int, default=2_000_000, help="TeraSort records (100 bytes)")
    parser.add_argument("--limits", default=",".join(LIMITS))
    parser.add_argument("--jobs", default="terasort,join,groupby")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = make_inputs(args.bin_dir, args.work, args.records)
    jobs = {
        "terasort": ["terasort", "--input", str(data["tera"])],
        "join": ["join", "--left", str(data["orders"]), "--left-key", "o_orderkey",
                 "--right", str(data["lineitem"]), "--right-key", "l_orderkey", "--strategy", "repartition"],
        "groupby": ["groupby", "--input", str(data["g1"]), "--by", "id3", "--sum", "v1", "--mean", "v3"],
    }
    print("| job | --memory-limit | bound (1.5 x limit + 100 MiB) | peak RssAnon | seconds |")
    print("|---|---|---|---|---|")
    for name in args.jobs.split(","):
        binary, *rest = jobs[name]
        for limit in args.limits.split(","):
            out = args.work / f"out-{name}"
            cmd = [str(args.bin_dir / binary), *rest, "--output", str(out), "--overwrite"]
            if limit != "default":
                cmd += ["--memory-limit", limit]
            top, secs = peak(cmd)
            bound = "-" if limit == "default" else f"{parse(limit) * 1.5 / 2**20 + 100:.0f} MiB"
            print(f"| {name} | {limit} | {bound} | {top / 2**20:.0f} MiB | {secs:.1f} |", flush=True)


def parse(limit: str) -> int:
    units = {"KiB": 10, "MiB": 20, "GiB": 30}
    for unit, shift in units.items():
        if limit.endswith(unit):
            return int(limit[: -len(unit)]) << shift
    return int(limit)


if __name__ == "__main__":
    main()
