//! Settings of the daemons (`gristmill driver`, `gristmill-worker`) from four sources, the
//! first that gives a key winning: a command-line flag, its environment variable
//! (`GRISTMILL_...`), the configuration file (TOML), the built-in default.
//!
//! The file holds one table per daemon, keyed by the flag's name with `_` for `-`:
//!
//! ```toml
//! [driver]
//! listen = "0.0.0.0:7077"
//! max_attempts = 6
//!
//! [worker]
//! driver = "https://driver:7077"
//! slots = 8
//! ```
//!
//! It is read from `--config FILE` (`GRISTMILL_CONFIG`), else from `gristmill.toml` in the
//! daemon's `--data-dir` when that file exists. [`parse_layered`] feeds the file's values to
//! clap as the flags' defaults, so clap's own precedence (flag, then environment, then
//! default) gives flag > env > file > default, and every value goes through the flag's own
//! parser. [`Layered::settings`] says where each value came from (`gristmill config show`).

mod file;
mod show;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

pub use file::ConfigFile;
pub use show::{Setting, Source, render};

/// The configuration file's name in a daemon's data directory.
pub const DEFAULT_FILE_NAME: &str = "gristmill.toml";
/// The id of the `--config` flag every daemon has.
pub const CONFIG_ARG: &str = "config";
/// The id of the `--data-dir` flag, where the default file is looked for.
pub const DATA_DIR_ARG: &str = "data_dir";
/// Arguments that are actions, not settings: no environment variable, no file key.
pub const NOT_SETTINGS: [&str; 4] = ["help", "version", CONFIG_ARG, "print_config"];

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The command line (or an environment variable, or a value from the file) is not valid:
    /// clap's error, printed and exited with as clap does.
    #[error("{0}")]
    Usage(#[from] clap::Error),
    /// The file named by `--config` (or the default one, present but unreadable).
    #[error("cannot read the configuration file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the configuration file {path} is not valid TOML: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        cause: String,
    },
    /// A key no flag of the daemon has, or a value of the wrong shape.
    #[error("the configuration file {path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the table and key.
        problem: String,
    },
}

/// Which daemon's table applies, and where its flags are in the command.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// The table of the file (`driver`, `worker`).
    pub table: &'static str,
    /// The subcommand holding the daemon's flags (`driver` of `gristmill`), or `None` when
    /// they are the command's own (`gristmill-worker`).
    pub subcommand: Option<&'static str>,
}

/// The parsed command line with the file's values in, and where each value came from.
#[derive(Debug)]
pub struct Layered {
    /// The whole command's matches (for `FromArgMatches`).
    pub matches: ArgMatches,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Every setting of the daemon, in the command's order.
    pub settings: Vec<Setting>,
}

/// Parses `args` (program name first) with `command`, the daemon's table of the
/// configuration file taking the place of defaults.
pub fn parse_layered(
    command: Command,
    args: Vec<OsString>,
    section: Section,
) -> Result<Layered, SettingsError> {
    let first = command.clone().try_get_matches_from(args.clone())?;
    if let Some(name) = section.subcommand
        && first.subcommand_name() != Some(name)
    {
        // Another subcommand (a client's): no daemon settings.
        return Ok(Layered { matches: first, file: None, settings: Vec::new() });
    }
    let located = locate(leaf(&first, section));
    let file = match located {
        Some(Located { path, required }) => ConfigFile::load(&path, required)?,
        None => None,
    };
    let table = match &file {
        Some(file) => file.table(section.table)?,
        None => toml::Table::new(),
    };
    let matches = if table.is_empty() {
        first
    } else {
        file::with_defaults(command.clone(), &table, section, &file)?.try_get_matches_from(args)?
    };
    let settings = show::settings(&command, &matches, section, &table);
    Ok(Layered { matches, file: file.map(|f| f.path), settings })
}

/// The matches holding the daemon's own flags.
fn leaf(matches: &ArgMatches, section: Section) -> &ArgMatches {
    section.subcommand.and_then(|name| matches.subcommand_matches(name)).unwrap_or(matches)
}

struct Located {
    path: PathBuf,
    /// `--config` named it: it must exist.
    required: bool,
}

/// `--config`, else `gristmill.toml` in `--data-dir` (from a flag or the environment).
fn locate(matches: &ArgMatches) -> Option<Located> {
    let get = |id: &str| matches.try_get_one::<PathBuf>(id).ok().flatten().cloned();
    if let Some(path) = get(CONFIG_ARG) {
        return Some(Located { path, required: true });
    }
    get(DATA_DIR_ARG)
        .map(|dir: PathBuf| Located { path: Path::new(&dir).join(DEFAULT_FILE_NAME), required: false })
}

/// The key of an argument in the file (its id, which clap derives from the field name).
pub fn is_setting(arg: &clap::Arg) -> bool {
    !arg.is_positional() && !NOT_SETTINGS.contains(&arg.get_id().as_str())
}

/// Maps clap's value source to ours (`File` is told apart from `Default` by the table).
fn source_of(source: Option<ValueSource>, in_file: bool) -> Source {
    match source {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        Some(ValueSource::DefaultValue) if in_file => Source::File,
        Some(_) => Source::Default,
        None => Source::Unset,
    }
}

#[cfg(test)]
mod tests;
