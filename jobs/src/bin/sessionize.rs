//! `sessionize`: click streams cut into sessions (a secondary sort). See `--help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::sessionize::Sessionize>()
}
