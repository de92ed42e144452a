//! `GET /metrics` in the Prometheus text format, the seed's names where they
//! apply (SPEC §9). This instance's own series (`api_request_*`,
//! `websocket_*`, `auth_login_count`, `db_connection_pool_*`), and the
//! fleet's, the same from every instance: queue depth per queue and state,
//! job durations, retries and outcomes (the workers count them in Redis),
//! the `ai_*` series per provider, batch runs, active sessions and the last
//! day's `interview_completion_rate` (PostgreSQL).
//! With `METRICS_TOKEN` set, the scraper sends it as a bearer token.
//! `auth_mfa_verification_count` is not exported: MFA is not built.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::provider_state::Report;

use crate::error::ApiError;
use crate::metrics::label;
use crate::state::AppState;

/// The exposition.
/// Prometheus text format: this instance's series and the fleet's.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "The series", content_type = "text/plain", body = String),
    (status = 401, description = "METRICS_TOKEN is set and the bearer token is not it", body = crate::openapi::ErrorBody),
    (status = 503, description = "Redis unavailable for the fleet's series", body = crate::openapi::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = &state.config.api.metrics_token
        && !crate::auth::bearer(&headers).is_some_and(|sent| same_secret(sent, &token.0))
    {
        return Err(ApiError::unauthorized("/metrics wants the METRICS_TOKEN bearer token"));
    }
    let mut body = String::new();
    state.metrics.render(&mut body);
    fleet(&state, &mut body).await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// Whether `sent` is `expected`, in a time that tells nothing about how much
/// of it matched: the SHA-256 digests are compared, so a mismatch in the
/// first byte and in the last take as long.
fn same_secret(sent: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(sent.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The fleet's series, read from PostgreSQL and Redis.
async fn fleet(state: &AppState, out: &mut String) -> Result<(), ApiError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| ApiError::unavailable(format!("{what}: {e}"));
    let active = state.ws_active.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP websocket_active_connections WebSockets open on this instance.\n# TYPE websocket_active_connections gauge\nwebsocket_active_connections {active}"
    );
    let size = state.config.database.max_connections;
    let in_use = state.db.connections_in_use();
    let _ = writeln!(
        out,
        "# HELP db_connection_pool_size Connections this instance may open.\n# TYPE db_connection_pool_size gauge\ndb_connection_pool_size {size}\n# HELP db_connection_pool_in_use Connections in use.\n# TYPE db_connection_pool_in_use gauge\ndb_connection_pool_in_use {in_use}\n# HELP db_connection_pool_available Connections left.\n# TYPE db_connection_pool_available gauge\ndb_connection_pool_available {}",
        size.saturating_sub(in_use)
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE status = 'active'")
        .fetch_one(&state.db)
        .await
        .map_err(|e| unavailable("database", &e))?;
    let _ = writeln!(
        out,
        "# HELP interview_active_sessions Sessions open now.\n# TYPE interview_active_sessions gauge\ninterview_active_sessions {sessions}"
    );

    let mut conn = state.redis.clone();
    let info: String =
        redis::cmd("INFO").arg("memory").query_async(&mut conn).await.map_err(|e| unavailable("Redis", &e))?;
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).and_then(|v| v.trim().parse::<u64>().ok())
    };
    let _ = writeln!(
        out,
        "# HELP redis_memory_used_bytes Memory Redis uses.\n# TYPE redis_memory_used_bytes gauge\nredis_memory_used_bytes {}\n# HELP redis_memory_max_bytes Redis maxmemory (0: no limit).\n# TYPE redis_memory_max_bytes gauge\nredis_memory_max_bytes {}",
        field("used_memory").unwrap_or(0),
        field("maxmemory").unwrap_or(0)
    );
    let prefix = &state.config.redis.key_prefix;
    let views = shared::queue_admin::views(&mut conn, prefix).await.map_err(|e| unavailable("Redis", &e))?;
    let _ = writeln!(out, "# HELP queue_jobs Jobs per queue and state.\n# TYPE queue_jobs gauge");
    for v in &views {
        let q = v.queue.as_str();
        for (st, n) in [
            ("pending", v.pending),
            ("scheduled", v.scheduled),
            ("running", v.running),
            ("done", v.done),
            ("dead", v.dead),
        ] {
            let _ = writeln!(out, "queue_jobs{{queue=\"{q}\",state=\"{st}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP queue_oldest_pending_age_seconds Age of the oldest pending job (0 when none).\n# TYPE queue_oldest_pending_age_seconds gauge"
    );
    for v in &views {
        let _ = writeln!(
            out,
            "queue_oldest_pending_age_seconds{{queue=\"{}\"}} {}",
            v.queue.as_str(),
            v.oldest_pending_age_seconds.unwrap_or(0.0)
        );
    }
    let _ = writeln!(out, "# HELP queue_workers Live worker pools.\n# TYPE queue_workers gauge");
    for v in &views {
        let _ = writeln!(out, "queue_workers{{queue=\"{}\"}} {}", v.queue.as_str(), v.workers.len());
    }
    let mut stats = Vec::new();
    for v in &views {
        stats.push((
            v.queue.as_str(),
            shared::queue_admin::job_stats(&mut conn, prefix, v.queue).await.map_err(|e| unavailable("Redis", &e))?,
        ));
    }
    let _ = writeln!(
        out,
        "# HELP job_count Jobs handled, by outcome (dead: moved to the dead set).\n# TYPE job_count counter"
    );
    for (q, s) in &stats {
        for (outcome, n) in &s.outcomes {
            let _ = writeln!(out, "job_count{{queue=\"{q}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    let _ = writeln!(out, "# HELP job_retries_total Retries pushed with backoff.\n# TYPE job_retries_total counter");
    for (q, s) in &stats {
        let _ = writeln!(out, "job_retries_total{{queue=\"{q}\"}} {}", s.retries);
    }
    let _ = writeln!(out, "# HELP job_duration_ms Job handling time (ms).\n# TYPE job_duration_ms histogram");
    for (q, s) in &stats {
        for (le, n) in &s.duration_buckets {
            let le = le.map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "job_duration_ms_bucket{{queue=\"{q}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "job_duration_ms_sum{{queue=\"{q}\"}} {}", s.duration_sum_ms);
        let _ =
            writeln!(out, "job_duration_ms_count{{queue=\"{q}\"}} {}", s.duration_buckets.last().map_or(0, |b| b.1));
    }
    let runs: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT batch, status, count(*) FROM batch_runs GROUP BY batch, status ORDER BY batch, status")
            .fetch_all(&state.db)
            .await
            .map_err(|e| unavailable("database", &e))?;
    let _ = writeln!(out, "# HELP batch_runs_total Batch runs recorded, by status.\n# TYPE batch_runs_total counter");
    for (batch, status, n) in runs {
        let _ = writeln!(out, "batch_runs_total{{batch=\"{}\",status=\"{status}\"}} {n}", label(&batch));
    }
    // The latest day analytics_aggregation computed.
    let rate: Option<f64> = sqlx::query_scalar(
        "SELECT completion_rate FROM daily_analytics WHERE completion_rate IS NOT NULL ORDER BY day DESC LIMIT 1",
    )
    .fetch_optional(&state.db)
    .await
    .map_err(|e| unavailable("database", &e))?;
    if let Some(rate) = rate {
        let _ = writeln!(
            out,
            "# HELP interview_completion_rate Sessions completed / started, the last aggregated day.\n# TYPE interview_completion_rate gauge\ninterview_completion_rate {rate}"
        );
    }
    let reports = shared::provider_state::report(&mut conn, prefix).await.map_err(|e| unavailable("Redis", &e))?;
    out.push_str(&render(&reports));
    Ok(())
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
    family(
        "ai_token_usage_estimated_total",
        "counter",
        "Of ai_token_usage_total, the tokens we estimated because the provider reported none.",
        &mut |out, r, l| {
            let _ = writeln!(
                out,
                "ai_token_usage_estimated_total{{{l},type=\"prompt\"}} {}",
                r.stats.estimated_tokens.prompt
            );
            let _ = writeln!(
                out,
                "ai_token_usage_estimated_total{{{l},type=\"completion\"}} {}",
                r.stats.estimated_tokens.completion
            );
        },
    );
    family("ai_estimated_cost_usd", "counter", "Estimated cost at the configured prices (USD).", &mut |out, r, l| {
        let _ = writeln!(out, "ai_estimated_cost_usd{{{l}}} {}", r.stats.cost_usd);
    });
    family("ai_circuit_open", "gauge", "1 while the provider's circuit is open or probing.", &mut |out, r, l| {
        let _ = writeln!(out, "ai_circuit_open{{{l}}} {}", u8::from(r.circuit.state != "closed"));
    });
    out
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
}
