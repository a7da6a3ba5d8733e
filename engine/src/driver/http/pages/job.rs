//! `/jobs/{id}`: the job's phases with an ETA, its counters, why it is slow, the timeline,
//! the task table and the failed attempts with their errors and logs.

use maud::{Markup, html};

use super::super::api::JobPage;
use super::{bytes, log_href, progress, secs, state_word, timeline, worker_href};
use crate::ids::TaskId;
use crate::scheduler::{
    AttemptMetrics, AttemptOutcome, AttemptView, Diagnosis, JobDetail, JobState, JobView, PhaseProgress,
};

fn summary(job: &JobView) -> Markup {
    html! {
        h1 { "Job " (job.id) " " span.muted { (job.name) } }
        table.kv { tbody {
            tr { td { "state" } td { span.state.(state_word(&job.state)) #job-state { (state_word(&job.state)) } " (phase " (format!("{:?}", job.phase).to_lowercase()) ")" } }
            tr { td { "owner" } td { (job.owner) } }
            tr { td { "priority" } td { (job.priority) } }
            tr { td { "duration" } td { (secs(job.elapsed_secs)) ", submitted " (secs(job.submitted_secs_ago)) " ago" } }
            tr { td { "attempts" } td { (job.attempts_launched) " launched, " (job.failed_attempts) " failed, " (job.backups_launched) " backups" } }
        } }
        @if let JobState::Failed(message) = &job.state { h2 { "Error" } pre.error #job-error { (message) } }
    }
}

fn phase_row(name: &str, p: &PhaseProgress) -> Markup {
    html! { tr {
        td { (name) }
        td { (progress(p.done, p.total)) }
        td.num { (p.running) }
        td.num { (p.median_task_secs.map(secs).unwrap_or_default()) }
        td.num { @match p.eta_secs { Some(eta) if p.done < p.total => (secs(eta)), Some(_) => "done", None => span.muted { "after a first task" } } }
    } }
}

fn counters(job: &JobView) -> Markup {
    html! {
        @if job.counters.is_empty() { p.muted { "No task finished yet." } } @else {
            table.sortable #counters { thead { tr { th { "counter" } th { "value" } } }
                tbody { @for (name, value) in &job.counters { tr { td { (name) } td.num { (value) } } } } }
        }
    }
}

fn diagnosis(d: &Diagnosis) -> Markup {
    html! {
        @if d.findings.is_empty() { p.muted { "Nothing stands out: no stragglers, skew, retries or waits for slots." } }
        @else { ul.findings #findings { @for f in &d.findings { li { (f) } } } }
        p { "Time lost to retries: " (secs(d.lost.total_secs())) " in " (d.lost.attempts) " attempts. "
            "Waiting for slots: " (secs(d.slot_wait.total_secs)) " in all, longest " (secs(d.slot_wait.max_secs))
            @if let Some(task) = d.slot_wait.max_task { " (" (task) ")" } "." }
        @if !d.partitions.is_empty() {
            details { summary { "Reduce partitions: median " (d.median_partition_rows.unwrap_or(0)) " rows, "
                    (bytes(d.median_partition_bytes.unwrap_or(0))) }
                table.sortable #partitions { thead { tr { th { "partition" } th { "rows" } th { "bytes" } th { "skewed" } } }
                    tbody { @for p in &d.partitions { tr {
                        td.num { (p.partition) } td.num { (p.rows) } td.num data-sort=(p.bytes) { (bytes(p.bytes)) }
                        td { @if p.skewed { span.failed { "skewed" } } }
                    } } } }
            }
        }
    }
}

fn metric_cells(m: Option<AttemptMetrics>) -> Markup {
    let m = m.unwrap_or_default();
    html! {
        td.num data-sort=(m.input_bytes) { (bytes(m.input_bytes)) }
        td.num { (m.input_rows) }
        td.num data-sort=(m.shuffle_written_bytes) { (bytes(m.shuffle_written_bytes)) }
        td.num data-sort=(m.shuffle_read_bytes) { (bytes(m.shuffle_read_bytes)) }
        td.num data-sort=(m.spill_bytes) { (bytes(m.spill_bytes)) }
    }
}

fn outcome_word(o: AttemptOutcome) -> &'static str {
    o.as_str()
}

fn task_table(detail: &JobDetail) -> Markup {
    let attempts_of = |task: TaskId| detail.attempts.iter().filter(move |a| a.task == task);
    html! {
        table.sortable #tasks {
            thead { tr {
                th { "task" } th { "split" } th { "attempts" } th { "state" } th { "duration" } th { "input" } th { "input rows" }
                th { "shuffle written" } th { "shuffle read" } th { "spilled" } th { "error" }
            } }
            tbody { @for t in &detail.tasks { tr {
                td data-sort=(format!("{:?}{:08}", t.task.kind, t.task.index)) { (t.task) }
                td { @if let Some(split) = &t.split { (split) } }
                td { @for a in attempts_of(t.task) {
                    div { (a.attempt) " " a href=(worker_href(&a.worker.0)) { (a.worker.0) } " "
                        span.(outcome_word(a.outcome)) { (outcome_word(a.outcome)) } @if a.backup { " (backup)" } }
                } }
                td { span.(format!("{:?}", t.state).to_lowercase()) { (format!("{:?}", t.state).to_lowercase()) } }
                td.num data-sort=(t.duration_secs.unwrap_or(-1.0)) { (t.duration_secs.map(secs).unwrap_or_default()) }
                (metric_cells(t.metrics))
                td { @if let Some(e) = &t.last_error { pre.error { (e) } } }
            } } }
        }
    }
}

fn failed_attempts(job: &str, failed: &[&AttemptView]) -> Markup {
    html! {
        @if failed.is_empty() { p.muted { "None." } } @else {
            table.sortable #failed-attempts {
                thead { tr { th { "task" } th { "attempt" } th { "worker" } th { "outcome" } th { "duration" } th { "error" } th { "log" } } }
                tbody { @for a in failed { tr {
                    td { (a.task) } td.num { (a.attempt) } td { a href=(worker_href(&a.worker.0)) { (a.worker.0) } }
                    td { span.(outcome_word(a.outcome)) { (outcome_word(a.outcome)) } }
                    td.num data-sort=(a.duration_secs) { (secs(a.duration_secs)) }
                    td { pre.error { (a.error.as_deref().unwrap_or("")) } }
                    td { a href=(log_href(job, a.task, a.attempt.0)) { "log" } }
                } } }
            }
        }
    }
}

fn detail(d: &JobDetail) -> Markup {
    let id = d.job.id.as_str();
    let failed: Vec<&AttemptView> = d
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, AttemptOutcome::Failed | AttemptOutcome::Lost))
        .collect();
    html! {
        (summary(&d.job))
        h2 { "Progress" }
        table #phases { thead { tr { th { "phase" } th { "done" } th { "running" } th { "median task" } th { "ETA" } } }
            tbody { (phase_row("map", &d.map_phase)) (phase_row("reduce", &d.reduce_phase)) } }
        p.muted { "ETA: median task duration × tasks left ÷ " (d.slots) " slots." }
        h2 { "Why is it slow" }
        (diagnosis(&d.diagnosis))
        h2 { "Timeline" }
        (timeline::render(&d.attempts, d.job.elapsed_secs))
        @if d.attempts_dropped > 0 { p.muted { (d.attempts_dropped) " older attempts are no longer shown." } }
        h2 { "Tasks" }
        (task_table(d))
        h2 { "Failed attempts" }
        (failed_attempts(id, &failed))
        h2 { "Counters" }
        (counters(&d.job))
    }
}

/// The page's body, and whether it is live (the job has not ended).
pub fn render(page: &JobPage) -> (bool, Markup) {
    match page {
        JobPage::Detail(d) => (!d.job.state.is_terminal(), detail(d)),
        JobPage::History(job) => (
            false,
            html! {
                (summary(job))
                p.muted { "This job ended in an earlier run of the driver: its tasks are not known any more." }
                h2 { "Counters" }
                (counters(job))
            },
        ),
    }
}
