"""Answer digests (computed after the timed runs, untimed) and their cross-check.

A digest is a flat dict. Keys starting with `~` are floating-point values compared with a
relative tolerance of 1e-9 (engines add floats and decimals in different orders and types),
averages (`.avg_`) also within 1e-6 absolute (DataFusion returns decimal averages rounded to
6 places); every other value (row counts, integer sums, MD5 hashes of the sorted rows) must
be equal."""

import math
import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REL_TOL = 1e-9
AVG_ABS_TOL = 1e-6


def digest(workload: str, out: Path) -> dict:
    if workload == "terasort":
        return tera_digest(out)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    return DIGESTS[workload](con, out)


def parquet(out: Path, first: str = "") -> str:
    """The Parquet files of an answer (those under `out` whose first path part starts with
    `first`), as a DuckDB table function."""
    files = sorted(str(f) for f in out.rglob("*.parquet") if f.relative_to(out).parts[0].startswith(first))
    if not files:
        raise ValueError(f"no Parquet files under {out}")
    return f"read_parquet({files!r}, union_by_name = true)"


def one_row(con, query: str) -> dict:
    cur = con.execute(query)
    names = [d[0] for d in cur.description]
    return {n: normalize(v) for n, v in zip(names, cur.fetchone())}


def normalize(value):
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    return float(value)  # Decimal, float


def grep_digest(con, out: Path):
    src = parquet(out)
    return one_row(con, f"SELECT count(*) AS rows, md5(coalesce(string_agg(line, chr(10) ORDER BY line), '')) "
                        f"AS md5_sorted_lines FROM {src}")


def wordcount_digest(con, out: Path):
    src = parquet(out)
    return one_row(con, f"SELECT count(*) AS words, sum(count)::HUGEINT AS total, "
                        f"md5(string_agg(word || ' ' || count, chr(10) ORDER BY word)) AS md5_sorted_pairs FROM {src}")


def q1_digest(con, out: Path):
    src = parquet(out)
    cur = con.execute(f"SELECT * FROM {src} ORDER BY l_returnflag, l_linestatus")
    names, rows = [d[0] for d in cur.description], cur.fetchall()
    result = {"groups": len(rows)}
    for row in rows:
        values = dict(zip(names, row))
        group = f"{values.pop('l_returnflag')}{values.pop('l_linestatus')}"
        for name, value in values.items():
            key = f"{group}.{name}" if name == "count_order" else f"~{group}.{name}"
            result[key] = normalize(value)
    return result


def groupby_digest(con, out: Path):
    """Per query (id3, id6): groups, the exact integer sums (total and hash of key:sum), and
    the sum of the means within the tolerance."""
    result = {}
    for key, v_sum in (("id3", "v1"), ("id6", "v2")):
        d = one_row(con, f"SELECT count(*) AS groups, sum({v_sum})::HUGEINT AS sum_{v_sum}, "
                         f"md5(string_agg({key} || ':' || {v_sum}::HUGEINT, chr(10) ORDER BY {key})) AS md5_sums, "
                         f"sum(v3)::DOUBLE AS sum_mean_v3 FROM {parquet(out, key)}")
        for name, value in d.items():
            result[("~" if name == "sum_mean_v3" else "") + f"{key}.{name}"] = value
    return result


def index_digest(con, out: Path):
    src = parquet(out)
    return one_row(con, f"SELECT count(*) AS words, sum(doc_count)::HUGEINT AS postings, "
                        f"md5(string_agg(word || ':' || doc_count || ':' || CAST(doc_ids AS BIGINT[])::VARCHAR, "
                        f"chr(10) ORDER BY word)) AS md5_sorted_postings FROM {src}")


def join_digest(con, out: Path):
    src = parquet(out)
    return one_row(con, f"SELECT count(*) AS rows, sum(l_orderkey)::HUGEINT AS sum_l_orderkey, "
                        f"sum(o_custkey)::HUGEINT AS sum_o_custkey, sum(l_linenumber)::HUGEINT AS sum_l_linenumber, "
                        f"sum(l_extendedprice)::DOUBLE AS \"~sum_l_extendedprice\", "
                        f"sum(o_totalprice)::DOUBLE AS \"~sum_o_totalprice\" FROM {src}")


DIGESTS = {"grep": grep_digest, "wordcount": wordcount_digest, "tpch-q1": q1_digest,
           "groupby": groupby_digest, "inverted-index": index_digest, "join": join_digest}


# --- TeraSort: record count, global key order and an order-independent record checksum ---

def tera_digest(out: Path) -> dict:
    """Reads the sorted output in part order: raw `.dat` parts (Gristmill) or Parquet parts
    with `key` and `value` columns (peers)."""
    raw = sorted(out.rglob("*.dat"), key=natural_key)
    chunks = raw_chunks(raw) if raw else parquet_chunks(sorted(out.rglob("*.parquet"), key=natural_key))
    return records_digest(chunks)


def input_tera_digest(raw_dir: Path) -> dict:
    d = records_digest(raw_chunks(sorted(raw_dir.glob("*.dat"))))
    d.pop("sorted")
    return d


def natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def raw_chunks(paths):
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        if data.size % 100:
            raise ValueError(f"{path} is not whole 100-byte records")
        yield data.reshape(-1, 100)


def parquet_chunks(paths):
    """Records of Parquet parts, a batch at a time (a part of 5 GB holds more than the 2 GiB
    of values one `binary` array can)."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 20, columns=["key", "value"]):
            if batch.num_rows:
                yield np.hstack([fixed_width(batch.column("key")), fixed_width(batch.column("value"))])


def fixed_width(column: pa.Array) -> np.ndarray:
    arr = column.cast(pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    widths = np.diff(offsets)
    if len(widths) and (widths != widths[0]).any():
        raise ValueError("records of different widths")
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.reshape(len(arr), -1)


WEIGHTS = np.random.default_rng(7).integers(1, 2**63, 25, dtype=np.uint64) | np.uint64(1)


def records_digest(chunks) -> dict:
    count, checksum, in_order, last = 0, np.uint64(0), True, None
    with np.errstate(over="ignore"):
        for records in chunks:
            for start in range(0, len(records), 1 << 20):
                block = np.ascontiguousarray(records[start:start + (1 << 20)])
                checksum += record_hashes(block).sum(dtype=np.uint64)
                hi, lo = key_parts(block)
                if last is not None and (hi[0], lo[0]) < last:
                    in_order = False
                in_order &= bool(((hi[:-1] < hi[1:]) | ((hi[:-1] == hi[1:]) & (lo[:-1] <= lo[1:]))).all())
                last = (hi[-1], lo[-1])
                count += len(block)
    return {"records": count, "sorted": in_order, "checksum": f"{int(checksum):016x}"}


def key_parts(block: np.ndarray):
    hi = block[:, :8].copy().view(">u8").ravel()
    lo = block[:, 8:10].copy().view(">u2").ravel()
    return hi, lo


def record_hashes(block: np.ndarray) -> np.ndarray:
    words = block.view("<u4").astype(np.uint64)
    h = (words * WEIGHTS).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0x9E3779B97F4A7C15)
    return h ^ (h >> np.uint64(29))


# --- Cross-check ---

def compare(reference: dict, other: dict) -> list[str]:
    """The differences of `other` from `reference`, as short strings (none: they agree)."""
    diffs = []
    for key in sorted(set(reference) | set(other)):
        a, b = reference.get(key), other.get(key)
        if key.startswith("~") and a is not None and b is not None:
            abs_tol = AVG_ABS_TOL if ".avg_" in key else 0.0
            if not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=abs_tol):
                diffs.append(f"{key[1:]}: {b!r} vs {a!r}")
        elif a != b:
            diffs.append(f"{key}: {b!r} vs {a!r}")
    return diffs
