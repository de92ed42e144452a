//! OpenTelemetry traces over OTLP/HTTP (protobuf), on when an endpoint is
//! set: the `tracing` spans of our crates become OTel spans. A turn's trace
//! crosses the queue in its job's `traceparent` (W3C Trace Context): the
//! API's request span, the worker's turn span and each provider call's span
//! share one trace. Off, the layer is absent and nothing is exported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler as SdkSampler, SdkTracerProvider};
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{ParentlessSampler, Sampler, TracesConfig};

/// Whether this process exports traces: spans get their OpenTelemetry
/// fields (names, kinds, GenAI attributes) only then, so that with tracing
/// off no work is spent on them.
static ON: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The running exporter.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts the batch exporter to `config.endpoint`; `None` (logged) if
    /// it cannot be built.
    pub fn start(config: &TracesConfig, version: &str) -> Option<Exporter> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .build();
        let exporter = match exporter {
            Ok(e) => e,
            Err(e) => {
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT: traces are off: {e}");
                return None;
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new("service.version", version.to_owned()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler(config.sampler))
            .with_resource(resource)
            .build();
        ON.store(true, Ordering::Relaxed);
        Some(Exporter { provider })
    }

    /// The layer turning our crates' spans (INFO and above) into OTel spans;
    /// WARN and ERROR events become their span events.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("ai-interviewer")).with_filter(filter_fn(
            |meta| {
                super::ours(meta.target()) && *meta.level() <= if meta.is_span() { Level::INFO } else { Level::WARN }
            },
        ))
    }

    /// Exports what is left and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("traces: the last spans may be lost: {e}");
        }
    }
}

fn sampler(s: Sampler) -> SdkSampler {
    let inner = |p: ParentlessSampler| match p {
        ParentlessSampler::AlwaysOn => SdkSampler::AlwaysOn,
        ParentlessSampler::AlwaysOff => SdkSampler::AlwaysOff,
        ParentlessSampler::Ratio(r) => SdkSampler::TraceIdRatioBased(r),
    };
    match s {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::Ratio(r) => SdkSampler::TraceIdRatioBased(r),
        Sampler::ParentBased(p) => SdkSampler::ParentBased(Box::new(inner(p))),
    }
}

/// The W3C `traceparent` of the current span, for a job to carry; `None`
/// when tracing is off (or the span is not sampled out but invalid).
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace `traceparent` names (an HTTP header or
/// a job's field; a malformed one starts a new trace), and records its
/// `trace_id` for the log lines inside it. Nothing when tracing is off.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}
