//! OpenTelemetry spans reach an OTLP/HTTP receiver (a small one here, decoding the JSON
//! encoding) with their parent links: in local mode job → phase → task → read split and
//! map / sort and spill / merge and reduce / write, and commit under the job; in cluster
//! mode the driver's job → phase → task attempt, the worker's attempt and the task
//! process's spans below it, one trace across the three kinds of process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cluster_support::{Cluster, ClusterSpec};
use crate::support::*;

/// One exported span.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
}

/// An OTLP/HTTP receiver on 127.0.0.1 keeping every span posted to `/v1/traces` as JSON.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { url, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans once every name in `names` has arrived, and every span's parent (bounded
    /// wait: processes export in batches).
    fn wait_for(&self, names: &[&str]) -> Vec<Span> {
        let arrived = |spans: &[Span]| {
            let parents_known =
                spans.iter().all(|s| s.parent.is_empty() || spans.iter().any(|p| p.id == s.parent));
            parents_known && names.iter().all(|n| spans.iter().any(|s| s.name == *n))
        };
        for _ in 0..600 {
            if arrived(&self.spans()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let spans = self.spans();
        assert!(arrived(&spans), "spans {names:?} expected, got {:?}", names_of(&spans));
        spans
    }
}

fn names_of(spans: &[Span]) -> Vec<(&str, &str)> {
    spans.iter().map(|s| (s.service.as_str(), s.name.as_str())).collect()
}

/// Answers HTTP/1.1 requests on one connection, keeping the spans each body holds.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Span>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for _ in 0..10_000 {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("OTLP JSON");
        kept.lock().unwrap().extend(spans_of(&json));
        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        writer.write_all(reply.as_bytes()).unwrap();
    }
}

/// The spans of an `ExportTraceServiceRequest` in OTLP's JSON encoding.
fn spans_of(request: &serde_json::Value) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let attributes = resource["resource"]["attributes"].as_array().cloned().unwrap_or_default();
        let service = attributes
            .iter()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                spans.push(Span {
                    service: service.clone(),
                    name: text("name"),
                    trace: text("traceId"),
                    id: text("spanId"),
                    parent: text("parentSpanId"),
                });
            }
        }
    }
    spans
}

/// The environment exporting spans to `receiver` quickly (batches every 100 ms).
fn otlp_env(receiver: &Receiver) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]
}

/// Asserts every `(child, parent)` pair names a span whose parent is a span so named, all
/// in one trace; returns that trace.
fn assert_links(spans: &[Span], links: &[(&str, &str)]) -> String {
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut traces = Vec::new();
    for (child, parent) in links {
        let children: Vec<&Span> = spans.iter().filter(|s| s.name == *child).collect();
        assert!(!children.is_empty(), "no span {child:?}: {:?}", names_of(spans));
        for span in children {
            let parent_span = by_id.get(span.parent.as_str());
            assert_eq!(parent_span.map(|p| p.name.as_str()), Some(*parent), "the parent of {span:?}");
            assert_eq!(parent_span.unwrap().trace, span.trace, "{span:?}");
            traces.push(span.trace.clone());
        }
    }
    traces.dedup();
    assert_eq!(traces.len(), 1, "one trace");
    traces.remove(0)
}

#[test]
fn local_mode_spans_reach_an_otlp_receiver_with_their_parents() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    write_text_files(&dir.path().join("in"), 2, 2000);
    let out = dir.path().join("out");
    let mut command = std::process::Command::new(bin("wordcount"));
    command
        .args(["--input", s(&dir.path().join("in")), "--output", s(&out), "--threads", "2"])
        .args(["--reducers", "2", "--split-size", "20000", "--otlp-endpoint", &receiver.url])
        .envs(otlp_env(&receiver).into_iter().filter(|(k, _)| k != "OTEL_EXPORTER_OTLP_ENDPOINT"));
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Flushed before the process exits: every span is there now.
    let spans = receiver.spans();
    assert_links(
        &spans,
        &[
            ("phase", "job"),
            ("task", "phase"),
            ("read split and map", "task"),
            ("sort and spill", "task"),
            ("merge and reduce", "task"),
            ("write", "task"),
            ("commit", "job"),
        ],
    );
    let root = spans.iter().find(|s| s.name == "job").unwrap();
    assert!(root.parent.is_empty(), "the job is the root: {root:?}");
    assert_eq!(root.service, "wordcount");
    let maps = spans.iter().filter(|s| s.name == "read split and map").count();
    assert!(maps >= 2, "a span per map task: {maps}");
}

#[test]
fn cluster_spans_link_driver_worker_and_task_processes_in_one_trace() {
    let receiver = Receiver::start();
    let spec = ClusterSpec { env: otlp_env(&receiver), ..ClusterSpec::default() };
    let cluster = Cluster::start(spec);
    let dir = tempfile::tempdir().unwrap();
    write_text_files(&dir.path().join("in"), 2, 2000);
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    let args = ["--input", s(&input), "--output", s(&out)];
    cluster.run_ok("wordcount", &[&args[..], &["--reducers", "2", "--split-size", "20000"]].concat());
    let spans = receiver.wait_for(&["job", "commit", "merge and reduce", "write"]);
    let trace = assert_links(
        &spans,
        &[
            ("phase", "job"),
            ("task attempt", "phase"),
            ("worker attempt", "task attempt"),
            ("task process", "worker attempt"),
            ("task", "task process"),
            ("read split and map", "task"),
            ("fetch", "task process"),
            ("merge and reduce", "task"),
            ("commit", "job"),
        ],
    );
    let services = |name: &str| -> Vec<String> {
        let mut services: Vec<String> =
            spans.iter().filter(|s| s.name == name && s.trace == trace).map(|s| s.service.clone()).collect();
        services.dedup();
        services
    };
    assert_eq!(services("job"), ["gristmill-driver"]);
    assert_eq!(services("worker attempt"), ["gristmill-worker"]);
    assert_eq!(services("task process"), ["gristmill-task"]);
}
