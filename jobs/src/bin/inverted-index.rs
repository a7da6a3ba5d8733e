//! `inverted-index`: word -> sorted doc ids of Parquet documents. See `inverted-index --help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::inverted_index::InvertedIndex>()
}
