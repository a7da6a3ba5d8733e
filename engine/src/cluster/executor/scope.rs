//! The attempt a thread works for, inside an executor: set on the attempt's own thread and
//! inherited by the threads it starts for the attempt (its CPU pool, its I/O runtime), so
//! what is per process in a task process is per attempt here: its log lines
//! ([`AttemptLog`]), its staged-part notes, its memory budget, its cancellation.
//!
//! Every thread doing an attempt's work belongs to that attempt alone (each attempt gets
//! its own CPU pool and I/O runtime), so keying by thread routes exactly.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::attempt_log::AttemptLog;
use crate::cluster::payload::TaskResult;
use crate::error::{Error, Result};

/// One running attempt's per-attempt settings and state.
#[derive(Debug)]
pub struct AttemptScope {
    /// The root span of the attempt's log lines (job, task, attempt fields).
    pub(crate) log_span: tracing::Span,
    /// Its stderr log: its log lines and error messages.
    pub(crate) stderr: Arc<AttemptLog>,
    /// Where it notes the part files it stages.
    pub(crate) staged_notes: PathBuf,
    /// The memory its buffers and in-memory runs may use (its share of the worker's).
    pub(crate) memory_limit: Option<u64>,
    /// Set when the worker asks the attempt to stop.
    pub(crate) cancelled: AtomicBool,
    /// How the attempt ended, once it did.
    pub(crate) result: Mutex<Option<TaskResult>>,
}

impl AttemptScope {
    /// The attempt ended with `result` (the task role hands it here instead of writing a
    /// result file).
    pub(crate) fn deliver(&self, result: TaskResult) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    }

    pub(crate) fn take_result(&self) -> Option<TaskResult> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<(Arc<AttemptScope>, tracing::span::EnteredSpan)>> =
        const { RefCell::new(None) };
}

/// The attempt the calling thread works for, if it is an executor's.
pub fn current() -> Option<Arc<AttemptScope>> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(scope, _)| scope.clone()))
}

/// Makes the calling thread work for `scope` (its log span entered) until [`leave`] or
/// the thread's end.
pub(crate) fn enter(scope: Arc<AttemptScope>) {
    let entered = scope.log_span.clone().entered();
    CURRENT.with(|c| *c.borrow_mut() = Some((scope, entered)));
}

/// The calling thread works for no attempt any more.
pub(crate) fn leave() {
    CURRENT.with(|c| c.borrow_mut().take());
}

/// What a thread started now for the calling thread's work should run as it starts: enter
/// the same attempt's scope in an executor, else the task process's root span
/// ([`crate::logging::enter_root_span`]).
pub fn inherit() -> impl Fn() + Send + Sync + Clone + 'static {
    let scope = current();
    move || match &scope {
        Some(scope) => enter(scope.clone()),
        None => crate::logging::enter_root_span(),
    }
}

/// The log of the calling thread's attempt, where its log lines go.
pub(crate) fn current_log() -> Option<Arc<AttemptLog>> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(scope, _)| scope.stderr.clone()))
}

/// Fails when the worker asked the calling thread's attempt to stop: attempts check
/// between batches.
pub fn check_cancelled() -> Result<()> {
    let cancelled = CURRENT
        .with(|c| c.borrow().as_ref().is_some_and(|(scope, _)| scope.cancelled.load(Ordering::Relaxed)));
    if cancelled {
        return Err(Error::Internal("the attempt was cancelled by its worker".into()));
    }
    Ok(())
}
