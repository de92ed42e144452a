//! `/auth`: register, login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Router, response::IntoResponse};
use serde::Deserialize;
use serde_json::json;
use shared::db::{self, DbError};
use shared::domain::{Email, Role};
use shared::ids::TokenFamilyId;

use crate::auth::{AuthUser, password, refresh};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh_tokens))
        .route("/auth/logout", post(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterIn {
    email: String,
    password: String,
    role: Option<String>,
}

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;

async fn register(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    Json(body): Json<RegisterIn>,
) -> ApiResult<impl IntoResponse> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid(format!("email: {e}")))?;
    let role: Role = match body.role.as_deref() {
        None => Role::Candidate,
        Some(r) => r.parse().map_err(|e| ApiError::invalid(format!("role: {e}")))?,
    };
    if role != Role::Candidate && caller.is_none_or(|c| c.role != Role::Admin) {
        return Err(ApiError::forbidden());
    }
    let chars = body.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&chars) {
        return Err(ApiError::invalid(format!("password: must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
    }
    let user = create_user(&state, &email, body.password, role).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": user.id, "email": user.email, "role": user.role }))))
}

/// Creates a user; a taken email is a 409.
pub async fn create_user(state: &AppState, email: &Email, password: String, role: Role) -> ApiResult<db::users::User> {
    let hash = password::hash(password).await.map_err(ApiError::internal)?;
    match db::users::insert(&state.db, email, &hash, role).await {
        Ok(user) => Ok(user),
        Err(DbError::Conflict(_)) => Err(ApiError::conflict("email_taken", "email: already registered")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct LoginIn {
    email: String,
    password: String,
}

async fn login(State(state): State<AppState>, Json(body): Json<LoginIn>) -> ApiResult<impl IntoResponse> {
    let user = db::users::find_by_email(&state.db, &body.email).await?;
    let Some(user) = user else {
        // Spend the same time as a wrong password, so emails cannot be probed.
        let _ = password::hash(body.password).await;
        tracing::info!(outcome = "unknown_user", "login refused");
        state.metrics.login("unknown_user");
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    if !password::verify(body.password, user.password_hash.clone()).await {
        tracing::info!(outcome = "bad_password", user_id = %user.id, "login refused");
        state.metrics.login("bad_password");
        return Err(ApiError::unauthorized("invalid email or password"));
    }
    let pair = refresh::issue(&state, &state.db, &user, TokenFamilyId::new()).await?;
    tracing::info!(outcome = "success", user_id = %user.id, "login");
    state.metrics.login("success");
    Ok(axum::Json(pair))
}

#[derive(Deserialize)]
struct RefreshIn {
    refresh_token: String,
}

async fn refresh_tokens(State(state): State<AppState>, Json(body): Json<RefreshIn>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(refresh::rotate(&state, &body.refresh_token).await?))
}

async fn logout(State(state): State<AppState>, _user: AuthUser, Json(body): Json<RefreshIn>) -> ApiResult<StatusCode> {
    refresh::revoke(&state, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}
