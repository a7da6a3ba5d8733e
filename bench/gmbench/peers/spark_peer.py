"""PySpark in local mode (local[threads]), DataFrame and SQL APIs only (no Python UDFs),
written with DataFrameWriter.parquet."""

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common import GROUPBY_ID3, GROUPBY_ID6, JOIN, Q1, main

DRIVER_MEMORY = "4g"  # the JVM heap: local mode runs everything in the driver
SHUFFLE_PARTITIONS = 4


def session(p):
    spark = (SparkSession.builder.master(f"local[{p['threads']}]").appName("gristmill-bench")
             .config("spark.driver.memory", DRIVER_MEMORY)
             .config("spark.sql.shuffle.partitions", SHUFFLE_PARTITIONS)
             .config("spark.ui.enabled", "false")
             .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def write(df, p, name="result"):
    df.write.mode("overwrite").parquet(f"{p['out']}/{name}")


def run(p, body):
    spark = session(p)
    try:
        body(spark)
    finally:
        spark.stop()


def grep(p):
    run(p, lambda spark: write(
        spark.read.text(p["text"]).where(F.col("value").contains(p["literal"])).select(F.col("value").alias("line")),
        p))


def wordcount(p):
    def body(spark):
        words = spark.read.text(p["text"]).select(F.explode(F.split("value", " ")).alias("word"))
        write(words.where(F.col("word") != "").groupBy("word").count(), p)
    run(p, body)


def terasort(p):
    run(p, lambda spark: write(spark.read.parquet(p["parquet"]).orderBy("key"), p))


def tpch_q1(p):
    def body(spark):
        spark.read.parquet(p["lineitem"]).createOrReplaceTempView("lineitem")
        write(spark.sql(Q1).coalesce(1), p)
    run(p, body)


def groupby(p):
    def body(spark):
        spark.read.parquet(p["g1"]).createOrReplaceTempView("g1")
        write(spark.sql(GROUPBY_ID3), p, "id3")
        write(spark.sql(GROUPBY_ID6), p, "id6")
    run(p, body)


def inverted_index(p):
    def body(spark):
        docs = spark.read.parquet(p["docs"]).select(F.col("doc_id").cast("long"), "text")
        pairs = docs.select("doc_id", F.explode(F.split("text", " ")).alias("word")).where(F.col("word") != "")
        index = pairs.distinct().groupBy("word").agg(
            F.count("*").alias("doc_count"), F.array_sort(F.collect_list("doc_id")).alias("doc_ids"))
        write(index, p)
    run(p, body)


def join(p):
    def body(spark):
        spark.read.parquet(p["lineitem"]).createOrReplaceTempView("lineitem")
        spark.read.parquet(p["orders"]).createOrReplaceTempView("orders")
        write(spark.sql(JOIN), p)
    run(p, body)


main({"grep": grep, "wordcount": wordcount, "terasort": terasort, "tpch-q1": tpch_q1, "groupby": groupby,
      "inverted-index": inverted_index, "join": join})
