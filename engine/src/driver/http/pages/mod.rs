//! The HTML pages: a shared layout ([`page`]), formatting helpers, and one module per page.
//! `maud` escapes every string it interpolates, so job names, owners, splits and error
//! messages cannot inject markup.

mod index;
mod job;
mod timeline;
mod worker;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::super::state::DriverState;
use super::api;
use crate::ids::TaskId;
use crate::scheduler::JobState;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("live.js");

/// A whole page: `title`, a navigation bar and `body`. A `live` page refreshes its `<main>`
/// every 2 s (fetching itself again) until it is no longer live.
fn page(title: &str, live: bool, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Gristmill" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav { a href="/" { "Gristmill" } " · " a href="/api/openapi.json" { "API" } }
                main data-live=(live) { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    Html(markup.into_string())
}

fn not_found(what: &str, id: &str) -> Response {
    let body = html! { h1 { "No " (what) " " (id) } p { a href="/" { "Back to the cluster" } } };
    (StatusCode::NOT_FOUND, page("Not found", false, body)).into_response()
}

/// A path segment, percent-encoded (all but unreserved characters).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn job_href(id: &str) -> String {
    format!("/jobs/{}", segment(id))
}

fn worker_href(id: &str) -> String {
    format!("/workers/{}", segment(id))
}

/// `map-3`, `reduce-0`: a task in a URL.
fn task_slug(task: TaskId) -> String {
    let kind = match task.kind {
        crate::ids::TaskKind::Map => "map",
        crate::ids::TaskKind::Reduce => "reduce",
    };
    format!("{kind}-{}", task.index)
}

/// The log of one attempt (served by the task-log pages).
fn log_href(job: &str, task: TaskId, attempt: u32) -> String {
    format!("{}/tasks/{}/attempts/{attempt}/log", job_href(job), task_slug(task))
}

/// `1.5 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `2.3 s`, `4m 05s`.
fn secs(s: f64) -> String {
    if s < 60.0 { format!("{s:.1} s") } else { format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64) }
}

/// A job state's word and its CSS class.
fn state_word(state: &JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Committing => "committing",
        JobState::Succeeded => "succeeded",
        JobState::Failed(_) => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// A progress bar of `done` out of `total`.
fn progress(done: u32, total: u32) -> Markup {
    let pct = if total == 0 { 100.0 } else { 100.0 * f64::from(done) / f64::from(total) };
    html! {
        span.progress title=(format!("{done}/{total}")) { span.bar style=(format!("width:{pct:.0}%")) {} }
        " " (done) "/" (total)
    }
}

pub async fn index(State(state): State<Arc<DriverState>>) -> Html<String> {
    let view = api::cluster_view(&state);
    page("Cluster", true, index::render(&view))
}

pub async fn job(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> Response {
    match api::job_page(&state, &id) {
        Some(data) => {
            let (live, body) = job::render(&data);
            page(&format!("Job {id}"), live, body).into_response()
        }
        None => not_found("job", &id),
    }
}

pub async fn worker(State(state): State<Arc<DriverState>>, Path(id): Path<String>) -> Response {
    match api::worker_page(&state, &id) {
        Some(data) => page(&format!("Worker {id}"), true, worker::render(&data)).into_response(),
        None => not_found("worker", &id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_times_and_links_read_well() {
        assert_eq!(
            (bytes(0), bytes(1023), bytes(1536), bytes(5 << 30)),
            ("0 B".into(), "1023 B".into(), "1.5 KiB".into(), "5.0 GiB".into())
        );
        assert_eq!((secs(2.34), secs(125.0)), ("2.3 s".into(), "2m 05s".into()));
        assert_eq!(log_href("j 1", TaskId::reduce(2), 3), "/jobs/j%201/tasks/reduce-2/attempts/3/log");
        assert_eq!(worker_href("w1-127.0.0.1:7100"), "/workers/w1-127.0.0.1%3A7100");
    }

    #[test]
    fn interpolated_strings_are_escaped() {
        let html = page("<x>", false, html! { p { ("<script>alert(1)</script>") } }).0;
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>alert"),
            "{html}"
        );
        assert!(html.contains("<title>&lt;x&gt; · Gristmill</title>"));
    }
}
