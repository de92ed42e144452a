//! `GET /metrics` in the Prometheus text format, the seed's names where they
//! apply (SPEC §9): this instance's series (`api_request_*`, `websocket_*`,
//! `auth_*`, `db_connection_pool_*`) and the fleet's state, read from Redis
//! and PostgreSQL at each scrape and the same from every instance (`max`
//! over them): queue depth per queue and state, the oldest pending job, live
//! worker pools, open sessions, the last day's completion rate and Redis's
//! memory. What the workers did (jobs, provider calls, tokens, cost) each
//! worker exports itself on `METRICS_PORT`, and the scheduler its ticks.
//! With `METRICS_TOKEN` set, the scraper sends it as a bearer token.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// The exposition.
/// Prometheus text format: this instance's series and the fleet's state.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "The series", content_type = "text/plain", body = String),
    (status = 401, description = "METRICS_TOKEN is set and the bearer token is not it", body = crate::openapi::ErrorBody),
    (status = 503, description = "Redis or PostgreSQL unavailable for the fleet's state", body = crate::openapi::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = state.config.telemetry.metrics_token.as_ref();
    if !shared::metrics::authorized(token, &headers) {
        return Err(ApiError::unauthorized("/metrics wants the METRICS_TOKEN bearer token"));
    }
    refresh(&state).await?;
    Ok(shared::metrics::exposition(&state.core.registry, token, &headers))
}

/// Sets the gauges: this instance's, then the fleet's.
async fn refresh(state: &AppState) -> Result<(), ApiError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| ApiError::unavailable(format!("{what}: {e}"));
    let (instance, fleet) = (&state.metrics.instance, &state.metrics.fleet);
    instance.websockets.set(state.ws_active.load(std::sync::atomic::Ordering::Relaxed) as f64);
    let size = state.config.database.max_connections;
    let in_use = state.db.connections_in_use();
    instance.pool_size.set(f64::from(size));
    instance.pool_in_use.set(f64::from(in_use));
    instance.pool_available.set(f64::from(size.saturating_sub(in_use)));

    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE status = 'active'")
        .fetch_one(&state.db)
        .await
        .map_err(|e| unavailable("database", &e))?;
    fleet.active_sessions.set(sessions as f64);
    // The latest day analytics_aggregation computed.
    let rate: Option<f64> = sqlx::query_scalar(
        "SELECT completion_rate FROM daily_analytics WHERE completion_rate IS NOT NULL ORDER BY day DESC LIMIT 1",
    )
    .fetch_optional(&state.db)
    .await
    .map_err(|e| unavailable("database", &e))?;
    if let Some(rate) = rate {
        fleet.completion_rate.set(rate);
    }

    let mut conn = state.redis.clone();
    let info: String =
        redis::cmd("INFO").arg("memory").query_async(&mut conn).await.map_err(|e| unavailable("Redis", &e))?;
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).and_then(|v| v.trim().parse::<f64>().ok())
    };
    fleet.redis_used.set(field("used_memory").unwrap_or(0.0));
    fleet.redis_max.set(field("maxmemory").unwrap_or(0.0));
    let prefix = &state.config.redis.key_prefix;
    let views = shared::queue_admin::views(&mut conn, prefix).await.map_err(|e| unavailable("Redis", &e))?;
    for v in &views {
        let q = v.queue.as_str();
        for (st, n) in [
            ("pending", v.pending),
            ("scheduled", v.scheduled),
            ("running", v.running),
            ("done", v.done),
            ("dead", v.dead),
        ] {
            fleet.queue_jobs.with_label_values(&[q, st]).set(n as f64);
        }
        fleet.oldest_pending.with_label_values(&[q]).set(v.oldest_pending_age_seconds.unwrap_or(0.0));
        fleet.workers.with_label_values(&[q]).set(v.workers.len() as f64);
    }
    Ok(())
}
