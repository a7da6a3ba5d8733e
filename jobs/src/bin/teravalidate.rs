//! `teravalidate`: checks the global key order of TeraSort output and prints valsort's
//! record count, checksum and duplicate-key count. See `teravalidate --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gristmill_jobs::teragen::{key_hex, validate_dir};

/// Reads every file of a directory whose name does not start with `.` or `_`, in sorted
/// name order, as raw 100-byte records; checks that the 10-byte keys (unsigned bytes) never
/// decrease across all files; prints `records`, `checksum` (valsort's 128-bit sum of
/// per-record CRC-32s, as 32 hex digits), `duplicate keys` and `order`. Exits 0 when the
/// records are in order, 1 (naming the first disorder) when not or on an error.
#[derive(Parser)]
#[command(name = "teravalidate", version = gristmill::VERSION)]
struct Args {
    /// Directory of record files.
    #[arg(long, short = 'i')]
    input: PathBuf,
    /// Threads (default: all cores).
    #[arg(long, env = "GRISTMILL_THREADS")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(a.threads.unwrap_or(0)).build() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: cannot start threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let v = match pool.install(|| validate_dir(&a.input)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("records: {}", v.records);
    println!("checksum: {}", v.checksum);
    println!("duplicate keys: {}", v.duplicate_keys);
    match &v.first_disorder {
        None => {
            println!("order: ok");
            ExitCode::SUCCESS
        }
        Some(d) => {
            println!("unordered records: {}", v.unordered_records);
            println!("order: FAILED");
            eprintln!(
                "error: keys out of order: {} record {} (record {} overall) has key {}, below the previous key {}",
                d.file.display(),
                d.index,
                d.record,
                key_hex(&d.key),
                key_hex(&d.previous_key),
            );
            ExitCode::FAILURE
        }
    }
}
