//! Operator endpoints (admin role): the provider chain as the fleet sees
//! it, and the batches (schedules, runs, a run by hand).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::db;
use shared::domain::{Batch, Role};
use shared::schedule::BatchParams;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::routes::RequestId;
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/providers", get(providers))
        .route("/admin/batches", get(batches))
        .route("/admin/batches/{name}/run", post(run_batch))
}

/// Each batch with its schedule, next tick and last runs.
async fn batches(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<Value>> {
    user.require(&[Role::Admin])?;
    let overview = shared::schedule::overview(&state.db, &state.config, RECENT_RUNS).await?;
    Ok(axum::Json(json!({ "batches": overview })))
}

/// Runs shown per batch.
const RECENT_RUNS: i64 = 5;

/// `POST /admin/batches/{name}/run`: the body is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// `YYYY-MM-DD`: the day to aggregate, or a day of the month to report.
    date: Option<String>,
}

/// Records a run by hand and enqueues it: 202 with the run.
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
