//! `grep`: distributed grep. See `grep --help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::grep::Grep>()
}
