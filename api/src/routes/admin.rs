//! Operator endpoints (admin role): the provider chain as the fleet sees it.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use shared::domain::Role;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/providers", get(providers))
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
