//! Operator endpoints (admin role): the queues (depth, workers, dead jobs
//! in detail, retried or deleted), the fleet's last minutes (jobs, depth,
//! turn latency), the provider chain as the fleet sees it, and the batches
//! (schedules, runs, a run by hand).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::domain::{Batch, Role};
use shared::jobs::QueueName;
use shared::queue_admin;
use shared::schedule::BatchParams;
use shared::{db, dead_job};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use crate::routes::RequestId;
use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(providers))
        .routes(routes!(batches))
        .routes(routes!(run_batch))
        .routes(routes!(queues))
        .routes(routes!(history))
        .routes(routes!(dead_jobs))
        .routes(routes!(retry_all_dead))
        .routes(routes!(retry_dead))
        .routes(routes!(dead_job_detail, delete_dead))
}

fn redis_error(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(format!("Redis: {e}"))
}

fn queue_named(name: &str) -> Result<QueueName, ApiError> {
    name.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))
}

/// Each queue: pending, scheduled, running, done, dead, the oldest pending
/// job's age, and the live worker pools with what each holds.
#[utoipa::path(get, path = "/admin/queues", tag = "admin", responses(
        (status = 200, description = "Per queue: pending, scheduled, running, done, dead, oldest pending age; the live worker pools", body = serde_json::Value),
        Unauthorized, Forbidden, RateLimited, Unavailable), security(("bearer" = [])))]
async fn queues(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let views =
        queue_admin::views(&mut state.redis.clone(), &state.config.redis.key_prefix).await.map_err(redis_error)?;
    Ok(axum::Json(json!({ "queues": views })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadQuery {
    /// At most this many, newest first (default 100, at most 1,000).
    limit: Option<usize>,
}

/// A queue's dead jobs: payload, error, attempts.
#[utoipa::path(get, path = "/admin/queues/{queue}/dead", tag = "admin", params(("queue" = String, Path, description = "`turns` or `batch`"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100)")), responses(
        (status = 200, description = "`{\"queue\", \"dead\": [...]}`, newest first", body = serde_json::Value),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn dead_jobs(
    State(state): State<AppState>,
    user: AuthUser,
    Path(queue): Path<String>,
    Query(query): Query<DeadQuery>,
) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let queue = queue_named(&queue)?;
    let limit = match query.limit {
        None => 100,
        Some(n @ 1..=1_000) => n,
        Some(n) => return Err(ApiError::bad_request("invalid_query", format!("limit: {n} is not between 1 and 1000"))),
    };
    let mut jobs = queue_admin::dead_jobs(&mut state.redis.clone(), &state.config.redis.key_prefix, queue, limit)
        .await
        .map_err(redis_error)?;
    for job in &mut jobs {
        job.payload = dead_job::redact(&job.payload);
    }
    Ok(axum::Json(json!({ "queue": queue, "dead": jobs })))
}

/// A dead job in full: its payload (secrets redacted), apalis's runs and
/// error, and its turn, evaluation or batch run with each failed attempt.
#[utoipa::path(get, path = "/admin/queues/{queue}/dead/{id}", tag = "admin", params(("queue" = String, Path, description = "`turns` or `batch`"), ("id" = String, Path, description = "The dead job's id")), responses(
        (status = 200, description = "`{\"queue\", \"id\", \"pushed_at\", \"payload\", \"error\", \"attempts\", \"work\": {\"kind\", \"id\", \"status\", \"attempts\", \"error\", \"attempt_errors\": [{\"attempt\", \"at\", \"error\"}]} | null}`", body = serde_json::Value),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn dead_job_detail(
    State(state): State<AppState>,
    user: AuthUser,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<dead_job::Detail>> {
    user.require(&[Role::Admin])?;
    let queue = queue_named(&queue)?;
    let prefix = &state.config.redis.key_prefix;
    match dead_job::detail(&state.db, &mut state.redis.clone(), prefix, queue, &id).await {
        Ok(Some(detail)) => Ok(axum::Json(detail)),
        Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no dead job {id} in this queue"))),
        Err(dead_job::DetailError::Redis(e)) => Err(redis_error(e)),
        Err(dead_job::DetailError::Db(e)) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Minutes up to now, the current one included (default 60, at most 1,440).
    minutes: Option<u32>,
}

/// The fleet minute by minute, oldest first: jobs handled per queue
/// (completed, failed, dead), each queue's depth as the workers sampled it,
/// and the turns finished with their latency (answer accepted → reply
/// stored, p50 and p95).
#[utoipa::path(get, path = "/admin/history", tag = "admin", params(("minutes" = Option<u32>, Query, minimum = 1, maximum = 1440, description = "Minutes up to now, the current one included (default 60)")), responses(
        (status = 200, description = "`{\"minutes\", \"history\": [{\"minute\", \"jobs\": {queue: {\"completed\", \"failed\", \"dead\"}}, \"depth\": {queue: {\"pending\", \"scheduled\", \"running\", \"dead\"} | null}, \"turns\": {\"completed\", \"failed\", \"latency_p50_ms\", \"latency_p95_ms\"}}]}`, one entry per minute", body = serde_json::Value),
        BadRequest, Unauthorized, Forbidden, RateLimited, Unavailable), security(("bearer" = [])))]
async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let max = shared::history::RETENTION_MINUTES;
    let minutes = match query.minutes {
        None => 60,
        Some(n) if (1..=max).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request("invalid_query", format!("minutes: {n} is not between 1 and {max}")));
        }
    };
    let prefix = &state.config.redis.key_prefix;
    let now = chrono::Utc::now();
    match shared::history::read(&state.db, &mut state.redis.clone(), prefix, minutes, now).await {
        Ok(history) => Ok(axum::Json(json!({ "minutes": minutes, "history": history }))),
        Err(shared::history::HistoryError::Redis(e)) => Err(redis_error(e)),
        Err(shared::history::HistoryError::Db(e)) => Err(e.into()),
    }
}

fn retry_error(e: queue_admin::RetryError) -> ApiError {
    match e {
        queue_admin::RetryError::NotDead(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        queue_admin::RetryError::Stale(_) => ApiError::conflict("not_retryable", e.to_string()),
        queue_admin::RetryError::Redis(e) => redis_error(e),
        queue_admin::RetryError::Db(e) => e.into(),
    }
}

/// Puts one dead job back in line (its turn, evaluation or run reset).
#[utoipa::path(post, path = "/admin/queues/{queue}/dead/{id}/retry", tag = "admin", params(("queue" = String, Path, description = "`turns` or `batch`"), ("id" = String, Path, description = "The dead job's id")), responses(
        (status = 200, description = "`{\"retried\": [id]}`", body = serde_json::Value),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn retry_dead(
    State(state): State<AppState>,
    user: AuthUser,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let queue = queue_named(&queue)?;
    let prefix = &state.config.redis.key_prefix;
    queue_admin::retry(&state.db, &mut state.redis.clone(), prefix, queue, &id).await.map_err(retry_error)?;
    tracing::info!(queue = queue.as_str(), job_id = %id, "dead job retried");
    Ok(axum::Json(json!({ "retried": [id] })))
}

/// Puts every dead job of the queue back in line; those that cannot be
/// retried are listed with the reason.
#[utoipa::path(post, path = "/admin/queues/{queue}/dead/retry", tag = "admin", params(("queue" = String, Path, description = "`turns` or `batch`")), responses(
        (status = 200, description = "`{\"retried\": [...], \"refused\": [{\"id\", \"reason\"}]}`", body = serde_json::Value),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn retry_all_dead(
    State(state): State<AppState>,
    user: AuthUser,
    Path(queue): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let queue = queue_named(&queue)?;
    let prefix = &state.config.redis.key_prefix;
    let mut conn = state.redis.clone();
    let (mut retried, mut refused) = (Vec::new(), Vec::new());
    loop {
        let jobs = queue_admin::dead_jobs(&mut conn, prefix, queue, 1_000).await.map_err(redis_error)?;
        let fresh: Vec<_> =
            jobs.into_iter().filter(|j| !refused.iter().any(|(id, _): &(String, String)| *id == j.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for job in fresh {
            match queue_admin::retry(&state.db, &mut conn, prefix, queue, &job.id).await {
                Ok(()) => retried.push(job.id),
                Err(queue_admin::RetryError::NotDead(_)) => {}
                Err(e @ queue_admin::RetryError::Stale(_)) => refused.push((job.id, e.to_string())),
                Err(e) => return Err(retry_error(e)),
            }
        }
    }
    tracing::info!(queue = queue.as_str(), retried = retried.len(), refused = refused.len(), "dead jobs retried");
    let refused: Vec<Value> = refused.into_iter().map(|(id, reason)| json!({ "id": id, "reason": reason })).collect();
    Ok(axum::Json(json!({ "retried": retried, "refused": refused })))
}

/// Deletes a dead job: 204, or 404 when no dead job has that id.
#[utoipa::path(delete, path = "/admin/queues/{queue}/dead/{id}", tag = "admin", params(("queue" = String, Path, description = "`turns` or `batch`"), ("id" = String, Path, description = "The dead job's id")), responses(
        (status = 204, description = "Deleted"),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn delete_dead(
    State(state): State<AppState>,
    user: AuthUser,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    user.require(&[Role::Admin])?;
    let queue = queue_named(&queue)?;
    let prefix = &state.config.redis.key_prefix;
    if queue_admin::delete_dead(&mut state.redis.clone(), prefix, queue, &id).await.map_err(redis_error)? {
        tracing::info!(queue = queue.as_str(), job_id = %id, "dead job deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no dead job {id} in this queue")))
    }
}

/// Each batch with its schedule, next tick and last runs.
#[utoipa::path(get, path = "/admin/batches", tag = "admin", responses(
        (status = 200, description = "Each batch: schedule, next tick, last runs", body = serde_json::Value),
        Unauthorized, Forbidden, RateLimited, Unavailable), security(("bearer" = [])))]
async fn batches(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let overview = shared::schedule::overview(&state.db, &state.config, RECENT_RUNS).await?;
    Ok(axum::Json(json!({ "batches": overview })))
}

/// Runs shown per batch.
const RECENT_RUNS: i64 = 5;

/// `POST /admin/batches/{name}/run`: the body is optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// `YYYY-MM-DD`: the day to aggregate, or a day of the month to report.
    date: Option<String>,
}

/// Records a run by hand and enqueues it: 202 with the run.
#[utoipa::path(post, path = "/admin/batches/{name}/run", tag = "admin", request_body = Option<RunBody>, params(("name" = String, Path, description = "The batch, e.g. `token_cleanup`")), responses(
        (status = 202, description = "`{\"run\": {...}}`: recorded and enqueued", body = serde_json::Value),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, RateLimited, Unavailable), security(("bearer" = [])))]
async fn run_batch(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(request_id): Extension<RequestId>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    user.require(&[Role::Admin])?;
    let batch: Batch = name.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))?;
    let body: RunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::invalid(format!("invalid request body: {e}")),
            _ => ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")),
        })?
    };
    let params = BatchParams::for_batch(batch, body.date.as_deref()).map_err(ApiError::invalid)?;
    let run_id = state.core.enqueue_batch_run(batch, &params, &request_id.0).await?;
    let run = db::batch_runs::find(&state.db, run_id).await?.ok_or_else(|| ApiError::not_found("batch run"))?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "run": run }))))
}

/// Each provider of the chain: circuit state, rate-limit headroom, recent
/// error rate, latency percentiles, tokens and cost today and in all.
#[utoipa::path(get, path = "/admin/providers", tag = "admin", responses(
        (status = 200, description = "Each provider: circuit, rate-limit headroom, error rate, latency, tokens and cost", body = serde_json::Value),
        Unauthorized, Forbidden, RateLimited, Unavailable), security(("bearer" = [])))]
async fn providers(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let mut conn = state.redis.clone();
    let reports = shared::provider_state::report(&mut conn, &state.config.redis.key_prefix)
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis: {e}")))?;
    let mut body = json!({ "providers": reports });
    if reports.is_empty() {
        body["note"] = "no worker has registered its provider chain yet".into();
    }
    Ok(axum::Json(body))
}
