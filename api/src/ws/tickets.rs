//! Who is connecting: a bearer token, or (for browsers, which cannot set
//! headers on a WebSocket) a short-lived single-use ticket bound to one
//! session.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use base64::Engine;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use shared::db;
use shared::ids::SessionId;

use crate::auth::revoke::Reason;
use crate::auth::{AuthUser, bearer, enrolment_required, verify_bearer};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::openapi::{BadRequest, Invalid, NotFound, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::routes::sessions::visible_session;
use crate::state::AppState;

const TICKET_TTL_SECS: u64 = 30;

/// The body of `POST /ws/tickets`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct TicketIn {
    session_id: SessionId,
}

/// A short-lived single-use ticket for browsers, which cannot set headers on a WebSocket.
#[utoipa::path(post, path = "/ws/tickets", tag = "sessions", request_body = TicketIn, responses(
        (status = 200, description = "Single use, for `?ticket=` on the WebSocket", body = TicketOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
pub(super) async fn ticket(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<TicketIn>,
) -> ApiResult<impl IntoResponse> {
    visible_session(&state, &user, body.session_id).await?;
    let bytes: [u8; 24] = rand::rng().random();
    let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut conn = state.redis.clone();
    redis::cmd("SET")
        .arg(ticket_key(&state, &ticket))
        .arg(format!("{}|{}|{}", user.id, user.session, body.session_id))
        .arg("EX")
        .arg(TICKET_TTL_SECS)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| ApiError::unavailable(format!("could not store the ticket: {e}")))?;
    Ok(axum::Json(TicketOut { ticket, expires_in: TICKET_TTL_SECS }))
}

/// A ticket for one session's WebSocket.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TicketOut {
    ticket: String,
    /// Seconds it is good for (once).
    expires_in: u64,
}

fn ticket_key(state: &AppState, ticket: &str) -> String {
    format!("{}:ws-ticket:{ticket}", state.config.redis.key_prefix)
}

/// The socket's user, by its bearer token or else its ticket.
pub(super) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ticket: Option<&str>,
    session: SessionId,
) -> ApiResult<AuthUser> {
    let user = match bearer(headers) {
        Some(token) => verify_bearer(state, token).await?,
        None => redeem(state, ticket, session).await?,
    };
    // As on every route: a role that must enrol in MFA watches nothing until it has.
    enrolment_required(state, &user)?;
    Ok(user)
}

/// The user of a single-use `ticket` for `session`.
async fn redeem(state: &AppState, ticket: Option<&str>, session: SessionId) -> ApiResult<AuthUser> {
    let Some(ticket) = ticket else {
        return Err(ApiError::unauthorized("missing bearer token or ticket"));
    };
    let mut conn = state.redis.clone();
    let stored: Option<String> = redis::cmd("GETDEL")
        .arg(ticket_key(state, ticket))
        .query_async(&mut conn)
        .await
        .map_err(|e| ApiError::unavailable(format!("could not check the ticket: {e}")))?;
    let invalid = || ApiError::unauthorized("invalid or used ticket");
    let stored = stored.ok_or_else(invalid)?;
    let mut fields = stored.split('|');
    let (Some(user), Some(login), Some(for_session)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(invalid());
    };
    if for_session != session.to_string() {
        return Err(ApiError::unauthorized("ticket is for another session"));
    }
    let (id, login) = (user.parse().map_err(|_| invalid())?, login.parse().map_err(|_| invalid())?);
    // Checked again now: the login may have ended since the ticket was issued.
    match db::users::access(&state.db, id, login).await? {
        db::users::Access::Allowed(role, mfa_enabled) => Ok(AuthUser { id, role, session: login, mfa_enabled }),
        _ => Err(ApiError::unauthorized("token revoked")),
    }
}

/// A browser's handshake (it sends `Origin`) must come from a page of an
/// origin in `CORS_ALLOWED_ORIGINS`, or of our own host; clients that are
/// not browsers send none and pass.
pub(super) fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or_default();
    let same_host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| origin.split_once("://").is_some_and(|(_, rest)| rest == host));
    if same_host || state.config.api.cors_allowed_origins.iter().any(|allowed| allowed == origin) {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!("Origin {origin:?} is not in CORS_ALLOWED_ORIGINS"),
    ))
}

/// Why a socket's login no longer holds, checked in PostgreSQL (after
/// revocation messages may have been missed); none when it still does or
/// cannot be checked now.
pub(super) async fn login_ended(state: &AppState, user: AuthUser) -> Option<String> {
    match db::users::access(&state.db, user.id, user.session).await {
        Ok(db::users::Access::Allowed(..)) | Err(_) => None,
        Ok(db::users::Access::Disabled) => Some(Reason::AccountDisabled.as_str().to_owned()),
        Ok(db::users::Access::Revoked | db::users::Access::Gone) => Some("login ended".to_owned()),
    }
}
