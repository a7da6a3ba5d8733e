"""The environment: the peers' venv, Gristmill's release binaries, the machine's facts.

Uses only the standard library: it runs before the venv exists."""

import os
import platform
import subprocess
import sys
from pathlib import Path

VENV = Path.home() / ".cache" / "gristmill-bench-venv"
TARGET = Path.home() / ".cache" / "gristmill-target-bench"
REPO = Path(__file__).resolve().parents[2]
PEER_PACKAGES = ["duckdb", "polars", "datafusion", "pyspark", "dask[dataframe]", "pyarrow", "tpchgen-cli", "numpy"]
PEER_MODULES = "duckdb, polars, datafusion, pyspark, dask.dataframe, pyarrow, numpy"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_venv() -> None:
    """Creates the venv and installs the peers, unless they already import (idempotent)."""
    python = venv_python()
    if python.exists() and _imports_ok(python) and (VENV / "bin" / "tpchgen-cli").exists():
        return
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print("installing the peers into the venv (quietly)", file=sys.stderr)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + PEER_PACKAGES, check=True)


def _imports_ok(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", f"import {PEER_MODULES}"], capture_output=True)
    return probe.returncode == 0


def reexec_in_venv(script: str) -> None:
    python = str(venv_python())
    os.execv(python, [python, script] + sys.argv[1:])


def build_gristmill() -> Path:
    """Builds the job binaries in release mode into the bench's own target dir."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
    cmd = ["cargo", "build", "--release", "--locked", "--workspace", "--bins"]
    print(f"building Gristmill: {' '.join(cmd)} (CARGO_TARGET_DIR={TARGET})", file=sys.stderr)
    revision = git_revision()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    (TARGET / "release" / REVISION_STAMP).write_text(revision)
    return TARGET / "release"


# Written next to the binaries by `build_gristmill`: the revision they were built from.
REVISION_STAMP = ".gmbench-revision"


def built_revision() -> str:
    """The revision the binaries in the bench target dir were built from (`--no-build`)."""
    stamp = TARGET / "release" / REVISION_STAMP
    return stamp.read_text().strip() if stamp.exists() else "unknown (binaries not built by bench/run)"


def git_revision() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "jobs"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def machine() -> dict:
    """Cores, memory and CPU model, as the report shows them."""
    model = platform.processor() or "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal"))
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1), "cpu": model,
            "kernel": platform.release()}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()
