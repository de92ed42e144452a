//! Authentication: JWT access tokens, argon2id passwords, refresh-token
//! rotation, and the [`AuthUser`] extractor every protected route takes.

pub mod jwt;
pub mod password;
pub mod refresh;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use shared::domain::Role;
use shared::ids::UserId;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    /// User id.
    pub id: UserId,
    /// Role.
    pub role: Role,
}

impl AuthUser {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) { Ok(()) } else { Err(ApiError::forbidden()) }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller a bearer token names, or a 401 saying why not.
pub fn verify_bearer(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let claims =
        state.jwt.verify(token, chrono::Utc::now().timestamp()).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let user = AuthUser { id: claims.sub, role: claims.role };
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    Ok(user)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        verify_bearer(state, token)
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    /// No `Authorization` header is `None`; a bad one is still a 401.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match bearer(&parts.headers) {
            None => Ok(None),
            Some(token) => verify_bearer(state, token).map(Some),
        }
    }
}
