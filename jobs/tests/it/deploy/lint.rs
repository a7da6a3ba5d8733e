//! Lint of the deployment files: yamllint (from PyPI, in the test venv) on the compose file,
//! the chart's own YAML and its rendered manifests; the Dockerfile checked by
//! `lint_dockerfile.py` (hadolint's main rules, on dockerfile-parse's parse: hadolint
//! cannot be installed here).

use std::path::Path;
use std::process::Command;

use super::super::support::{python, s};
use super::repo;

fn lint(args: &[&str]) -> std::process::Output {
    Command::new(python()).args(args).current_dir(repo()).output().unwrap()
}

#[test]
fn the_yaml_of_deploy_passes_yamllint() {
    let root = tempfile::tempdir().unwrap();
    // The chart's templates are not YAML before rendering: lint what they render to.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/deploy/render.py");
    let manifests = root.path().join("manifests.yaml");
    let out = Command::new(python())
        .arg(&script)
        .args([
            "chart",
            "deploy/helm/gristmill",
            "--root",
            s(root.path()),
            "--set",
            "autoscaling.enabled=true",
            "--manifests",
        ])
        .arg(&manifests)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files =
        ["deploy/compose.yaml", "deploy/helm/gristmill/values.yaml", "deploy/helm/gristmill/Chart.yaml"];
    let config = "deploy/yamllint.yaml";
    let out = lint(&[&["-m", "yamllint", "--strict", "-c", config][..], &files, &[s(&manifests)]].concat());
    assert!(out.status.success(), "yamllint: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_dockerfile_passes_its_lint() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/deploy/lint_dockerfile.py");
    let out = lint(&[s(&script), "deploy/Dockerfile", ".dockerignore"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The lint finds what it looks for: a Dockerfile breaking its rules fails.
    let bad = tempfile::tempdir().unwrap();
    let dockerfile = bad.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\nCMD gristmill\n",
    )
    .unwrap();
    let out = lint(&[s(&script), s(&dockerfile), ".dockerignore"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for rule in ["DL3007", "DL3015", "DL3009", "DL3025", "DL3002", "multi-stage"] {
        assert!(report.contains(rule), "{rule} in {report}");
    }
}
