//! The layering without the environment (which the integration tests set on real processes).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command, value_parser};

use super::*;

const WORKER: Section = Section { table: "worker", subcommand: None };
const DRIVER: Section = Section { table: "driver", subcommand: Some("driver") };

fn daemon(name: &'static str) -> Command {
    Command::new(name)
        .arg(
            Arg::new("listen").long("listen").env("GRISTMILL_TEST_UNSET_LISTEN").default_value("127.0.0.1:0"),
        )
        .arg(
            Arg::new("max_attempts").long("max-attempts").value_parser(value_parser!(u32)).default_value("4"),
        )
        .arg(Arg::new("no_speculation").long("no-speculation").action(ArgAction::SetTrue))
        .arg(Arg::new("http").long("http"))
        .arg(Arg::new("data_dir").long("data-dir").value_parser(value_parser!(PathBuf)))
        .arg(Arg::new("config").long("config").value_parser(value_parser!(PathBuf)))
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn setting<'a>(layered: &'a Layered, key: &str) -> &'a Setting {
    layered.settings.iter().find(|s| s.key == key).unwrap()
}

fn with_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DEFAULT_FILE_NAME), text).unwrap();
    let path = dir.path().join(DEFAULT_FILE_NAME).display().to_string();
    (dir, path)
}

#[test]
fn without_a_file_every_value_is_a_default_or_a_flag() {
    let layered = parse_layered(daemon("w"), args(&["w", "--max-attempts", "7"]), WORKER).unwrap();
    assert_eq!(layered.file, None);
    let listen = setting(&layered, "listen");
    assert_eq!((listen.value.as_deref(), listen.source), (Some("127.0.0.1:0"), Source::Default));
    assert_eq!(listen.env.as_deref(), Some("GRISTMILL_TEST_UNSET_LISTEN"));
    let attempts = setting(&layered, "max_attempts");
    assert_eq!((attempts.value.as_deref(), attempts.source), (Some("7"), Source::Flag));
    let http = setting(&layered, "http");
    assert_eq!((http.value.as_deref(), http.source), (None, Source::Unset));
    assert!(layered.settings.iter().all(|s| s.key != "config"), "--config is not a setting");
}

#[test]
fn the_file_replaces_defaults_and_flags_replace_the_file() {
    let (_dir, path) =
        with_file("[worker]\nlisten = \"0.0.0.0:7000\"\nmax_attempts = 9\nno_speculation = true\n");
    let layered =
        parse_layered(daemon("w"), args(&["w", "--config", &path, "--max-attempts", "2"]), WORKER).unwrap();
    assert_eq!(layered.file.as_deref(), Some(std::path::Path::new(&path)));
    let listen = setting(&layered, "listen");
    assert_eq!((listen.value.as_deref(), listen.source), (Some("0.0.0.0:7000"), Source::File));
    let attempts = setting(&layered, "max_attempts");
    assert_eq!((attempts.value.as_deref(), attempts.source), (Some("2"), Source::Flag));
    assert!(layered.matches.get_flag("no_speculation"));
    assert_eq!(setting(&layered, "no_speculation").source, Source::File);
    assert_eq!(layered.matches.get_one::<u32>("max_attempts"), Some(&2));
}

#[test]
fn the_default_file_is_gristmill_toml_in_the_data_dir_and_may_be_missing() {
    let (dir, _) = with_file("[worker]\nhttp = \"127.0.0.1:9\"\n");
    let data_dir = dir.path().display().to_string();
    let layered = parse_layered(daemon("w"), args(&["w", "--data-dir", &data_dir]), WORKER).unwrap();
    assert_eq!(setting(&layered, "http").value.as_deref(), Some("127.0.0.1:9"));
    let empty = tempfile::tempdir().unwrap();
    let layered =
        parse_layered(daemon("w"), args(&["w", "--data-dir", &empty.path().display().to_string()]), WORKER)
            .unwrap();
    assert_eq!(layered.file, None);
    let missing = empty.path().join("nope.toml").display().to_string();
    let named = parse_layered(daemon("w"), args(&["w", "--config", &missing]), WORKER);
    assert!(matches!(named, Err(SettingsError::Read { .. })), "a file named by --config must exist");
}

#[test]
fn the_driver_reads_its_own_table_and_global_flags() {
    let top = Command::new("gristmill")
        .arg(Arg::new("log_format").long("log-format").global(true).default_value("text"))
        .subcommand(daemon("driver"))
        .subcommand(Command::new("jobs"));
    let (_dir, path) = with_file("[driver]\nlog_format = \"json\"\nmax_attempts = 5\n[worker]\nslots = 3\n");
    let layered = parse_layered(top, args(&["gristmill", "driver", "--config", &path]), DRIVER).unwrap();
    let driver = layered.matches.subcommand_matches("driver").unwrap();
    assert_eq!(driver.get_one::<u32>("max_attempts"), Some(&5));
    assert_eq!(driver.get_one::<String>("log_format").map(String::as_str), Some("json"));
    assert_eq!(setting(&layered, "log_format").source, Source::File);
}

#[test]
fn unknown_keys_and_wrong_shapes_are_refused_naming_the_key() {
    let cases = [
        ("[worker]\nlisten_on = \"x\"\n", "no setting `listen_on`"),
        ("[worker]\nmax-attempts = 3\n", "write `max_attempts`"),
        ("[workers]\nslots = 3\n", "unknown table `workers`"),
        ("[worker]\nno_speculation = \"yes\"\n", "`no_speculation` must be true or false"),
        ("worker = 3\n", "`worker` must be a table"),
    ];
    for (text, expected) in cases {
        let (_dir, path) = with_file(text);
        let err = parse_layered(daemon("w"), args(&["w", "--config", &path]), WORKER).unwrap_err();
        assert!(matches!(err, SettingsError::Invalid { .. }), "{text}: {err}");
        assert!(err.to_string().contains(expected), "{text}: {err}");
    }
    let (_dir, path) = with_file("[worker]\nmax_attempts = \"many\"\n");
    let err = parse_layered(daemon("w"), args(&["w", "--config", &path]), WORKER).unwrap_err();
    assert!(matches!(err, SettingsError::Usage(_)), "the flag's own parser checks the value: {err}");
    let (_dir, path) = with_file("[worker\n");
    let err = parse_layered(daemon("w"), args(&["w", "--config", &path]), WORKER).unwrap_err();
    assert!(matches!(err, SettingsError::Parse { .. }), "{err}");
}

#[test]
fn rendering_is_toml_with_sources_and_redacts_secrets() {
    let settings = vec![
        Setting {
            key: "listen".into(),
            flag: "--listen".into(),
            env: Some("GRISTMILL_L".into()),
            value: Some("0.0.0.0:1".into()),
            source: Source::Env,
        },
        Setting {
            key: "max_attempts".into(),
            flag: "--max-attempts".into(),
            env: None,
            value: Some("4".into()),
            source: Source::Default,
        },
        Setting {
            key: "access_token".into(),
            flag: "--access-token".into(),
            env: None,
            value: Some("hunter2".into()),
            source: Source::File,
        },
        Setting { key: "http".into(), flag: "--http".into(), env: None, value: None, source: Source::Unset },
    ];
    let text = render("worker", &settings);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<redacted>"));
    assert!(
        text.lines().any(|l| l.starts_with("listen") && l.contains("# env (--listen, GRISTMILL_L)")),
        "{text}"
    );
    let parsed: toml::Table = text.parse().unwrap();
    let worker = parsed["worker"].as_table().unwrap();
    assert_eq!(worker["listen"].as_str(), Some("0.0.0.0:1"));
    assert_eq!(worker["max_attempts"].as_integer(), Some(4));
    assert!(!worker.contains_key("http"), "unset settings are commented out");
}
