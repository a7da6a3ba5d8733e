"""Dask DataFrame on the threaded scheduler (num_workers = threads), pandas underneath,
written with to_parquet. Decimals are read as float64, as a Dask user would."""

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa

from common import Q1_CUTOFF, main


def configure(p):
    dask.config.set(scheduler="threads", num_workers=p["threads"])


def lines(p):
    return dd.read_csv(f"{p['text']}/*.txt", header=None, names=["line"], sep="\x01", quoting=3,
                       dtype={"line": "string"}, na_filter=False, blocksize="64MB")


def write(df, p, name="result", schema="infer"):
    df.to_parquet(f"{p['out']}/{name}", write_index=False, overwrite=True, schema=schema)


def grep(p):
    configure(p)
    text = lines(p)
    write(text[text.line.str.contains(p["literal"], regex=False)], p)


def wordcount(p):
    configure(p)
    words = lines(p).line.str.split(" ").explode().astype("string")
    counts = words[words != ""].value_counts()
    write(counts.rename("count").rename_axis("word").reset_index(), p)


def terasort(p):
    configure(p)
    # pyarrow-backed binary: Dask cannot sample quantiles of an object column of bytes
    write(dd.read_parquet(p["parquet"], dtype_backend="pyarrow").sort_values("key"), p)


def tpch_q1(p):
    configure(p)
    cols = ["l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax", "l_shipdate"]
    li = dd.read_parquet(p["lineitem"], columns=cols)
    li = li[li.l_shipdate <= pd.Timestamp(Q1_CUTOFF).date()]
    li = li.astype({c: "float64" for c in ["l_quantity", "l_extendedprice", "l_discount", "l_tax"]})
    li = li.assign(disc_price=li.l_extendedprice * (1 - li.l_discount))
    li = li.assign(charge=li.disc_price * (1 + li.l_tax))
    q1 = li.groupby(["l_returnflag", "l_linestatus"]).agg(
        sum_qty=("l_quantity", "sum"), sum_base_price=("l_extendedprice", "sum"),
        sum_disc_price=("disc_price", "sum"), sum_charge=("charge", "sum"), avg_qty=("l_quantity", "mean"),
        avg_price=("l_extendedprice", "mean"), avg_disc=("l_discount", "mean"),
        count_order=("l_quantity", "count"))
    write(q1.reset_index().sort_values(["l_returnflag", "l_linestatus"]), p)


def groupby(p):
    configure(p)
    g1 = dd.read_parquet(p["g1"])
    write(g1.groupby("id3").agg(v1=("v1", "sum"), v3=("v3", "mean")).reset_index(), p, "id3")
    write(g1.groupby("id6").agg(v2=("v2", "sum"), v3=("v3", "mean"), split_out=4).reset_index(), p, "id6")


INDEX_SCHEMA = pa.schema([("word", pa.string()), ("doc_count", pa.uint64()), ("doc_ids", pa.list_(pa.uint64()))])


def postings(part: pd.DataFrame) -> pd.DataFrame:
    """One shuffle partition's words -> (doc_count, sorted distinct doc ids)."""
    part = part.drop_duplicates().sort_values(["word", "doc_id"])
    lists = part.groupby("word", sort=False).doc_id.agg(list)
    return pd.DataFrame({"word": lists.index.astype("string"), "doc_count": lists.str.len().astype("uint64"),
                         "doc_ids": lists.values})


def inverted_index(p):
    configure(p)
    docs = dd.read_parquet(p["docs"])
    pairs = docs.assign(word=docs.text.str.split(" "))[["word", "doc_id"]].explode("word").astype({"word": "string"})
    pairs = pairs[pairs.word != ""].shuffle("word")
    meta = pd.DataFrame({"word": pd.Series(dtype="string"), "doc_count": pd.Series(dtype="uint64"),
                         "doc_ids": pd.Series(dtype="object")})
    write(pairs.map_partitions(postings, meta=meta), p, schema=INDEX_SCHEMA)


def join(p):
    configure(p)
    lineitem, orders = dd.read_parquet(p["lineitem"]), dd.read_parquet(p["orders"])
    write(lineitem.merge(orders, left_on="l_orderkey", right_on="o_orderkey"), p)


main({"grep": grep, "wordcount": wordcount, "terasort": terasort, "tpch-q1": tpch_q1, "groupby": groupby,
      "inverted-index": inverted_index, "join": join})
