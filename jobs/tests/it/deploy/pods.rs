//! Pods (or compose services) as processes, each on a host of its own ([`Hosts`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::super::cluster_support::{cluster_bin, wait_until};
use super::super::netns::Hosts;
use super::super::support::{
    bin, oracle_wordcount, python, read_word_counts, s, venv_script, write_text_files,
};

/// The processes of a rendered deployment, and a client host (the last one) to reach them.
pub struct Pods {
    hosts: Hosts,
    /// Pod name -> its host.
    index: BTreeMap<String, usize>,
    client: usize,
    children: Vec<Child>,
    path: String,
}

/// The environment a pod's entry names: its own values only, plus PATH (to find
/// `gristmill`, `gristmill-worker` and the shell) and a quiet log level.
fn pod_env(pod: &Value, path: &str) -> BTreeMap<String, String> {
    let mut env = client_env(pod);
    env.insert("PATH".into(), path.to_owned());
    env.insert("RUST_LOG".into(), "warn".into());
    env
}

/// A pod's `env` as given.
pub fn client_env(pod: &Value) -> BTreeMap<String, String> {
    let env = pod["env"].as_object().unwrap();
    env.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect()
}

impl Pods {
    /// Starts the pods named in `only` in that order (every pod when empty): images other
    /// than Gristmill's are stood in for (MinIO by the test S3 server); one-shot services
    /// that others wait for (`service_completed_successfully`) run to their end first.
    pub fn start(rendered: &Value, root: &Path, only: &[&str]) -> Pods {
        let all = rendered["pods"].as_array().unwrap();
        let chosen: Vec<&Value> = if only.is_empty() {
            all.iter().collect()
        } else {
            only.iter().map(|name| all.iter().find(|p| p["name"] == *name).unwrap()).collect()
        };
        let hosts = Hosts::new(chosen.len() + 1);
        let index: BTreeMap<String, usize> =
            chosen.iter().enumerate().map(|(i, p)| (p["name"].as_str().unwrap().to_owned(), i + 1)).collect();
        let mut names = Vec::new();
        for service in rendered["services"].as_array().unwrap() {
            let Some(&h) = service["pods"].get(0).and_then(|p| index.get(p.as_str().unwrap())) else {
                continue;
            };
            names.extend(
                service["names"].as_array().unwrap().iter().map(|n| (n.as_str().unwrap().to_owned(), h)),
            );
        }
        hosts.set_names(&names);
        let bin_dir = cluster_bin("gristmill").parent().unwrap().to_owned();
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display());
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut pods = Pods { client: chosen.len() + 1, hosts, index, children: Vec::new(), path };
        let awaited: Vec<&str> = all
            .iter()
            .flat_map(|p| p["runs_before"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        for pod in chosen {
            pods.start_pod(pod, &logs, awaited.contains(&pod["name"].as_str().unwrap()));
        }
        pods
    }

    /// Starts `pod`, or runs it to its end when others wait for that (`oneshot`).
    fn start_pod(&mut self, pod: &Value, logs: &Path, oneshot: bool) {
        let name = pod["name"].as_str().unwrap();
        for dir in pod["dirs"].as_array().unwrap() {
            std::fs::create_dir_all(dir.as_str().unwrap()).unwrap();
        }
        let image = pod["image"].as_str().unwrap_or("gristmill:latest");
        let argv: Vec<String> = if image.starts_with("minio/minio") {
            // MinIO's image cannot be pulled here: the test S3 server stands in, on its port.
            let moto = venv_script("moto_server");
            vec![s(&moto).into(), "-H".into(), "0.0.0.0".into(), "-p".into(), "9000".into()]
        } else {
            assert!(image.starts_with("gristmill"), "{name}: no stand-in for the image {image}");
            pod["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
        };
        let program = match argv[0].as_str() {
            "gristmill" | "gristmill-worker" => cluster_bin(&argv[0]),
            other => PathBuf::from(other),
        };
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let mut command = self.hosts.command(self.index[name], &program);
        command.args(&argv[1..]).env_clear().envs(pod_env(pod, &self.path)).stdout(Stdio::null()).stderr(log);
        if oneshot {
            let status = command.status().unwrap();
            assert!(status.success(), "{name} ran to its end");
        } else {
            self.children.push(command.spawn().unwrap_or_else(|e| panic!("{name} starts: {e}")));
        }
    }

    /// The names of the pods started, in order.
    pub fn names(&self) -> Vec<&str> {
        let mut by_host: Vec<(&usize, &String)> = self.index.iter().map(|(n, h)| (h, n)).collect();
        by_host.sort();
        by_host.into_iter().map(|(_, n)| n.as_str()).collect()
    }

    /// Runs wordcount from the client host with `env` (the cluster's URL and certificates):
    /// input and output in `bucket` on S3 when given (AWS_* in `env`), else on disk.
    pub fn run_wordcount(&self, root: &Path, env: &BTreeMap<String, String>, bucket: Option<&str>) {
        let texts = write_text_files(&root.join("in"), 3, 300);
        let out = root.join("out");
        let (input, output) = match bucket {
            Some(bucket) => {
                self.s3(env, S3_UPLOAD, &[bucket, s(&root.join("in"))]);
                (format!("s3://{bucket}/text/"), format!("s3://{bucket}/counts/"))
            }
            None => (s(&root.join("in")).to_owned(), s(&out).to_owned()),
        };
        let job = self
            .hosts
            .command(self.client, &bin("wordcount"))
            .args(["--input", &input, "--output", &output, "--reducers", "3"])
            .env_clear()
            .envs(env)
            .env("PATH", &self.path)
            .env("GRISTMILL_PROGRESS", "off")
            .output()
            .unwrap();
        assert!(job.status.success(), "wordcount across the pods: {}", String::from_utf8_lossy(&job.stderr));
        if let Some(bucket) = bucket {
            self.s3(env, S3_DOWNLOAD, &[bucket, s(&out)]);
        }
        let contents: Vec<String> = texts.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        assert_eq!(read_word_counts(&out), oracle_wordcount(&contents));
    }

    /// Runs a boto3 `script` on the client host with the S3 settings of `env`.
    fn s3(&self, env: &BTreeMap<String, String>, script: &str, args: &[&str]) {
        let aws = env.iter().filter(|(k, _)| k.starts_with("AWS_"));
        let out =
            self.hosts.command(self.client, &python()).arg("-c").arg(script).args(args).envs(aws).output();
        let out = out.unwrap();
        assert!(out.status.success(), "S3 from the client: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The HTTP status of `https://POD:PORT/PATH` from the client host (certificates not
    /// verified, as a kubelet's probes), once it is 200 or after 30 s.
    pub fn https_status(&self, pod: &str, port: u64, path: &str) -> String {
        let url = format!("https://{}:{port}{path}", self.hosts.ip(self.index[pod]));
        let mut code = String::new();
        let curl = Path::new("/usr/bin/curl");
        wait_until(&format!("{url} answers 200"), Duration::from_secs(30), || {
            let out = self
                .hosts
                .command(self.client, curl)
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output();
            code = String::from_utf8_lossy(&out.unwrap().stdout).into_owned();
            code == "200"
        });
        code
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Creates the bucket and uploads every file of a directory under `text/`.
const S3_UPLOAD: &str = r#"
import os, sys, time, boto3
bucket, src = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for attempt in range(100):  # until the S3 server, just started, answers
    try:
        s3.create_bucket(Bucket=bucket)
        break
    except Exception:
        if attempt == 99:
            raise
        time.sleep(0.2)
for name in sorted(os.listdir(src)):
    s3.upload_file(os.path.join(src, name), bucket, "text/" + name)
"#;

/// Downloads `counts/` into a directory.
const S3_DOWNLOAD: &str = r#"
import os, sys, boto3
bucket, dst = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="counts/"):
    for obj in page.get("Contents", []):
        path = os.path.join(dst, obj["Key"][len("counts/"):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, obj["Key"], path)
"#;
