//! `/workers/{id}`: a worker's attempts, the map output it holds and its state.

use maud::{Markup, html};

use super::{bytes, job_href, log_href, secs};
use crate::scheduler::{AttemptOutcome, WorkerDetail, WorkerState};

fn outcome_word(o: AttemptOutcome) -> String {
    format!("{o:?}").to_lowercase()
}

/// The page's body.
pub fn render(d: &WorkerDetail) -> Markup {
    let w = &d.worker;
    html! {
        h1 { "Worker " (w.id.0) }
        table.kv { tbody {
            tr { td { "state" } td { @match &w.state {
                WorkerState::Alive => span.state.succeeded { "alive" },
                WorkerState::Draining => span.state.queued { "draining" },
                WorkerState::Lost { reason } => { span.state.lost { "lost" } " " (reason) },
            } @if let Some(left) = w.excluded_secs_left { " (excluded, " (secs(left)) " left)" } } }
            tr { td { "slots" } td { (w.slots) " (" (w.running.len()) " busy)" } }
            tr { td { "last heartbeat" } td { (secs(w.secs_since_heartbeat)) " ago" } }
            tr { td { "attempts completed" } td { (w.tasks_completed) } }
            tr { td { "shuffle data held" } td #shuffle-held { (bytes(d.shuffle_bytes_held)) " in " (d.map_outputs_held) " map outputs of running jobs" } }
            tr { td { "disk use" } td #disk-use { @match &w.resources {
                Some(r) => { (bytes(r.data_dir_bytes)) " in its data directory (job binaries, map output, scratch space, logs); " (bytes(r.shuffle_disk_free_bytes)) " free on its shuffle disk" },
                None => "not reported yet",
            } } }
        } }
        h2 { "Attempts" }
        @if d.attempts.is_empty() { p.muted { "None." } } @else {
            table.sortable #worker-attempts {
                thead { tr { th { "job" } th { "task" } th { "attempt" } th { "outcome" } th { "started" } th { "duration" } th { "error" } th { "log" } } }
                tbody { @for a in &d.attempts { tr {
                    td { a href=(job_href(a.job.as_str())) { (a.job) } }
                    td { (a.attempt.task) }
                    td.num { (a.attempt.attempt) @if a.attempt.backup { " (backup)" } }
                    td { span.(outcome_word(a.attempt.outcome)) { (outcome_word(a.attempt.outcome)) } }
                    td.num data-sort=(a.attempt.start_secs) { "+" (secs(a.attempt.start_secs)) }
                    td.num data-sort=(a.attempt.duration_secs) { (secs(a.attempt.duration_secs)) }
                    td { @if let Some(e) = &a.attempt.error { pre.error { (e) } } }
                    td { a href=(log_href(a.job.as_str(), a.attempt.task, a.attempt.attempt.0)) { "log" } }
                } } }
            }
        }
    }
}
