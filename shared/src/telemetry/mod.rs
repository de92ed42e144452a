//! What a process tells its operators besides its metrics: JSON logs in the
//! seed's format, one object per line (`timestamp`, `level`, `service`,
//! `module`, `request_id`, `user_id`, `message`, `context` (every other
//! field of the event and its spans) and `performance.response_time_ms`);
//! OpenTelemetry traces when an OTLP endpoint is set ([`traces`]); errors
//! and panics to Sentry when `SENTRY_DSN` is set ([`errors`]).

pub mod errors;
pub mod traces;

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Config;

/// Flushes the traces and the error reports when dropped: hold it until
/// the process ends.
#[must_use = "dropping it ends the trace and error export"]
pub struct Guard {
    traces: Option<traces::Exporter>,
    errors: Option<errors::Reporter>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take() {
            traces.shutdown();
        }
        drop(self.errors.take());
    }
}

/// Installs the JSON logger for `service` with the `LOG_LEVEL` filter, and
/// the trace and error export that `config` turns on. A second call (tests
/// start several components in one process) keeps the first.
pub fn init(service: &'static str, config: &Config) -> Guard {
    let events = EnvFilter::try_new(&config.app.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let traces = config.telemetry.traces.as_ref().and_then(|t| traces::Exporter::start(t, &config.app.version));
    let errors = config.telemetry.sentry.as_ref().map(|s| errors::Reporter::start(s, service, &config.app.version));
    // A second call keeps the first subscriber; its exporters end with the guard.
    let _ = tracing_subscriber::registry()
        .with(JsonLayer { service }.with_filter(SpansAndEvents { events }))
        .with(traces.as_ref().map(traces::Exporter::layer))
        .with(errors.as_ref().map(|_| errors::layer()))
        .try_init();
    Guard { traces, errors }
}

/// The logger's filter: every span at INFO or above (their fields, such as
/// `request_id`, go on the lines of the events inside them, whatever
/// `LOG_LEVEL` is) and the events `LOG_LEVEL` lets through.
struct SpansAndEvents {
    events: EnvFilter,
}

impl<S: Subscriber> Filter<S> for SpansAndEvents {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if meta.is_span() { *meta.level() <= Level::INFO } else { Filter::enabled(&self.events, meta, cx) }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.is_span() {
            if *meta.level() <= Level::INFO {
                tracing::subscriber::Interest::always()
            } else {
                tracing::subscriber::Interest::never()
            }
        } else {
            Filter::<S>::callsite_enabled(&self.events, meta)
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        let events = Filter::<S>::max_level_hint(&self.events);
        Some(
            events.map_or(tracing::level_filters::LevelFilter::INFO, |e| {
                e.max(tracing::level_filters::LevelFilter::INFO)
            }),
        )
    }
}

/// The layer that writes the seed's log lines to stdout.
pub struct JsonLayer {
    service: &'static str,
}

/// A span's fields, for the lines of the events inside it (and the error reports).
pub(crate) struct SpanFields(pub(crate) Map<String, Value>);

#[derive(Default)]
pub(crate) struct Fields(pub(crate) Map<String, Value>);

impl Fields {
    /// Keeps `value` under the field's name; `otel.name`, `otel.kind` and
    /// `otel.status_code` are for the trace only.
    fn keep(&mut self, field: &Field, value: Value) {
        if !field.name().starts_with("otel.") {
            self.0.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.keep(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.keep(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.keep(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.keep(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.keep(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.keep(field, Value::String(value.to_string()));
    }
}

/// The fields of `event` and of the spans around it, outermost first; the
/// innermost value of a name wins, the event's own over all.
pub(crate) fn event_fields<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Map<String, Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut all = Map::new();
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope.from_root() {
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                all.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    let mut own = Fields::default();
    event.record(&mut own);
    all.extend(own.0);
    all
}

/// Whether `target` is one of our crates (what traces and error reports cover).
pub(crate) fn ours(target: &str) -> bool {
    ["api", "worker", "scheduler", "shared"].iter().any(|c| target.starts_with(c))
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.0));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut ext = span.extensions_mut();
        if let Some(SpanFields(existing)) = ext.get_mut::<SpanFields>() {
            existing.extend(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = render(self.service, event.metadata(), event_fields(event, &ctx));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

fn render(service: &str, meta: &tracing::Metadata<'_>, mut fields: Map<String, Value>) -> String {
    // sqlx warns of a `DATABASE_URL` parameter it does not know with its
    // value, which may be a secret (`?sslpassword=`): the key is enough.
    if meta.target().starts_with("sqlx_postgres::options") && fields.contains_key("value") {
        fields.insert("value".into(), "***".into());
    }
    let message = fields.remove("message").unwrap_or(Value::String(String::new()));
    let request_id = fields.remove("request_id").unwrap_or(Value::Null);
    let user_id = fields.remove("user_id").unwrap_or(Value::Null);
    let response_time = fields.remove("response_time_ms");

    let mut line = Map::new();
    line.insert("timestamp".into(), chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().into());
    line.insert("level".into(), level_name(meta.level()).into());
    line.insert("service".into(), service.into());
    line.insert("module".into(), meta.module_path().unwrap_or(meta.target()).into());
    line.insert("request_id".into(), request_id);
    line.insert("user_id".into(), user_id);
    line.insert("message".into(), message);
    line.insert("context".into(), Value::Object(fields));
    if let Some(ms) = response_time {
        line.insert("performance".into(), serde_json::json!({ "response_time_ms": ms }));
    }
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_seed_fields() {
        let meta = tracing::Metadata::new(
            "x",
            "api::routes",
            Level::WARN,
            None,
            None,
            Some("api::routes"),
            tracing::field::FieldSet::new(&[], tracing_core_callsite()),
            tracing::metadata::Kind::EVENT,
        );
        let mut fields = Map::new();
        fields.insert("message".into(), "Interview session started".into());
        fields.insert("request_id".into(), "req_1".into());
        fields.insert("session_id".into(), "s".into());
        fields.insert("response_time_ms".into(), 245.into());
        let line: Value = serde_json::from_str(&render("api-backend", &meta, fields)).expect("json");
        assert_eq!(line["level"], "WARNING");
        assert_eq!(line["service"], "api-backend");
        assert_eq!(line["module"], "api::routes");
        assert_eq!(line["request_id"], "req_1");
        assert_eq!(line["message"], "Interview session started");
        assert_eq!(line["context"]["session_id"], "s");
        assert_eq!(line["performance"]["response_time_ms"], 245);
        assert!(line["user_id"].is_null());
    }

    #[test]
    fn sqlx_s_unknown_url_parameter_is_logged_without_its_value() {
        let target = "sqlx_postgres::options::parse";
        let meta = tracing::Metadata::new(
            "x",
            target,
            Level::WARN,
            None,
            None,
            Some(target),
            tracing::field::FieldSet::new(&[], tracing_core_callsite()),
            tracing::metadata::Kind::EVENT,
        );
        let mut fields = Map::new();
        fields.insert("message".into(), "ignoring unrecognized connect parameter".into());
        fields.insert("key".into(), "sslpassword".into());
        fields.insert("value".into(), "hunter2".into());
        let line: Value = serde_json::from_str(&render("api-backend", &meta, fields)).expect("json");
        assert_eq!((&line["context"]["key"], &line["context"]["value"]), (&"sslpassword".into(), &"***".into()));
    }

    fn tracing_core_callsite() -> tracing::callsite::Identifier {
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unreachable!("not registered")
            }
        }
        static CS: Cs = Cs;
        tracing::callsite::Identifier(&CS)
    }
}
