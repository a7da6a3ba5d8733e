//! Integration tests of the example jobs in local mode: every job against an independent
//! sequential oracle, the output read back with a reader that is not our writer path, and
//! every kind of bad input.

mod bad_input;
mod bad_records;
mod binary_distribution;
mod cluster;
mod cluster_errors;
mod cluster_failures;
mod cluster_fair;
mod cluster_support;
mod compressed_text;
mod csv_json;
mod declared_schema;
mod deploy;
mod driver_recovery;
mod executors;
mod external_crate;
mod grep;
mod groupby;
mod history;
mod inverted_index;
mod join;
mod memory_bound;
mod metrics;
mod netns;
mod otlp_spans;
mod output;
mod output_formats;
mod pagerank;
mod parquet_codecs;
mod plan;
mod proxy;
mod s3;
mod security;
mod service;
mod small_files;
mod sort;
mod support;
mod terasort;
mod tpch_q1;
mod typed_rows;
mod web_ui;
mod wordcount;
mod worker_drain;
