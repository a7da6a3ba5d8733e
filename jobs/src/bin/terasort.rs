//! `terasort`: sorts 100-byte records. See `terasort --help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::terasort::TeraSort>()
}
