//! Authentication: JWT access tokens, argon2id passwords, refresh-token
//! rotation, revocation, and the [`AuthUser`] extractor every protected
//! route takes.

pub mod jwt;
pub mod mfa;
pub mod password;
pub mod refresh;
pub mod revoke;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use shared::db;
use shared::domain::Role;
use shared::ids::{TokenFamilyId, UserId};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    /// User id.
    pub id: UserId,
    /// Role (as it is now, not as the token says).
    pub role: Role,
    /// The login (refresh-token family) the token belongs to.
    pub session: TokenFamilyId,
    /// Whether the user enrolled in MFA.
    pub mfa_enabled: bool,
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

/// The caller a bearer token names, or a 401 saying why not: a token that
/// is valid but whose login was ended or whose account was disabled since
/// it was issued is refused at once.
pub async fn verify_bearer(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let claims =
        state.jwt.verify(token, chrono::Utc::now().timestamp()).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    check_access(state, claims).await
}

/// The caller of verified `claims`, checked against what was revoked.
async fn check_access(state: &AppState, claims: jwt::Claims) -> Result<AuthUser, ApiError> {
    tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
    match db::users::access(&state.db, claims.sub, claims.sid).await? {
        db::users::Access::Allowed(role, mfa_enabled) => {
            Ok(AuthUser { id: claims.sub, role, session: claims.sid, mfa_enabled })
        }
        db::users::Access::Revoked => Err(ApiError::unauthorized("token revoked: this login was ended")),
        db::users::Access::Disabled => Err(ApiError::unauthorized("account disabled")),
        db::users::Access::Gone => Err(ApiError::unauthorized("token revoked: no such user")),
    }
}

/// What a user who must enrol in MFA may still call: enrolling, and logging out.
const ENROLMENT_PATHS: [&str; 3] = ["/auth/mfa/setup", "/auth/mfa/verify", "/auth/logout"];

/// `MFA_REQUIRED_ROLES`: a user of those roles who has not enrolled gets
/// 403 `mfa_enrolment_required` (everywhere but [`ENROLMENT_PATHS`]).
pub(crate) fn enrolment_required(state: &AppState, user: &AuthUser) -> Result<(), ApiError> {
    let mfa = &state.config.api.mfa;
    if mfa.enabled && !user.mfa_enabled && mfa.required_roles.contains(&user.role) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "mfa_enrolment_required",
            format!("role {}: enrol in MFA first (POST /auth/mfa/setup, then /auth/mfa/verify)", user.role),
        ));
    }
    Ok(())
}

/// The caller of a request's bearer `token`, whose claims the rate limit
/// has verified already when it ran.
async fn caller(parts: &Parts, state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let user = match parts.extensions.get::<jwt::Claims>() {
        Some(claims) => check_access(state, claims.clone()).await?,
        None => verify_bearer(state, token).await?,
    };
    if !ENROLMENT_PATHS.iter().any(|p| parts.uri.path().ends_with(p)) {
        enrolment_required(state, &user)?;
    }
    Ok(user)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        caller(parts, state, token).await
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    /// No `Authorization` header is `None`; a bad one is still a 401.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match bearer(&parts.headers) {
            None => Ok(None),
            Some(token) => caller(parts, state, token).await.map(Some),
        }
    }
}
