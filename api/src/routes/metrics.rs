//! `GET /metrics` in the Prometheus text format: the `ai_*` series of every
//! provider of the chain, fleet-wide (the workers keep them in Redis), and
//! `interview_completion_rate` from the daily aggregates.
//! With `METRICS_TOKEN` set, the scraper sends it as a bearer token.
//! The API, WebSocket, database and queue series come with the operator
//! surface (issue 5) and are not exported yet.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::provider_state::Report;

use crate::error::ApiError;
use crate::state::AppState;

/// The exposition.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = &state.config.api.metrics_token
        && crate::auth::bearer(&headers) != Some(token.0.as_str())
    {
        return Err(ApiError::unauthorized("/metrics wants the METRICS_TOKEN bearer token"));
    }
    let mut conn = state.redis.clone();
    let reports = shared::provider_state::report(&mut conn, &state.config.redis.key_prefix)
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis: {e}")))?;
    let mut body = render(&reports);
    // The latest day analytics_aggregation computed.
    let rate: Option<f64> = sqlx::query_scalar(
        "SELECT completion_rate FROM daily_analytics WHERE completion_rate IS NOT NULL ORDER BY day DESC LIMIT 1",
    )
    .fetch_optional(&state.db)
    .await
    .map_err(|e| ApiError::unavailable(format!("database: {e}")))?;
    if let Some(rate) = rate {
        let _ = writeln!(
            body,
            "# HELP interview_completion_rate Sessions completed / started, the last aggregated day.\n# TYPE interview_completion_rate gauge\ninterview_completion_rate {rate}"
        );
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// A label value, escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: &mut dyn FnMut(&mut String, &Report, &str)| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in reports {
            let labels = format!("provider=\"{}\",model=\"{}\"", label(&r.name), label(&r.model));
            lines(&mut out, r, &labels);
        }
    };
    family("ai_request_count", "counter", "AI requests sent, by outcome.", &mut |out, r, l| {
        for (status, n) in &r.stats.requests {
            let _ = writeln!(out, "ai_request_count{{{l},status=\"{status}\"}} {n}");
        }
    });
    family(
        "ai_request_duration_ms",
        "histogram",
        "AI request time, sending to the stream's end (ms).",
        &mut |out, r, l| {
            for (le, n) in &r.stats.duration_buckets {
                let le = le.map_or("+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(out, "ai_request_duration_ms_bucket{{{l},le=\"{le}\"}} {n}");
            }
            let count = r.stats.duration_buckets.last().map_or(0, |b| b.1);
            let _ = writeln!(out, "ai_request_duration_ms_sum{{{l}}} {}", r.stats.duration_sum_ms);
            let _ = writeln!(out, "ai_request_duration_ms_count{{{l}}} {count}");
        },
    );
    family("ai_error_count", "counter", "AI requests that failed (429s included).", &mut |out, r, l| {
        let errors: u64 = r.stats.requests.iter().filter(|(s, _)| s.as_str() != "ok").map(|(_, n)| n).sum();
        let _ = writeln!(out, "ai_error_count{{{l}}} {errors}");
    });
    family(
        "ai_rate_limit_count",
        "counter",
        "Rate limiting: 429s from the provider, and calls our fleet limiter held back.",
        &mut |out, r, l| {
            let _ = writeln!(out, "ai_rate_limit_count{{{l},source=\"provider\"}} {}", r.stats.rate_limited.provider);
            let _ = writeln!(out, "ai_rate_limit_count{{{l},source=\"limiter\"}} {}", r.stats.rate_limited.limiter);
        },
    );
    family("ai_token_usage_total", "counter", "Tokens used, as the providers reported them.", &mut |out, r, l| {
        let _ = writeln!(out, "ai_token_usage_total{{{l},type=\"prompt\"}} {}", r.stats.tokens.prompt);
        let _ = writeln!(out, "ai_token_usage_total{{{l},type=\"completion\"}} {}", r.stats.tokens.completion);
    });
    family("ai_estimated_cost_usd", "counter", "Estimated cost at the configured prices (USD).", &mut |out, r, l| {
        let _ = writeln!(out, "ai_estimated_cost_usd{{{l}}} {}", r.stats.cost_usd);
    });
    family("ai_circuit_open", "gauge", "1 while the provider's circuit is open or probing.", &mut |out, r, l| {
        let _ = writeln!(out, "ai_circuit_open{{{l}}} {}", u8::from(r.circuit.state != "closed"));
    });
    out
}
