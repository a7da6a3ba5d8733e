//! The command line a job binary presents: `gristmill::main::<MyJob>()` parses the engine's
//! flags and the job's own, runs the job, shows progress and a summary, and turns the result
//! into the exit code. This is the edge: the only place that prints.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cluster::rpc::DriverEndpoint;
use crate::cluster::submit::{Submission, Submitted};
use crate::config::{RunConfig, parse_byte_size};
use crate::input::{CsvOptions, InputFormat};
use crate::job::Job;
use crate::logging::LogFormat;
use crate::output::{Codec, OutputFormat};
use crate::progress::{Progress, ProgressMode, ProgressReporter, human_bytes};
use crate::run::JobReport;
use crate::run::{Mode, run};
use crate::storage::StorageOptions;
use clap::{Args, CommandFactory, FromArgMatches, Parser};

/// The flags every job binary shares.
///
/// [`main`] parses them beside the job's own; a program of one's own can do the same and
/// call [`run_job`]:
///
/// ```
/// use clap::Parser;
/// use gristmill::cli::RunArgs;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     run: RunArgs,
/// }
///
/// let cli = Cli::try_parse_from(["wordcount", "--input", "data/*.txt", "--output", "out", "--reducers", "3"])?;
/// let config = cli.run.to_config();
/// assert_eq!((config.inputs, config.output, config.reducers), (vec!["data/*.txt".to_owned()], "out".to_owned(), 3));
/// # Ok::<(), clap::Error>(())
/// ```
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Engine options")]
pub struct RunArgs {
    /// Input file, directory, glob or URL (repeatable). Directories are read recursively,
    /// skipping names that start with `_` or `.`; a committed output (with a `_SUCCESS`
    /// manifest) gives exactly the part files its manifest lists.
    #[arg(long = "input", short = 'i', value_name = "PATH|GLOB|URL")]
    pub inputs: Vec<String>,

    /// Output directory (path or URL). Gets one Parquet part file per reducer and a
    /// `_SUCCESS` manifest when the job commits.
    #[arg(long, short = 'o', value_name = "DIR|URL")]
    pub output: String,

    /// Worker threads [default: all cores].
    #[arg(long, env = "GRISTMILL_THREADS")]
    pub threads: Option<usize>,

    /// Reduce partitions, i.e. part files [default: the number of threads].
    #[arg(long, env = "GRISTMILL_REDUCERS")]
    pub reducers: Option<usize>,

    /// Bytes per input split, e.g. 64MiB [default: 64MiB, larger for big inputs on few
    /// cores, to give each thread about four splits].
    #[arg(long, value_parser = parse_byte_size, value_name = "BYTES")]
    pub split_size: Option<u64>,

    /// Replace an output directory that already holds a committed result.
    #[arg(long)]
    pub overwrite: bool,

    /// Read input directories holding part files but no `_SUCCESS` (outputs of jobs that
    /// did not commit), which are refused otherwise.
    #[arg(long)]
    pub allow_uncommitted: bool,

    /// Input format [default: parquet for `.parquet` names, csv for `.csv` and `.tsv`, json
    /// (JSON lines) for `.json`, `.jsonl` and `.ndjson`, text otherwise].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,

    /// CSV input: whether the first line of each file names the columns (else they are
    /// named column_1, column_2, ...).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub csv_header: bool,

    /// CSV input: the field delimiter, one ASCII character (`tab` or `\t` for a tab)
    /// [default: tab for `.tsv` files, comma otherwise].
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    pub csv_delimiter: Option<u8>,

    /// CSV input: quoted fields may hold line breaks; reads each file as one split.
    /// Without it, a split boundary inside a quoted multi-line field fails the job.
    #[arg(long)]
    pub csv_multiline: bool,

    /// CSV and JSON lines input: read with this schema instead of inferring one from a
    /// sample, as NAME:TYPE pairs in column order with Arrow type names, e.g.
    /// `zip:Utf8,amount:Decimal128(12, 2),day:Date32` (a job's own declared schema wins).
    #[arg(long, value_name = "NAME:TYPE[,...]", value_parser = parse_schema)]
    pub input_schema: Option<arrow::datatypes::SchemaRef>,

    /// Memory for every buffer of the job's tasks (map buffers, in-memory shuffle runs, merge
    /// and I/O buffers), e.g. 512MiB or 4GiB; past it, sorted runs spill to disk and merge in
    /// passes. On a cluster it is each task's, reserved on the worker that runs it [default:
    /// 40% of the machine's (or its cgroup's) memory locally; the worker's share of a slot on
    /// a cluster].
    #[arg(long, value_parser = parse_byte_size, value_name = "BYTES", env = "GRISTMILL_MEMORY_LIMIT")]
    pub memory_limit: Option<u64>,

    /// Directory for spill files [default: the system temp dir].
    #[arg(long, value_name = "DIR", env = "GRISTMILL_SPILL_DIR")]
    pub spill_dir: Option<std::path::PathBuf>,

    /// Replace invalid UTF-8 in text input with U+FFFD instead of failing.
    #[arg(long)]
    pub replace_invalid_utf8: bool,

    /// Rows of text input that may fail to parse (a CSV row with the wrong column count or
    /// a value of the wrong type, a JSON syntax error, a line that is not UTF-8) before the
    /// job fails: each is skipped, counted (`bad_records`) and written with its file, line
    /// and reason to `_bad_records/` in the output. 0: the first one fails the job.
    #[arg(long, value_name = "N", default_value_t = 0, env = "GRISTMILL_MAX_BAD_RECORDS")]
    pub max_bad_records: u64,

    /// Codec of Parquet part files: snappy, zstd or zstd:LEVEL, gzip or gzip:LEVEL,
    /// lz4 (LZ4_RAW) or none [default: the job's, zstd unless it says otherwise]. CSV and
    /// JSON part files take gzip, zstd or none (`.csv.gz`, `.json.zst`) [default: none].
    #[arg(long, value_name = "CODEC")]
    pub compression: Option<Codec>,

    /// Format of part files: parquet, csv (with a header line) or json (JSON lines)
    /// [default: the job's, parquet unless it says otherwise; jobs writing raw records,
    /// like terasort, keep them].
    #[arg(long, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,

    /// Hive-style partitioned output: the rows of each value of these output columns go to
    /// `COL=value/part-...` files, without the columns (comma-separated or repeated).
    #[arg(long, value_name = "COL[,COL]", value_delimiter = ',')]
    pub partition_by: Vec<String>,

    /// Rows per row group of Parquet part files [default: the job's, 131072 unless it says
    /// otherwise].
    #[arg(long, value_name = "ROWS")]
    pub row_group_size: Option<usize>,

    /// Object-store setting `key=value` (repeatable), e.g. `aws_endpoint=http://127.0.0.1:9000`
    /// or `aws_region=eu-west-1`; the standard AWS_*, GOOGLE_* and AZURE_* environment
    /// variables are read too. Values never appear in logs or errors.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub storage_options: Vec<(String, String)>,

    /// Submit the job to the cluster driver at this URL (e.g. http://127.0.0.1:7077)
    /// instead of running it in this process.
    #[arg(long, env = "GRISTMILL_DRIVER", value_name = "URL")]
    pub driver: Option<String>,

    /// Cluster mode: the job's priority; higher runs first, FIFO within a priority.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,

    /// Cluster mode: the queue the job shares slots in (the driver's `--queue` flags give
    /// queues their weights).
    #[arg(long, env = "GRISTMILL_QUEUE", default_value = "default", value_name = "NAME")]
    pub queue: String,

    /// Cluster mode: print the job id and return once the job is queued.
    #[arg(long, requires = "driver")]
    pub detach: bool,

    /// Cluster mode: how many seconds the driver may be unreachable while the job is
    /// followed (a restarted driver resumes it) before giving up.
    #[arg(long, env = "GRISTMILL_DRIVER_TIMEOUT", value_name = "SECS", default_value_t = 300)]
    pub driver_timeout: u64,

    /// Cluster mode: certificates directory with ca.crt and client.USER.crt; the driver's
    /// URL is then https://HOST:PORT.
    #[arg(long, env = "GRISTMILL_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: Option<std::path::PathBuf>,

    /// Cluster mode: the user whose client certificate to present [default: the only one in
    /// the certificates directory, else $USER].
    #[arg(long, env = "GRISTMILL_USER")]
    pub user: Option<String>,

    /// Export OpenTelemetry spans (job, phases, tasks) with OTLP over HTTP to this base
    /// URL, e.g. http://127.0.0.1:4318 [default: $OTEL_EXPORTER_OTLP_ENDPOINT; none].
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value = "auto", env = "GRISTMILL_PROGRESS")]
    pub progress: ProgressMode,

    /// Cluster mode: Ctrl-C while following the job cancels it, without asking (on a
    /// terminal it asks; otherwise the submitter detaches and the job keeps running).
    #[arg(long, requires = "driver")]
    pub cancel_on_interrupt: bool,

    /// How log lines are written: text, or json (one object a line); set RUST_LOG to see
    /// more than warnings.
    #[arg(long, value_enum, default_value = "text", env = crate::logging::LOG_FORMAT_ENV)]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// How to submit to the cluster at `driver` with these flags.
    pub fn submission(&self, driver: &str) -> crate::Result<Submission> {
        let tls = match &self.certs_dir {
            Some(dir) => Some(crate::security::client_tls(
                &crate::security::certs::CertsDir::new(dir),
                self.user.as_deref(),
            )?),
            None => None,
        };
        Ok(Submission {
            driver: DriverEndpoint::new(driver, tls)?,
            priority: self.priority,
            queue: self.queue.clone(),
            detach: self.detach,
            show_progress: self.progress != ProgressMode::Off,
            driver_timeout: std::time::Duration::from_secs(self.driver_timeout),
            on_interrupt: if self.cancel_on_interrupt {
                crate::cluster::follow::OnInterrupt::Cancel
            } else {
                crate::cluster::follow::OnInterrupt::AskOnTerminal
            },
        })
    }

    /// The run configuration these flags describe.
    pub fn to_config(&self) -> RunConfig {
        let mut config = RunConfig::new(self.inputs.clone(), self.output.clone())
            .with_storage_options(StorageOptions::new(self.storage_options.iter().cloned()))
            .with_overwrite(self.overwrite)
            .with_allow_uncommitted(self.allow_uncommitted)
            .with_format(self.format)
            .with_csv(CsvOptions {
                header: self.csv_header,
                delimiter: self.csv_delimiter,
                multiline: self.csv_multiline,
            })
            .with_input_schema(self.input_schema.clone())
            .with_replace_invalid_utf8(self.replace_invalid_utf8)
            .with_max_bad_records(self.max_bad_records)
            .with_compression(self.compression)
            .with_row_group_size(self.row_group_size)
            .with_output_format(self.output_format)
            .with_partition_by(self.partition_by.clone());
        if let Some(threads) = self.threads {
            config = config.with_threads(threads).with_reducers(threads);
        }
        if let Some(reducers) = self.reducers {
            config = config.with_reducers(reducers);
        }
        if let Some(bytes) = self.split_size {
            config = config.with_split_size(bytes);
        }
        if let Some(bytes) = self.memory_limit {
            config = config.with_memory_limit(bytes);
        }
        if let Some(dir) = &self.spill_dir {
            config = config.with_spill_dir(dir);
        }
        config
    }
}

#[derive(Parser)]
struct Cli<J: Job> {
    #[command(flatten)]
    job: J,
    #[command(flatten)]
    run: RunArgs,
}

/// The whole `main` of a job binary: `fn main() -> ExitCode { gristmill::main::<MyJob>() }`.
///
/// It parses the job's flags and the engine's ([`RunArgs`]), runs the job in this process
/// or, with `--driver`, on a cluster, prints progress and a summary, and returns the exit
/// code; on a worker, the same binary runs the job's tasks.
///
/// ```no_run
/// # use gristmill::prelude::*;
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct Grep {}
/// # impl Job for Grep {
/// #     const NAME: &'static str = "grep";
/// #     const ABOUT: &'static str = "";
/// #     fn map_output(&self) -> KeyedSchema { KeyedSchema::new([("line", DataType::Utf8)]) }
/// #     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> { Ok(Box::new(IdentityMapper)) }
/// #     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> { Ok(Box::new(IdentityReducer)) }
/// # }
/// fn main() -> std::process::ExitCode {
///     gristmill::main::<Grep>()
/// }
/// ```
pub fn main<J: Job>() -> ExitCode {
    init_cli();
    // A single-job binary runs every task it is given (whatever job name it carries).
    if let Some(code) = crate::run::serve_tasks(J::NAME, |_, task| Some(crate::cluster::task::run::<J>(task)))
    {
        return code;
    }
    let matches = Cli::<J>::command()
        .name(J::NAME)
        .bin_name(J::NAME)
        .about(J::ABOUT)
        .version(crate::VERSION)
        .after_help("Logs: set RUST_LOG (e.g. RUST_LOG=gristmill=info).")
        .get_matches();
    let cli = match Cli::<J>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    run_job(&cli.job, &cli.run)
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ => match text.as_bytes() {
            [byte] if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => Ok(*byte),
            _ => Err("expected one ASCII character other than a quote or a line break, or `tab`".to_owned()),
        },
    }
}

/// `NAME:TYPE[,NAME:TYPE...]`, types as Arrow writes them (`Int64`, `Utf8`,
/// `Decimal128(12, 2)`, `Timestamp(Microsecond, None)`): commas inside parentheses belong to
/// the type. Columns are nullable.
fn parse_schema(text: &str) -> Result<arrow::datatypes::SchemaRef, String> {
    use arrow::datatypes::{DataType, Field, Schema};
    let mut fields = Vec::new();
    for column in split_top_level(text) {
        let (name, ty) = column.split_once(':').ok_or_else(|| format!("`{column}`: expected NAME:TYPE"))?;
        let ty: DataType = ty.trim().parse().map_err(|e| format!("`{column}`: {e}"))?;
        fields.push(Field::new(name.trim(), ty, true));
    }
    if fields.is_empty() {
        return Err("expected at least one NAME:TYPE".to_owned());
    }
    Ok(std::sync::Arc::new(Schema::new(fields)))
}

/// `text` split at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| "expected KEY=VALUE".to_owned())?;
    Ok((key.trim().to_ascii_lowercase(), value.to_owned()))
}

/// Runs `job` with `args`, shows progress and a summary; the exit code follows the result.
///
/// For a program that builds the job itself rather than from flags. It does not serve the
/// task roles workers start a job binary in, so such a program submits to a cluster only
/// jobs whose binary is one of [`main`]'s (`GRISTMILL_JOB_BINARY`); locally it runs anything.
///
/// ```no_run
/// # use gristmill::prelude::*;
/// # #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
/// # struct Grep { #[arg(long)] pattern: String }
/// # impl Job for Grep {
/// #     const NAME: &'static str = "grep";
/// #     const ABOUT: &'static str = "";
/// #     fn map_output(&self) -> KeyedSchema { KeyedSchema::new([("line", DataType::Utf8)]) }
/// #     fn mapper(&self, _: &TaskInfo) -> JobResult<Box<dyn Mapper>> { Ok(Box::new(IdentityMapper)) }
/// #     fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> { Ok(Box::new(IdentityReducer)) }
/// # }
/// use clap::Parser;
/// use gristmill::cli::{RunArgs, run_job};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     run: RunArgs,
/// }
///
/// fn main() -> std::process::ExitCode {
///     let cli = Cli::parse();
///     let job = Grep { pattern: std::env::var("PATTERN").unwrap_or_else(|_| "error".into()) };
///     run_job(&job, &cli.run)
/// }
/// ```
pub fn run_job<J: Job>(job: &J, args: &RunArgs) -> ExitCode {
    let result = match &args.driver {
        Some(driver) => {
            args.submission(driver).and_then(|how| run(job, &args.to_config(), Mode::Cluster(&how)))
        }
        None => {
            let progress = Arc::new(Progress::default());
            let reporter = ProgressReporter::start(progress.clone(), args.progress);
            let result = run(job, &args.to_config(), Mode::Local(&progress));
            drop(reporter);
            result
        }
    };
    let result = match result {
        Ok(Submitted::Detached { .. }) => {
            crate::telemetry::shutdown();
            return ExitCode::SUCCESS;
        }
        Ok(Submitted::Finished(report)) => Ok(report),
        Err(e) => Err(e),
    };
    crate::telemetry::shutdown();
    match result {
        Ok(report) => {
            eprint!("{}", summary(J::NAME, &report, &args.output));
            if let Some(line) = job.describe_result(&report) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn summary(name: &str, report: &JobReport, output: &str) -> String {
    let c = report.counters();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let bytes = c.get(crate::exec::MAP_INPUT_BYTES);
    let mut s = format!(
        "{name} {}: committed {} rows in {} part files to {output}\n\
         \x20 input   {} files, {}, {} rows, {} map tasks\n\
         \x20 time    {:.2} s ({}/s)\n\
         \x20 counters\n",
        report.job_id,
        report.manifest.rows,
        report.manifest.files.len(),
        report.input_files,
        human_bytes(bytes),
        c.get(crate::exec::MAP_INPUT_RECORDS),
        report.map_tasks,
        secs,
        human_bytes((bytes as f64 / secs) as u64),
    );
    for (counter, value) in c.iter() {
        s.push_str(&format!("    {counter:<24} {value}\n"));
    }
    s
}

/// Sets up the logging (`RUST_LOG`, `--log-format`, see [`crate::logging`]) and the panic
/// hook of a job binary. Runs before the flags are parsed (so parsing and planning log
/// too): the format is read from the arguments themselves, else the environment (a task
/// process gets its worker's).
pub(crate) fn init_cli() {
    let format = log_format_arg(std::env::args()).unwrap_or_else(LogFormat::from_env);
    let name = std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "gristmill-job".to_owned());
    // A task process runs a cached binary named by its digest.
    let worker_role = crate::run::task_role_arg().is_some() || crate::cluster::executor::executor_role();
    let service = if worker_role { "gristmill-task".to_owned() } else { name };
    // `--otlp-endpoint` is read from the arguments too, like `--log-format`.
    let endpoint = crate::telemetry::endpoint(crate::telemetry::endpoint_from_args().as_deref());
    crate::logging::init(format, "warn", &service, endpoint);
    install_panic_hook();
}

/// The value of `--log-format` among `args`, if it is given and valid (clap then refuses
/// an invalid one).
fn log_format_arg(args: impl IntoIterator<Item = String>) -> Option<LogFormat> {
    use clap::ValueEnum;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--log-format") {
            Some("") => args.next(),
            Some(rest) => rest.strip_prefix('=').map(str::to_owned),
            None => continue,
        };
        return value.and_then(|v| LogFormat::from_str(&v, false).ok());
    }
    None
}

/// Joins a multi-line message (regex errors have several) into the one line users get.
pub(crate) fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Panics in tasks are caught and reported as task failures with their message, so the
/// default hook's second report is only logged; other panics keep the default hook.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_task = std::thread::current().name().is_some_and(|n| n.starts_with("gristmill-cpu"));
        if in_task {
            tracing::debug!(%info, "task panicked");
        } else {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_is_read_from_the_arguments_before_parsing() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(log_format_arg(args(&["job", "--log-format", "json"])), Some(LogFormat::Json));
        assert_eq!(log_format_arg(args(&["job", "--log-format=text", "-o", "x"])), Some(LogFormat::Text));
        assert_eq!(log_format_arg(args(&["job", "--log-format", "yaml"])), None);
        assert_eq!(log_format_arg(args(&["job", "--output", "x"])), None);
    }

    #[test]
    fn a_declared_schema_parses_arrow_type_names_with_commas_inside_parentheses() {
        use arrow::datatypes::DataType;
        let schema = parse_schema("zip:Utf8, amount:Decimal128(12, 2),day:Date32").unwrap();
        let types: Vec<_> =
            schema.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(
            types,
            [("zip", DataType::Utf8), ("amount", DataType::Decimal128(12, 2)), ("day", DataType::Date32)]
        );
        assert!(parse_schema("zip").unwrap_err().contains("NAME:TYPE"));
        assert!(parse_schema("zip:Nonsense").unwrap_err().contains("zip:Nonsense"));
        assert!(parse_schema(" , ").is_err());
    }
}
