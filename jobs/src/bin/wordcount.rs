//! `wordcount`: counts words. See `wordcount --help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::wordcount::WordCount>()
}
