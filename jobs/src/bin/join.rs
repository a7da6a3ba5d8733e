//! `join`: reduce-side inner equi-join of two Parquet datasets. See `join --help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::join::Join>()
}
