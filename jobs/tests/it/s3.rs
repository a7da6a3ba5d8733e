//! Jobs reading and writing `s3://` against a real S3 server over HTTP (moto, started by
//! `scripts/test` on 127.0.0.1): results equal the same jobs on local files, the output is
//! read back by a client that is not ours (boto3 + pyarrow), and S3 failures give clear
//! errors naming the URL.

use std::process::Command;
use std::sync::Arc;

use arrow::array::BinaryArray;
use arrow::datatypes::{Field, Schema, SchemaRef};
use gristmill::config::RunConfig;
use gristmill::local::run_local;
use gristmill::output::OutputFormat;
use gristmill::prelude::*;
use gristmill::progress::Progress;
use gristmill::storage::StorageOptions;
use gristmill_jobs::sample::SplitMix64;
use gristmill_jobs::wordcount::WordCount;

use crate::support::*;

/// The S3 endpoint `scripts/test` started. Missing means the suite was not started the
/// way CI runs it: fail, never skip.
fn endpoint() -> String {
    std::env::var("GRISTMILL_S3_ENDPOINT")
        .expect("GRISTMILL_S3_ENDPOINT is not set: run scripts/test, which starts the S3 test server")
}

/// A job command talking to the test S3 server with test credentials.
fn job(name: &str) -> Command {
    job_at(&endpoint(), name)
}

/// A job command talking to the S3 server at `endpoint` with test credentials.
fn job_at(endpoint: &str, name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
        .env("AWS_REGION", "us-east-1")
        .env("GRISTMILL_PROGRESS", "off");
    c
}

pub(crate) fn run_job(name: &str, args: &[&str]) -> (bool, String) {
    let out = job(name).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Python (boto3) snippets against the test server.
pub(crate) fn boto(script: &str, args: &[&str]) -> String {
    boto_at(&endpoint(), script, args)
}

/// Python (boto3) snippets against the S3 server at `endpoint`.
fn boto_at(endpoint: &str, script: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import boto3, sys, json, io\n\
         s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='testing', \
         aws_secret_access_key='testing-secret-value', region_name='us-east-1')\n"
    );
    run_python(&format!("{prelude}{script}"), args)
}

/// Creates a bucket named `prefix-<unique>` (the server may outlive one test run) and
/// returns its name.
pub(crate) fn create_bucket(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    boto("s3.create_bucket(Bucket=sys.argv[1])", &[&name]);
    name
}

pub(crate) fn upload_dir(dir: &std::path::Path, bucket: &str, prefix: &str) {
    upload_dir_at(&endpoint(), dir, bucket, prefix);
}

fn upload_dir_at(endpoint: &str, dir: &std::path::Path, bucket: &str, prefix: &str) {
    boto_at(
        endpoint,
        "import os\nfor f in sorted(os.listdir(sys.argv[1])):\n    \
         s3.upload_file(os.path.join(sys.argv[1], f), sys.argv[2], sys.argv[3] + '/' + f)",
        &[s(dir), bucket, prefix],
    );
}

/// Reads a committed output on S3 with boto3 + pyarrow: checks `_SUCCESS` lists exactly
/// the part objects present, and returns every row as sorted JSON lines.
fn read_s3_output(bucket: &str, prefix: &str) -> Vec<String> {
    let out = boto(
        "import pyarrow.parquet as pq\n\
         b, p = sys.argv[1], sys.argv[2]\n\
         keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket=b, Prefix=p + '/').get('Contents', []))\n\
         manifest = json.loads(s3.get_object(Bucket=b, Key=p + '/_SUCCESS')['Body'].read())\n\
         listed = sorted(p + '/' + f['name'] for f in manifest['files'])\n\
         assert keys == sorted(listed + [p + '/_SUCCESS']), (keys, listed)\n\
         rows = []\n\
         for f in manifest['files']:\n    \
             t = pq.read_table(io.BytesIO(s3.get_object(Bucket=b, Key=p + '/' + f['name'])['Body'].read()))\n    \
             assert t.num_rows == f['rows']\n    \
             rows += [json.dumps(r, sort_keys=True, default=str) for r in t.to_pylist()]\n\
         print('\\n'.join(sorted(rows)))",
        &[bucket, prefix],
    );
    out.lines().map(str::to_owned).collect()
}

/// The same rows from a local output, read with pyarrow too.
fn read_local_output(dir: &std::path::Path) -> Vec<String> {
    let out = run_python(
        "import sys, json, pyarrow.parquet as pq, os\n\
         m = json.load(open(os.path.join(sys.argv[1], '_SUCCESS')))\n\
         rows = []\n\
         for f in m['files']:\n    \
             rows += [json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(os.path.join(sys.argv[1], f['name'])).to_pylist()]\n\
         print('\\n'.join(sorted(rows)))",
        &[s(dir)],
    );
    out.lines().map(str::to_owned).collect()
}

#[test]
fn wordcount_and_grep_on_s3_equal_local_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_text_files(&input, 3, 200);
    let b = create_bucket("words");
    upload_dir(&input, &b, "text");

    let local = dir.path().join("local");
    run_ok("wordcount", &["-i", s(&input), "-o", s(&local), "--reducers", "3"]);
    let (text, counts) = (format!("s3://{b}/text/"), format!("s3://{b}/counts"));
    let (ok, err) =
        run_job("wordcount", &["-i", &text, "-o", &counts, "--reducers", "3", "--split-size", "5000"]);
    assert!(ok, "{err}");
    assert!(!err.contains("testing-secret-value"), "secrets never reach output: {err}");
    assert_eq!(read_s3_output(&b, "counts"), read_local_output(&local));

    let local = dir.path().join("local-grep");
    run_ok("grep", &["-e", "gamma", "-i", s(&input), "-o", s(&local)]);
    let (glob, grep) = (format!("s3a://{b}/text/*.txt"), format!("s3://{b}/grep"));
    let (ok, err) = run_job("grep", &["-e", "gamma", "-i", &glob, "-o", &grep]);
    assert!(ok, "{err}");
    assert_eq!(read_s3_output(&b, "grep"), read_local_output(&local));

    // Committed output on S3 is refused like local output.
    let (ok, err) = run_job("grep", &["-e", "gamma", "-i", &text, "-o", &grep]);
    assert!(!ok && err.contains(&format!("{grep} already holds a committed result")), "{err}");
}

#[test]
fn s3_failures_name_the_url() {
    let b = create_bucket("present");
    boto("s3.put_object(Bucket=sys.argv[1], Key='bad/x.parquet', Body=b'PAR1 not parquet PAR1')", &[&b]);
    boto("s3.put_object(Bucket=sys.argv[1], Key='ok/a.txt', Body=b'a b\\n')", &[&b]);
    let cases = [
        ("s3://no-such-bucket-here/x.txt".to_owned(), "no-such-bucket-here".to_owned()),
        (format!("s3://{b}/missing/key.txt"), format!("input not found: s3://{b}/missing/key.txt")),
        (format!("s3://{b}/ok/*.csv"), format!("glob matched no files: s3://{b}/ok/*.csv")),
        (format!("s3://{b}/bad/x.parquet"), format!("s3://{b}/bad/x.parquet: corrupt Parquet")),
        (format!("ftp://{b}/ok/a.txt"), "unsupported URL scheme `ftp`".to_owned()),
    ];
    for (i, (input, expected)) in cases.iter().enumerate() {
        let output = format!("s3://{b}/out-{i}");
        let (ok, err) = run_job("wordcount", &["-i", input, "-o", &output]);
        assert!(!ok, "{input} should fail");
        assert!(err.contains(&**expected), "{input}: `{err}` should mention `{expected}`");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// Reads a committed raw-record output (TeraSort's `.dat` parts) with boto3, or from a
/// local directory when `bucket` is empty: checks `_SUCCESS` lists exactly the part objects
/// present and each part holds its rows of 100 bytes; returns `partition rows sha256` per
/// part, in manifest order.
fn read_raw_output(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let out = boto_at(
        endpoint,
        "import hashlib, os\n\
         b, p = sys.argv[1], sys.argv[2]\n\
         if b:\n    \
             keys = sorted(o['Key'][len(p) + 1:] for o in s3.list_objects_v2(Bucket=b, Prefix=p + '/').get('Contents', []))\n    \
             read = lambda name: s3.get_object(Bucket=b, Key=p + '/' + name)['Body'].read()\n\
         else:\n    \
             keys = sorted(os.listdir(p))\n    \
             read = lambda name: open(os.path.join(p, name), 'rb').read()\n\
         manifest = json.loads(read('_SUCCESS'))\n\
         assert keys == sorted([f['name'] for f in manifest['files']] + ['_SUCCESS']), (keys, manifest)\n\
         for f in manifest['files']:\n    \
             data = read(f['name'])\n    \
             assert len(data) == 100 * f['rows'] == f['bytes'], f\n    \
             print(f['partition'], f['rows'], hashlib.sha256(data).hexdigest())",
        &[bucket, prefix],
    );
    out.lines().map(str::to_owned).collect()
}

/// The `_SUCCESS` counters of an output on the test server.
fn s3_counters(bucket: &str, prefix: &str) -> serde_json::Value {
    let out = boto(
        "print(json.dumps(json.loads(s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2] + '/_SUCCESS')['Body'].read())['counters']))",
        &[bucket, prefix],
    );
    serde_json::from_str(&out).unwrap()
}

/// TPC-H lineitem at SF 0.01 under `dir/lineitem`: 3 files of several row groups.
fn small_lineitem(dir: &std::path::Path) -> std::path::PathBuf {
    let generated = Command::new(venv_script("tpchgen-cli"))
        .args(["parquet", "--scale-factor", "0.01", "--tables", "lineitem", "--parts", "3"])
        .args(["--row-group-bytes", "1MB", "--output-dir", s(dir)])
        .output()
        .expect("tpchgen-cli starts");
    assert!(generated.status.success(), "tpchgen-cli: {}", String::from_utf8_lossy(&generated.stderr));
    dir.join("lineitem")
}

#[test]
fn tpch_q1_and_terasort_on_s3_equal_local_runs() {
    let dir = tempfile::tempdir().unwrap();
    let b = create_bucket("tpch-tera");

    // TPC-H lineitem: several files of several row groups; one map task per row group.
    let lineitem = small_lineitem(dir.path());
    upload_dir(&lineitem, &b, "lineitem");
    let local = dir.path().join("q1-local");
    let args = ["--reducers", "2", "--split-size", "1", "--threads", "2"];
    run_ok("tpch-q1", &[&["-i", s(&lineitem), "-o", s(&local)], &args[..]].concat());
    let (input, output) = (format!("s3://{b}/lineitem/"), format!("s3://{b}/q1"));
    let (ok, err) = run_job("tpch-q1", &[&["-i", &input, "-o", &output], &args[..]].concat());
    assert!(ok, "{err}");
    assert!(!err.contains("testing-secret-value"), "secrets never reach output: {err}");
    let rows = read_s3_output(&b, "q1");
    assert_eq!(rows.len(), 4, "query 1 has 4 groups: {rows:?}");
    assert_eq!(rows, read_local_output(&local));
    // The engine counted its requests: ranged GETs of footers and column chunks, no HEADs
    // of input files (sizes come from the listing).
    let counters = s3_counters(&b, "q1");
    let files = std::fs::read_dir(&lineitem).unwrap().count() as u64;
    let gets = counters["storage_get_requests"].as_u64().unwrap();
    assert!(gets >= 2 * files, "a footer and column chunks per file: {counters}");
    assert!(counters["storage_get_bytes"].as_u64().unwrap() > 0, "{counters}");

    // TeraSort: raw 100-byte records in, range-partitioned sorted parts out.
    terasort_on_s3_equals_local(dir.path(), &b, |args| run_job("terasort", args));
}

/// TeraSort of 30,000 records from `s3://bucket/tera/` to `s3://bucket/sorted` with `run`
/// (local or cluster mode) gives the bytes of every part of a local run, which validates.
fn terasort_on_s3_equals_local(dir: &std::path::Path, bucket: &str, run: impl Fn(&[&str]) -> (bool, String)) {
    let tera = dir.join("tera");
    run_ok("teragen", &["-n", "30000", "-o", s(&tera), "--parts", "3"]);
    upload_dir(&tera, bucket, "tera");
    let local = dir.join("sorted-local");
    let args = ["--reducers", "3", "--split-size", "256KiB"];
    run_ok("terasort", &[&["-i", s(&tera), "-o", s(&local)], &args[..]].concat());
    let (input, output) = (format!("s3://{bucket}/tera/"), format!("s3://{bucket}/sorted"));
    let (ok, err) = run(&[&["-i", &input, "-o", &output], &args[..]].concat());
    assert!(ok, "terasort on S3: {err}");
    let parts = read_raw_output(&endpoint(), bucket, "sorted");
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert_eq!(parts, read_raw_output(&endpoint(), "", s(&local)), "the same bytes in every part");
    let validate = run_ok("teravalidate", &["--input", s(&local)]);
    assert!(validate.contains("order: ok"), "{validate}");
}

/// A moto S3 server of one test's own, on a free 127.0.0.1 port; killed when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto with `env` added to its environment and waits (bounded) until it
    /// accepts connections.
    fn start(env: &[(&str, &str)]) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(venv_script("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("moto_server starts");
        let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}"), log, _dir: dir };
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let timeout = std::time::Duration::from_millis(200);
            if std::net::TcpStream::connect_timeout(&address, timeout).is_ok() {
                return moto;
            }
            let exited = moto.child.try_wait().unwrap();
            assert!(
                exited.is_none() && std::time::Instant::now() < deadline,
                "moto did not start: {}",
                moto.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Request lines in the server's log that contain `needle`.
    fn requests(&self, needle: &str) -> usize {
        self.log_text().lines().filter(|l| l.contains(needle)).count()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn wrong_credentials_fail_fast_naming_the_url() {
    // Only in this suite's setup (a missing shared server means a wrong setup: fail).
    endpoint();
    // A server of its own that checks every request's credentials: ours are unknown to it.
    let moto = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("a.txt");
    std::fs::write(&text, "a b\n").unwrap();
    let local_out = dir.path().join("out");
    let cases = [
        ("s3://locked/in/a.txt", s(&local_out), "access denied to s3://locked/in/a.txt"),
        ("s3://locked/in/*.txt", s(&local_out), "access denied to s3://locked/in"),
        (s(&text), "s3://locked/out", "access denied to s3://locked/out/_SUCCESS"),
    ];
    for (input, output, expected) in cases {
        let started = std::time::Instant::now();
        let out = job_at(&moto.endpoint, "wordcount")
            .args(["-i", input, "-o", output])
            .env("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY0000")
            .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-42")
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{input} -> {output} should fail");
        assert!(err.contains(expected), "{input} -> {output}: `{err}` should say `{expected}`");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("wrong-secret-value-42"), "the secret never reaches output: {err}");
        // A refusal is permanent: no retries with backoff (which take seconds).
        assert!(elapsed < std::time::Duration::from_secs(5), "took {elapsed:?}: retried? {err}");
        assert!(!local_out.join("_SUCCESS").exists());
    }
    assert!(moto.requests("403") >= 3, "the server refused: {}", moto.log_text());
}

#[test]
fn an_s3_server_going_away_mid_job_fails_clearly_or_succeeds_completely() {
    endpoint();
    let mut moto = Moto::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_wide_text(&input, 16 << 20);
    boto_at(&moto.endpoint, "s3.create_bucket(Bucket='vanishing')", &[]);
    upload_dir_at(&moto.endpoint, &input, "vanishing", "text");
    let expected = dir.path().join("expected");
    run_ok("wordcount", &["-i", s(&input), "-o", s(&expected), "--reducers", "2"]);

    // One thread, 64 KiB splits: hundreds of ranged GETs, one after another.
    let out = dir.path().join("out");
    let stderr = dir.path().join("stderr");
    let mut job = job_at(&moto.endpoint, "wordcount")
        .args(["-i", "s3://vanishing/text/", "-o", s(&out), "--reducers", "2"])
        .args(["--threads", "1", "--split-size", "64KiB"])
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while moto.requests("GET /vanishing/text/") < 5 && job.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job never read its input: {}", moto.log_text());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    moto.kill();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = job.kill();
            let _ = job.wait();
            panic!("the job did not end within 120 s of the server going away");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&stderr).unwrap();
    if status.success() {
        // Every read was done before the server went: the output must be complete.
        assert_eq!(read_word_counts(&out), read_word_counts(&expected), "success means complete output");
    } else {
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: ") && err.contains("s3://vanishing/text/"), "names the URL: {err}");
        assert!(!out.join("_SUCCESS").exists(), "no _SUCCESS after a failure");
        let leftovers: Vec<_> = std::fs::read_dir(&out).map(|d| d.collect()).unwrap_or_default();
        assert!(leftovers.is_empty(), "no part files left behind: {leftovers:?}");
    }
}

/// A word count whose reducer writes `bytes` of raw records, then fails: a part file's
/// multipart upload is in progress when the job fails.
#[derive(clap::Args, Clone, Debug, serde::Serialize, serde::Deserialize)]
struct FailsLate {
    #[arg(long)]
    bytes: usize,
}

impl Job for FailsLate {
    const NAME: &'static str = "fails-late";
    const ABOUT: &'static str = "test job";

    fn map_output(&self) -> KeyedSchema {
        WordCount::default().map_output()
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("record", DataType::Binary, false)]))
    }

    fn output_format(&self) -> OutputFormat {
        OutputFormat::Records
    }

    fn mapper(&self, task: &TaskInfo) -> JobResult<Box<dyn Mapper>> {
        WordCount::default().mapper(task)
    }

    fn reducer(&self, _: &TaskInfo) -> JobResult<Box<dyn Reducer>> {
        Ok(Box::new(LateFailure { bytes: self.bytes }))
    }
}

struct LateFailure {
    bytes: usize,
}

impl Reducer for LateFailure {
    fn reduce(&mut self, _: &KeyGroup<'_>, _: &mut Emitter) -> JobResult<()> {
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> JobResult<()> {
        // Rows of 1 KiB of random bytes (nothing a layer could compress away).
        let mut written = 0;
        let mut rng = SplitMix64::new(5);
        while written < self.bytes {
            let rows: Vec<Vec<u8>> = (0..1024)
                .map(|_| (0..128).flat_map(|_| rng.below(u64::MAX).to_le_bytes()).collect())
                .collect();
            let column = BinaryArray::from_iter_values(rows.iter());
            out.emit(RecordBatch::try_new(out.schema().clone(), vec![Arc::new(column)])?)?;
            written += 1024 * 1024;
        }
        Err(format!("failing on purpose after writing {written} bytes").into())
    }
}

/// Storage options reaching the S3 server at `endpoint` with test credentials.
fn options_for(endpoint: &str) -> StorageOptions {
    StorageOptions::new([
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing-secret-value"),
        ("aws_region", "us-east-1"),
    ])
}

/// A job run in this process against a server of its own, through the job's storage
/// options.
#[test]
fn a_failed_reducer_aborts_its_multipart_upload() {
    endpoint();
    let moto = Moto::start(&[]);
    boto_at(&moto.endpoint, "s3.create_bucket(Bucket='aborted')", &[]);
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("a.txt");
    std::fs::write(&text, "one line\n").unwrap();
    // 24 MiB: past object_store's 10 MiB buffer, so the part file is a multipart upload
    // with parts uploaded before the reducer fails.
    let job = FailsLate { bytes: 24 << 20 };
    let config = RunConfig::new(vec![s(&text).to_owned()], "s3://aborted/out")
        .with_threads(1)
        .with_reducers(1)
        .with_storage_options(options_for(&moto.endpoint));
    let err = run_local(&job, &config, &Arc::new(Progress::default())).unwrap_err().to_string();
    assert!(err.contains("failing on purpose"), "{err}");

    assert!(moto.requests("?uploads") >= 1, "a multipart upload started: {}", moto.log_text());
    let left = boto_at(
        &moto.endpoint,
        "print(json.dumps(s3.list_multipart_uploads(Bucket='aborted').get('Uploads', []), default=str))\n\
         print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='aborted').get('Contents', [])]))",
        &[],
    );
    assert_eq!(left.lines().collect::<Vec<_>>(), ["[]", "[]"], "no upload and no object left: {left}");
}

/// Two jobs in one process, each with its own storage options, each reach their own
/// server: options belong to a job, not to the process.
#[test]
fn jobs_in_one_process_use_their_own_storage_options() {
    endpoint();
    let servers = [Moto::start(&[]), Moto::start(&[])];
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("a.txt");
    std::fs::write(&text, "alpha beta alpha\n").unwrap();
    for (moto, prefix) in servers.iter().zip(["first", "second"]) {
        boto_at(&moto.endpoint, "s3.create_bucket(Bucket='own')", &[]);
        let config = RunConfig::new(vec![s(&text).to_owned()], format!("s3://own/{prefix}"))
            .with_threads(1)
            .with_reducers(1)
            .with_storage_options(options_for(&moto.endpoint));
        let report = run_local(&WordCount::default(), &config, &Arc::new(Progress::default())).unwrap();
        assert_eq!(report.manifest.rows, 2, "{prefix}");
    }
    let listing = "print(' '.join(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='own').get('Contents', []) \
                   if o['Key'].endswith('_SUCCESS'))))";
    let found: Vec<String> =
        servers.iter().map(|m| boto_at(&m.endpoint, listing, &[]).trim().to_owned()).collect();
    assert_eq!(found, ["first/_SUCCESS", "second/_SUCCESS"], "each job wrote to its own server only");
}

/// `--storage-option` flags for the test server, the only S3 settings a job gets in
/// [`cluster_jobs_reach_s3_through_their_own_storage_options`].
fn storage_option_flags() -> Vec<String> {
    options_for(&endpoint()).iter().map(|(k, v)| format!("--storage-option={k}={v}")).collect()
}

/// A cluster whose processes have no S3 settings of their own: a job submitted with
/// `--storage-option`s is planned, read, written and committed (by the driver) with them,
/// and they show nowhere in its output.
#[test]
fn cluster_jobs_reach_s3_through_their_own_storage_options() {
    use super::cluster_support::{Cluster, ClusterSpec};
    let cluster = Cluster::start(ClusterSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let b = create_bucket("options");
    let input = dir.path().join("in");
    write_text_files(&input, 2, 200);
    upload_dir(&input, &b, "text");
    let local = dir.path().join("local");
    run_ok("wordcount", &["-i", s(&input), "-o", s(&local), "--reducers", "2"]);

    let (text, out) = (format!("s3://{b}/text/"), format!("s3://{b}/counts"));
    let flags = storage_option_flags();
    let args: Vec<&str> =
        flags.iter().map(String::as_str).chain(["-i", &text, "-o", &out, "--reducers", "2"]).collect();
    let run = cluster.run("wordcount", &args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "wordcount on the cluster: {stderr}");
    assert!(!stderr.contains("testing-secret-value"), "secrets never reach output: {stderr}");
    assert_eq!(read_s3_output(&b, "counts"), read_local_output(&local));
}

/// The test server's environment for every process of a cluster.
pub(crate) fn s3_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint().as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret-value"),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[test]
fn s3_jobs_in_cluster_mode_equal_local_runs() {
    use super::cluster_support::{Cluster, ClusterSpec};
    let cluster = Cluster::start(ClusterSpec { env: s3_env(), ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let b = create_bucket("cluster");

    // Text: wordcount and grep; workers read and write S3 with their own credentials.
    let input = dir.path().join("in");
    write_text_files(&input, 3, 200);
    upload_dir(&input, &b, "text");
    let text = format!("s3://{b}/text/");
    for (job, extra) in [("wordcount", vec![]), ("grep", vec!["-e", "gamma"])] {
        let local = dir.path().join(format!("{job}-local"));
        let args = [&extra[..], &["--reducers", "3", "--split-size", "5000"]].concat();
        run_ok(job, &[&args[..], &["-i", s(&input), "-o", s(&local)]].concat());
        let out = format!("s3://{b}/{job}");
        let stdout = cluster.run(job, &[&args[..], &["-i", &text, "-o", &out]].concat());
        let stderr = String::from_utf8_lossy(&stdout.stderr);
        assert!(stdout.status.success(), "{job} on the cluster: {stderr}");
        assert!(!stderr.contains("testing-secret-value"), "secrets never reach output: {stderr}");
        assert_eq!(read_s3_output(&b, job), read_local_output(&local), "{job}");
    }

    // TPC-H Q1 over Parquet objects.
    let lineitem = small_lineitem(dir.path());
    upload_dir(&lineitem, &b, "lineitem");
    let local = dir.path().join("q1-local");
    let args = ["--reducers", "2", "--split-size", "1"];
    run_ok("tpch-q1", &[&["-i", s(&lineitem), "-o", s(&local)], &args[..]].concat());
    let (input, output) = (format!("s3://{b}/lineitem/"), format!("s3://{b}/q1"));
    let out = cluster.run("tpch-q1", &[&["-i", &input, "-o", &output], &args[..]].concat());
    assert!(out.status.success(), "tpch-q1 on the cluster: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_s3_output(&b, "q1"), read_local_output(&local));

    // TeraSort: raw records in and out.
    terasort_on_s3_equals_local(dir.path(), &b, |args| {
        let out = cluster.run("terasort", args);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    });
}

/// Open multipart uploads in `bucket`.
fn open_uploads(bucket: &str) -> usize {
    let out = boto("print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get('Uploads', [])))", &[bucket]);
    out.trim().parse().unwrap()
}

/// On S3 a reducer's part file is an upload the driver completes at the commit: losing
/// attempts that finish after it (their backups won) are aborted, never visible, and no
/// upload is left open.
#[test]
fn late_attempts_on_s3_leave_no_object_and_no_open_upload() {
    use super::cluster_support::{Cluster, ClusterSpec, wait_until};
    let cluster = Cluster::start(ClusterSpec { env: s3_env(), ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let b = create_bucket("late");
    let input = dir.path().join("in");
    write_text_files(&input, 3, 200);
    upload_dir(&input, &b, "text");
    let local = dir.path().join("local");
    let common = ["--reducers", "3", "--split-size", "5000"];
    run_ok("chaos", &[&common[..], &["-i", s(&input), "-o", s(&local)]].concat());
    // First reduce attempts read their partition, then take 10 s to close their part file:
    // backups (after 3 s) win, and the first attempts finish after the commit.
    let late = ["--chaos-stage", "reduce", "--sleep", "1", "--sleep-ms", "10000", "--sleep-late"];
    let (text, out) = (format!("s3://{b}/text/"), format!("s3://{b}/out"));
    let run = cluster.run("chaos", &[&common[..], &late[..], &["-i", &text, "-o", &out]].concat());
    assert!(run.status.success(), "chaos on the cluster: {}", String::from_utf8_lossy(&run.stderr));
    let jobs: serde_json::Value = serde_json::from_str(&cluster.get("/api/jobs")).unwrap();
    assert!(jobs[0]["backups_launched"].as_u64().unwrap() >= 1, "backups won: {jobs}");
    wait_until("the late attempts' uploads aborted", std::time::Duration::from_secs(40), || {
        open_uploads(&b) == 0
    });
    assert_eq!(read_s3_output(&b, "out"), read_local_output(&local));
}

/// The S3 server unreachable in the middle of a commit (one winner published), then back:
/// the driver retries the commit, which completes; the output equals the local run with
/// exactly the manifest's objects, and no upload is left open.
#[test]
fn an_s3_store_unreachable_mid_commit_is_retried_and_the_commit_completes() {
    use super::cluster_support::{Cluster, ClusterSpec, wait_until};
    let target: std::net::SocketAddr = endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = super::proxy::Proxy::start(target);
    let mut env: Vec<(String, String)> =
        s3_env().into_iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL").collect();
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint()));
    // The driver publishes one winner every 1.5 s: the store goes away between two.
    env.push((gristmill::driver::commit::COMMIT_PAUSE_ENV.into(), "1500".into()));
    let cluster = Cluster::start(ClusterSpec { env, ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    let b = create_bucket("outage");
    let input = dir.path().join("in");
    write_text_files(&input, 3, 200);
    let local = dir.path().join("local");
    let common = ["--reducers", "3", "--split-size", "5000"];
    run_ok("wordcount", &[&common[..], &["-i", s(&input), "-o", s(&local)]].concat());
    let out = format!("s3://{b}/out");
    let job = cluster.spawn("wordcount", &[&common[..], &["-i", s(&input), "-o", &out]].concat());
    let listed = |what: &str| {
        let script = "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1], Prefix='out/').get('Contents', [])))";
        boto(script, &[&b]).lines().filter(|k| k.contains(what)).count()
    };
    wait_until("a winner published mid-commit", std::time::Duration::from_secs(120), || listed("/part-") > 0);
    proxy.cut();
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(listed("_SUCCESS"), 0, "the commit cannot finish while the store is away");
    proxy.restore();
    let run = job.wait_with_output().unwrap();
    assert!(run.status.success(), "the job survives the outage: {}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(read_s3_output(&b, "out"), read_local_output(&local));
    wait_until("no open upload", std::time::Duration::from_secs(30), || open_uploads(&b) == 0);
}

#[test]
fn compressed_text_on_s3_equals_plain_text_and_counts_compressed_bytes_read() {
    use crate::compressed_text::compress;
    let dir = tempfile::tempdir().unwrap();
    let (plain, zipped) = (dir.path().join("plain"), dir.path().join("zipped"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&zipped).unwrap();
    let text = tricky_text(7, 3000);
    let (gz, zst) = (compress("gzip", text.as_bytes()), compress("zstd", text.as_bytes()));
    for (name, bytes) in [("a.txt", text.as_bytes()), ("b.txt", text.as_bytes())] {
        std::fs::write(plain.join(name), bytes).unwrap();
    }
    std::fs::write(zipped.join("a.txt.gz"), &gz).unwrap();
    std::fs::write(zipped.join("b.txt.zst"), &zst).unwrap();
    let b = create_bucket("zipped");
    upload_dir(&zipped, &b, "text");

    let local = dir.path().join("local");
    run_ok("wordcount", &["-i", s(&plain), "-o", s(&local), "--reducers", "2"]);
    let (input, counts) = (format!("s3://{b}/text/"), format!("s3://{b}/counts"));
    let (ok, err) =
        run_job("wordcount", &["-i", &input, "-o", &counts, "--reducers", "2", "--split-size", "1000"]);
    assert!(ok, "{err}");
    assert_eq!(read_s3_output(&b, "counts"), read_local_output(&local));
    let counters = s3_counters(&b, "counts");
    assert_eq!(counters["map_input_bytes"], 2 * text.len() as u64, "{counters}");
    assert_eq!(counters["storage_get_bytes"], (gz.len() + zst.len()) as u64, "{counters}");

    boto(
        "s3.put_object(Bucket=sys.argv[1], Key='cut/x.gz', Body=open(sys.argv[2], 'rb').read()[:500])",
        &[&b, s(&zipped.join("a.txt.gz"))],
    );
    let (ok, err) =
        run_job("wordcount", &["-i", &format!("s3://{b}/cut/x.gz"), "-o", &format!("s3://{b}/out")]);
    assert!(!ok);
    assert!(
        err.contains(&format!("truncated gzip stream in s3://{b}/cut/x.gz at compressed byte ")),
        "{err}"
    );
}
