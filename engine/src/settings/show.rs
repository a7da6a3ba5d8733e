//! The effective settings and where each came from, printed by `gristmill config show` as a
//! TOML table that may be pasted into a configuration file.

use std::fmt::Write;

use clap::{ArgMatches, Command};

use super::{Section, is_setting, leaf, source_of};

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// Its environment variable.
    Env,
    /// The configuration file.
    File,
    /// The built-in default.
    Default,
    /// Nowhere: the setting has no value.
    Unset,
}

impl Source {
    /// The source's name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
            Source::Unset => "unset",
        }
    }
}

/// One setting of a daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Its key in the file (the flag's name with `_` for `-`).
    pub key: String,
    /// Its flag (`--max-attempts`).
    pub flag: String,
    /// Its environment variable.
    pub env: Option<String>,
    /// The value, as given (several joined by `,`), or `None` when unset.
    pub value: Option<String>,
    /// Where the value came from.
    pub source: Source,
}

impl Setting {
    /// Whether the value must not be printed: keys naming a secret.
    pub fn is_secret(&self) -> bool {
        ["secret", "token", "password", "private_key"].iter().any(|word| self.key.contains(word))
    }
}

/// Every setting of the daemon: its own flags, then the command's global ones.
pub(super) fn settings(
    command: &Command,
    matches: &ArgMatches,
    section: Section,
    table: &toml::Table,
) -> Vec<Setting> {
    let daemon = section.subcommand.and_then(|name| command.find_subcommand(name)).unwrap_or(command);
    let globals = command.get_arguments().filter(|a| a.is_global_set() && section.subcommand.is_some());
    let matches = leaf(matches, section);
    daemon
        .get_arguments()
        .chain(globals)
        .filter(|arg| is_setting(arg))
        .map(|arg| {
            let id = arg.get_id().as_str();
            let value =
                matches.try_get_raw(id).ok().flatten().map(|values| {
                    values.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",")
                });
            let source = source_of(matches.value_source(id), table.contains_key(id));
            Setting {
                key: id.to_owned(),
                flag: format!("--{}", arg.get_long().unwrap_or(id)),
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                value: value.filter(|_| source != Source::Unset),
                source,
            }
        })
        .collect()
}

/// The settings as a TOML table named `table`, each line commented with its source, flag
/// and environment variable; secrets redacted, unset settings commented out.
pub fn render(table: &str, settings: &[Setting]) -> String {
    let mut out = format!("[{table}]\n");
    let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for setting in settings {
        let origin = match &setting.env {
            Some(env) => format!("{}, {env}", setting.flag),
            None => setting.flag.clone(),
        };
        let line = match &setting.value {
            Some(_) if setting.is_secret() => format!("{:width$} = \"<redacted>\"", setting.key),
            Some(value) => format!("{:width$} = {}", setting.key, toml_value(value)),
            None => format!("# {:width$}", setting.key),
        };
        let _ =
            writeln!(out, "{line:<width2$} # {} ({origin})", setting.source.as_str(), width2 = width + 30);
    }
    out
}

/// A value as TOML: numbers and booleans bare, everything else a quoted string.
fn toml_value(value: &str) -> String {
    let bare =
        value == "true" || value == "false" || value.parse::<i64>().is_ok() || value.parse::<f64>().is_ok();
    if bare { value.to_owned() } else { toml::Value::String(value.to_owned()).to_string() }
}
