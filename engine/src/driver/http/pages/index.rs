//! `/`: the workers and the jobs (running, queued, ended).

use maud::{Markup, html};

use super::super::api::ClusterView;
use super::{job_href, progress, secs, state_word, worker_href};
use crate::scheduler::{JobState, JobView, WorkerState, WorkerView};

/// Fields of a worker's view that have columns of their own; any other scalar field (CPU,
/// memory, disk, as the driver learns them) gets a column too.
const KNOWN_WORKER_FIELDS: [&str; 7] =
    ["id", "slots", "running", "state", "secs_since_heartbeat", "tasks_completed", "excluded_secs_left"];

/// The extra scalar fields of the workers' views, in first-seen order.
fn extra_columns(workers: &[serde_json::Value]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for w in workers {
        for (key, value) in w.as_object().into_iter().flatten() {
            let scalar = value.is_number() || value.is_string() || value.is_boolean() || value.is_null();
            if scalar && !KNOWN_WORKER_FIELDS.contains(&key.as_str()) && !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    columns
}

fn scalar(value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(f) if n.as_u64().is_none() && n.as_i64().is_none() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        Some(serde_json::Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn worker_state(w: &WorkerView) -> Markup {
    match (&w.state, w.excluded_secs_left) {
        (WorkerState::Lost { reason }, _) => html! { span.state.lost { "lost" } " " span.muted { (reason) } },
        (WorkerState::Alive, Some(left)) => {
            html! { span.state.queued { "excluded" } " " span.muted { (secs(left)) " left" } }
        }
        (WorkerState::Alive, None) => html! { span.state.succeeded { "alive" } },
        (WorkerState::Draining, _) => html! { span.state.queued { "draining" } },
    }
}

fn workers_table(workers: &[WorkerView]) -> Markup {
    let json: Vec<serde_json::Value> =
        workers.iter().map(|w| serde_json::to_value(w).unwrap_or_default()).collect();
    let extra = extra_columns(&json);
    html! {
        table.sortable #workers {
            thead { tr {
                th { "worker" } th { "state" } th { "slots" } th { "running" } th { "completed" } th { "heartbeat" }
                @for column in &extra { th { (column.replace('_', " ")) } }
            } }
            tbody { @for (w, j) in workers.iter().zip(&json) { tr {
                td { a href=(worker_href(&w.id.0)) { (w.id.0) } }
                td { (worker_state(w)) }
                td.num { (w.slots) }
                td.num title=(w.running.iter().map(|a| format!("{} {} a{}", a.job, a.task, a.attempt)).collect::<Vec<_>>().join("\n")) { (w.running.len()) }
                td.num { (w.tasks_completed) }
                td.num data-sort=(w.secs_since_heartbeat) { (secs(w.secs_since_heartbeat)) " ago" }
                @for column in &extra { td.num { (scalar(j.get(column))) } }
            } } }
        }
    }
}

fn jobs_table(id: &str, jobs: &[&JobView]) -> Markup {
    if jobs.is_empty() {
        return html! { p.muted { "none" } };
    }
    html! {
        table.sortable #(id) {
            thead { tr {
                th { "job" } th { "name" } th { "owner" } th { "priority" } th { "state" } th { "maps" } th { "reduces" }
                th { "attempts" } th { "failed" } th { "duration" } th { "submitted" }
            } }
            tbody { @for j in jobs { tr {
                td { a href=(job_href(j.id.as_str())) { (j.id) } }
                td { (j.name) }
                td { (j.owner) }
                td.num { (j.priority) }
                td { span.state.(state_word(&j.state)) { (state_word(&j.state)) } }
                td data-sort=(j.maps.done) { (progress(j.maps.done, j.maps.total)) }
                td data-sort=(j.reduces.done) { (progress(j.reduces.done, j.reduces.total)) }
                td.num { (j.attempts_launched) }
                td.num { (j.failed_attempts) }
                td.num data-sort=(j.elapsed_secs) { (secs(j.elapsed_secs)) }
                td.num data-sort=(j.submitted_secs_ago) { (secs(j.submitted_secs_ago)) " ago" }
            } } }
        }
    }
}

/// The page's body.
pub fn render(view: &ClusterView) -> Markup {
    let running: Vec<&JobView> =
        view.jobs.iter().filter(|j| matches!(j.state, JobState::Running | JobState::Committing)).collect();
    let queued: Vec<&JobView> = view.jobs.iter().filter(|j| j.state == JobState::Queued).collect();
    let ended: Vec<&JobView> = view.jobs.iter().filter(|j| j.state.is_terminal()).collect();
    let alive = view.workers.iter().filter(|w| w.state == WorkerState::Alive);
    let (alive_workers, slots) = alive.fold((0, 0), |(n, s), w| (n + 1, s + w.slots));
    let busy: usize = view.workers.iter().map(|w| w.running.len()).sum();
    html! {
        h1 { "Cluster" }
        p { (alive_workers) " workers alive, " (busy) " of " (slots) " slots busy; "
            (running.len()) " jobs running, " (queued.len()) " queued, " (ended.len()) " ended." }
        h2 { "Workers" }
        (workers_table(&view.workers))
        h2 { "Running jobs" }
        (jobs_table("running-jobs", &running))
        h2 { "Queued jobs" }
        (jobs_table("queued-jobs", &queued))
        h2 { "Ended jobs" }
        (jobs_table("ended-jobs", &ended))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_the_worker_view_gains_become_columns() {
        let workers = [
            serde_json::json!({"id": "w1", "slots": 2, "cpu_percent": 12.5, "rss_bytes": 1024, "running": []}),
        ];
        assert_eq!(extra_columns(&workers), ["cpu_percent", "rss_bytes"]);
        assert_eq!(
            (scalar(workers[0].get("cpu_percent")), scalar(workers[0].get("rss_bytes"))),
            ("12.5".into(), "1024".into())
        );
    }
}
