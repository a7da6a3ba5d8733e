//! `wordcount-records`: word count with the record-level API. See `--help`.
fn main() -> std::process::ExitCode {
    gristmill::main::<gristmill_jobs::wordcount_records::WordCountRecords>()
}
