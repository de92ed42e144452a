//! `/health` in the seed's shape, `/health/live` and `/health/ready`. Every
//! dependency check has its own timeout, so a dead dependency gives an
//! `error` text, never a hang.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(live)).routes(routes!(ready))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = Alive)))]
async fn live() -> impl IntoResponse {
    axum::Json(Alive { status: "alive" })
}

/// The liveness answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Alive {
    /// Always `alive`.
    status: &'static str,
}

/// Runs `check` under the health timeout; `Err(text)` when it fails or times out.
async fn timed<T, E: std::fmt::Display>(
    limit: Duration,
    check: impl Future<Output = Result<T, E>>,
) -> (Result<T, String>, u64) {
    let start = Instant::now();
    let result = match tokio::time::timeout(limit, check).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("Connection timeout after {}ms", limit.as_millis())),
    };
    (result, start.elapsed().as_millis() as u64)
}

async fn database_check(state: &AppState) -> (bool, Value) {
    let limit = state.config.api.health_check_timeout;
    let (result, ms) = timed(limit, sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db)).await;
    let size = state.config.database.max_connections;
    let in_use = state.db.connections_in_use();
    let pool = json!({ "size": size, "in_use": in_use, "available": size.saturating_sub(in_use) });
    match result {
        Ok(_) => (true, json!({ "status": "healthy", "response_time_ms": ms, "connection_pool": pool })),
        Err(e) => {
            (false, json!({ "status": "unhealthy", "error": e, "response_time_ms": ms, "connection_pool": pool }))
        }
    }
}

async fn redis_check(state: &AppState) -> (bool, Value) {
    let limit = state.config.api.health_check_timeout;
    let mut conn = state.redis.clone();
    let (result, ms) = timed(limit, async move {
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>(info)
    })
    .await;
    match result {
        Ok(info) => {
            let used = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            (
                true,
                json!({ "status": "healthy", "response_time_ms": ms, "connected": true, "memory_used_mb": used / 1_048_576 }),
            )
        }
        Err(e) => (false, json!({ "status": "unhealthy", "error": e, "connected": false })),
    }
}

async fn queues_check(state: &AppState) -> (bool, Value) {
    let limit = state.config.api.health_check_timeout;
    let mut conn = state.redis.clone();
    let prefix = state.config.redis.key_prefix.clone();
    let (result, ms) = timed(limit, async move { shared::queue_admin::views(&mut conn, &prefix).await }).await;
    match result {
        Ok(views) => {
            let alive = views.iter().all(|v| !v.workers.is_empty());
            let status = if alive { "healthy" } else { "degraded" };
            let mut out = json!({ "status": status, "response_time_ms": ms });
            for v in &views {
                out[v.queue.as_str()] = json!({
                    "pending": v.pending, "scheduled": v.scheduled, "running": v.running, "done": v.done,
                    "dead": v.dead, "oldest_pending_age_seconds": v.oldest_pending_age_seconds,
                    "workers": v.workers.len(),
                });
            }
            if !alive {
                out["error"] = "a queue has no live worker pool".into();
            }
            (alive, out)
        }
        Err(e) => (false, json!({ "status": "unhealthy", "error": e })),
    }
}

/// The chain's circuits: healthy when the primary's is closed, degraded when
/// only a fallback's is, unhealthy when none is. `response_time_ms` is the
/// primary's recent median, `quota_remaining` what its rate limit has left
/// in the window (tokens, else requests).
async fn ai_provider_check(state: &AppState) -> (bool, Value) {
    let limit = state.config.api.health_check_timeout;
    let mut conn = state.redis.clone();
    let prefix = state.config.redis.key_prefix.clone();
    let (result, _) = timed(limit, async move { shared::provider_state::report(&mut conn, &prefix).await }).await;
    let provider = state.config.worker.provider_name;
    let reports = match result {
        Ok(reports) if !reports.is_empty() => reports,
        Ok(_) => {
            let error = "no worker has registered its provider chain yet";
            return (true, json!({ "status": "unknown", "provider": provider, "circuits": {}, "error": error }));
        }
        Err(e) => return (false, json!({ "status": "unhealthy", "provider": provider, "error": e })),
    };
    let closed = |r: &shared::provider_state::Report| r.circuit.state == "closed";
    let status = match reports.first() {
        Some(primary) if closed(primary) => "healthy",
        _ if reports.iter().any(closed) => "degraded",
        _ => "unhealthy",
    };
    let circuits: serde_json::Map<String, Value> =
        reports.iter().map(|r| (r.name.clone(), Value::from(r.circuit.state.clone()))).collect();
    let mut out = json!({ "status": status, "provider": reports[0].name, "circuits": circuits });
    if let Some(ms) = reports[0].stats.latency_ms.p50 {
        out["response_time_ms"] = ms.into();
    }
    let headroom = &reports[0].rate_limit;
    if let Some(quota) = headroom.tokens.or(headroom.requests) {
        out["quota_remaining"] = quota.remaining.into();
    }
    if status != "healthy" {
        out["error"] = "the primary provider's circuit is open".into();
    }
    (status != "unhealthy", out)
}

/// The seed's health document: each dependency with its response time.
#[utoipa::path(get, path = "/health", tag = "health", responses(
    (status = 200, description = "`healthy` or `degraded`", body = serde_json::Value),
    (status = 503, description = "`unhealthy`: the database is down", body = serde_json::Value)))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let ((db_ok, database), (redis_ok, redis), (queues_ok, queues), (ai_ok, ai_provider)) =
        tokio::join!(database_check(&state), redis_check(&state), queues_check(&state), ai_provider_check(&state));
    // The database is the source of truth: without it nothing works. Without
    // Redis or workers, accepted answers wait (stored) but nothing moves.
    let status = if !db_ok {
        "unhealthy"
    } else if !redis_ok || !queues_ok || !ai_ok || ai_provider["status"] == "degraded" {
        "degraded"
    } else {
        "healthy"
    };
    let body = json!({
        "status": status,
        "version": state.config.app.version,
        "environment": state.config.app.environment,
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "checks": {
            "database": database,
            "redis": redis,
            "ai_provider": ai_provider,
            "queues": queues,
            "websocket": { "status": "healthy", "active_connections": state.ws_active.load(Ordering::Relaxed) },
        }
    });
    let code = if status == "unhealthy" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, axum::Json(body))
}

/// Ready for traffic: database and Redis reachable, migrations applied.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready", body = serde_json::Value),
    (status = 503, description = "Not ready: which check failed", body = serde_json::Value)))]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let limit = state.config.api.health_check_timeout;
    let (migrations, _) = timed(limit, shared::db::migrations_applied(&state.db)).await;
    let (redis_ok, _) = redis_check(&state).await;
    let database_ready = matches!(migrations, Ok(true));
    let body = json!({
        "status": if database_ready && redis_ok { "ready" } else { "not_ready" },
        "database": match &migrations {
            Ok(true) => "ready".to_owned(),
            Ok(false) => "migrations pending".to_owned(),
            Err(e) => e.clone(),
        },
        "redis": if redis_ok { "ready" } else { "unreachable" },
    });
    let code = if database_ready && redis_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body))
}
