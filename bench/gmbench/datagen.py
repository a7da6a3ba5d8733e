"""Input data, generated once per size under bench/data/<size>/ (a `_READY` file marks each
finished data set, so reruns reuse it)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import setup

DATA = Path(__file__).resolve().parents[1] / "data"

SIZES = {
    "XS": {"text": "16MiB", "text_files": 4, "docs_text": "4MiB", "tera_records": 200_000,
           "tpch_sf": 0.05, "tpch_parts": 4, "g1_rows": 10**5},  # a smoke test of the harness
    "S": {"text": "256MiB", "text_files": 8, "docs_text": "64MiB", "tera_records": 2_500_000,
          "tpch_sf": 1, "tpch_parts": 4, "g1_rows": 10**6},
    "M": {"text": "4GiB", "text_files": 16, "docs_text": "512MiB", "tera_records": 50_000_000,
          "tpch_sf": 10, "tpch_parts": 16, "g1_rows": 10**7},
}
FILES = 4  # files per generated Parquet data set (several splits for every engine)
LINES_PER_DOC = 16
VOCABULARY = 100_000
G1_ID3_GROUPS, G1_ID6_GROUPS = 10**5, 10**6


def zipf_word(rank: int) -> str:
    """Word `rank` of textgen's vocabulary (jobs/src/sample.rs `word`)."""
    n, letters = rank + 1, []
    while n > 0:
        n -= 1
        letters.append(chr(ord("a") + n % 26))
        n //= 26
    return "".join(letters)


# The rarest word of the vocabulary: 4 letters, and every word is at most 4 letters long,
# so as a substring it only matches itself (about 1 line in 100,000).
RARE_LITERAL = zipf_word(VOCABULARY - 1)


def dataset(size: str, name: str, make) -> Path:
    """bench/data/<size>/<name>, made by `make(dir)` unless already complete."""
    out = DATA / size / name
    if (out / "_READY").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"generating {out}", file=sys.stderr)
    make(out)
    (out / "_READY").touch()
    return out


def textgen(bin_dir: Path, out: Path, size: str, files: int, seed: int) -> None:
    cmd = [str(bin_dir / "textgen"), "--output", str(out), "--size", size, "--files", str(files),
           "--vocabulary", str(VOCABULARY), "--seed", str(seed)]
    subprocess.run(cmd, check=True)


def make_text(bin_dir: Path, size: str) -> Path:
    s = SIZES[size]
    return dataset(size, "text", lambda out: textgen(bin_dir, out, s["text"], s["text_files"], 42))


def make_docs(bin_dir: Path, size: str) -> Path:
    """Documents (doc_id UInt64, text Utf8) of LINES_PER_DOC lines of Zipf text each."""
    def make(out: Path) -> None:
        scratch = out / "_text"
        textgen(bin_dir, scratch, SIZES[size]["docs_text"], FILES, 7)
        next_id = 0
        for i, path in enumerate(sorted(scratch.glob("*.txt"))):
            lines = path.read_text().splitlines()
            texts = [" ".join(lines[k:k + LINES_PER_DOC]) for k in range(0, len(lines), LINES_PER_DOC)]
            ids = pa.array(np.arange(next_id, next_id + len(texts), dtype=np.uint64))
            next_id += len(texts)
            table = pa.table({"doc_id": ids, "text": pa.array(texts, pa.string())})
            pq.write_table(table, out / f"docs-{i:04}.parquet", row_group_size=16_384)
        shutil.rmtree(scratch)
    return dataset(size, "docs", make)


def make_tera(size: str) -> Path:
    """100-byte records with random 10-byte keys, raw (`raw/*.dat`, for Gristmill) and as
    Parquet (`parquet/*.parquet`: key binary(10), value binary(90), for the peers)."""
    def make(out: Path) -> None:
        (out / "raw").mkdir()
        (out / "parquet").mkdir()
        rng = np.random.default_rng(2024)
        per_file = SIZES[size]["tera_records"] // FILES
        for i in range(FILES):
            records = rng.integers(0, 256, size=(per_file, 100), dtype=np.uint8)
            (out / "raw" / f"part-{i:04}.dat").write_bytes(records.tobytes())
            table = pa.table({"key": binary_column(records[:, :10]), "value": binary_column(records[:, 10:])})
            pq.write_table(table, out / "parquet" / f"part-{i:04}.parquet", row_group_size=256_000)
    return dataset(size, "tera", make)


def binary_column(cells: np.ndarray) -> pa.Array:
    """A binary array from the rows of a 2-D uint8 array (all the same width)."""
    n, width = cells.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(cells).tobytes()
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def make_tpch(size: str) -> Path:
    """TPC-H lineitem and orders from tpchgen-cli, several Parquet files each."""
    s = SIZES[size]
    def make(out: Path) -> None:
        cmd = [str(setup.VENV / "bin" / "tpchgen-cli"), "parquet", "--scale-factor", str(s["tpch_sf"]),
               "--tables", "lineitem,orders", "--parts", str(s["tpch_parts"]), "--output-dir", str(out)]
        subprocess.run(cmd, check=True)
    return dataset(size, "tpch", make)


def make_g1(size: str) -> Path:
    """db-benchmark's G1 shape: id1, id2 (100 strings), id3 (1e5 strings), id4, id5 (100
    ints), id6 (1e6 ints), v1 1..5, v2 1..15, v3 a float in 0..100."""
    def make(out: Path) -> None:
        rng = np.random.default_rng(1)
        per_file = SIZES[size]["g1_rows"] // FILES
        for i in range(FILES):
            table = pa.table({
                "id1": id_strings(rng, per_file, 100, 3), "id2": id_strings(rng, per_file, 100, 3),
                "id3": id_strings(rng, per_file, G1_ID3_GROUPS, 10),
                "id4": rng.integers(1, 101, per_file, dtype=np.int32),
                "id5": rng.integers(1, 101, per_file, dtype=np.int32),
                "id6": rng.integers(1, G1_ID6_GROUPS + 1, per_file, dtype=np.int32),
                "v1": rng.integers(1, 6, per_file, dtype=np.int32),
                "v2": rng.integers(1, 16, per_file, dtype=np.int32),
                "v3": np.round(rng.uniform(0, 100, per_file), 6),
            })
            pq.write_table(table, out / f"g1-{i:04}.parquet", row_group_size=256_000)
    return dataset(size, "groupby", make)


def id_strings(rng, n: int, groups: int, digits: int) -> pa.Array:
    ids = rng.integers(1, groups + 1, n)
    return pa.array(np.char.add("id", np.char.zfill(ids.astype(str), digits)), pa.string())


def input_bytes(*paths: Path, pattern: str = "*") -> int:
    """Bytes of the data files under `paths` (not `_READY` and the like)."""
    return sum(f.stat().st_size for p in paths for f in p.rglob(pattern)
               if f.is_file() and not f.name.startswith(("_", ".")))
