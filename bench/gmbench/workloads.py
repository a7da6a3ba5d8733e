"""The workloads: their inputs, Gristmill's command line, and what they measure."""

from dataclasses import dataclass, field
from pathlib import Path

from . import datagen


@dataclass
class Workload:
    name: str
    about: str
    # Gristmill: the binary and its flags from the params (None with a reason: n/a).
    gristmill_bin: str | None
    gristmill_args: object = None
    na_reason: str = ""
    params: dict = field(default_factory=dict)  # paths and constants, filled in by prepare()
    input_bytes: int = 0


def _grep_args(p):
    return ["-F", "--pattern", p["literal"], "--input", p["text"]]


def _wordcount_args(p):
    return ["--input", p["text"]]


def _terasort_args(p):
    return ["--input", p["raw"]]


def _q1_args(p):
    return ["--input", p["lineitem"]]


def _groupby_args(p):
    """The two G1 queries, one job each, answers in `id3/` and `id6/`."""
    return {"id3": ["--input", p["g1"], "--by", "id3", "--sum", "v1", "--mean", "v3"],
            "id6": ["--input", p["g1"], "--by", "id6", "--sum", "v2", "--mean", "v3"]}


def _index_args(p):
    return ["--input", p["docs"]]


def _join_args(p):
    return ["--left", p["orders"], "--left-key", "o_orderkey", "--right", p["lineitem"], "--right-key", "l_orderkey"]


WORKLOADS = [
    Workload("grep", "lines containing a rare literal, over Zipf text", "grep", _grep_args),
    Workload("wordcount", "(word, count) over Zipf text, split on whitespace", "wordcount", _wordcount_args),
    Workload("terasort", "100-byte records sorted by their 10-byte key", "terasort", _terasort_args),
    Workload("tpch-q1", "TPC-H query 1 over lineitem", "tpch-q1", _q1_args),
    Workload("groupby", "G1 group-by: sum(v1), mean(v3) by id3 (1e5 groups); sum(v2), mean(v3) by id6 "
             "(1e6 groups)", "groupby", _groupby_args),
    Workload("inverted-index", "word -> sorted distinct doc ids, over Parquet documents", "inverted-index",
             _index_args),
    Workload("join", "TPC-H orders joined with lineitem on the order key (all columns)", "join", _join_args),
]


def by_name(names: list[str]) -> list[Workload]:
    known = {w.name: w for w in WORKLOADS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def prepare(w: Workload, size: str, bin_dir: Path) -> None:
    """Generates (or reuses) the workload's data; fills in its params and input bytes."""
    if w.name in ("grep", "wordcount"):
        text = datagen.make_text(bin_dir, size)
        w.params = {"text": str(text), "literal": datagen.RARE_LITERAL}
        w.input_bytes = datagen.input_bytes(text, pattern="*.txt")
    elif w.name == "terasort":
        tera = datagen.make_tera(size)
        w.params = {"raw": str(tera / "raw"), "parquet": str(tera / "parquet")}
        w.input_bytes = datagen.input_bytes(tera / "raw")
    elif w.name in ("tpch-q1", "join"):
        tpch = datagen.make_tpch(size)
        w.params = {"lineitem": str(tpch / "lineitem"), "orders": str(tpch / "orders")}
        w.input_bytes = datagen.input_bytes(tpch / "lineitem") + (
            datagen.input_bytes(tpch / "orders") if w.name == "join" else 0)
    elif w.name == "groupby":
        g1 = datagen.make_g1(size)
        w.params = {"g1": str(g1)}
        w.input_bytes = datagen.input_bytes(g1)
    elif w.name == "inverted-index":
        docs = datagen.make_docs(bin_dir, size)
        w.params = {"docs": str(docs)}
        w.input_bytes = datagen.input_bytes(docs)


def input_paths(w: Workload) -> list[Path]:
    """The files the engines read (warmed into the page cache before the runs)."""
    keys = {"grep": ["text"], "wordcount": ["text"], "terasort": ["raw", "parquet"], "tpch-q1": ["lineitem"],
            "join": ["lineitem", "orders"], "groupby": ["g1"], "inverted-index": ["docs"]}[w.name]
    return [Path(w.params[k]) for k in keys]
