//! Example Gristmill jobs, each also a binary in `src/bin/`:
//!
//! * [`wordcount::WordCount`]: counts words (batch level, in-mapper combining, combiner);
//! * [`wordcount_records::WordCountRecords`]: the same at the record level, in ten lines;
//! * [`chaos::Chaos`] (`chaos`): word count whose tasks crash, fail, hang or sleep on
//!   purpose, for failure tests;
//! * [`grep::Grep`]: the paper's distributed grep;
//! * [`tpch_q1::TpchQ1`] (`tpch-q1`): TPC-H query 1 on lineitem Parquet, exact decimal sums
//!   (in-mapper partial aggregation, combiner);
//! * [`groupby::GroupBy`] (`groupby`): `SELECT key, sum(a), avg(b), count(*) ... GROUP BY key`
//!   over Parquet (in-mapper hash aggregation, combiner; column types read from the input);
//! * [`inverted_index::InvertedIndex`] (`inverted-index`): the paper's inverted index,
//!   word -> sorted doc ids (no combiner: the shuffle carries every pair);
//! * [`join::Join`] (`join`): reduce-side inner equi-join of two Parquet datasets in one job
//!   (two tagged inputs, a partitioner on the join key alone, bounded memory on keys
//!   frequent on both sides);
//! * [`pagerank::PageRank`] (`pagerank`): PageRank as a pipeline, one MapReduce round per
//!   iteration, the dangling mass carried to every reducer within the round;
//! * [`revenue::Revenue`] (`revenue`): discounted revenue per supplier of TPC-H lineitem,
//!   written with typed records (serde structs in, a combiner, typed output rows);
//! * [`sessionize::Sessionize`] (`sessionize`): click streams cut into sessions, a secondary
//!   sort (keyed by user and time, grouped by user) with typed records;
//! * [`stopwords::StopWordCount`] (`wordcount-stopwords`): word count without the words of
//!   a stop-word list, read once by the job's plan and broadcast to every task;
//! * [`terasort::TeraSort`] (`terasort`): sorts 100-byte records into globally ordered
//!   raw part files;
//! * [`sample`]: the generator of Zipf-distributed sample text (`textgen`);
//! * [`teragen`]: the TeraSort benchmark's data generator and validator (`teragen`,
//!   `teravalidate`; plain binaries, not MapReduce jobs).

pub mod chaos;
pub mod grep;
pub mod group_ranges;
pub mod groupby;
pub mod inverted_index;
pub mod join;
pub mod pagerank;
mod prefetch;
pub mod revenue;
pub mod sample;
pub mod sessionize;
pub mod stopwords;
pub mod teragen;
pub mod terasort;
pub mod tpch_q1;
pub mod word_table;
pub mod wordcount;
pub mod wordcount_records;
