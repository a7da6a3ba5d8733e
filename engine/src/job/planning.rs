//! [`PlanContext`]: what a job's [`Job::plan`](super::Job::plan) may read, once per job,
//! before any task runs.

use std::future::Future;
use std::sync::Mutex;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use serde::Serialize;
use tokio::runtime::Handle;

use super::side::Broadcasts;
use crate::config::RunConfig;
use crate::error::{Error, JobResult, Result};
use crate::input::{CsvOptions, InputFormat};
use crate::storage::{InputFile, Location, StorageOptions, resolve_inputs_with};

/// What [`Job::plan`](super::Job::plan) is handed: the job's `--input` flags and storage
/// options, helpers that read through the engine's storage on its I/O runtime (they block,
/// and every error names the file), and [`PlanContext::broadcast`] to hand a value to every
/// task.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use gristmill::config::RunConfig;
/// use gristmill::job::PlanContext;
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("stop.txt"), "a\nthe\n")?;
/// let path = dir.path().join("stop.txt").display().to_string();
/// let io = tokio::runtime::Runtime::new()?;
/// let ctx = PlanContext::new(io.handle().clone(), &RunConfig::new(vec![path.clone()], "out"));
///
/// let files = ctx.list(ctx.inputs())?;
/// assert_eq!(files[0].size, 6);
/// let words: Vec<String> = std::str::from_utf8(&ctx.read(&path)?)?.lines().map(String::from).collect();
/// ctx.broadcast("stopwords", &words)?;
/// assert_eq!(ctx.broadcasts().get::<Vec<String>>("stopwords")?, ["a", "the"]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PlanContext {
    io: Handle,
    inputs: Vec<String>,
    storage: StorageOptions,
    allow_uncommitted: bool,
    format: Option<InputFormat>,
    csv: CsvOptions,
    declared: Option<SchemaRef>,
    broadcasts: Mutex<Broadcasts>,
    /// The runtime behind `io`, when the context started its own.
    _runtime: Option<std::sync::Arc<tokio::runtime::Runtime>>,
}

impl PlanContext {
    /// The context of a job run with `config`, reading on the runtime behind `io`.
    pub fn new(io: Handle, config: &RunConfig) -> Self {
        PlanContext {
            io,
            inputs: config.inputs.clone(),
            storage: config.storage_options.clone(),
            allow_uncommitted: config.allow_uncommitted,
            format: config.format,
            csv: config.csv,
            declared: config.input_schema.clone(),
            broadcasts: Mutex::new(Broadcasts::default()),
            _runtime: None,
        }
    }

    /// The context of a job run with `config`, on an I/O runtime of its own (for code that
    /// plans outside a run, such as a pipeline between its rounds).
    pub(crate) fn with_own_runtime(config: &RunConfig) -> Result<Self> {
        let runtime = std::sync::Arc::new(crate::local::io_runtime()?);
        Ok(PlanContext {
            _runtime: Some(runtime.clone()),
            ..PlanContext::new(runtime.handle().clone(), config)
        })
    }

    /// The `--input` flags (empty for a job that names its own inputs).
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The job's object-store options (`--storage-option`, over the environment's).
    pub fn storage_options(&self) -> &StorageOptions {
        &self.storage
    }

    /// True when the user allows reading outputs that did not commit
    /// (`--allow-uncommitted`), for a job that lists side inputs again in its tasks.
    pub fn allow_uncommitted(&self) -> bool {
        self.allow_uncommitted
    }

    /// Runs `future` to its end on the engine's I/O runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.io.block_on(future)
    }

    /// The files `paths` (files, directories, globs or URLs) name, with their sizes, as the
    /// engine resolves `--input` (a committed output gives the files its manifest lists).
    pub fn list(&self, paths: &[String]) -> Result<Vec<InputFile>> {
        self.block_on(resolve_inputs_with(paths, &self.storage, self.allow_uncommitted))
    }

    /// The first file of `paths` and the Arrow schema the engine reads it with: its
    /// Parquet footer's, or for CSV and JSON lines the declared (`--input-schema`) or
    /// inferred one, as planning infers it.
    pub fn schema(&self, paths: &[String]) -> Result<(String, SchemaRef)> {
        let files = self.list(paths)?;
        let Some(file) = files.first() else {
            return Err(Error::Config(format!("{} holds no files to read a schema from", paths.join(" "))));
        };
        Ok((file.display(), self.block_on(self.file_schema(file))?))
    }

    /// The schema the engine reads `file` with (see [`PlanContext::schema`]).
    async fn file_schema(&self, file: &InputFile) -> Result<SchemaRef> {
        match InputFormat::detect(file, self.format) {
            InputFormat::Parquet => crate::input::footer_schema(file).await,
            InputFormat::Csv | InputFormat::Json => {
                let inferred =
                    crate::input::inferred_schema(file, self.format, &self.csv, self.declared.as_ref())
                        .await?;
                inferred.ok_or_else(|| Error::Internal(format!("{}: no schema inferred", file.display())))
            }
            InputFormat::Text => {
                Err(Error::Config(format!("{} is text: it has no schema to read", file.display())))
            }
        }
    }

    /// The Arrow schema of `file`'s Parquet footer (with its Hive partition columns), for
    /// a job whose inputs are Parquet whatever their names.
    pub fn parquet_schema(&self, file: &InputFile) -> Result<SchemaRef> {
        self.block_on(crate::input::footer_schema(file))
    }

    /// The whole object (or local file) at `path`, read with the job's storage options:
    /// for small side files.
    pub fn read(&self, path: &str) -> Result<Bytes> {
        let location = Location::parse_with(path, &self.storage)?;
        self.block_on(read_whole(&location))
    }

    /// Hands `value` to every task of the job under `name`, where
    /// [`TaskInfo::broadcast`](super::TaskInfo::broadcast) reads it. Values travel as
    /// JSON with the job's settings, together at most
    /// [`BROADCAST_LIMIT_BYTES`](super::BROADCAST_LIMIT_BYTES).
    pub fn broadcast(&self, name: &str, value: &impl Serialize) -> JobResult<()> {
        self.broadcasts.lock().map_err(|_| "a broadcast panicked")?.insert(name, value)
    }

    /// The values broadcast so far.
    pub fn broadcasts(&self) -> Broadcasts {
        self.broadcasts.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// The object at `location`, whole.
async fn read_whole(location: &Location) -> Result<Bytes> {
    let got = location.store().get(location.path()).await;
    let got = got.map_err(|source| Error::read(location.display(), source))?;
    got.bytes().await.map_err(|source| Error::read(location.display(), source))
}

/// `job` planned: a copy made through its serialized form (what a task receives), with
/// [`Job::plan`](super::Job::plan) run on it once; and the values its plan broadcast. A
/// plan error fails the job as an invalid one, before anything runs.
pub(crate) fn planned<J: super::Job>(job: &J, config: &RunConfig, io: &Handle) -> Result<(J, Broadcasts)> {
    let json =
        serde_json::to_value(job).map_err(|e| Error::InvalidJob(format!("cannot serialize the job: {e}")))?;
    let mut job: J = serde_json::from_value(json)
        .map_err(|e| Error::InvalidJob(format!("the job's parameters do not parse back: {e}")))?;
    let ctx = PlanContext::new(io.clone(), config);
    let span = tracing::info_span!("plan", job = J::NAME);
    span.in_scope(|| job.plan(&ctx)).map_err(|e| Error::InvalidJob(e.to_string()))?;
    Ok((job, ctx.broadcasts()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(io: &tokio::runtime::Runtime, inputs: Vec<String>) -> PlanContext {
        PlanContext::new(io.handle().clone(), &RunConfig::new(inputs, "out"))
    }

    #[test]
    fn lists_reads_and_infers_as_the_engine_does_naming_the_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "k,v\nx,1\ny,2\n").unwrap();
        std::fs::write(dir.path().join("b.csv"), "k,v\nz,3\n").unwrap();
        let io = crate::local::io_runtime().unwrap();
        let ctx = context(&io, vec![dir.path().display().to_string()]);
        let files = ctx.list(ctx.inputs()).unwrap();
        assert_eq!(files.iter().map(|f| f.size).collect::<Vec<_>>(), [12, 8]);
        let (file, schema) = ctx.schema(ctx.inputs()).unwrap();
        assert_eq!(file, csv.display().to_string(), "the first file's");
        assert_eq!(schema.field_with_name("v").unwrap().data_type(), &arrow::datatypes::DataType::Int64);
        assert_eq!(&ctx.read(&csv.display().to_string()).unwrap()[..], b"k,v\nx,1\ny,2\n");

        let missing = dir.path().join("missing.txt").display().to_string();
        let err = ctx.read(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing), "{err}");
        let err = ctx.parquet_schema(&files[0]).unwrap_err().to_string();
        assert!(err.contains(&file), "{err}");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello\n").unwrap();
        let err = ctx.schema(&[text.display().to_string()]).unwrap_err().to_string();
        assert!(err.contains("notes.txt is text"), "{err}");
    }

    #[test]
    fn a_job_is_planned_on_a_copy_made_through_its_serialized_form() {
        #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
        struct Probe {
            #[arg(long)]
            side: String,
            #[arg(skip)]
            #[serde(default)]
            learned: usize,
        }
        impl crate::job::Job for Probe {
            const NAME: &'static str = "probe";
            const ABOUT: &'static str = "probe";
            fn plan(&mut self, ctx: &PlanContext) -> JobResult<()> {
                self.learned = ctx.read(&self.side)?.len();
                ctx.broadcast("learned", &self.learned)
            }
            fn map_output(&self) -> crate::job::KeyedSchema {
                crate::job::record::record_schema::<str, u64>("k", "v")
            }
            fn mapper(&self, _: &crate::job::TaskInfo) -> JobResult<Box<dyn crate::job::Mapper>> {
                Ok(Box::new(crate::job::IdentityMapper))
            }
            fn reducer(&self, _: &crate::job::TaskInfo) -> JobResult<Box<dyn crate::job::Reducer>> {
                Ok(Box::new(crate::job::IdentityReducer))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let side = dir.path().join("side.bin");
        std::fs::write(&side, [0u8; 5]).unwrap();
        let io = crate::local::io_runtime().unwrap();
        let job = Probe { side: side.display().to_string(), learned: 0 };
        let (copy, broadcasts) = planned(&job, &RunConfig::new(vec![], "out"), io.handle()).unwrap();
        assert_eq!((job.learned, copy.learned), (0, 5), "the copy learned, the original is untouched");
        assert_eq!(broadcasts.get::<usize>("learned").unwrap(), 5);
        let gone = Probe { side: dir.path().join("gone").display().to_string(), learned: 0 };
        let err = planned(&gone, &RunConfig::new(vec![], "out"), io.handle()).err().unwrap().to_string();
        assert!(err.starts_with("invalid job") && err.contains(&gone.side), "{err}");
    }
}
