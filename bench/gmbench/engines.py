"""How each engine runs each workload: one subprocess per run."""

import json
import os
import shlex
from pathlib import Path

from . import setup
from .workloads import Workload

ENGINES = ["gristmill", "gristmill-cluster", "duckdb", "polars", "datafusion", "spark", "dask"]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
THREADS = 2
# Cluster mode on this machine: a driver and THREADS workers of one slot each, so the
# cluster uses as many cores as every other engine.
CLUSTER_WORKERS = THREADS


class NotAvailable(Exception):
    """The engine cannot run this workload (the reason is the message)."""


def command(engine: str, w: Workload, out: Path, bin_dir: Path, driver_url: str | None = None
            ) -> tuple[list[str], dict]:
    if engine == "gristmill":
        return gristmill_command(w, out, bin_dir, ["--threads", str(THREADS)]), dict(os.environ)
    if engine == "gristmill-cluster":
        # --reducers as local mode's --threads sets them; each task process runs on one slot.
        return gristmill_command(w, out, bin_dir, ["--reducers", str(THREADS), "--driver", driver_url]), \
            dict(os.environ)
    params = dict(w.params, out=str(out), threads=THREADS)
    argv = [str(setup.venv_python()), str(PEERS_DIR / f"{engine}_peer.py"), w.name, json.dumps(params)]
    return argv, peer_env()


def gristmill_command(w: Workload, out: Path, bin_dir: Path, mode: list[str]) -> list[str]:
    """The job binary's command line; a workload of several queries (a dict of output
    subdirectory -> flags) runs them one after the other in one timed shell."""
    if w.gristmill_bin is None:
        raise NotAvailable(w.na_reason)
    binary = bin_dir / w.gristmill_bin
    if not binary.exists():
        raise NotAvailable(f"no `{w.gristmill_bin}` binary in this branch")
    common = ["--progress", "off", "--overwrite"] + mode
    args = w.gristmill_args(w.params)
    if not isinstance(args, dict):
        return [str(binary)] + args + ["--output", str(out)] + common
    queries = [[str(binary)] + flags + ["--output", str(out / name)] + common for name, flags in args.items()]
    return ["sh", "-c", " && ".join(shlex.join(q) for q in queries)]


def peer_env() -> dict:
    env = dict(os.environ)
    env.update({
        "POLARS_MAX_THREADS": str(THREADS),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": str(setup.venv_python()),
        "PYARROW_IGNORE_TIMEZONE": "1",
    })
    return env
