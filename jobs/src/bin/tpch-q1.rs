//! `tpch-q1`: TPC-H query 1 over lineitem Parquet files. See `tpch-q1 --help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::tpch_q1::TpchQ1>()
}
