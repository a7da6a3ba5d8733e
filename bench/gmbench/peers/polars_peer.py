"""Polars: lazy queries, streamed into Parquet with sink_parquet (POLARS_MAX_THREADS set
by the harness)."""

from datetime import date

import polars as pl

from common import Q1_CUTOFF, main, out_file


def lines(p):
    return pl.scan_csv(f"{p['text']}/*.txt", has_header=False, separator="\x01", quote_char=None,
                       schema={"line": pl.String})


def grep(p):
    lines(p).filter(pl.col("line").str.contains(p["literal"], literal=True)).sink_parquet(out_file(p))


def wordcount(p):
    words = lines(p).select(pl.col("line").str.split(" ").alias("word")).explode("word")
    counts = words.filter(pl.col("word") != "").group_by("word").agg(pl.len().alias("count"))
    counts.sink_parquet(out_file(p))


def terasort(p):
    pl.scan_parquet(f"{p['parquet']}/*.parquet").sort("key").sink_parquet(out_file(p))


def tpch_q1(p):
    # Polars multiplies decimals at the larger operand scale (2 here), rounding every row's
    # discounted price and charge to cents; at scale 6 the products are exact, as in SQL.
    price = pl.col("l_extendedprice").cast(pl.Decimal(38, 6))
    disc_price = price * (1 - pl.col("l_discount"))
    q = (pl.scan_parquet(f"{p['lineitem']}/*.parquet")
         .filter(pl.col("l_shipdate") <= date.fromisoformat(Q1_CUTOFF))
         .group_by("l_returnflag", "l_linestatus")
         .agg(pl.col("l_quantity").sum().alias("sum_qty"), price.sum().alias("sum_base_price"),
              disc_price.sum().alias("sum_disc_price"),
              (disc_price * (1 + pl.col("l_tax"))).sum().alias("sum_charge"),
              pl.col("l_quantity").mean().alias("avg_qty"), price.mean().alias("avg_price"),
              pl.col("l_discount").mean().alias("avg_disc"), pl.len().alias("count_order"))
         .sort("l_returnflag", "l_linestatus"))
    q.sink_parquet(out_file(p))


def groupby(p):
    g1 = pl.scan_parquet(f"{p['g1']}/*.parquet")
    g1.group_by("id3").agg(pl.col("v1").sum(), pl.col("v3").mean()).sink_parquet(out_file(p, "id3"))
    g1.group_by("id6").agg(pl.col("v2").sum(), pl.col("v3").mean()).sink_parquet(out_file(p, "id6"))


def inverted_index(p):
    pairs = (pl.scan_parquet(f"{p['docs']}/*.parquet")
             .select("doc_id", pl.col("text").str.split(" ").alias("word")).explode("word")
             .filter(pl.col("word") != "").unique())
    index = pairs.group_by("word").agg(pl.len().alias("doc_count"), pl.col("doc_id").sort().alias("doc_ids"))
    index.sink_parquet(out_file(p))


def join(p):
    lineitem = pl.scan_parquet(f"{p['lineitem']}/*.parquet")
    orders = pl.scan_parquet(f"{p['orders']}/*.parquet")
    lineitem.join(orders, left_on="l_orderkey", right_on="o_orderkey").sink_parquet(out_file(p))


main({"grep": grep, "wordcount": wordcount, "terasort": terasort, "tpch-q1": tpch_q1, "groupby": groupby,
      "inverted-index": inverted_index, "join": join})
