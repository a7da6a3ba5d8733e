//! `wordcount-stopwords`: word count without a stop-word list's words. See `--help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::stopwords::StopWordCount>()
}
