//! `chaos`: word count with injected task faults, for failure tests. See `--help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::chaos::Chaos>()
}
