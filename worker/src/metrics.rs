//! This worker's provider series, the seed's `ai_*` names: what its own
//! calls did (`sum` over the workers is the fleet's), and each circuit's
//! state as Redis holds it for the whole fleet (`max` over the workers).
//! The job series are `shared::metrics::JobMetrics`.

use std::time::Duration;

use shared::metrics::{
    CounterVec, GaugeVec, HistogramVec, IntCounterVec, Registry, counters, float_counters, gauges, histograms,
};
use shared::provider_state::stats::{DURATION_BUCKETS_MS, RequestOutcome, RequestRecord};

/// The `ai_*` families.
pub struct ProviderMetrics {
    requests: IntCounterVec,
    durations: HistogramVec,
    errors: IntCounterVec,
    rate_limited: IntCounterVec,
    tokens: IntCounterVec,
    estimated: IntCounterVec,
    cost: CounterVec,
}

const LABELS: [&str; 2] = ["provider", "model"];

impl ProviderMetrics {
    /// The families, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        let buckets: Vec<f64> = DURATION_BUCKETS_MS.iter().map(|b| *b as f64).collect();
        Self {
            requests: counters(
                r,
                "ai_request_count",
                "AI requests sent, by outcome.",
                &["provider", "model", "status"],
            ),
            durations: histograms(
                r,
                "ai_request_duration_ms",
                "AI request time, sending to the stream's end (ms).",
                &LABELS,
                &buckets,
            ),
            errors: counters(r, "ai_error_count", "AI requests that failed (429s included).", &LABELS),
            rate_limited: counters(
                r,
                "ai_rate_limit_count",
                "Rate limiting: 429s from the provider (source=provider), calls our fleet limiter held back (source=limiter).",
                &["provider", "model", "source"],
            ),
            tokens: counters(
                r,
                "ai_token_usage_total",
                "Tokens used, as the providers reported them.",
                &["provider", "model", "type"],
            ),
            estimated: counters(
                r,
                "ai_token_usage_estimated_total",
                "Of ai_token_usage_total, the tokens we estimated because the provider reported none.",
                &["provider", "model", "type"],
            ),
            cost: float_counters(r, "ai_estimated_cost_usd", "Estimated cost at the configured prices (USD).", &LABELS),
        }
    }

    /// Puts `provider` / `model`'s counters at 0 (a counter that appears at
    /// its first increment shows no `increase()` for it).
    pub fn provider(&self, provider: &str, model: &str) {
        for outcome in [RequestOutcome::Ok, RequestOutcome::RateLimited, RequestOutcome::Error] {
            self.requests.with_label_values(&[provider, model, outcome.as_str()]);
        }
        self.errors.with_label_values(&[provider, model]);
        for source in ["provider", "limiter"] {
            self.rate_limited.with_label_values(&[provider, model, source]);
        }
        for kind in ["prompt", "completion"] {
            self.tokens.with_label_values(&[provider, model, kind]);
        }
        self.cost.with_label_values(&[provider, model]);
    }

    /// One finished call to `provider` / `model`.
    pub fn request(&self, provider: &str, model: &str, r: &RequestRecord) {
        let labels = [provider, model];
        self.requests.with_label_values(&[provider, model, r.outcome.as_str()]).inc();
        self.durations.with_label_values(&labels).observe(duration_ms(r.duration));
        if r.outcome != RequestOutcome::Ok {
            self.errors.with_label_values(&labels).inc();
        }
        if r.outcome == RequestOutcome::RateLimited {
            self.rate_limited.with_label_values(&[provider, model, "provider"]).inc();
        }
        let (prompt, completion) = (u64::from(r.tokens.0), u64::from(r.tokens.1));
        if prompt + completion > 0 {
            self.tokens.with_label_values(&[provider, model, "prompt"]).inc_by(prompt);
            self.tokens.with_label_values(&[provider, model, "completion"]).inc_by(completion);
            if r.estimated {
                self.estimated.with_label_values(&[provider, model, "prompt"]).inc_by(prompt);
                self.estimated.with_label_values(&[provider, model, "completion"]).inc_by(completion);
            }
        }
        if r.cost_usd > 0.0 {
            self.cost.with_label_values(&labels).inc_by(r.cost_usd);
        }
    }

    /// A call our limiter held back.
    pub fn limiter_hold(&self, provider: &str, model: &str) {
        self.rate_limited.with_label_values(&[provider, model, "limiter"]).inc();
    }
}

/// `ai_circuit_open{provider,model}`, set at each scrape ([`refresh_circuits`]).
pub fn circuit_gauges(registry: &Registry) -> GaugeVec {
    gauges(
        registry,
        "ai_circuit_open",
        "1 while the provider's circuit is open or probing (fleet state, as Redis holds it).",
        &LABELS,
    )
}

/// Sets `circuits` from the fleet's provider state.
pub async fn refresh_circuits(circuits: &GaugeVec, mut conn: redis::aio::ConnectionManager, prefix: &str) {
    match shared::provider_state::report(&mut conn, prefix).await {
        Ok(reports) => {
            for r in reports {
                let open = f64::from(u8::from(r.circuit.state != "closed"));
                circuits.with_label_values(&[r.name.as_str(), r.model.as_str()]).set(open);
            }
        }
        Err(e) => tracing::warn!(error = %e, "circuit states not read for the metrics"),
    }
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
