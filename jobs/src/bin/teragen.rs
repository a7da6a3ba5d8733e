//! `teragen`: writes TeraSort benchmark records (gensort/TeraGen binary records) into part
//! files, generated in parallel. See `teragen --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use gristmill_jobs::teragen::{GenSpec, Layout, teragen};

/// Writes records START .. START+RECORDS of the sort benchmark, byte-identical to Hadoop
/// TeraGen (default) or gensort 1.3+ (`--layout gensort`), into `part-NNNNN.dat` files whose
/// sorted names give record order, then `_SUCCESS`. Prints the record count and valsort's
/// checksum of the records.
#[derive(Parser)]
#[command(name = "teragen", version = gristmill::VERSION)]
struct Args {
    /// How many 100-byte records.
    #[arg(long, short = 'n')]
    records: u64,
    /// Directory to write the part files into (created if missing).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Number of part files (default: the thread count).
    #[arg(long)]
    parts: Option<usize>,
    /// Number of the first record (gensort's -b).
    #[arg(long, default_value_t = 0)]
    start: u128,
    /// Record layout: `teragen` (Hadoop TeraGen, gensort 1.0-1.2) or `gensort` (gensort
    /// 1.3-1.5 binary mode).
    #[arg(long, value_enum, default_value_t = Layout::Teragen)]
    layout: Layout,
    /// Replace an earlier teragen output in the directory (other files are never deleted).
    #[arg(long)]
    overwrite: bool,
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
    let started = Instant::now();
    let result = pool.install(|| {
        let spec = GenSpec::new(a.records)
            .with_start(a.start)
            .with_parts(a.parts.unwrap_or_else(rayon::current_num_threads))
            .with_layout(a.layout)
            .with_overwrite(a.overwrite);
        teragen(&a.output, &spec).map(|generated| (spec, generated))
    });
    match result {
        Ok((spec, generated)) => {
            let seconds = started.elapsed().as_secs_f64();
            println!("records: {}", generated.records);
            println!("checksum: {}", generated.checksum);
            println!("parts: {}", spec.parts);
            eprintln!(
                "wrote {} records ({} bytes, layout {}) in {} parts to {} in {seconds:.2} s ({:.0} MB/s)",
                generated.records,
                generated.bytes,
                spec.layout.name(),
                spec.parts,
                a.output.display(),
                generated.bytes as f64 / 1e6 / seconds.max(1e-9),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
