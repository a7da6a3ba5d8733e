//! The deployment files of deploy/, checked on this machine, where no image can be built or
//! pulled and no Kubernetes runs: the Helm chart is rendered (`render.py`: a test-side
//! renderer of the chart's template subset, `helm` being unavailable here) and the
//! compose file parsed, and the processes they describe are started as real processes, each
//! in a network namespace of its own standing for a pod or container, with the Service and
//! host names in the namespaces' `/etc/hosts`; a job then runs across them. YAML and the
//! Dockerfile are linted ([`lint`]).

mod lint;
mod pods;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cluster_support::gristmill_cert;
use super::support::{python, s};
use pods::{Pods, client_env};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `render.py KIND PATH --root ROOT ARGS`: the pods and names, as JSON.
fn render(kind: &str, path: &Path, root: &Path, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/deploy/render.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args([kind, s(path), "--root", s(root)])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "render.py {kind}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kinds(rendered: &Value) -> Vec<&str> {
    rendered["kinds"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect()
}

#[test]
fn the_helm_chart_s_pods_run_a_job_across_namespaces() {
    let root = tempfile::tempdir().unwrap();
    let chart = repo().join("deploy/helm/gristmill");
    let plain = render("chart", &chart, root.path(), &[]);
    assert!(!kinds(&plain).contains(&"ScaledObject"), "KEDA only when enabled");
    // Reducers fetch from the other pods over the network (the pods share this machine's
    // disk, so they would read map output in place otherwise): through worker.env.
    let rendered = render(
        "chart",
        &chart,
        root.path(),
        &["--set", "autoscaling.enabled=true", "--set", "worker.env.GRISTMILL_NO_HOST_LOCAL_SHUFFLE=true"],
    );
    let mut found = kinds(&rendered);
    found.sort();
    assert_eq!(
        found,
        ["PodDisruptionBudget", "ScaledObject", "Service", "Service", "StatefulSet", "StatefulSet"]
    );

    // The Secret: a CA, a node certificate for the driver's Service and (wildcard) every
    // worker pod under the headless Service, a client certificate.
    let secret = root.path().join("secrets/gristmill-certs");
    std::fs::create_dir_all(root.path().join("secrets")).unwrap();
    gristmill_cert(&secret, &["create-ca"]);
    let names =
        ["gristmill-driver.default.svc.cluster.local", "*.gristmill-worker.default.svc.cluster.local"];
    gristmill_cert(&secret, &[&["create-node"][..], &names].concat());
    gristmill_cert(&secret, &["create-client", "tester"]);

    let pods = Pods::start(&rendered, root.path(), &[]);
    assert_eq!(pods.names(), ["gristmill-driver-0", "gristmill-worker-0", "gristmill-worker-1"]);
    let mut env = BTreeMap::new();
    env.insert(
        "GRISTMILL_DRIVER".to_owned(),
        "https://gristmill-driver.default.svc.cluster.local:7077".to_owned(),
    );
    env.insert("GRISTMILL_CERTS_DIR".to_owned(), s(&secret).to_owned());
    env.insert("GRISTMILL_USER".to_owned(), "tester".to_owned());
    pods.run_wordcount(root.path(), &env, None);

    // The probes the chart declares answer 200 on the running pods.
    for pod in rendered["pods"].as_array().unwrap() {
        for probe in pod["probes"].as_array().unwrap() {
            let (path, port) = (probe["path"].as_str().unwrap(), probe["port"].as_u64().unwrap());
            assert_eq!(probe["scheme"], "HTTPS");
            let code = pods.https_status(pod["name"].as_str().unwrap(), port, path);
            assert_eq!(code, "200", "{} {path}", pod["name"]);
        }
    }
    // The memory limit of the container reaches the worker as its budget.
    let worker = &rendered["pods"][1]["env"];
    assert_eq!(worker["GRISTMILL_WORKER_MEMORY_LIMIT"], (4u64 << 30).to_string());
}

#[test]
fn the_compose_file_s_services_run_a_job_on_s3_across_namespaces() {
    let root = tempfile::tempdir().unwrap();
    let rendered = render("compose", &repo().join("deploy/compose.yaml"), root.path(), &[]);
    let pods = Pods::start(&rendered, root.path(), &["minio", "certs", "driver", "worker-1", "worker-2"]);
    let client = rendered["pods"].as_array().unwrap().iter().find(|p| p["name"] == "client").unwrap();
    pods.run_wordcount(root.path(), &client_env(client), Some("gristmill"));
}
