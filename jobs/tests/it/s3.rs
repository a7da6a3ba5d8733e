//! Jobs reading and writing `s3://` against a real S3 server over HTTP (moto, started by
//! `scripts/test` on 127.0.0.1): results equal the same jobs on local files, the output is
//! read back by a client that is not ours (boto3 + pyarrow), and S3 failures give clear
//! errors naming the URL.

use std::process::Command;

use crate::support::*;

/// The S3 endpoint `scripts/test` started. Missing means the suite was not started the
/// way CI runs it: fail, never skip.
fn endpoint() -> String {
    std::env::var("GRISTMILL_S3_ENDPOINT")
        .expect("GRISTMILL_S3_ENDPOINT is not set: run scripts/test, which starts the S3 test server")
}

/// A job command talking to the test S3 server with test credentials.
fn job(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
        .env("AWS_REGION", "us-east-1")
        .env("GRISTMILL_PROGRESS", "off");
    c
}

fn run_job(name: &str, args: &[&str]) -> (bool, String) {
    let out = job(name).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Python (boto3) snippets against the test server.
fn boto(script: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import boto3, sys, json, io\n\
         s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
         aws_secret_access_key='testing-secret-value', region_name='us-east-1')\n",
        endpoint()
    );
    run_python(&format!("{prelude}{script}"), args)
}

/// Creates a bucket named `prefix-<unique>` (the server may outlive one test run) and
/// returns its name.
fn create_bucket(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    boto("s3.create_bucket(Bucket=sys.argv[1])", &[&name]);
    name
}

fn upload_dir(dir: &std::path::Path, bucket: &str, prefix: &str) {
    boto(
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
