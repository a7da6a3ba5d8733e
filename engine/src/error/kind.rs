//! [`ErrorKind`]: what kind of failure an [`Error`] is, a small value that crosses the
//! process boundary (task result JSON, then the worker's report to the driver) where the
//! error itself cannot.

use serde::{Deserialize, Serialize};

use super::Error;

/// The kind of a failure, as far as retrying and blame are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// An input path, URL or glob names nothing.
    NotFound,
    /// An input file that cannot be decoded (Parquet, fixed-size records, compressed text, CSV, JSON lines).
    CorruptInput,
    /// Text input with bytes that are not UTF-8.
    InvalidUtf8,
    /// An input file uses a feature this build cannot decode (e.g. a Parquet codec).
    Unsupported,
    /// A column the job reads is missing, or has another type.
    MissingColumn,
    /// The store refused the credentials or the permission.
    AccessDenied,
    /// The job, its flags or its output are inconsistent.
    InvalidJob,
    /// The local disk (spill, scratch or fetch directory) is full.
    DiskFull,
    /// Map output read in place on this host does not match its checksum: the map is
    /// re-run, as for a failed fetch.
    CorruptMapOutput,
    /// Reading, writing, spilling or talking to a peer failed; may be transient.
    Io,
    /// User code returned an error.
    UserCode,
    /// User code panicked.
    Panic,
    /// The task process ended without a result (crash, signal, lost spec).
    Crashed,
    /// The attempt ran longer than the task timeout and was killed.
    TimedOut,
    /// A cluster job ended without committing.
    JobFailed,
    /// A bug in the engine or its libraries.
    Internal,
}

impl ErrorKind {
    /// Every kind, for parsing and tests.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::NotFound,
        ErrorKind::CorruptInput,
        ErrorKind::InvalidUtf8,
        ErrorKind::Unsupported,
        ErrorKind::MissingColumn,
        ErrorKind::AccessDenied,
        ErrorKind::InvalidJob,
        ErrorKind::DiskFull,
        ErrorKind::CorruptMapOutput,
        ErrorKind::Io,
        ErrorKind::UserCode,
        ErrorKind::Panic,
        ErrorKind::Crashed,
        ErrorKind::TimedOut,
        ErrorKind::JobFailed,
        ErrorKind::Internal,
    ];

    /// False for failures another attempt would meet again: bad input, a bad job, refused
    /// credentials. A disk-full is retried (elsewhere); a repeated panic is caught by the
    /// scheduler, not here.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::NotFound
            | ErrorKind::CorruptInput
            | ErrorKind::InvalidUtf8
            | ErrorKind::Unsupported
            | ErrorKind::MissingColumn
            | ErrorKind::AccessDenied
            | ErrorKind::InvalidJob
            | ErrorKind::JobFailed => false,
            ErrorKind::DiskFull
            | ErrorKind::CorruptMapOutput
            | ErrorKind::Io
            | ErrorKind::UserCode
            | ErrorKind::Panic
            | ErrorKind::Crashed
            | ErrorKind::TimedOut
            | ErrorKind::Internal => true,
        }
    }

    /// The kind's wire name (`TaskFailed.error_kind`), e.g. `corrupt_input`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::CorruptInput => "corrupt_input",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::MissingColumn => "missing_column",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::InvalidJob => "invalid_job",
            ErrorKind::DiskFull => "disk_full",
            ErrorKind::CorruptMapOutput => "corrupt_map_output",
            ErrorKind::Io => "io",
            ErrorKind::UserCode => "user_code",
            ErrorKind::Panic => "panic",
            ErrorKind::Crashed => "crashed",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::JobFailed => "job_failed",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind a wire name names; `None` for an empty or unknown name (an older or newer
    /// peer), which the caller treats by the report's coarse retryable/fatal class.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The error's kind. Exhaustive: a new variant must choose its kind here.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InputNotFound { .. } | Error::GlobMatchedNothing { .. } => ErrorKind::NotFound,
            Error::CorruptParquet { .. }
            | Error::BadRecordFile { .. }
            | Error::MalformedRow { .. }
            | Error::CorruptCompressed { .. }
            | Error::TooManyBadRecords { .. } => ErrorKind::CorruptInput,
            Error::InvalidUtf8 { .. } => ErrorKind::InvalidUtf8,
            Error::UnsupportedParquet { .. } => ErrorKind::Unsupported,
            Error::MissingColumn { .. } | Error::ColumnType { .. } | Error::Filter { .. } => {
                ErrorKind::MissingColumn
            }
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::InvalidLocation { .. }
            | Error::UncommittedInput { .. }
            | Error::OutputExists { .. }
            | Error::InvalidJob(_)
            | Error::Config(_)
            | Error::PartitionBy { .. }
            | Error::Security(_) => ErrorKind::InvalidJob,
            Error::DiskFull { .. } => ErrorKind::DiskFull,
            Error::CorruptMapOutput { .. } => ErrorKind::CorruptMapOutput,
            Error::Read { .. }
            | Error::Write { .. }
            | Error::Spill { .. }
            | Error::Shuffle { .. }
            | Error::Rpc { .. } => ErrorKind::Io,
            Error::UserCode { stage, .. } if *stage == PANICKED => ErrorKind::Panic,
            Error::UserCode { .. } => ErrorKind::UserCode,
            Error::Task { kind, .. } => *kind,
            Error::JobFailed { .. } => ErrorKind::JobFailed,
            Error::Arrow { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A failed write to local disk at `path`: [`Error::DiskFull`] when the disk is full
    /// (ENOSPC, EDQUOT), else [`Error::Spill`].
    pub fn local_disk(path: impl Into<String>, source: std::io::Error) -> Error {
        let path = path.into();
        if is_disk_full(&source) {
            return Error::DiskFull { path, cause: source.to_string() };
        }
        Error::Spill { path, cause: source.to_string() }
    }
}

/// The stage of [`Error::UserCode`] for a panic.
pub(crate) const PANICKED: &str = "panicked:";

/// True when `error` says the disk (or the user's quota on it) is full.
pub(crate) fn is_disk_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull || error.kind() == std::io::ErrorKind::QuotaExceeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_match_serde() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()), "serde and the wire agree");
        }
        assert_eq!(ErrorKind::from_name(""), None);
        assert_eq!(ErrorKind::from_name("corrupt"), None);
    }

    #[test]
    fn bad_input_and_bad_jobs_are_not_retried_io_and_user_code_are() {
        let fatal: Vec<_> = ErrorKind::ALL.into_iter().filter(|k| !k.is_retryable()).collect();
        use ErrorKind::*;
        assert_eq!(
            fatal,
            [
                NotFound,
                CorruptInput,
                InvalidUtf8,
                Unsupported,
                MissingColumn,
                AccessDenied,
                InvalidJob,
                JobFailed
            ]
        );
    }

    #[test]
    fn errors_map_to_their_kinds_and_a_task_keeps_its_cause_s_kind() {
        let utf8 = Error::InvalidUtf8 { path: "a.txt".into(), offset: 3, line: None };
        assert_eq!(utf8.kind(), ErrorKind::InvalidUtf8);
        assert!(!utf8.is_retryable());
        let panic = Error::UserCode { stage: PANICKED, message: "boom".into() };
        assert_eq!(panic.kind(), ErrorKind::Panic);
        let failed = Error::UserCode { stage: "mapper failed:", message: "boom".into() };
        assert_eq!(failed.kind(), ErrorKind::UserCode);
        let task = Error::Task {
            task: crate::ids::TaskId::map(2),
            split: "a.txt:0+10".into(),
            kind: utf8.kind(),
            cause: utf8.to_string(),
        };
        assert_eq!(task.kind(), ErrorKind::InvalidUtf8);
        assert!(!task.is_retryable());
        let missing = Error::MissingColumn { path: "p".into(), column: "c".into(), available: "d".into() };
        assert_eq!(missing.kind(), ErrorKind::MissingColumn);
        assert_eq!(Error::Internal("x".into()).kind(), ErrorKind::Internal);
    }

    #[test]
    fn a_full_disk_is_told_apart_from_other_local_write_failures() {
        let full = Error::local_disk("/w/spill", std::io::Error::from_raw_os_error(28));
        assert_eq!(full.kind(), ErrorKind::DiskFull);
        assert!(full.is_retryable());
        assert!(full.to_string().contains("/w/spill"), "{full}");
        let denied =
            Error::local_disk("/w/spill", std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(denied.kind(), ErrorKind::Io);
    }
}
