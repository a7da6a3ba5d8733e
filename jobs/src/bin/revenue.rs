//! `revenue`: discounted revenue per supplier of TPC-H lineitem, with typed records. See `--help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::revenue::Revenue>()
}
