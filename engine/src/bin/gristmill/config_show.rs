//! `gristmill config show [driver|worker] [FLAGS]`: the effective settings of a daemon, as
//! it would start with FLAGS in this environment, and where each value comes from.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::CommandFactory;
use gristmill::settings::{parse_layered, render};

use super::{Cli, DRIVER_SETTINGS};

/// A daemon whose settings are shown.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Daemon {
    /// `gristmill driver`.
    Driver,
    /// `gristmill-worker` (asked to print its own: it knows its flags).
    Worker,
}

pub fn show(daemon: Daemon, args: Vec<OsString>) -> gristmill::Result<ExitCode> {
    match daemon {
        Daemon::Driver => {
            let argv: Vec<OsString> =
                [OsString::from("gristmill"), OsString::from("driver")].into_iter().chain(args).collect();
            let layered = match parse_layered(Cli::command(), argv, DRIVER_SETTINGS) {
                Ok(layered) => layered,
                Err(gristmill::settings::SettingsError::Usage(e)) => e.exit(),
                Err(e) => return Err(gristmill::Error::Config(e.to_string())),
            };
            if let Some(file) = &layered.file {
                println!("# configuration file: {}", file.display());
            }
            print!("{}", render("driver", &layered.settings));
            Ok(ExitCode::SUCCESS)
        }
        Daemon::Worker => {
            let worker = super::up::sibling_binary("gristmill-worker");
            let status = std::process::Command::new(&worker)
                .arg(PRINT_CONFIG_FLAG)
                .args(args)
                .status()
                .map_err(|e| gristmill::Error::Config(format!("cannot run {}: {e}", worker.display())))?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
    }
}

/// The worker's flag that prints its settings and exits.
const PRINT_CONFIG_FLAG: &str = "--print-config";
