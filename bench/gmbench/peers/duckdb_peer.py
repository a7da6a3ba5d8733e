"""DuckDB: SQL over the files, COPY ... TO Parquet."""

import duckdb

from common import GROUPBY_ID3, GROUPBY_ID6, JOIN, Q1, main, out_file


def connect(p):
    con = duckdb.connect()
    con.execute(f"SET threads = {p['threads']}")
    return con


def lines(p):
    return (f"read_csv('{p['text']}/*.txt', columns = {{'line': 'VARCHAR'}}, header = false, "
            "delim = '\x01', quote = '', escape = '', auto_detect = false)")


def copy(con, query, path):
    con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")


def grep(p):
    copy(connect(p), f"SELECT line FROM {lines(p)} WHERE contains(line, '{p['literal']}')", out_file(p))


def wordcount(p):
    words = f"SELECT unnest(string_split(line, ' ')) AS word FROM {lines(p)}"
    copy(connect(p), f"SELECT word, count(*) AS count FROM ({words}) WHERE word <> '' GROUP BY word", out_file(p))


def terasort(p):
    copy(connect(p), f"SELECT key, value FROM read_parquet('{p['parquet']}/*.parquet') ORDER BY key", out_file(p))


def tpch_q1(p):
    con = connect(p)
    con.execute(f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{p['lineitem']}/*.parquet')")
    copy(con, Q1, out_file(p))


def groupby(p):
    con = connect(p)
    con.execute(f"CREATE VIEW g1 AS SELECT * FROM read_parquet('{p['g1']}/*.parquet')")
    copy(con, GROUPBY_ID3, out_file(p, "id3"))
    copy(con, GROUPBY_ID6, out_file(p, "id6"))


def inverted_index(p):
    pairs = (f"SELECT DISTINCT word, doc_id FROM (SELECT doc_id, unnest(string_split(text, ' ')) AS word "
             f"FROM read_parquet('{p['docs']}/*.parquet')) WHERE word <> ''")
    query = (f"SELECT word, count(*) AS doc_count, list(doc_id ORDER BY doc_id) AS doc_ids FROM ({pairs}) "
             "GROUP BY word")
    copy(connect(p), query, out_file(p))


def join(p):
    con = connect(p)
    for table in ("lineitem", "orders"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{p[table]}/*.parquet')")
    copy(con, JOIN, out_file(p))


main({"grep": grep, "wordcount": wordcount, "terasort": terasort, "tpch-q1": tpch_q1, "groupby": groupby,
      "inverted-index": inverted_index, "join": join})
