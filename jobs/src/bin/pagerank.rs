//! `pagerank`: PageRank of Parquet edges, one MapReduce round per iteration. See `pagerank --help`.
fn main() -> std::process::ExitCode {
    gristmill::pipeline::main::<gristmill_jobs::pagerank::PageRank>()
}
