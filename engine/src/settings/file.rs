//! The configuration file: one TOML table per daemon, fed to clap as the flags' defaults.

use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};

use super::{Section, SettingsError, is_setting};

/// The tables the file may hold: one per daemon.
const TABLES: [&str; 2] = ["driver", "worker"];

/// A configuration file, read and parsed.
#[derive(Debug)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    tables: toml::Table,
}

impl ConfigFile {
    /// Reads `path`; a file that is not `required` (the default one) may be missing.
    pub fn load(path: &Path, required: bool) -> Result<Option<ConfigFile>, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(SettingsError::Read { path: path.to_owned(), cause }),
        };
        ConfigFile::parse(path, &text).map(Some)
    }

    /// Parses `text` (read from `path`).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, SettingsError> {
        let tables: toml::Table = text.parse().map_err(|e: toml::de::Error| SettingsError::Parse {
            path: path.to_owned(),
            cause: e.to_string(),
        })?;
        let file = ConfigFile { path: path.to_owned(), tables };
        if let Some(key) = file.tables.keys().find(|k| !TABLES.contains(&k.as_str())) {
            return Err(file.invalid(format!("unknown table `{key}` (the file has [driver] and [worker])")));
        }
        Ok(file)
    }

    /// The daemon's table (empty when the file has none).
    pub fn table(&self, name: &str) -> Result<toml::Table, SettingsError> {
        match self.tables.get(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(table)) => Ok(table.clone()),
            Some(_) => Err(self.invalid(format!("`{name}` must be a table ([{name}])"))),
        }
    }

    fn invalid(&self, problem: String) -> SettingsError {
        SettingsError::Invalid { path: self.path.clone(), problem }
    }
}

/// `command` with each key of `table` set as the default of the flag it names. Keys name
/// the daemon's flags (in `section.subcommand`) or the command's global ones.
pub(super) fn with_defaults(
    mut command: Command,
    table: &toml::Table,
    section: Section,
    file: &Option<ConfigFile>,
) -> Result<Command, SettingsError> {
    let path = file.as_ref().map(|f| f.path.clone()).unwrap_or_default();
    let invalid = |problem: String| SettingsError::Invalid { path: path.clone(), problem };
    for (key, value) in table {
        let daemon = match section.subcommand {
            Some(name) => command.find_subcommand(name).expect("the daemon's subcommand exists"),
            None => &command,
        };
        let in_daemon = daemon.get_arguments().find(|a| a.get_id() == key.as_str() && is_setting(a));
        let global = command.get_arguments().find(|a| a.get_id() == key.as_str() && a.is_global_set());
        let Some(arg) = in_daemon.or(global) else {
            let hint = if key.contains('-') {
                format!(" (write `{}`)", key.replace('-', "_"))
            } else {
                String::new()
            };
            return Err(invalid(format!("[{}] has no setting `{key}`{hint}", section.table)));
        };
        let is_flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let values = values_of(value, is_flag)
            .map_err(|expected| invalid(format!("[{}] `{key}` must be {expected}", section.table)))?;
        let (key, in_daemon) = (key.clone(), in_daemon.is_some());
        let set = move |arg: clap::Arg| arg.default_values(values);
        command = match (in_daemon, section.subcommand) {
            (true, Some(name)) => command.mut_subcommand(name, |sub| sub.mut_arg(&key, set)),
            _ => command.mut_arg(&key, set),
        };
    }
    Ok(command)
}

/// A TOML value as the strings clap parses; `Err` names what was expected.
fn values_of(value: &toml::Value, is_flag: bool) -> Result<Vec<String>, &'static str> {
    use toml::Value;
    match value {
        Value::Boolean(b) => Ok(vec![b.to_string()]),
        _ if is_flag => Err("true or false"),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Integer(i) => Ok(vec![i.to_string()]),
        Value::Float(f) => Ok(vec![f.to_string()]),
        Value::Array(items) => {
            let one = |item: &Value| match item {
                Value::Array(_) | Value::Table(_) | Value::Datetime(_) => {
                    Err("an array of strings or numbers")
                }
                scalar => values_of(scalar, false).map(|mut v| v.remove(0)),
            };
            items.iter().map(one).collect()
        }
        Value::Datetime(_) | Value::Table(_) => Err("a string, number, boolean or array of them"),
    }
}
