//! Running Gristmill as a service: the configuration sources of the daemons (flag, env,
//! file, default) read back through `gristmill config show`, `gristmill up` from start to
//! Ctrl-C, and a job binary the workers cannot execute.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cluster_support::{Cluster, ClusterSpec, cluster_bin, wait_until};
use super::support::{oracle_wordcount, read_word_counts, s, write_text_files};

/// `gristmill config show DAEMON ARGS` with exactly `env` set among GRISTMILL_ variables.
fn config_show(daemon: &str, args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut command = Command::new(cluster_bin("gristmill"));
    command.args(["config", "show", daemon]).args(args);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("GRISTMILL_")) {
        command.env_remove(key);
    }
    let out = command.envs(env.iter().copied()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "config show {daemon} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    // The source of each key is its line's comment.
    let mut sources = toml::Table::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap().trim();
        let source = line.rsplit("# ").next().unwrap().split(' ').next().unwrap();
        sources.insert(format!("{key}.source"), source.into());
    }
    let mut table: toml::Table = text.parse().unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    let mut daemon = table.remove(daemon).unwrap().as_table().unwrap().clone();
    daemon.extend(sources);
    daemon
}

fn value_and_source(table: &toml::Table, key: &str) -> (String, String) {
    let value = match &table[key] {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (value, table[&format!("{key}.source")].as_str().unwrap().to_owned())
}

#[test]
fn each_setting_comes_from_flag_env_file_or_default_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gristmill.toml");
    std::fs::write(
        &file,
        "[driver]\nmax_attempts = 7\nheartbeat_timeout = 4.5\nlisten = \"127.0.0.1:7100\"\nno_speculation = true\n\
         [worker]\nslots = 5\nlisten = \"127.0.0.1:7200\"\ndriver = \"https://file:7077\"\n",
    )
    .unwrap();
    let env = [("GRISTMILL_DRIVER_HEARTBEAT_TIMEOUT", "6"), ("GRISTMILL_DRIVER_LISTEN", "127.0.0.1:7101")];
    let driver = config_show("driver", &["--config", s(&file), "--listen", "127.0.0.1:7102"], &env);
    // flag > env > file > default, one key per rung.
    assert_eq!(value_and_source(&driver, "listen"), ("127.0.0.1:7102".into(), "flag".into()));
    assert_eq!(value_and_source(&driver, "heartbeat_timeout"), ("6".into(), "env".into()));
    assert_eq!(value_and_source(&driver, "max_attempts"), ("7".into(), "file".into()));
    assert_eq!(value_and_source(&driver, "no_speculation"), ("true".into(), "file".into()));
    assert_eq!(value_and_source(&driver, "max_stored_binaries"), ("64".into(), "default".into()));

    // The default file: gristmill.toml in the data dir (from the environment here).
    let worker = config_show(
        "worker",
        &["--slots", "3"],
        &[("GRISTMILL_WORKER_DATA_DIR", s(dir.path())), ("GRISTMILL_WORKER_LISTEN", "127.0.0.1:7201")],
    );
    assert_eq!(value_and_source(&worker, "slots"), ("3".into(), "flag".into()));
    assert_eq!(value_and_source(&worker, "listen"), ("127.0.0.1:7201".into(), "env".into()));
    assert_eq!(value_and_source(&worker, "driver"), ("https://file:7077".into(), "file".into()));
    assert_eq!(value_and_source(&worker, "log_retention"), ("1h".into(), "default".into()));
}

#[test]
fn every_environment_variable_reaches_its_setting() {
    // Each daemon's variables, from `config show` itself, each given a distinct valid value.
    for daemon in ["driver", "worker"] {
        let text = Command::new(cluster_bin("gristmill")).args(["config", "show", daemon]).output().unwrap();
        let text = String::from_utf8(text.stdout).unwrap();
        let vars: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| {
                let key = line.trim_start_matches("# ").split_whitespace().next()?.to_owned();
                let env = line.rsplit(", ").next()?.strip_suffix(')')?.to_owned();
                env.starts_with("GRISTMILL_").then_some((key, env))
            })
            .collect();
        assert!(vars.len() >= 10, "{daemon}: {text}");
        let value_for = |key: &str| match key {
            "log_format" => "json",
            "insecure" | "no_speculation" | "no_host_local_shuffle" => "true",
            "task_timeout" | "log_retention" | "drain_timeout" => "17m",
            "task_isolation" => "executor",
            "max_binary_bytes" | "memory_limit" => "17MiB",
            "heartbeat_timeout" | "speculation_after" => "17.5",
            "listen" | "http" | "advertise" => "127.0.0.1:17",
            "driver" | "otlp_endpoint" => "http://127.0.0.1:17",
            "binary_store" => "s3://seventeen/binaries",
            "data_dir" | "certs_dir" => "/seventeen",
            _ => "17",
        };
        let env: Vec<(&str, &str)> = vars.iter().map(|(key, var)| (var.as_str(), value_for(key))).collect();
        let shown = config_show(daemon, &[], &env);
        for (key, var) in &vars {
            let (value, source) = value_and_source(&shown, key);
            assert_eq!(source, "env", "{daemon} {key} from {var}");
            assert_eq!(value, value_for(key), "{daemon} {key} from {var}");
        }
    }
}

#[test]
fn up_runs_a_cluster_that_runs_a_job_and_ctrl_c_stops_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("up");
    let mut up = Command::new(cluster_bin("gristmill"))
        .args(["up", "--workers", "2", "--slots", "1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("GRISTMILL_CERTS_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // GRISTMILL_DRIVER=..., GRISTMILL_CERTS_DIR=..., GRISTMILL_USER=..., then comments.
    let mut env = Vec::new();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut ui = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("# web UI: ") {
            ui = url.to_owned();
            break;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        env.push((key.to_owned(), value.to_owned()));
    }
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["GRISTMILL_DRIVER", "GRISTMILL_CERTS_DIR", "GRISTMILL_USER"]);
    assert!(env[0].1.starts_with("https://127.0.0.1:"), "secured by default: {}", env[0].1);
    assert!(ui.starts_with("https://127.0.0.1:"), "{ui}");
    assert!(data_dir.join("certs/ca.crt").is_file() && data_dir.join("certs/node.crt").is_file());

    // A job submitted with the printed environment only.
    let texts = write_text_files(&dir.path().join("in"), 3, 200);
    let out = dir.path().join("out");
    let job = Command::new(super::support::bin("wordcount"))
        .args(["--input", s(&dir.path().join("in")), "--output", s(&out), "--reducers", "2"])
        .env_remove("GRISTMILL_CERTS_DIR")
        .envs(env.iter().cloned())
        .env("GRISTMILL_PROGRESS", "off")
        .output()
        .unwrap();
    assert!(job.status.success(), "wordcount on `up`: {}", String::from_utf8_lossy(&job.stderr));
    let contents: Vec<String> = texts.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert_eq!(read_word_counts(&out), oracle_wordcount(&contents));

    let children = children_of(up.id());
    assert_eq!(children.len(), 3, "a driver and two workers: {children:?}");
    let descendants: Vec<u32> = children.iter().flat_map(|&c| [vec![c], children_of(c)].concat()).collect();
    signal(up.id(), "INT");
    let status = up.wait().unwrap();
    assert!(status.success(), "up exits 0 on Ctrl-C: {status}");
    for pid in descendants {
        assert!(!alive(pid), "process {pid} of the cluster outlived `up`");
    }
}

#[test]
fn a_killed_up_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Command::new(cluster_bin("gristmill"))
        .args(["up", "--workers", "1", "--insecure", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("GRISTMILL_DRIVER=http://127.0.0.1:"), "plaintext with --insecure: {first}");
    assert!(!dir.path().join("certs").exists());
    let children = children_of(up.id());
    assert_eq!(children.len(), 2, "{children:?}");
    up.kill().unwrap();
    up.wait().unwrap();
    for pid in children {
        wait_until(&format!("process {pid} ends with `up`"), Duration::from_secs(15), || !alive(pid));
    }
}

#[test]
fn a_binary_the_workers_cannot_execute_fails_the_job_saying_why() {
    let cluster = Cluster::start(ClusterSpec { workers: 1, ..ClusterSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    write_text_files(&dir.path().join("in"), 1, 10);
    // The job, "built for aarch64" (a foreign ELF header), shipped instead of this build.
    let (machine, name) =
        if std::env::consts::ARCH == "aarch64" { (0x3e, "x86_64") } else { (0xb7, "aarch64") };
    let foreign = dir.path().join("wordcount-foreign");
    std::fs::write(&foreign, foreign_elf(machine)).unwrap();
    let out = dir.path().join("out");
    let input = dir.path().join("in");
    let args = ["--input", s(&input), "--output", s(&out)];
    let result = Command::new(super::support::bin("wordcount"))
        .args(args)
        .args(["--driver", &cluster.url])
        .env("GRISTMILL_CERTS_DIR", cluster.certs.as_ref().unwrap())
        .env("GRISTMILL_USER", super::cluster_support::TEST_USER)
        .env("GRISTMILL_JOB_BINARY", &foreign)
        .env("GRISTMILL_PROGRESS", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "the job cannot succeed");
    assert!(stderr.contains(&format!("is built for {name}")), "{stderr}");
    assert!(stderr.contains(&format!("this worker runs {}", std::env::consts::ARCH)), "{stderr}");
    assert!(!out.join("_SUCCESS").exists());
}

/// A 64-bit little-endian ELF header for `machine` with no program: it execs nowhere.
fn foreign_elf(machine: u16) -> Vec<u8> {
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    (elf[4], elf[5], elf[6]) = (2, 1, 1);
    elf[16..18].copy_from_slice(&2u16.to_le_bytes());
    elf[18..20].copy_from_slice(&machine.to_le_bytes());
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[52..54].copy_from_slice(&64u16.to_le_bytes());
    elf
}

/// The pids whose parent is `pid` (field 4 of /proc/PID/stat, after the command's name).
fn children_of(pid: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    let pids = entries.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|child| {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        stat.rsplit(") ").next().and_then(|rest| rest.split(' ').nth(1)) == Some(&pid.to_string())
    })
    .collect()
}

/// Whether `pid` runs (a zombie does not count: it has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// `cargo install --path` of the three packages into a temporary root, then the installed
/// binaries run a job on a cluster of their own (`gristmill up`). Debug builds in the shared
/// target directory: the binaries the suite already built are reused.
#[test]
fn cargo_install_gives_binaries_that_run_a_cluster_job() {
    let root = tempfile::tempdir().unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for package in ["engine", "worker", "jobs"] {
        // Cargo's own environment, not this test's: `cargo install` builds in the shared
        // target directory when CARGO_TARGET_DIR is set, and with this test's variables it
        // would invalidate the workspace's build of ring and all above it.
        let target_dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR is target/tmp");
        let out = crate::external_crate::cargo_in_the_workspace_s_environment(target_dir)
            .args(["install", "--locked", "--debug", "--offline", "--path"])
            .arg(workspace.join(package))
            .arg("--root")
            .arg(root.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo install --path {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let installed = root.path().join("bin");
    for name in ["gristmill", "gristmill-worker", "wordcount"] {
        assert!(installed.join(name).is_file(), "{name} installed");
    }
    let version = Command::new(installed.join("gristmill")).arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(version.starts_with(&format!("gristmill {}", env!("CARGO_PKG_VERSION"))), "{version}");

    let dir = tempfile::tempdir().unwrap();
    let mut up = Command::new(installed.join("gristmill"))
        .args(["up", "--workers", "1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("up"))
        .env_remove("GRISTMILL_CERTS_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // (The reader stays open while `up` runs: it prints more lines.)
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let env: Vec<(String, String)> = lines
        .by_ref()
        .map(Result::unwrap)
        .take_while(|line| !line.starts_with('#'))
        .map(|line| line.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap())
        .collect();
    let texts = write_text_files(&dir.path().join("in"), 2, 50);
    let out = dir.path().join("out");
    let job = Command::new(installed.join("wordcount"))
        .args(["--input", s(&dir.path().join("in")), "--output", s(&out)])
        .env_remove("GRISTMILL_CERTS_DIR")
        .envs(env)
        .env("GRISTMILL_PROGRESS", "off")
        .output()
        .unwrap();
    signal(up.id(), "TERM");
    assert!(up.wait().unwrap().success());
    assert!(job.status.success(), "installed wordcount: {}", String::from_utf8_lossy(&job.stderr));
    let contents: Vec<String> = texts.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert_eq!(read_word_counts(&out), oracle_wordcount(&contents));
}

#[test]
fn docs_configuration_md_lists_every_setting_with_its_flag_and_variable() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    for daemon in ["driver", "worker"] {
        let out = Command::new(cluster_bin("gristmill")).args(["config", "show", daemon]).output().unwrap();
        for line in String::from_utf8(out.stdout).unwrap().lines().filter(|l| l.contains(" (--")) {
            let key = line.trim_start_matches("# ").split_whitespace().next().unwrap();
            let origin = line.rsplit(" (").next().unwrap().trim_end_matches(')');
            let row = docs
                .lines()
                .find(|row| row.starts_with(&format!("| {daemon} | `{key}` |")))
                .unwrap_or_else(|| panic!("docs/configuration.md has no row for {daemon} `{key}`"));
            for part in origin.split(", ") {
                assert!(row.contains(&format!("`{part}`")), "{daemon} `{key}`: {part} missing from {row}");
            }
        }
    }
}
