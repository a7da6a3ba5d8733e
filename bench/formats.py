"""Input formats against DuckDB (run by bench/formats): CSV group-by, TPC-H Q1 on ZSTD
Parquet, and a filtered query whose filter excludes most row groups.

Each engine is one process per run, timed wall to wall (DuckDB through its Python module,
as bench/run does, answers written as Parquet by both). Bytes read are the bytes `read`
and `pread64` returned on the input files, counted with strace in one extra run of each
engine. Answers are checked against each other before any time is quoted.
"""

import decimal
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

BIN, DATA, RUNS, THREADS = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
CSV_ROWS, SF = int(os.environ.get("CSV_ROWS", 10_000_000)), os.environ.get("SF", "1")
OUT = Path("/tmp/gm-formats")

Q1 = """SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
  sum(l_extendedprice) AS sum_base_price, sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge, avg(l_quantity) AS avg_qty,
  avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc, count(*) AS count_order
FROM read_parquet('{input}/*.parquet') WHERE l_shipdate <= date '1998-09-02'
GROUP BY l_returnflag, l_linestatus ORDER BY ALL"""
CSV_QUERY = ("SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM read_csv('{input}/*.csv', header = true) "
             "GROUP BY id3")
FILTER = "l_shipdate >= '1998-10-01'"
FILTERED_QUERY = ("SELECT l_returnflag, count(*), sum(l_linenumber) FROM read_parquet('{input}/*.parquet') "
                  "WHERE l_shipdate >= date '1998-10-01' GROUP BY l_returnflag")


def make_data() -> dict:
    """Generates the data once: G1-like CSV, lineitem as ZSTD Parquet, lineitem sorted by
    ship date in row groups of 100,000 rows (the filtered query's input)."""
    paths = {"csv": DATA / f"g1-csv-{CSV_ROWS}", "zstd": DATA / f"lineitem-zstd-sf{SF}",
             "sorted": DATA / f"lineitem-sorted-sf{SF}"}
    if (DATA / "_READY").exists():
        return paths
    raw = DATA / "tpch"
    subprocess.run([str(Path(sys.executable).parent / "tpchgen-cli"), "parquet", "--scale-factor", SF,
                    "--tables", "lineitem", "--output-dir", str(raw)], check=True)
    con = duckdb.connect()
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    con.execute(f"""COPY (SELECT 'id' || lpad((hash(i) % 100000)::VARCHAR, 10, '0') AS id3,
        (hash(i * 7) % 5 + 1)::INT AS v1, round((hash(i * 13) % 10000) / 100.0, 6) AS v3
        FROM range({CSV_ROWS}) t(i)) TO '{paths['csv']}/g1.csv' (HEADER)""")
    lineitem = f"read_parquet('{raw}/*.parquet')"
    con.execute(f"COPY (SELECT * FROM {lineitem}) TO '{paths['zstd']}/lineitem.parquet' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
    con.execute(f"COPY (SELECT * FROM {lineitem} ORDER BY l_shipdate) TO '{paths['sorted']}/lineitem.parquet' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)")
    (DATA / "_READY").touch()
    return paths


def duckdb_cmd(query: str, out: Path) -> list[str]:
    script = (f"import duckdb; con = duckdb.connect(); con.execute('SET threads = {THREADS}'); "
              f"con.execute(\"\"\"COPY ({query}) TO '{out}/result.parquet' (FORMAT parquet)\"\"\")")
    return [sys.executable, "-c", script]


def timed(cmd: list[str], out: Path) -> float:
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def bytes_read(cmd: list[str], out: Path, input_dir: Path) -> int:
    """Bytes the reads of files under `input_dir` returned, by strace."""
    log = OUT / "strace.log"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,read,pread64,preadv,readv,close",
                    "-o", str(log), *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fds, pending, total = {}, {}, 0
    prefix = str(input_dir.resolve())
    reads = r"(?:read|pread64|preadv|readv)"
    for line in log.read_text().splitlines():
        pid, _, call = line.partition(" ")
        call = call.strip()
        # A call another thread interrupted is split: `read(5, <unfinished ...>`, then
        # `<... read resumed>..., 100) = 100`.
        # (File descriptors are the process's, shared by its threads.)
        if m := re.match(rf"{reads}\((\d+), .*<unfinished", call):
            pending[pid] = m.group(1)
        elif m := re.match(r'openat\([^,]+, "([^"]+)".*<unfinished', call):
            pending[pid] = m.group(1)
        elif m := re.match(rf"<\.\.\. {reads} resumed>.* = (\d+)$", call):
            fd = pending.pop(pid, None)
            total += int(m.group(1)) if fds.get(fd) else 0
        elif m := re.match(r"<\.\.\. openat resumed>.* = (\d+)$", call):
            fds[m.group(1)] = pending.pop(pid, "").startswith(prefix)
        elif m := re.match(r'openat\([^,]+, "([^"]+)".*\) = (\d+)$', call):
            fds[m.group(2)] = m.group(1).startswith(prefix)
        elif m := re.match(rf"{reads}\((\d+),.*\) = (\d+)$", call):
            total += int(m.group(2)) if fds.get(m.group(1)) else 0
    return total


def answer(out: Path) -> list:
    """The rows of an answer, sorted, decimals as floats."""
    con = duckdb.connect()
    rows = con.execute(f"SELECT * FROM read_parquet('{out}/*.parquet')").fetchall()
    return sorted(tuple(float(v) if isinstance(v, decimal.Decimal) else v for v in r) for r in rows)


def same(a: list, b: list) -> bool:
    """Equal answers, floats to 1e-9 relative."""
    close = lambda x, y: abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0) if isinstance(x, float) else x == y
    return len(a) == len(b) and all(len(r) == len(s) and all(map(close, r, s)) for r, s in zip(a, b))


def compare(name: str, gristmill: list[str], query: str, input_dir: Path, strace: bool) -> dict:
    outs = {"gristmill": OUT / f"{name}-gm", "duckdb": OUT / f"{name}-duckdb"}
    cmds = {"gristmill": gristmill + ["--output", str(outs["gristmill"]), "--overwrite"],
            "duckdb": duckdb_cmd(query.format(input=input_dir), outs["duckdb"])}
    times = {engine: [] for engine in cmds}
    for _ in range(RUNS):  # side by side: one run of each per round
        for engine, cmd in cmds.items():
            times[engine].append(timed(cmd, outs[engine]))
    ours, theirs = answer(outs["gristmill"]), answer(outs["duckdb"])
    if not same(ours, theirs):
        sys.exit(f"{name}: answers differ\n gristmill {ours[:3]}\n duckdb {theirs[:3]}")
    result = {"name": name, "rows": len(ours), "loadavg": open("/proc/loadavg").read().split()[:3]}
    for engine, ts in times.items():
        result[engine] = {"median_s": round(statistics.median(ts), 3), "min_s": round(min(ts), 3)}
        if strace:
            result[engine]["bytes_read"] = bytes_read(cmds[engine], outs[engine], input_dir)
    result["ratio_duckdb_over_gristmill"] = round(result["duckdb"]["median_s"] / result["gristmill"]["median_s"], 2)
    return result


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    paths = make_data()
    common = ["--threads", THREADS, "--progress", "off"]
    results = [
        compare("csv-groupby", [str(BIN / "groupby"), "--input", str(paths["csv"]), "--by", "id3", "--sum", "v1",
                                "--mean", "v3", *common], CSV_QUERY, paths["csv"], False),
        compare("q1-zstd", [str(BIN / "tpch-q1"), "--input", str(paths["zstd"]), *common], Q1, paths["zstd"], False),
        compare("filtered", [str(BIN / "groupby"), "--input", str(paths["sorted"]), "--by", "l_returnflag",
                             "--count", "--sum", "l_linenumber", "--where", FILTER, *common],
                FILTERED_QUERY, paths["sorted"], True),
    ]
    total = sum(f.stat().st_size for f in paths["sorted"].glob("*.parquet"))
    for r in results:
        line = f"{r['name']}: gristmill {r['gristmill']['median_s']} s, duckdb {r['duckdb']['median_s']} s " \
               f"(duckdb/gristmill {r['ratio_duckdb_over_gristmill']}), loadavg {' '.join(r['loadavg'])}"
        if "bytes_read" in r["gristmill"]:
            line += (f"; bytes read of {total}: gristmill {r['gristmill']['bytes_read']}, "
                     f"duckdb {r['duckdb']['bytes_read']}")
        print(line)
    print(json.dumps(results))


main()
