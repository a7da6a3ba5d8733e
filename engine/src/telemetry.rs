//! OpenTelemetry tracing: spans job → phase → task attempt → (map, sort and spill, fetch,
//! merge and reduce, write) and commit, exported with OTLP over HTTP when `--otlp-endpoint
//! URL` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set (protobuf, or JSON with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`).
//!
//! The spans are ordinary `tracing` spans; [`layer`] exports them. Between processes a
//! span travels as a W3C `traceparent` ([`traceparent`], [`adopt_parent`]): the driver puts
//! its attempt span's in the task it sends a worker, which hands it to the task process in
//! the task spec. Without an endpoint nothing is exported and no `traceparent` is made.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

/// The standard variable naming the OTLP endpoint (a base URL: `/v1/traces` is appended).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable choosing the OTLP encoding: `http/protobuf` (default) or `http/json`.
pub const PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The flag naming the OTLP endpoint on every binary.
pub const ENDPOINT_FLAG: &str = "--otlp-endpoint";

/// How long exiting waits for the last spans to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The endpoint to export to: `flag` if given, else [`ENDPOINT_ENV`]; `None` when neither
/// is set (or empty).
pub fn endpoint(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned).or_else(|| std::env::var(ENDPOINT_ENV).ok()).filter(|e| !e.trim().is_empty())
}

/// The value of `--otlp-endpoint` in this process's arguments, for binaries that set up
/// logging before they parse their arguments (job binaries: the flag is also declared to
/// clap, which checks and documents it).
pub fn endpoint_from_args() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == ENDPOINT_FLAG {
            return args.next();
        }
        if let Some(value) = arg.strip_prefix(ENDPOINT_FLAG).and_then(|rest| rest.strip_prefix('=')) {
            return Some(value.to_owned());
        }
    }
    None
}

/// The layer exporting this process's spans as `service` to `endpoint` (see [`endpoint`]),
/// or `None` without one. A failure to set up the exporter is printed, not fatal.
pub fn layer<S>(service: &str, endpoint: Option<String>) -> Option<OpenTelemetryLayer<S, SdkTracer>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let endpoint = endpoint?;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    // The exporter's HTTP client takes TLS (an https endpoint) from the process's provider.
    crate::security::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol())
        .with_endpoint(url.clone())
        .build();
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("warning: spans are not exported to {url}: {e}");
            return None;
        }
    };
    let resource = Resource::builder().with_service_name(service.to_owned()).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("gristmill");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

fn protocol() -> Protocol {
    match std::env::var(PROTOCOL_ENV).as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    }
}

/// Sends the spans not yet exported and stops exporting: before a process exits (spans
/// are exported in batches, every few seconds).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
    {
        tracing::debug!(error = %e, "exporting the last spans failed");
    }
}

/// Sends the spans ended so far (an executor, after each attempt: it lives on).
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.force_flush()
    {
        tracing::debug!(error = %e, "exporting spans failed");
    }
}

/// `span`'s W3C `traceparent`, to carry it into another process; `None` when spans are
/// not exported.
pub fn traceparent(span: &Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` (not yet entered) a child of the span another process sent as
/// `traceparent`; a missing or malformed one leaves it a root.
pub fn adopt_parent(span: &Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|t| !t.is_empty()) else { return };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    } else {
        tracing::debug!(traceparent, "ignored a malformed traceparent");
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn a_traceparent_carries_a_span_into_another_process_s_span() {
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!("task attempt");
            let sent = traceparent(&parent).expect("an exported span has a traceparent");
            assert!(sent.starts_with("00-") && sent.len() == 55, "{sent}");
            let child = tracing::info_span!("task");
            adopt_parent(&child, Some(&sent));
            let (parent_cx, child_cx) = (parent.context(), child.context());
            let (parent_span, child_span) = (parent_cx.span(), child_cx.span());
            assert_eq!(child_span.span_context().trace_id(), parent_span.span_context().trace_id());
            let orphan = tracing::info_span!("orphan");
            adopt_parent(&orphan, Some("not a traceparent"));
            assert_ne!(
                orphan.context().span().span_context().trace_id(),
                parent_span.span_context().trace_id()
            );
        });
        assert_eq!(traceparent(&tracing::info_span!("unexported")), None);
    }
}
