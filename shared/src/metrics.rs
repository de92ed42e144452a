//! Prometheus series: every process keeps its own registry and exports it,
//! the API on its `/metrics` route, the worker and the scheduler on
//! `METRICS_PORT`. A counter counts what this process did, so PromQL's
//! `sum` over the pods is the fleet's total; the fleet's state (queue depth,
//! live pools, circuits) is read from Redis by every exporter alike and is
//! aggregated with `max` (docs/operations.md "Metrics").
//!
//! TiKV's `prometheus` crate: it writes the text format with the seed's
//! names as they are (`api_request_count`, `ai_estimated_cost_usd`, a float
//! counter) and keeps a registry per instance, so components that share a
//! test process do not share counters.

use std::future::Future;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
pub use prometheus::{CounterVec, Gauge, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use prometheus::{HistogramOpts, Opts};

use crate::config::Secret;
use crate::jobs::QueueName;

/// Registers `metric` (names and labels are constants of this code: a
/// failure is a bug every test shows).
fn register<T: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<T>) -> T {
    let metric = metric.expect("metric names and labels are valid");
    adopt(registry, &metric);
    metric
}

/// Registers a family made elsewhere.
fn adopt<T: Collector + Clone + 'static>(registry: &Registry, metric: &T) {
    registry.register(Box::new(metric.clone())).expect("each metric is registered once per registry");
}

/// An integer counter family.
pub fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

/// A float counter family (dollars).
pub fn float_counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    register(registry, CounterVec::new(Opts::new(name, help), labels))
}

/// A gauge without labels.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(registry, Gauge::new(name, help))
}

/// A gauge family.
pub fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(registry, GaugeVec::new(Opts::new(name, help), labels))
}

/// A histogram family with upper bounds `buckets`.
pub fn histograms(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    register(registry, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels))
}

/// The registry in the text format (0.0.4).
pub fn encode(registry: &Registry) -> String {
    // Writing into a String fails only on a metric without a value, which
    // the families above cannot produce.
    prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_default()
}

/// The answer to a scrape: the series, or 401 when `METRICS_TOKEN` is set
/// and not sent as the bearer token.
pub fn exposition(registry: &Registry, token: Option<&Secret>, headers: &HeaderMap) -> Response {
    if !authorized(token, headers) {
        return (StatusCode::UNAUTHORIZED, "metrics want the METRICS_TOKEN bearer token\n").into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], encode(registry)).into_response()
}

/// Whether the request carries the token (always, when none is set).
pub fn authorized(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    sent.is_some_and(|sent| same_secret(sent, &token.0))
}

/// Whether `sent` is `expected`, in a time that tells nothing about how much
/// of it matched: the SHA-256 digests are compared, so a mismatch in the
/// first byte and in the last take as long.
fn same_secret(sent: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(sent.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Binds `METRICS_HOST:METRICS_PORT`.
pub async fn listen(config: &crate::config::TelemetryConfig) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = (config.metrics_host.as_str(), config.metrics_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("METRICS_HOST/METRICS_PORT: cannot listen on {}:{}: {e}", addr.0, addr.1))?;
    if let Ok(local) = listener.local_addr() {
        tracing::info!(%local, "metrics on http://{local}/metrics");
    }
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` until `shutdown`; `refresh` runs
/// before each scrape (gauges read from Redis).
pub async fn serve<R, F>(
    listener: tokio::net::TcpListener,
    registry: Registry,
    token: Option<Secret>,
    refresh: R,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send,
{
    let route = move |headers: HeaderMap| {
        let (registry, token, refresh) = (registry.clone(), token.clone(), refresh.clone());
        async move {
            if authorized(token.as_ref(), &headers) {
                // A slow Redis does not hold the scrape past its timeout.
                let _ = tokio::time::timeout(Duration::from_secs(2), refresh()).await;
            }
            exposition(&registry, token.as_ref(), &headers)
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(route));
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

/// Upper bounds (seconds) of `job_duration_seconds`.
const JOB_DURATION_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// What this process's job handlers did, counted where the queues are
/// ([`crate::queue::Queues`]); the worker registers it ([`JobMetrics::export`]),
/// the API and the scheduler, which handle no job, do not.
#[derive(Clone)]
pub struct JobMetrics {
    jobs: IntCounterVec,
    duration: HistogramVec,
    batch_runs: IntCounterVec,
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl JobMetrics {
    /// The families, every series at 0: a counter that appears at its first
    /// increment shows no `increase()` for it.
    pub fn new() -> Self {
        // A registry of their own until `export`.
        let registry = &Registry::new();
        let metrics = Self {
            jobs: counters(
                registry,
                "jobs_total",
                "Jobs handled, by outcome: ok, retried (the attempt failed; the next is queued with backoff), error (apalis runs it again), dead (moved to the dead set).",
                &["queue", "outcome"],
            ),
            duration: histograms(
                registry,
                "job_duration_seconds",
                "Job handling time.",
                &["queue"],
                &JOB_DURATION_BUCKETS,
            ),
            batch_runs: counters(registry, "batch_runs_total", "Batch runs finished, by status.", &["batch", "status"]),
        };
        for queue in QueueName::ALL {
            for outcome in ["ok", "retried", "error", "dead"] {
                metrics.jobs.with_label_values(&[queue.as_str(), outcome]);
            }
        }
        for batch in crate::domain::Batch::ALL {
            for status in ["succeeded", "failed"] {
                metrics.batch_runs.with_label_values(&[batch.as_str(), status]);
            }
        }
        metrics
    }

    /// Adds the families to `registry` (the worker's).
    pub fn export(&self, registry: &Registry) {
        adopt(registry, &self.jobs);
        adopt(registry, &self.duration);
        adopt(registry, &self.batch_runs);
    }

    /// A handled job.
    pub fn job(&self, queue: QueueName, outcome: &str, took: Duration) {
        self.jobs.with_label_values(&[queue.as_str(), outcome]).inc();
        self.duration.with_label_values(&[queue.as_str()]).observe(took.as_secs_f64());
    }

    /// A batch run finished.
    pub fn batch_run(&self, batch: &str, status: &str) {
        self.batch_runs.with_label_values(&[batch, status]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_only_itself() {
        assert!(same_secret("metrics-token-1", "metrics-token-1"));
        for other in ["metrics-token-2", "metrics-token-", "", "metrics-token-11"] {
            assert!(!same_secret(other, "metrics-token-1"), "{other}");
        }
    }

    #[test]
    fn the_seed_names_are_written_as_they_are() {
        let registry = Registry::new();
        counters(&registry, "api_request_count", "Requests.", &["status"]).with_label_values(&["200"]).inc();
        float_counters(&registry, "ai_estimated_cost_usd", "USD.", &["provider"])
            .with_label_values(&["a"])
            .inc_by(0.25);
        let text = encode(&registry);
        assert!(text.contains("# TYPE api_request_count counter\napi_request_count{status=\"200\"} 1\n"), "{text}");
        assert!(text.contains("ai_estimated_cost_usd{provider=\"a\"} 0.25\n"), "{text}");
    }
}
