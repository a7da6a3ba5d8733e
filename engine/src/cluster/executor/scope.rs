//! The attempt a thread works for, inside an executor: set on the attempt's own thread and
//! seen by the threads doing its work (the CPU pool and I/O runtime it holds), so what is
//! per process in a task process is per attempt here: its log lines ([`AttemptLog`]), its
//! staged-part notes, its memory budget, its cancellation.
//!
//! The CPU pool and I/O runtime are an executor's, kept across attempts in lanes
//! (`LaneSlot`): a lane serves one attempt at a time, and its threads look up the attempt
//! holding it, so keying by thread still routes exactly. A lane's threads enter the log
//! span of the attempt holding it as it is lent (the CPU pool's) or as they wake (the I/O
//! runtime's).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
    /// The I/O runtime of the lane it holds (the attempt's own when `None`).
    pub(crate) io: Option<tokio::runtime::Handle>,
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

/// The attempt a lane of an executor serves now (see the module's overview).
#[derive(Debug, Default)]
pub(crate) struct LaneSlot(RwLock<Option<Arc<AttemptScope>>>);

impl LaneSlot {
    fn get(&self) -> Option<Arc<AttemptScope>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The lane serves `scope` from now on (`None`: nobody).
    pub(crate) fn set(&self, scope: Option<Arc<AttemptScope>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = scope;
    }
}

/// Whom a thread works for.
#[derive(Clone)]
enum Bound {
    /// One attempt: its own thread (or one started for it alone).
    Attempt(Arc<AttemptScope>),
    /// Whichever attempt holds the lane the thread belongs to.
    Lane(Arc<LaneSlot>),
}

struct Current {
    bound: Bound,
    /// The attempt whose log span the thread is in.
    entered: Option<(Arc<AttemptScope>, tracing::span::EnteredSpan)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// The attempt the calling thread works for, if it is an executor's.
pub fn current() -> Option<Arc<AttemptScope>> {
    CURRENT.with(|c| match &c.borrow().as_ref()?.bound {
        Bound::Attempt(scope) => Some(scope.clone()),
        Bound::Lane(slot) => slot.get(),
    })
}

/// Makes the calling thread work for `scope` (its log span entered) until [`leave`] or
/// the thread's end.
pub(crate) fn enter(scope: Arc<AttemptScope>) {
    let entered = scope.log_span.clone().entered();
    let current = Current { bound: Bound::Attempt(scope.clone()), entered: Some((scope, entered)) };
    CURRENT.with(|c| *c.borrow_mut() = Some(current));
}

/// Makes the calling thread (one of a lane's, as it starts) work for whichever attempt
/// holds the lane `slot` stands for.
pub(crate) fn join_lane(slot: Arc<LaneSlot>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(Current { bound: Bound::Lane(slot), entered: None }));
    follow_lane();
}

/// On a lane's thread: enters the log span of the attempt now holding the lane (leaving
/// the previous one's), unless it is in it already. Nothing on other threads.
pub(crate) fn follow_lane() {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let Some(Current { bound: Bound::Lane(slot), entered }) = current.as_mut() else { return };
        let now = slot.get();
        let same = match (&now, &*entered) {
            (Some(now), Some((was, _))) => Arc::ptr_eq(now, was),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *entered = None;
            *entered = now.map(|scope| {
                let span = scope.log_span.clone().entered();
                (scope, span)
            });
        }
    });
}

/// The calling thread works for no attempt any more.
pub(crate) fn leave() {
    CURRENT.with(|c| c.borrow_mut().take());
}

/// What a thread started now for the calling thread's work should run as it starts: work
/// for the same attempt (or lane) in an executor, else enter the task process's root span
/// ([`crate::logging::enter_root_span`]).
pub fn inherit() -> impl Fn() + Send + Sync + Clone + 'static {
    let bound = CURRENT.with(|c| c.borrow().as_ref().map(|c| c.bound.clone()));
    move || match &bound {
        Some(Bound::Attempt(scope)) => enter(scope.clone()),
        Some(Bound::Lane(slot)) => join_lane(slot.clone()),
        None => crate::logging::enter_root_span(),
    }
}

/// The log of the calling thread's attempt, where its log lines go.
pub(crate) fn current_log() -> Option<Arc<AttemptLog>> {
    current().map(|scope| scope.stderr.clone())
}

/// Fails when the worker asked the calling thread's attempt to stop: attempts check
/// between batches.
pub fn check_cancelled() -> Result<()> {
    let cancelled = current().is_some_and(|scope| scope.cancelled.load(Ordering::Relaxed));
    if cancelled {
        return Err(Error::Internal("the attempt was cancelled by its worker".into()));
    }
    Ok(())
}
