//! `/auth`: register, login, refresh, logout, password change.

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shared::db::{self, DbError};
use shared::domain::{Email, Role};
use shared::ids::{TokenFamilyId, UserId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::mfa::CHALLENGE_TTL_SECS;
use crate::auth::revoke::{self, Reason, Revocation};
use crate::auth::{AuthUser, password, refresh};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::limits::{ClientIp, LoginThrottle};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Invalid, Mismatch, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh_tokens))
        .routes(routes!(logout))
        .routes(routes!(change_password))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterIn {
    email: String,
    password: String,
    role: Option<Role>,
}

#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterIn, responses(
        (status = 201, description = "Created", body = UserOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Forbidden, Conflict, RateLimited, Unavailable))]
async fn register(
    State(state): State<AppState>,
    caller: Option<AuthUser>,
    Json(body): Json<RegisterIn>,
) -> ApiResult<impl IntoResponse> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid(format!("email: {e}")))?;
    let role = body.role.unwrap_or(Role::Candidate);
    if role != Role::Candidate && caller.is_none_or(|c| c.role != Role::Admin) {
        return Err(ApiError::forbidden());
    }
    password::check_policy(&body.password, email.as_str())
        .await
        .map_err(|e| ApiError::invalid(format!("password: {e}")))?;
    let user = create_user(&state, &email, body.password, role).await?;
    Ok((StatusCode::CREATED, axum::Json(UserOut { id: user.id, email: user.email, role: user.role })))
}

/// A registered user.
#[derive(Serialize, utoipa::ToSchema)]
struct UserOut {
    id: UserId,
    /// As registered.
    email: String,
    role: Role,
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

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginIn {
    email: String,
    password: String,
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginIn, responses(
        (status = 200, description = "The token pair, or with MFA on the challenge for `POST /auth/mfa/verify`", body = LoginOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Forbidden, RateLimited, Unavailable))]
async fn login(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Json(body): Json<LoginIn>,
) -> ApiResult<impl IntoResponse> {
    let mut throttle = LoginThrottle::new(&state, &body.email, ip);
    if let Err(refused) = throttle.check().await {
        state.metrics.login("throttled");
        return Err(refused);
    }
    let user = db::users::find_by_email(&state.db, &body.email).await?;
    // An unknown email costs a verification too (against a hash of nothing
    // anyone knows) and gets the same answer: emails cannot be probed.
    let stored = user.as_ref().map_or_else(password::unknown_user_hash, |u| u.password_hash.clone());
    let matches = password::verify(body.password, stored).await;
    let known = user.is_some();
    let Some(user) = user.filter(|_| matches) else {
        throttle.failed().await?;
        // Told apart in logs and metrics (operators'), never in the answer.
        let outcome = if known { "bad_password" } else { "unknown_user" };
        tracing::info!(outcome, "login refused");
        state.metrics.login(outcome);
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    if user.disabled_at.is_some() {
        tracing::info!(outcome = "disabled", user_id = %user.id, "login refused");
        state.metrics.login("disabled");
        return Err(ApiError::new(StatusCode::FORBIDDEN, "account_disabled", "this account is disabled"));
    }
    if user.mfa_enabled && state.sealer.is_some() {
        let challenge =
            db::mfa::create_challenge(&state.db, user.id, Duration::from_secs(CHALLENGE_TTL_SECS as u64)).await?;
        let token = state.jwt.issue_mfa(user.id, challenge, chrono::Utc::now().timestamp(), CHALLENGE_TTL_SECS);
        tracing::info!(outcome = "mfa_required", user_id = %user.id, "login waits for its second factor");
        state.metrics.login("mfa_required");
        let challenge = MfaChallenge { mfa_required: true, mfa_token: token, expires_in: CHALLENGE_TTL_SECS };
        return Ok(axum::Json(LoginOut::Challenge(challenge)));
    }
    let pair = refresh::issue(&state, &state.db, &user, TokenFamilyId::new()).await?;
    tracing::info!(outcome = "success", user_id = %user.id, "login");
    state.metrics.login("success");
    Ok(axum::Json(LoginOut::Tokens(pair)))
}

/// What a login answers: the tokens, or the second step's challenge.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum LoginOut {
    Tokens(refresh::TokenPair),
    Challenge(MfaChallenge),
}

/// A login's first step when MFA is on: the token to verify a code with
/// (`POST /auth/mfa/verify`).
#[derive(Serialize, utoipa::ToSchema)]
struct MfaChallenge {
    /// Always true.
    mfa_required: bool,
    mfa_token: String,
    /// Seconds the token is good for.
    expires_in: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RefreshIn {
    refresh_token: String,
}

#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshIn, responses(
        (status = 200, description = "A new pair; the presented token is revoked", body = crate::auth::refresh::TokenPair),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, RateLimited, Unavailable))]
async fn refresh_tokens(State(state): State<AppState>, Json(body): Json<RefreshIn>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(refresh::rotate(&state, &body.refresh_token).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LogoutIn {
    refresh_token: Option<String>,
}

/// Ends the caller's login: its refresh tokens, and the access token at
/// once (checked on every request); the refresh token in the body, if any,
/// is revoked with its own login too.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = Option<LogoutIn>, responses(
        (status = 204, description = "This login (and the body's refresh token's) ended"),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, RateLimited, Unavailable), security(("bearer" = [])))]
async fn logout(State(state): State<AppState>, user: AuthUser, body: Option<Json<LogoutIn>>) -> ApiResult<StatusCode> {
    let presented = body.and_then(|Json(b)| b.refresh_token);
    let mut logins = vec![user.session];
    logins.extend(refresh::revoke(&state, &user, user.session, presented.as_deref()).await?);
    for login in logins {
        let revocation = Revocation { user_id: user.id, only: Some(login), except: None, reason: Reason::LoggedOut };
        revoke::announce(&state, &revocation).await;
    }
    tracing::info!(user_id = %user.id, "logout");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordIn {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password (the current one required) and ends the
/// user's other logins.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = PasswordIn, responses(
        (status = 204, description = "Changed; the user's other logins ended"),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Mismatch, RateLimited, Unavailable), security(("bearer" = [])))]
async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<PasswordIn>,
) -> ApiResult<StatusCode> {
    let stored = db::users::find(&state.db, user.id).await?.ok_or_else(|| ApiError::unauthorized("no such user"))?;
    if !password::verify(body.current_password, stored.password_hash).await {
        return Err(ApiError::mismatch("current_password: does not match"));
    }
    password::check_policy(&body.new_password, &stored.email)
        .await
        .map_err(|e| ApiError::invalid(format!("new_password: {e}")))?;
    let hash = password::hash(body.new_password).await.map_err(ApiError::internal)?;
    let mut tx = state.db.begin().await.map_err(DbError::from)?;
    db::users::set_password(&mut *tx, user.id, &hash).await?;
    let ended = db::tokens::revoke_user(&mut *tx, user.id, Some(user.session)).await?;
    tx.commit().await.map_err(DbError::from)?;
    let revocation =
        Revocation { user_id: user.id, only: None, except: Some(user.session), reason: Reason::PasswordChanged };
    revoke::announce(&state, &revocation).await;
    tracing::info!(user_id = %user.id, ended, "password changed; other logins ended");
    Ok(StatusCode::NO_CONTENT)
}
