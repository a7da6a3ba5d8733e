//! The task timeline: a Gantt chart as inline SVG, one lane per worker slot, each attempt a
//! bar coloured by its outcome; backups are outlined with dashes and failures crossed.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::secs;
use crate::ids::{TaskKind, WorkerId};
use crate::scheduler::{AttemptOutcome, AttemptView};

const WIDTH: f64 = 1200.0;
const LABEL: f64 = 210.0;
const LANE: f64 = 18.0;
const BAR: f64 = 14.0;
const AXIS: f64 = 20.0;

/// One lane: a slot of a worker and the attempts (indices into the job's attempts) it ran.
#[derive(Debug, PartialEq)]
pub struct Lane {
    /// The worker.
    pub worker: WorkerId,
    /// The slot, from 0.
    pub slot: usize,
    /// Indices of its attempts, by start.
    pub attempts: Vec<usize>,
}

/// Lays attempts out in lanes: per worker, each attempt goes to the first lane free at its
/// start (a slot runs one attempt at a time), in order of start. `end` is an attempt's end
/// (now, for running ones).
pub fn lanes(attempts: &[AttemptView], now: f64) -> Vec<Lane> {
    let mut by_worker: BTreeMap<&WorkerId, Vec<usize>> = BTreeMap::new();
    for (i, a) in attempts.iter().enumerate() {
        by_worker.entry(&a.worker).or_default().push(i);
    }
    let mut out = Vec::new();
    for (worker, mut indices) in by_worker {
        indices.sort_by(|&a, &b| attempts[a].start_secs.total_cmp(&attempts[b].start_secs));
        let mut free_at: Vec<f64> = Vec::new();
        let mut lanes: Vec<Vec<usize>> = Vec::new();
        for i in indices {
            let a = &attempts[i];
            let end = a.end_secs.unwrap_or(now).max(a.start_secs);
            // Ends and starts at the same instant share a slot (a report frees it for the next).
            match free_at.iter().position(|&f| f <= a.start_secs + 1e-6) {
                Some(slot) => {
                    free_at[slot] = end;
                    lanes[slot].push(i);
                }
                None => {
                    free_at.push(end);
                    lanes.push(vec![i]);
                }
            }
        }
        out.extend(lanes.into_iter().enumerate().map(|(slot, attempts)| Lane {
            worker: worker.clone(),
            slot,
            attempts,
        }));
    }
    out
}

fn colour(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Running => "#3b82c4",
        AttemptOutcome::Succeeded => "#3aa76d",
        AttemptOutcome::Failed => "#d64541",
        AttemptOutcome::Killed => "#a0a0a0",
        AttemptOutcome::Lost => "#e98b2a",
        AttemptOutcome::Preempted => "#8e6bbf",
    }
}

fn word(outcome: AttemptOutcome) -> &'static str {
    outcome.as_str()
}

fn bar_class(a: &AttemptView) -> String {
    let backup = if a.backup { " backup" } else { "" };
    format!("bar {}{backup}", word(a.outcome))
}

fn short(a: &AttemptView) -> String {
    let kind = if a.task.kind == TaskKind::Map { "m" } else { "r" };
    format!("{kind}{}", a.task.index)
}

/// The chart, `now` seconds after the job's submission.
pub fn render(attempts: &[AttemptView], now: f64) -> Markup {
    if attempts.is_empty() {
        return html! { p.muted { "No attempt launched yet." } };
    }
    let lanes = lanes(attempts, now);
    let span = attempts.iter().map(|a| a.end_secs.unwrap_or(now)).fold(now.max(0.1), f64::max);
    let scale = (WIDTH - LABEL - 10.0) / span;
    let height = AXIS + LANE * lanes.len() as f64 + 4.0;
    let ticks: Vec<f64> = (0..=8).map(|i| span * f64::from(i) / 8.0).collect();
    html! {
        p.legend {
            @for o in [AttemptOutcome::Succeeded, AttemptOutcome::Running, AttemptOutcome::Failed, AttemptOutcome::Killed, AttemptOutcome::Lost, AttemptOutcome::Preempted] {
                span { i style=(format!("background:{}", colour(o))) {} (word(o)) }
            }
            span { "dashed outline: backup; ✕: failed or lost" }
        }
        svg.timeline #timeline xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height) viewBox=(format!("0 0 {WIDTH} {height}")) {
            @for t in &ticks {
                line x1=(LABEL + t * scale) x2=(LABEL + t * scale) y1=(AXIS - 4.0) y2=(height) stroke="#e3e3e3" {}
                text x=(LABEL + t * scale) y=(AXIS - 7.0) text-anchor="middle" fill="#666" { (secs(*t)) }
            }
            @for (row, lane) in lanes.iter().enumerate() {
                @let y = AXIS + LANE * row as f64;
                text.lane-label x="4" y=(y + BAR - 3.0) { (lane.worker.0) " #" (lane.slot) }
                @for &i in &lane.attempts {
                    @let a = &attempts[i];
                    @let x = LABEL + a.start_secs * scale;
                    @let w = ((a.end_secs.unwrap_or(now) - a.start_secs) * scale).max(2.0);
                    g {
                        title { (a.task) " attempt " (a.attempt.0) " on " (a.worker.0) ": " (word(a.outcome))
                            @if a.backup { " (backup)" } ", " (secs(a.duration_secs))
                            @if let Some(e) = &a.error { "\n" (e) } }
                        rect class=(bar_class(a)) x=(format!("{x:.1}")) y=(y) width=(format!("{w:.1}")) height=(BAR) fill=(colour(a.outcome)) rx="2" {}
                        @if w > 24.0 { text x=(format!("{:.1}", x + 3.0)) y=(y + BAR - 3.0) fill="#fff" { (short(a)) } }
                        @if matches!(a.outcome, AttemptOutcome::Failed | AttemptOutcome::Lost) {
                            text x=(format!("{:.1}", x + w - 9.0)) y=(y + BAR - 3.0) fill="#fff" font-weight="bold" { "✕" }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AttemptId, TaskId};

    fn attempt(worker: &str, start: f64, end: Option<f64>) -> AttemptView {
        AttemptView {
            task: TaskId::map(0),
            attempt: AttemptId(0),
            worker: WorkerId(worker.into()),
            backup: false,
            outcome: if end.is_some() { AttemptOutcome::Succeeded } else { AttemptOutcome::Running },
            error: None,
            start_secs: start,
            end_secs: end,
            duration_secs: end.unwrap_or(10.0) - start,
            waited_secs: 0.0,
            metrics: None,
        }
    }

    #[test]
    fn attempts_share_a_lane_only_one_at_a_time_per_worker() {
        let attempts = [
            attempt("w1", 0.0, Some(2.0)),
            attempt("w1", 0.0, Some(5.0)),
            attempt("w1", 2.0, Some(3.0)), // w1's first slot is free again at 2 s
            attempt("w2", 1.0, None),      // runs until now
            attempt("w2", 4.0, Some(6.0)), // overlaps the running one
            attempt("w1", 3.0, Some(4.0)),
        ];
        let got: Vec<_> =
            lanes(&attempts, 10.0).into_iter().map(|l| (l.worker.0, l.slot, l.attempts)).collect();
        let want = [
            ("w1".into(), 0, vec![0, 2, 5]),
            ("w1".into(), 1, vec![1]),
            ("w2".into(), 0, vec![3]),
            ("w2".into(), 1, vec![4]),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn the_svg_has_a_bar_per_attempt_marked_by_outcome() {
        let mut failed = attempt("w1", 0.0, Some(1.0));
        failed.outcome = AttemptOutcome::Failed;
        failed.error = Some("boom <b>".into());
        let mut backup = attempt("w2", 0.5, Some(2.0));
        backup.backup = true;
        let svg = render(&[failed, backup, attempt("w1", 1.0, None)], 3.0).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(
            svg.contains("class=\"bar succeeded backup\"") && svg.contains("class=\"bar failed\""),
            "{svg}"
        );
        assert!(svg.contains("boom &lt;b&gt;") && svg.contains("✕"), "{svg}");
        assert!(svg.contains("id=\"timeline\""));
    }
}
