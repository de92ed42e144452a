//! Who is connecting: a bearer token, or (for browsers, which cannot set
//! headers on a WebSocket) a short-lived single-use ticket bound to one
//! session.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use base64::Engine;
use rand::RngExt;
use serde::Deserialize;
use serde_json::json;
use shared::ids::SessionId;

use crate::auth::{AuthUser, bearer, verify_bearer};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::routes::sessions::visible_session;
use crate::state::AppState;

const TICKET_TTL_SECS: u64 = 30;

/// The body of `POST /ws/tickets`.
#[derive(Deserialize)]
pub(super) struct TicketIn {
    session_id: SessionId,
}

/// A short-lived single-use ticket for browsers, which cannot set headers on a WebSocket.
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
        .arg(format!("{}|{}|{}", user.id, user.role, body.session_id))
        .arg("EX")
        .arg(TICKET_TTL_SECS)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| ApiError::unavailable(format!("could not store the ticket: {e}")))?;
    Ok(axum::Json(json!({ "ticket": ticket, "expires_in": TICKET_TTL_SECS })))
}

fn ticket_key(state: &AppState, ticket: &str) -> String {
    format!("{}:ws-ticket:{ticket}", state.config.redis.key_prefix)
}

pub(super) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ticket: Option<&str>,
    session: SessionId,
) -> ApiResult<AuthUser> {
    if let Some(token) = bearer(headers) {
        return verify_bearer(state, token);
    }
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
    let (Some(user), Some(role), Some(for_session)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(invalid());
    };
    if for_session != session.to_string() {
        return Err(ApiError::unauthorized("ticket is for another session"));
    }
    Ok(AuthUser { id: user.parse().map_err(|_| invalid())?, role: role.parse().map_err(|_| invalid())? })
}
