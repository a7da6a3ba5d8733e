"""Apache DataFusion (Python bindings): SQL over registered files, written as Parquet."""

import pyarrow as pa
from datafusion import SessionConfig, SessionContext

from common import GROUPBY_ID3, GROUPBY_ID6, JOIN, Q1, main, out_file


def context(p):
    return SessionContext(SessionConfig().with_target_partitions(p["threads"]))


def register_lines(ctx, p):
    ctx.register_csv("lines", p["text"], schema=pa.schema([("line", pa.string())]), has_header=False,
                     delimiter="\x01", file_extension=".txt")


def write(ctx, query, path):
    ctx.sql(query).write_parquet(path)


def grep(p):
    ctx = context(p)
    register_lines(ctx, p)
    write(ctx, f"SELECT line FROM lines WHERE strpos(line, '{p['literal']}') > 0", out_file(p))


def wordcount(p):
    ctx = context(p)
    register_lines(ctx, p)
    words = "SELECT unnest(string_to_array(line, ' ')) AS word FROM lines"
    write(ctx, f"SELECT word, count(*) AS count FROM ({words}) WHERE word <> '' GROUP BY word", out_file(p))


def terasort(p):
    ctx = context(p)
    ctx.register_parquet("records", p["parquet"])
    write(ctx, "SELECT key, value FROM records ORDER BY key", out_file(p))


def tpch_q1(p):
    ctx = context(p)
    ctx.register_parquet("lineitem", p["lineitem"])
    write(ctx, Q1, out_file(p))


def groupby(p):
    ctx = context(p)
    ctx.register_parquet("g1", p["g1"])
    write(ctx, GROUPBY_ID3, out_file(p, "id3"))
    write(ctx, GROUPBY_ID6, out_file(p, "id6"))


def inverted_index(p):
    ctx = context(p)
    ctx.register_parquet("docs", p["docs"])
    pairs = ("SELECT DISTINCT word, doc_id FROM (SELECT doc_id, unnest(string_to_array(text, ' ')) AS word "
             "FROM docs) WHERE word <> ''")
    query = (f"SELECT word, count(*) AS doc_count, array_agg(doc_id ORDER BY doc_id) AS doc_ids FROM ({pairs}) "
             "GROUP BY word")
    write(ctx, query, out_file(p))


def join(p):
    ctx = context(p)
    ctx.register_parquet("lineitem", p["lineitem"])
    ctx.register_parquet("orders", p["orders"])
    write(ctx, JOIN, out_file(p))


main({"grep": grep, "wordcount": wordcount, "terasort": terasort, "tpch-q1": tpch_q1, "groupby": groupby,
      "inverted-index": inverted_index, "join": join})
