"""`bench/run`: arguments, then for each workload: data, runs, checks; then the report."""

import argparse
import datetime
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from . import checks, datagen, engines, measure, report, setup, workloads
from .cluster import Cluster

RESULTS = Path(__file__).resolve().parents[1] / "results"
RUN_TIMEOUT = 1800.0


def parse(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    ap.add_argument("--size", choices=sorted(datagen.SIZES), default="S")
    ap.add_argument("--only", help="comma-separated workloads (default: all): "
                    + ",".join(w.name for w in workloads.WORKLOADS))
    ap.add_argument("--engines", help="comma-separated engines (default: all): " + ",".join(engines.ENGINES))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=RUN_TIMEOUT,
                    help="seconds a run may take; an engine whose run times out is not run again on that "
                         "workload (default %(default)s)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the Markdown report of a results .json")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the workloads an interrupted invocation of the same size and engines finished")
    args = ap.parse_args(argv)
    args.workloads = workloads.by_name(split(args.only) or [w.name for w in workloads.WORKLOADS])
    args.engines = split(args.engines) or engines.ENGINES
    unknown = set(args.engines) - set(engines.ENGINES)
    if unknown:
        ap.error(f"unknown engine(s) {', '.join(sorted(unknown))}")
    return args


def split(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def main(argv) -> int:
    args = parse(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        for res in saved["results"]:
            rows = {row["engine"]: summarize(row) for row in res["engines"]}
            if res["workload"] != "terasort":  # checks answers not checked yet (a timed-out engine's)
                cross_check(SimpleNamespace(name=res["workload"]), rows)
            res["engines"] = list(rows.values())
        Path(args.render).with_suffix(".md").write_text(report.markdown(saved["meta"], saved["results"]))
        return 0
    started = time.time()
    bin_dir = setup.TARGET / "release" if args.no_build else setup.build_gristmill()
    args.revision = setup.built_revision()  # what the binaries were built from
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "size": args.size, "runs": args.runs,
            "threads": engines.THREADS, "machine": setup.machine(), "revision": args.revision,
            "versions": peer_versions(), "loadavg_start": setup.loadavg()}
    partial = Path(datagen.DATA / args.size / "partial.json")
    done = load_partial(partial, args) if args.resume else {}
    results = []
    cluster = start_cluster(bin_dir) if "gristmill-cluster" in args.engines else None
    args.driver_url = cluster.url if cluster else None
    try:
        for w in args.workloads:
            results.append(done.get(w.name) or bench_workload(w, args, bin_dir))
            save_partial(partial, meta, results, started)
    finally:
        if cluster:
            cluster.close()
    meta["elapsed_s"] = round(time.time() - started) + sum(r.get("elapsed_s", 0) for r in done.values())
    meta["resumed"] = sorted(done)
    meta["loadavg_end"] = setup.loadavg()
    return write_report(meta, results)


def start_cluster(bin_dir: Path) -> Cluster:
    """The cluster every `gristmill-cluster` run submits to (its first run of each binary
    includes uploading it to the driver and the workers fetching it)."""
    workdir = datagen.DATA / "cluster"
    shutil.rmtree(workdir, ignore_errors=True)
    cluster = Cluster(bin_dir, workdir, workers=engines.CLUSTER_WORKERS, slots=1)
    print(f"cluster: driver {cluster.url}, {engines.CLUSTER_WORKERS} workers x 1 slot, status {cluster.http}",
          file=sys.stderr)
    return cluster


def load_partial(path: Path, args) -> dict:
    """Finished workloads of an interrupted invocation with the same size and engines."""
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if saved["meta"]["size"] != args.size or saved["engines"] != args.engines:
        return {}
    print(f"resuming: {', '.join(r['workload'] for r in saved['results'])} from {path}", file=sys.stderr)
    return {r["workload"]: r for r in saved["results"]}


def save_partial(path: Path, meta, results, started) -> None:
    engines_run = [r["engine"] for r in results[0]["engines"]] if results else []
    path.write_text(json.dumps({"meta": meta, "engines": engines_run, "results": results}, default=str))


def bench_workload(w, args, bin_dir) -> dict:
    started = time.time()
    workloads.prepare(w, args.size, bin_dir)
    out_root = datagen.DATA / args.size / "out" / w.name
    checkpoint = datagen.DATA / args.size / "rounds.json"
    rows, first_round, earlier_s = resume_rounds(checkpoint, w, args)
    for run in range(first_round, args.runs):  # engines interleaved, so load drift spreads over all
        for engine in args.engines:
            one_run(w, engine, rows[engine], out_root / engine, bin_dir, run, args)
        save_rounds(checkpoint, w, args, rows, run + 1, earlier_s + time.time() - started)
    cross_check(w, rows)
    shutil.rmtree(out_root, ignore_errors=True)
    checkpoint.unlink(missing_ok=True)
    return {"workload": w.name, "about": w.about, "input_bytes": w.input_bytes, "params": w.params,
            "runs": args.runs, "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "revision": args.revision, "elapsed_s": round(earlier_s + time.time() - started),
            "engines": [summarize(rows[e]) for e in args.engines]}


def resume_rounds(path: Path, w, args):
    """(rows, next round, seconds spent) of workload `w`: fresh, or with `--resume` the rounds an
    interrupted invocation finished (same workload, engines, runs and binaries). A round of the
    join at size M takes about 13 minutes, so a workload is not all or nothing."""
    fresh = ({e: {"engine": e, "runs": [], "status": "ok"} for e in args.engines}, 0, 0.0)
    if not (args.resume and path.exists()):
        return fresh
    saved = json.loads(path.read_text())
    if [saved.get(k) for k in ("workload", "engines", "runs", "revision")] != [
            w.name, args.engines, args.runs, args.revision]:
        return fresh
    print(f"resuming {w.name} after round {saved['rounds_done']} from {path}", file=sys.stderr)
    return saved["rows"], saved["rounds_done"], saved["elapsed_s"]


def save_rounds(path: Path, w, args, rows, rounds_done: int, elapsed_s: float) -> None:
    path.write_text(json.dumps({"workload": w.name, "engines": args.engines, "runs": args.runs,
                                "revision": args.revision, "rounds_done": rounds_done,
                                "elapsed_s": elapsed_s, "rows": rows}, default=str))


def one_run(w, engine, row, out, bin_dir, run, args):
    if row["status"] != "ok" or "timed_out" in row:
        return
    try:
        argv, env = engines.command(engine, w, out, bin_dir, args.driver_url)
    except engines.NotAvailable as why:
        row.update(status="n/a", reason=str(why))
        return
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Before every run, not once per workload: the kernel reclaims page cache during a long
    # run (Dask's 250 s Q1 at size M), and the next engine would read from disk.
    warm_page_cache(workloads.input_paths(w))
    logs = datagen.DATA / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # A private temp dir per run, removed after it: a run killed at the timeout leaves its
    # scratch behind (Spark's blockmgr dirs, Dask's partd files: 30 GB after the join at M).
    scratch = out.parent / f".tmp-{engine}"
    scratch.mkdir(parents=True, exist_ok=True)
    env = dict(env, TMPDIR=str(scratch), SPARK_LOCAL_DIRS=str(scratch))
    try:
        log = logs / f"{w.name}-{engine}.log"
        record_run(w, engine, row, out, run, args, measure.timed(argv, env, log, args.timeout))
    finally:  # answers are digested right after their run: at size M, 7 sorted copies would fill the disk
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def record_run(w, engine, row, out, run, args, result):
    if result.seconds >= args.timeout:  # not run again: the table says so
        row["timed_out"] = f"a run took over {args.timeout:.0f} s (killed; not repeated)"
        return
    row["runs"].append(asdict(result))
    print(f"{w.name:15} {engine:11} run {run + 1}: {result.seconds:8.2f} s  "
          f"{result.peak_rss / 2**20:7.0f} MiB  rc={result.returncode}  load {result.loadavg.split()[0]}",
          file=sys.stderr, flush=True)
    if result.returncode != 0:  # recorded; the remaining runs still go ahead
        row.setdefault("failures", []).append(result.log_tail.strip().splitlines()[-1:] or ["?"])
        print(f"  FAILED:\n{result.log_tail}", file=sys.stderr)
    elif "digest" not in row:  # the first good answer is the one cross-checked
        try:
            row["digest"] = checks.digest(w.name, out)
        except Exception as e:  # a missing or unreadable answer is a check failure
            row["digest"], row["check"] = None, f"MISMATCH: unreadable answer ({e})"


def cross_check(w, rows):
    """Compares each engine's digest with the reference engine's (Gristmill where it ran,
    else the first engine that did)."""
    done = [r for r in rows.values() if r["status"] == "ok" and "digest" in r]
    if w.name == "terasort":
        check_terasort(w, done)
    valid = [r for r in done if r.get("digest")]
    if not valid:
        return
    ref = valid[0]
    for r in valid:
        diffs = checks.compare(ref["digest"], r["digest"])
        if "check" not in r:
            r["check"] = "ok" if not diffs else f"MISMATCH vs {ref['engine']}: " + "; ".join(diffs[:4])
        if r is not ref and r["check"] == "ok":
            r["check"] = f"= {ref['engine']}"
    for r in done:
        if r.get("check", "ok").startswith("MISMATCH"):
            print(f"\n!!! {w.name}: {r['engine']} {r['check']}\n", file=sys.stderr)


def check_terasort(w, done):
    """Every sort must hold exactly the input's records, in key order."""
    expected = checks.input_tera_digest(Path(w.params["raw"]))
    for r in done:
        d = r.get("digest")
        if d and (not d["sorted"] or d["records"] != expected["records"] or d["checksum"] != expected["checksum"]):
            r["check"] = f"MISMATCH vs input: {d} (input {expected})"


def summarize(row) -> dict:
    if row["status"] == "timeout":  # results of an older harness: a run timed out
        row.update(status="ok", timed_out=row.pop("reason"))
    times = [r["seconds"] for r in row["runs"] if r["returncode"] == 0]
    if row["status"] == "ok" and not times and row.get("timed_out"):
        row.update(status="timeout", reason=row["timed_out"])
    if row["status"] == "ok" and not times:
        row.update(status="failed", reason=row["failures"][-1])
    if row["status"] == "ok" and times:
        row.update(median_s=statistics.median(times), min_s=min(times),
                   peak_rss=max(r["peak_rss"] for r in row["runs"] if r["returncode"] == 0))
    return row


def peer_versions() -> dict:
    from importlib.metadata import version
    return {p: version(p) for p in ("duckdb", "polars", "datafusion", "pyspark", "dask", "pyarrow", "pandas")}


def warm_page_cache(paths):
    for path in paths:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                with open(f, "rb") as fh:
                    while fh.read(1 << 24):
                        pass


def write_report(meta, results) -> int:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{meta['date'][:10]}-{meta['size']}"
    ran = [res["workload"] for res in results]
    if len(ran) < len(workloads.WORKLOADS):
        # A partial run (--only) gets its own file: it must not replace the day's full table.
        stem = stem.with_name(stem.name + "-" + "-".join(ran))
    text = report.markdown(meta, results)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print(text)
    print(f"written to {stem}.md and .json", file=sys.stderr)
    bad = [r for res in results for r in res["engines"] if str(r.get("check", "")).startswith("MISMATCH")]
    return 1 if bad else 0
