//! Errors and panics to Sentry when `SENTRY_DSN` is set: every ERROR event
//! of our crates becomes a Sentry event with its fields, tagged with the
//! `request_id` (and `user_id`, `trace_id`) of the spans around it, the
//! process's `service`, the release (`APP_VERSION`) and the environment; a
//! panic is reported by the panic integration. Performance traces go to
//! OpenTelemetry ([`super::traces`]), not here.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::config::SentryConfig;

/// The Sentry client; flushes what is queued when dropped.
pub struct Reporter {
    _client: sentry::ClientInitGuard,
}

impl Reporter {
    /// Starts the client for `service`.
    pub fn start(config: &SentryConfig, service: &'static str, release: &str) -> Reporter {
        let mut options = sentry::ClientOptions::default();
        options.release = Some(Cow::Owned(release.to_owned()));
        options.environment = Some(Cow::Owned(config.environment.clone()));
        // Every event, panics too, says which process it came from.
        options.before_send = Some(Arc::new(move |mut event| {
            event.tags.insert("service".into(), service.into());
            Some(event)
        }));
        Reporter { _client: sentry::init((config.dsn.as_str(), options)) }
    }
}

/// The layer reporting our crates' ERROR events (it sees their spans, at
/// INFO and above, for the ids).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ErrorReports.with_filter(filter_fn(|meta| {
        super::ours(meta.target()) && *meta.level() <= if meta.is_span() { Level::INFO } else { Level::ERROR }
    }))
}

struct ErrorReports;

impl<S> Layer<S> for ErrorReports
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut report = sentry::protocol::Event {
            level: sentry::Level::Error,
            logger: Some(meta.target().to_owned()),
            ..Default::default()
        };
        let mut fields = super::event_fields(event, &ctx);
        report.message = fields.remove("message").map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned));
        for name in ["request_id", "user_id", "trace_id"] {
            if let Some(Value::String(value)) = fields.remove(name) {
                report.tags.insert(name.to_owned(), value);
            }
        }
        report.extra = fields.into_iter().collect();
        sentry::capture_event(report);
    }
}
