"""How each engine runs each workload: one subprocess per run."""

import json
import os
from pathlib import Path

from . import setup
from .workloads import Workload

ENGINES = ["gristmill", "duckdb", "polars", "datafusion", "spark", "dask"]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
THREADS = 2


class NotAvailable(Exception):
    """The engine cannot run this workload (the reason is the message)."""


def command(engine: str, w: Workload, out: Path, bin_dir: Path) -> tuple[list[str], dict]:
    if engine == "gristmill":
        return gristmill_command(w, out, bin_dir), dict(os.environ)
    params = dict(w.params, out=str(out), threads=THREADS)
    argv = [str(setup.venv_python()), str(PEERS_DIR / f"{engine}_peer.py"), w.name, json.dumps(params)]
    return argv, peer_env()


def gristmill_command(w: Workload, out: Path, bin_dir: Path) -> list[str]:
    if w.gristmill_bin is None:
        raise NotAvailable(w.na_reason)
    binary = bin_dir / w.gristmill_bin
    if not binary.exists():
        raise NotAvailable(f"no `{w.gristmill_bin}` binary in this branch")
    common = ["--output", str(out), "--threads", str(THREADS), "--progress", "off", "--overwrite"]
    return [str(binary)] + w.gristmill_args(w.params) + common


def peer_env() -> dict:
    env = dict(os.environ)
    env.update({
        "POLARS_MAX_THREADS": str(THREADS),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": str(setup.venv_python()),
        "PYARROW_IGNORE_TIMEZONE": "1",
    })
    return env
