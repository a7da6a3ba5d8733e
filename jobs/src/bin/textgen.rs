//! `textgen`: writes Zipf-distributed sample text for examples, tests and benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gristmill::config::parse_byte_size;
use gristmill_jobs::sample::{TextSpec, write_text};

/// Writes sample text: lines of 4-17 words drawn from a Zipf distribution.
#[derive(Parser)]
#[command(name = "textgen", version = gristmill::VERSION)]
struct Args {
    /// Directory to write `part-NNNN.txt` files into.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Total size, e.g. 100MiB.
    #[arg(long, value_parser = parse_byte_size, default_value = "100MiB")]
    size: u64,
    /// Number of files.
    #[arg(long, default_value_t = 4)]
    files: usize,
    /// Distinct words.
    #[arg(long, default_value_t = 100_000)]
    vocabulary: usize,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.0)]
    exponent: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let spec = TextSpec {
        bytes: a.size,
        files: a.files,
        vocabulary: a.vocabulary,
        exponent: a.exponent,
        seed: a.seed,
    };
    match write_text(&a.output, &spec) {
        Ok(()) => {
            eprintln!("wrote {} bytes of sample text in {} files to {}", a.size, a.files, a.output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", a.output.display());
            ExitCode::FAILURE
        }
    }
}
