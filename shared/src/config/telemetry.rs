//! `METRICS_*`, `OTEL_*` and `SENTRY_*`: where each process exports its
//! Prometheus series, its traces and its errors.

use super::{Component, Secret, Vars};

/// Metrics, traces and error reports.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `METRICS_HOST` (default `0.0.0.0`): the worker's and the scheduler's
    /// metrics listener (the API serves `/metrics` on its own port).
    pub metrics_host: String,
    /// `METRICS_PORT`: the worker's (default 9091) and the scheduler's
    /// (default 9092) metrics port; 0 takes a free one (tests).
    pub metrics_port: u16,
    /// `METRICS_TOKEN`: when set, every `/metrics` wants it as a bearer token.
    pub metrics_token: Option<Secret>,
    /// OpenTelemetry traces over OTLP/HTTP, when an endpoint is set.
    pub traces: Option<TracesConfig>,
    /// Sentry, when `SENTRY_DSN` is set.
    pub sentry: Option<SentryConfig>,
}

/// OTLP trace export.
#[derive(Debug, Clone)]
pub struct TracesConfig {
    /// Where spans are posted: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it
    /// is, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME` (default: the process's `service` of the logs).
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else the seed's
    /// `SENTRY_TRACES_SAMPLE_RATE` as a parent-based ratio, else every trace.
    pub sampler: Sampler,
}

/// Which traces are kept (the OpenTelemetry SDK's sampler names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this fraction of new traces, whatever the caller decided.
    Ratio(f64),
    /// `parentbased_*`: a caller's decision (its `traceparent`) wins; new
    /// traces by the inner sampler.
    ParentBased(ParentlessSampler),
}

/// A parent-based sampler's rule for new traces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParentlessSampler {
    /// Keep them all.
    AlwaysOn,
    /// Keep none.
    AlwaysOff,
    /// Keep this fraction.
    Ratio(f64),
}

/// Error reporting to Sentry.
#[derive(Clone)]
pub struct SentryConfig {
    /// `SENTRY_DSN`.
    pub dsn: String,
    /// `SENTRY_ENVIRONMENT` (default `ENVIRONMENT`).
    pub environment: String,
}

impl std::fmt::Debug for SentryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentryConfig").field("dsn", &"<redacted>").field("environment", &self.environment).finish()
    }
}

pub(super) fn read(v: &mut Vars, component: Component, environment: &str) -> TelemetryConfig {
    let default_port = match component {
        Component::Scheduler => 9092,
        _ => 9091,
    };
    TelemetryConfig {
        metrics_host: v.string("METRICS_HOST", "0.0.0.0"),
        metrics_port: v.parse("METRICS_PORT", default_port),
        metrics_token: v.get("METRICS_TOKEN").map(|t| Secret(t.to_owned())),
        traces: traces(v, component),
        sentry: sentry(v, environment),
    }
}

fn traces(v: &mut Vars, component: Component) -> Option<TracesConfig> {
    let sampler = sampler(v);
    let endpoint = match (v.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), v.get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (Some(traces), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.to_owned()),
        (None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{}/v1/traces", base.trim_end_matches('/'))),
        (None, None) => return None,
    };
    if !(endpoint.1.starts_with("http://") || endpoint.1.starts_with("https://")) {
        v.problem(endpoint.0, "must be an http:// or https:// URL (OTLP over HTTP)");
    }
    if let Some(protocol) = v.get("OTEL_EXPORTER_OTLP_PROTOCOL").filter(|p| *p != "http/protobuf") {
        v.problem("OTEL_EXPORTER_OTLP_PROTOCOL", format!("only http/protobuf is supported, got {protocol:?}"));
    }
    Some(TracesConfig {
        endpoint: endpoint.1,
        service_name: v.string("OTEL_SERVICE_NAME", component.service_name()),
        sampler,
    })
}

fn sampler(v: &mut Vars) -> Sampler {
    let ratio = |v: &mut Vars, name: &str, raw: Option<&str>| -> f64 {
        match raw.map(str::parse::<f64>) {
            None => 1.0,
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
            Some(_) => {
                v.problem(name, "must be a number from 0 to 1");
                1.0
            }
        }
    };
    let arg = v.get("OTEL_TRACES_SAMPLER_ARG").map(str::to_owned);
    let Some(name) = v.get("OTEL_TRACES_SAMPLER").map(str::to_owned) else {
        let rate = v.get("SENTRY_TRACES_SAMPLE_RATE").map(str::to_owned);
        return match rate {
            Some(rate) => {
                Sampler::ParentBased(ParentlessSampler::Ratio(ratio(v, "SENTRY_TRACES_SAMPLE_RATE", Some(&rate))))
            }
            None => Sampler::ParentBased(ParentlessSampler::AlwaysOn),
        };
    };
    match name.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::Ratio(ratio(v, "OTEL_TRACES_SAMPLER_ARG", arg.as_deref())),
        "parentbased_always_on" => Sampler::ParentBased(ParentlessSampler::AlwaysOn),
        "parentbased_always_off" => Sampler::ParentBased(ParentlessSampler::AlwaysOff),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(ParentlessSampler::Ratio(ratio(v, "OTEL_TRACES_SAMPLER_ARG", arg.as_deref())))
        }
        other => {
            v.problem(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "expected always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got {other:?}"
                ),
            );
            Sampler::AlwaysOn
        }
    }
}

fn sentry(v: &mut Vars, environment: &str) -> Option<SentryConfig> {
    let dsn = v.get("SENTRY_DSN")?.to_owned();
    // https://PUBLIC_KEY@HOST/PROJECT_ID
    let well_formed = dsn.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https")
            && rest.split_once('@').is_some_and(|(key, at)| {
                !key.is_empty()
                    && at.rsplit_once('/').is_some_and(|(host, project)| !host.is_empty() && !project.is_empty())
            })
    });
    if !well_formed {
        v.problem("SENTRY_DSN", "expected https://PUBLIC_KEY@HOST/PROJECT_ID");
    }
    Some(SentryConfig { dsn, environment: v.string("SENTRY_ENVIRONMENT", environment) })
}

#[cfg(test)]
mod tests {
    use super::super::Component;
    use super::super::tests::load;
    use super::*;

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://x/y");
    const JWT: (&str, &str) = ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef");

    #[test]
    fn each_process_has_its_own_default_port_and_a_bad_one_is_named() {
        let worker = load(&[DB], Component::Worker).expect("worker");
        let scheduler = load(&[DB], Component::Scheduler).expect("scheduler");
        assert_eq!((worker.telemetry.metrics_port, scheduler.telemetry.metrics_port), (9091, 9092));
        assert_eq!(worker.telemetry.metrics_host, "0.0.0.0");
        let set = load(&[DB, ("METRICS_PORT", "9300"), ("METRICS_TOKEN", " ")], Component::Worker).expect("set");
        assert_eq!(set.telemetry.metrics_port, 9300);
        assert!(set.telemetry.metrics_token.is_none(), "blank is unset");
        let err = load(&[DB, ("METRICS_PORT", "ninety")], Component::Worker).expect_err("bad port");
        assert!(err.to_string().contains("METRICS_PORT: cannot parse \"ninety\""), "{err}");
    }

    #[test]
    fn traces_are_off_until_an_endpoint_is_set() {
        let off = load(&[DB, ("SENTRY_TRACES_SAMPLE_RATE", "0.1")], Component::Worker).expect("off");
        assert!(off.telemetry.traces.is_none() && off.telemetry.sentry.is_none());
        let on = load(&[DB, ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")], Component::Worker).expect("on");
        let traces = on.telemetry.traces.expect("traces");
        assert_eq!(traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(traces.service_name, "worker");
        assert_eq!(traces.sampler, Sampler::ParentBased(ParentlessSampler::AlwaysOn));
        let seed = load(
            &[DB, ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c/x"), ("SENTRY_TRACES_SAMPLE_RATE", "0.1")],
            Component::Worker,
        )
        .expect("seed rate");
        let traces = seed.telemetry.traces.expect("traces");
        assert_eq!(traces.endpoint, "https://c/x");
        assert_eq!(traces.sampler, Sampler::ParentBased(ParentlessSampler::Ratio(0.1)));
        let otel = load(
            &[
                DB,
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("SENTRY_TRACES_SAMPLE_RATE", "0.1"),
            ],
            Component::Worker,
        )
        .expect("otel wins");
        assert_eq!(otel.telemetry.traces.map(|t| t.sampler), Some(Sampler::Ratio(0.25)));
    }

    #[test]
    fn bad_telemetry_settings_are_named() {
        let err = load(
            &[
                DB,
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER", "sometimes"),
                ("SENTRY_DSN", "not a dsn"),
            ],
            Component::Worker,
        )
        .expect_err("bad");
        let err = err.to_string();
        for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "SENTRY_DSN"]
        {
            assert!(err.contains(name), "{name}: {err}");
        }
        let err =
            load(&[DB, ("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")], Component::Worker)
                .expect_err("ratio");
        assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG: must be a number from 0 to 1"), "{err}");
        let sentry = load(
            &[DB, JWT, ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/42"), ("ENVIRONMENT", "staging")],
            Component::Api,
        )
        .expect("sentry");
        assert_eq!(sentry.telemetry.sentry.map(|s| s.environment).as_deref(), Some("staging"));
    }
}
