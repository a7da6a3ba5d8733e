//! The driver's spans of a job ([`crate::telemetry`]): the job from submission to its end,
//! a span per phase (maps, then reduces; a map re-run after reduces began opens a new one),
//! and a span per task attempt from launch until the scheduler says it ended. An
//! attempt's span travels to its worker and task process as a `traceparent`.

use std::collections::HashMap;

use tracing::Span;

use crate::ids::{JobId, TaskKind};
use crate::scheduler::AttemptRef;

/// The open spans of one job.
#[derive(Debug)]
pub struct JobTrace {
    job: Span,
    phase: Option<(TaskKind, Span)>,
    attempts: HashMap<AttemptRef, Span>,
}

impl JobTrace {
    /// The spans of job `id` (`name`, submitted by `owner`), its span starting now.
    pub fn new(id: &JobId, name: &str, owner: &str) -> Self {
        let job = tracing::info_span!(parent: None, "job", job = %id, name, owner);
        JobTrace { job, phase: None, attempts: HashMap::new() }
    }

    /// Starts the span of `attempt` (and of its phase, if new); returns the `traceparent`
    /// to send with it, if spans are exported.
    pub fn attempt_started(&mut self, attempt: &AttemptRef) -> Option<String> {
        let kind = attempt.task.kind;
        if self.phase.as_ref().is_none_or(|(current, _)| *current != kind) {
            let name = if kind == TaskKind::Map { "map" } else { "reduce" };
            self.phase = Some((kind, tracing::info_span!(parent: &self.job, "phase", phase = name)));
        }
        let phase = self.phase.as_ref().map(|(_, span)| span)?;
        let span = tracing::info_span!(
            parent: phase,
            "task attempt",
            task = %attempt.task,
            attempt = attempt.attempt.0,
        );
        let traceparent = crate::telemetry::traceparent(&span);
        self.attempts.insert(attempt.clone(), span);
        traceparent
    }

    /// Ends the span of `attempt` (it ended: reported, failed, killed or lost).
    pub fn attempt_ended(&mut self, attempt: &AttemptRef) {
        self.attempts.remove(attempt);
    }

    /// A span for the job's commit, a child of the job's.
    pub fn commit(&self) -> Span {
        tracing::info_span!(parent: &self.job, "commit")
    }

    /// Ends every span of the job (it ended).
    pub fn end(&mut self) {
        self.attempts.clear();
        self.phase = None;
        self.job = Span::none();
    }
}
