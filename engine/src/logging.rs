//! The one place every Gristmill process sets up its logs: `gristmill`, `gristmill-worker`,
//! job binaries and their task processes.
//!
//! * `--log-format text|json` (or `GRISTMILL_LOG_FORMAT`): human lines, or one JSON object a
//!   line (tracing-subscriber's JSON formatter, with the current span's fields);
//! * colour only when stderr is a terminal: logs written to a file or a pipe hold no ANSI
//!   escape codes;
//! * `RUST_LOG` filters as usual;
//! * a task process logs inside a root span holding its job, task and attempt
//!   ([`enter_task_span`]), entered on every thread of the process, so each of its lines
//!   carries them.
//!
//! In an executor (one process running many attempts), the lines of each attempt go to
//! that attempt's own log instead of stderr.
//!
//! Task processes inherit the format of their worker through [`LOG_FORMAT_ENV`].

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// The environment variable holding the log format; workers set it for their tasks.
pub const LOG_FORMAT_ENV: &str = "GRISTMILL_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, target, fields, and the span's fields.
    Json,
}

impl LogFormat {
    /// The flag's spelling, as [`LOG_FORMAT_ENV`] carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format [`LOG_FORMAT_ENV`] names (text when unset or unknown).
    pub fn from_env() -> LogFormat {
        match std::env::var(LOG_FORMAT_ENV).as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();
static TASK_SPAN: OnceLock<tracing::Span> = OnceLock::new();

/// The format this process logs in (text until [`init`] ran).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Installs the process's subscriber: `format` on stderr, filtered by `RUST_LOG` (else
/// `default_filter`, e.g. "info" or "warn"), colour only on a terminal; and the engine's
/// spans exported as `service` when `otlp_endpoint` is set ([`crate::telemetry`]). A
/// second call changes nothing.
pub fn init(format: LogFormat, default_filter: &str, service: &str, otlp_endpoint: Option<String>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines =
        tracing_subscriber::fmt::layer().with_writer(LineWriter).with_ansi(std::io::stderr().is_terminal());
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().with_current_span(true).with_span_list(false).boxed(),
    };
    // The engine's spans at info, whatever the log filter lets through; not the task
    // process's root span of log lines, which never ends.
    let engine = Targets::new()
        .with_target("gristmill", LevelFilter::INFO)
        .with_target("gristmill_worker", LevelFilter::INFO)
        .with_target("gristmill::logging", LevelFilter::OFF);
    let spans = crate::telemetry::layer(service, otlp_endpoint).map(|layer| layer.with_filter(engine));
    let _ = tracing_subscriber::registry().with(lines.with_filter(filter)).with(spans).try_init();
}

/// Where log lines go: stderr, or, on a thread working for an executor's attempt, that
/// attempt's log ([`crate::cluster::executor::scope`]).
struct LineWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = LineTarget;

    fn make_writer(&'a self) -> LineTarget {
        match crate::cluster::executor::scope::current_log() {
            Some(log) => LineTarget::Attempt(crate::cluster::executor::attempt_log::AttemptLogWriter(log)),
            None => LineTarget::Stderr(std::io::stderr()),
        }
    }
}

enum LineTarget {
    Attempt(crate::cluster::executor::attempt_log::AttemptLogWriter),
    Stderr(std::io::Stderr),
}

impl std::io::Write for LineTarget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            LineTarget::Attempt(log) => log.write(buf),
            LineTarget::Stderr(stderr) => stderr.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LineTarget::Attempt(log) => log.flush(),
            LineTarget::Stderr(stderr) => stderr.flush(),
        }
    }
}

/// Makes `span` the root of every log line of this task process: entered here and on every
/// thread that calls [`enter_root_span`] as it starts (the I/O runtime's and the CPU
/// pool's). Only the first call counts.
pub fn enter_task_span(span: tracing::Span) {
    if TASK_SPAN.set(span).is_ok() {
        enter_root_span();
    }
}

/// Enters the task's root span on the calling thread for the rest of its life (nothing
/// outside a task process). Called as threads start.
pub fn enter_root_span() {
    if let Some(span) = TASK_SPAN.get() {
        // Never exited: the thread logs inside it until it ends.
        std::mem::forget(span.clone().entered());
    }
}

/// The version every binary prints: the crate's and the git revision it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("GRISTMILL_GIT_REVISION"), ")");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_a_revision() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(VERSION.contains("(git "), "{VERSION}");
    }

    #[test]
    fn the_format_round_trips_through_its_spelling() {
        use clap::ValueEnum;
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(LogFormat::from_str(format.as_str(), false), Ok(format));
        }
    }
}
