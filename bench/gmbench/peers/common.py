"""Shared by the peer scripts: arguments and the query texts.

A peer script is run as `python <engine>_peer.py WORKLOAD PARAMS_JSON`; PARAMS_JSON holds the
input paths, `out` (a directory to write the answer into, as Parquet) and `threads`."""

import json
import os
import sys

# TPC-H query 1 as the specification states it (delta = 90 days).
Q1 = """
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price, avg(l_discount) AS avg_disc,
       count(*) AS count_order
FROM lineitem
WHERE l_shipdate <= date '1998-12-01' - interval '90' day
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus
"""
Q1_CUTOFF = "1998-09-02"

GROUPBY_ID3 = "SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM g1 GROUP BY id3"
GROUPBY_ID6 = "SELECT id6, sum(v2) AS v2, avg(v3) AS v3 FROM g1 GROUP BY id6"

JOIN = "SELECT * FROM lineitem JOIN orders ON l_orderkey = o_orderkey"


def main(workloads: dict) -> None:
    name, params = sys.argv[1], json.loads(sys.argv[2])
    os.makedirs(params["out"], exist_ok=True)
    workloads[name](params)


def out_file(p: dict, name: str = "result") -> str:
    return os.path.join(p["out"], f"{name}.parquet")
