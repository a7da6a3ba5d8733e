//! Run configuration: plain structs with defaults and `with_*` builders (clap stays at the
//! binary edge, in [`crate::cli`]).

use crate::error::{Error, Result};
use crate::input::{CsvOptions, InputFormat};
use crate::output::{Codec, OutputFormat, OutputLayout, ParquetOutput};
use crate::shuffle::RunBudget;
use crate::storage::StorageOptions;

/// The default split size: Hadoop's and Spark's 64 MiB...
pub const DEFAULT_SPLIT_SIZE: u64 = 64 << 20;
/// ...grown for large inputs on few cores, up to this, to keep about
/// [`SPLITS_PER_THREAD`] splits per thread (per-task overhead stays small, balance stays good).
pub const MAX_AUTO_SPLIT_SIZE: u64 = 1 << 30;
/// Splits per thread the automatic split size aims for.
pub const SPLITS_PER_THREAD: u64 = 4;
/// Bounds of the map output a task buffers before it sorts and combines it into a run.
const MAP_BUFFER_BOUNDS: (u64, u64) = (1 << 20, 256 << 20);
/// The memory limit when the machine's memory cannot be read.
const FALLBACK_MEMORY_LIMIT: u64 = 2 << 30;

/// How to run one job: what the flags of a job binary set ([`crate::cli`]), or built in
/// code for [`run`](crate::run::run).
///
/// ```
/// use gristmill::config::RunConfig;
///
/// let config = RunConfig::new(vec!["data/*.parquet".into()], "s3://bucket/out")
///     .with_threads(4)
///     .with_reducers(8)
///     .with_memory_limit(512 << 20)
///     .with_overwrite(true);
/// assert_eq!((config.threads, config.reducers, config.memory_limit), (4, 8, 512 << 20));
/// assert_eq!(config.output, "s3://bucket/out");
/// config.validate()?;
/// // Nothing to run with.
/// assert!(config.with_threads(0).validate().is_err());
/// # Ok::<(), gristmill::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Input files, directories, globs or URLs.
    pub inputs: Vec<String>,
    /// The output directory (path or URL).
    pub output: String,
    /// Worker threads (CPU parallelism).
    pub threads: usize,
    /// Reduce partitions (part files).
    pub reducers: usize,
    /// Bytes per split; `None` picks one from the input size and the threads.
    pub split_size: Option<u64>,
    /// Replace a committed output.
    pub overwrite: bool,
    /// Decode inputs with this format instead of detecting it from the name.
    pub format: Option<InputFormat>,
    /// Replace invalid UTF-8 in text input instead of failing.
    pub replace_invalid_utf8: bool,
    /// Rows of text input that may fail to parse (CSV, JSON lines, invalid UTF-8) before
    /// the job fails: they are skipped and written to `_bad_records/` in the output. 0:
    /// the first one fails the job.
    pub max_bad_records: u64,
    /// How CSV input is read.
    pub csv: CsvOptions,
    /// The schema of CSV and JSON lines input where the job declares none
    /// (`--input-schema`); `None` infers it from a sample.
    pub input_schema: Option<arrow::datatypes::SchemaRef>,
    /// Memory for map-side buffers and in-memory runs; past it, runs spill to disk.
    pub memory_limit: u64,
    /// The memory limit was set (`--memory-limit`), not the default: on a cluster it is
    /// each task's, which the scheduler reserves; else tasks take their worker's share.
    pub memory_limit_set: bool,
    /// Where spill files go (a job directory is made inside and removed at the end).
    pub spill_dir: std::path::PathBuf,
    /// Object-store settings for this job's inputs and output (its `--storage-option`s).
    pub storage_options: StorageOptions,
    /// Read input directories holding part files but no `_SUCCESS` (outputs that did not
    /// commit) instead of refusing them.
    pub allow_uncommitted: bool,
    /// The codec of Parquet part files, overriding the job's (`--compression`).
    pub compression: Option<Codec>,
    /// Rows per row group of Parquet part files, overriding the job's (`--row-group-size`).
    pub row_group_size: Option<usize>,
    /// The format of part files, overriding the job's (`--output-format`).
    pub output_format: Option<OutputFormat>,
    /// Hive partition columns of the output (`--partition-by`).
    pub partition_by: Vec<String>,
}

impl RunConfig {
    /// A configuration with defaults: all cores, one reducer per core.
    pub fn new(inputs: Vec<String>, output: impl Into<String>) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        RunConfig {
            inputs,
            output: output.into(),
            threads,
            reducers: threads,
            split_size: None,
            overwrite: false,
            format: None,
            replace_invalid_utf8: false,
            max_bad_records: 0,
            csv: CsvOptions::default(),
            input_schema: None,
            memory_limit: default_memory_limit(),
            memory_limit_set: false,
            spill_dir: std::env::temp_dir(),
            storage_options: StorageOptions::default(),
            allow_uncommitted: false,
            compression: None,
            row_group_size: None,
            output_format: None,
            partition_by: Vec::new(),
        }
    }

    /// Sets the format of part files (`None`: the job's).
    pub fn with_output_format(mut self, format: Option<OutputFormat>) -> Self {
        self.output_format = format;
        self
    }

    /// Partitions the output Hive style by `columns` (none: not partitioned).
    pub fn with_partition_by(mut self, columns: Vec<String>) -> Self {
        self.partition_by = columns;
        self
    }

    /// How `job`'s part files are written: its defaults with these overrides, checked
    /// against its output schema.
    pub fn output_layout_of<J: crate::job::Job>(&self, job: &J) -> Result<OutputLayout> {
        self.output_layout(job.output_format(), job.parquet_output(), &job.output_schema())
    }

    /// How part files are written: the job's `format` and `parquet` settings with these
    /// overrides. A job writing raw records keeps them (and takes no `--output-format` or
    /// `--partition-by`); CSV and JSON lines take `--compression` gzip, zstd or none, and are
    /// uncompressed without it; partition columns must be columns of `schema`.
    pub fn output_layout(
        &self,
        format: OutputFormat,
        parquet: ParquetOutput,
        schema: &arrow::datatypes::Schema,
    ) -> Result<OutputLayout> {
        if format == OutputFormat::Records {
            if self.output_format.is_some() || !self.partition_by.is_empty() {
                return Err(Error::Config(
                    "this job writes raw records: --output-format and --partition-by do not apply".into(),
                ));
            }
            return Ok(OutputLayout::records());
        }
        let format = self.output_format.unwrap_or(format);
        let mut layout = OutputLayout::parquet(self.parquet_output(parquet)).with_format(format);
        if format.is_text() {
            layout = layout.with_text_codec(self.compression.unwrap_or(Codec::None))?;
        }
        crate::output::hive::partition_columns(schema, &self.partition_by)?;
        Ok(layout.with_partition_by(self.partition_by.clone()))
    }

    /// Sets the codec of Parquet part files (`None`: the job's).
    pub fn with_compression(mut self, codec: Option<Codec>) -> Self {
        self.compression = codec;
        self
    }

    /// Sets the rows per row group of Parquet part files (`None`: the job's).
    pub fn with_row_group_size(mut self, rows: Option<usize>) -> Self {
        self.row_group_size = rows;
        self
    }

    /// How Parquet part files are written: the job's `defaults` with these overrides.
    pub fn parquet_output(&self, defaults: ParquetOutput) -> ParquetOutput {
        let mut out = defaults;
        if let Some(codec) = self.compression {
            out = out.with_compression(codec);
        }
        if let Some(rows) = self.row_group_size {
            out = out.with_row_group_rows(rows);
        }
        out
    }

    /// Sets the object-store options the job's URLs are resolved with.
    pub fn with_storage_options(mut self, options: StorageOptions) -> Self {
        self.storage_options = options;
        self
    }

    /// Sets the memory limit.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self.memory_limit_set = true;
        self
    }

    /// Sets the spill directory.
    pub fn with_spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spill_dir = dir.into();
        self
    }

    /// Map output one task buffers before sorting it into a run: a quarter of the limit
    /// shared by the threads (the rest holds runs in memory and merge buffers).
    pub fn map_buffer_bytes(&self) -> usize {
        (self.memory_limit / (4 * self.threads.max(1) as u64)).clamp(MAP_BUFFER_BOUNDS.0, MAP_BUFFER_BOUNDS.1)
            as usize
    }

    /// Sorted runs kept in memory before they spill: half the limit of owned memory, and
    /// up to the limit of mapped input pages (which the page cache holds, beside the
    /// process's own memory).
    pub fn run_budget(&self) -> RunBudget {
        RunBudget { owned: self.memory_limit / 2, mapped: self.memory_limit }
    }

    /// Sets the threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets the reducers.
    pub fn with_reducers(mut self, reducers: usize) -> Self {
        self.reducers = reducers;
        self
    }

    /// Sets the split size.
    pub fn with_split_size(mut self, bytes: u64) -> Self {
        self.split_size = Some(bytes);
        self
    }

    /// Allows replacing a committed output.
    pub fn with_overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Forces an input format.
    pub fn with_format(mut self, format: Option<InputFormat>) -> Self {
        self.format = format;
        self
    }

    /// Sets how CSV input is read.
    pub fn with_csv(mut self, csv: CsvOptions) -> Self {
        self.csv = csv;
        self
    }

    /// Reads CSV and JSON lines input with `schema` where the job declares none.
    pub fn with_input_schema(mut self, schema: Option<arrow::datatypes::SchemaRef>) -> Self {
        self.input_schema = schema;
        self
    }

    /// Reads input directories that hold part files but no `_SUCCESS` instead of refusing them.
    pub fn with_allow_uncommitted(mut self, allow: bool) -> Self {
        self.allow_uncommitted = allow;
        self
    }

    /// Replaces invalid UTF-8 instead of failing.
    pub fn with_replace_invalid_utf8(mut self, replace: bool) -> Self {
        self.replace_invalid_utf8 = replace;
        self
    }

    /// Skips up to `max` rows of text input that fail to parse, writing them aside.
    pub fn with_max_bad_records(mut self, max: u64) -> Self {
        self.max_bad_records = max;
        self
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        if self.threads == 0 {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        if self.reducers == 0 {
            return Err(Error::Config("--reducers must be at least 1".into()));
        }
        if self.split_size == Some(0) {
            return Err(Error::Config("--split-size must be at least 1 byte".into()));
        }
        if self.row_group_size == Some(0) {
            return Err(Error::Config("--row-group-size must be at least 1 row".into()));
        }
        Ok(())
    }

    /// The split size for `input_bytes` of input: the configured one, or 64 MiB grown so
    /// each thread gets about four splits.
    pub fn effective_split_size(&self, input_bytes: u64) -> u64 {
        self.split_size.unwrap_or_else(|| {
            let per_split = input_bytes.div_ceil(self.threads as u64 * SPLITS_PER_THREAD);
            per_split.clamp(DEFAULT_SPLIT_SIZE, MAX_AUTO_SPLIT_SIZE)
        })
    }
}

/// 40% of the memory this process may use: the machine's (`/proc/meminfo`), or less when
/// its cgroup (a container's memory limit) allows less; 2 GiB when neither can be read.
pub fn default_memory_limit() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    let machine = total_kib.map(|kib| kib * 1024);
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| cgroup_memory_limit(&c, "/sys/fs/cgroup"));
    let usable = match (machine, cgroup) {
        (Some(machine), Some(cgroup)) => Some(machine.min(cgroup)),
        (one, other) => one.or(other),
    };
    usable.map_or(FALLBACK_MEMORY_LIMIT, |bytes| bytes / 10 * 4)
}

/// The memory limit of this process's cgroup, given `/proc/self/cgroup` and where the
/// cgroup file systems are mounted: `memory.max` of cgroup v2 (the unified `0::PATH` line),
/// or `memory.limit_in_bytes` of v1's memory controller; `None` when unlimited ("max", or
/// v1's huge number) or unknown. The smallest limit of the cgroup and its ancestors counts
/// (a systemd slice or a pod bounds the cgroups under it); inside a container its own
/// cgroup is the root of the mount, which is tried too. On a hybrid host (v1 controllers
/// beside an empty unified hierarchy) the v1 memory controller's line is the one found.
pub fn cgroup_memory_limit(proc_self_cgroup: &str, mount: &str) -> Option<u64> {
    let mount = std::path::Path::new(mount);
    let read = |file: std::path::PathBuf| -> Option<u64> {
        let text = std::fs::read_to_string(file).ok()?;
        // "max" (v2) or a huge number (v1: no limit) mean unlimited.
        text.trim().parse::<u64>().ok().filter(|&bytes| bytes < 1 << 60)
    };
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        let (dir, file) = if controllers.is_empty() {
            (mount.to_owned(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (mount.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let own = dir.join(path);
        let smallest =
            own.ancestors().take_while(|d| d.starts_with(&dir)).filter_map(|d| read(d.join(file))).min();
        if let Some(bytes) = smallest {
            return Some(bytes);
        }
    }
    None
}

/// Parses sizes such as `512MiB`, `4GiB`, `64MB`, `10k`, `1000` (bytes). Units are powers
/// of 1024 (`k`/`KiB`/`KB` alike, as Hadoop and Spark read them).
pub fn parse_byte_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("`{text}` is not a size (try 64MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit `{other}` in `{text}` (use KiB, MiB, GiB)")),
    };
    Ok((number * (1u64 << shift) as f64) as u64)
}

/// Parses durations such as `30s`, `5m`, `1h`, `500ms`, `1.5s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (try 30s or 5m)"))?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => number / 1000.0,
        "" | "s" | "sec" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}` (use ms, s, m, h)")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
fn check_output_layouts(job: ParquetOutput) {
    use arrow::datatypes::{DataType, Field, Schema};
    let schema =
        Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("v", DataType::Int64, true)]);
    let config = RunConfig::new(vec![], "out");
    let layout = config.output_layout(OutputFormat::Parquet, job, &schema).unwrap();
    assert_eq!(layout, OutputLayout::parquet(job));
    let csv = config
        .clone()
        .with_output_format(Some(OutputFormat::Csv))
        .with_partition_by(vec!["k".into()])
        .output_layout(OutputFormat::Parquet, job, &schema)
        .unwrap();
    assert_eq!(
        (csv.format, csv.text_codec, csv.partition_by.as_slice()),
        (OutputFormat::Csv, Codec::None, &["k".to_owned()][..])
    );
    let gz = config.clone().with_compression(Some(Codec::Gzip(Some(9)))).output_layout(
        OutputFormat::Json,
        job,
        &schema,
    );
    assert_eq!(
        gz.unwrap().text_codec,
        Codec::Gzip(Some(9)),
        "the job's default format takes the flag's codec"
    );
    let snappy =
        config.clone().with_compression(Some(Codec::Snappy)).with_output_format(Some(OutputFormat::Csv));
    assert!(snappy.output_layout(OutputFormat::Parquet, job, &schema).is_err());
    let records = config.clone().with_partition_by(vec!["k".into()]);
    assert!(records.output_layout(OutputFormat::Records, job, &schema).is_err());
    assert_eq!(config.output_layout(OutputFormat::Records, job, &schema).unwrap(), OutputLayout::records());
    let missing =
        config.with_partition_by(vec!["x".into()]).output_layout(OutputFormat::Parquet, job, &schema);
    assert!(missing.unwrap_err().to_string().contains("--partition-by x"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cgroup_s_memory_limit_is_read_for_v2_and_v1() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path().to_str().unwrap();
        std::fs::create_dir_all(root.path().join("kubepods/pod1")).unwrap();
        std::fs::write(root.path().join("kubepods/pod1/memory.max"), "2147483648\n").unwrap();
        assert_eq!(super::cgroup_memory_limit("0::/kubepods/pod1\n", mount), Some(2 << 30));
        std::fs::write(root.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(super::cgroup_memory_limit("0::/\n", mount), None, "max: unlimited");
        // v1: the memory controller's hierarchy; inside a container, its root.
        std::fs::create_dir_all(root.path().join("memory")).unwrap();
        std::fs::write(root.path().join("memory/memory.limit_in_bytes"), "1073741824\n").unwrap();
        // A slice's limit bounds the cgroups under it, whose own are "max".
        std::fs::create_dir_all(root.path().join("user.slice/session-1.scope")).unwrap();
        std::fs::write(root.path().join("user.slice/memory.max"), "1073741824\n").unwrap();
        std::fs::write(root.path().join("user.slice/session-1.scope/memory.max"), "max\n").unwrap();
        assert_eq!(super::cgroup_memory_limit("0::/user.slice/session-1.scope\n", mount), Some(1 << 30));
        std::fs::write(root.path().join("user.slice/session-1.scope/memory.max"), "536870912\n").unwrap();
        assert_eq!(super::cgroup_memory_limit("0::/user.slice/session-1.scope\n", mount), Some(512 << 20));
        let v1 = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(super::cgroup_memory_limit(v1, mount), Some(1 << 30));
        std::fs::write(root.path().join("memory/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(super::cgroup_memory_limit(v1, mount), None, "v1's no-limit value");
        assert!(super::default_memory_limit() > 0);
    }

    use super::*;

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_byte_size("1.5k"), Ok(1536));
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
    }

    #[test]
    fn parquet_flags_override_the_job_s_defaults() {
        let job = ParquetOutput::default().with_compression(Codec::Snappy).with_row_group_rows(10);
        check_output_layouts(job);
        let config = RunConfig::new(vec![], "o");
        assert_eq!(config.parquet_output(job), job, "no flags: the job's choice");
        let config = config.with_compression(Some(Codec::Gzip(Some(9)))).with_row_group_size(Some(500));
        let out = config.parquet_output(job);
        assert_eq!((out.compression, out.row_group_rows), (Codec::Gzip(Some(9)), 500));
        assert!(config.with_row_group_size(Some(0)).validate().is_err());
    }

    #[test]
    fn split_size_grows_with_input_on_few_cores() {
        let c = RunConfig::new(vec!["x".into()], "o").with_threads(2);
        assert_eq!(c.effective_split_size(10 << 20), DEFAULT_SPLIT_SIZE);
        assert_eq!(c.effective_split_size(4 << 30), 512 << 20);
        assert_eq!(c.clone().with_split_size(1).effective_split_size(4 << 30), 1);
    }
}
