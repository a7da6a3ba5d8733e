//! `groupby`: group-by aggregation (sum, mean, count) over Parquet. See `groupby --help`.
fn main() -> std::process::ExitCode {
    gristmill::pipeline::main::<gristmill_jobs::groupby::GroupBy>()
}
