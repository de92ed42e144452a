//! Refresh tokens: opaque random strings stored as SHA-256 hashes. Every
//! refresh rotates the token; presenting a revoked one (a stolen token used
//! after its owner rotated it, or the reverse) revokes its whole family.
//! They are not JWTs: each use is checked against the database anyway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Utc;
use rand::RngExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::db::{self, users::User};
use shared::ids::TokenFamilyId;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// The login answer of SPEC §4.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// JWT access token.
    pub access_token: String,
    /// Opaque refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime in seconds.
    pub expires_in: i64,
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    B64.encode(bytes)
}

/// Issues a pair for `user` in `family` (a new family at login).
pub async fn issue(
    state: &AppState,
    db: impl sqlx::PgExecutor<'_>,
    user: &User,
    family: TokenFamilyId,
) -> Result<TokenPair, ApiError> {
    let refresh = random_token();
    let expires_at = Utc::now() + chrono::Duration::from_std(state.config.api.jwt.refresh_ttl).unwrap_or_default();
    db::tokens::insert(db, user.id, family, &hash(&refresh), expires_at).await?;
    Ok(TokenPair {
        access_token: state.jwt.issue(user.id, user.role, family, Utc::now().timestamp()),
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: state.jwt.access_ttl_secs,
    })
}

/// Rotates `presented`: revokes it and issues the next pair of its family.
pub async fn rotate(state: &AppState, presented: &str) -> Result<TokenPair, ApiError> {
    let invalid = || ApiError::unauthorized("invalid refresh token");
    let mut tx = state.db.begin().await.map_err(db::DbError::from)?;
    let token = db::tokens::find_for_update(&mut *tx, &hash(presented)).await?.ok_or_else(invalid)?;
    if token.revoked_at.is_some() {
        let revoked = db::tokens::revoke_family(&mut *tx, token.family_id).await?;
        tx.commit().await.map_err(db::DbError::from)?;
        tracing::warn!(family = %token.family_id, revoked, "refresh token reused; family revoked");
        return Err(ApiError::unauthorized("refresh token reused; please log in again"));
    }
    if token.expires_at <= Utc::now() {
        return Err(ApiError::unauthorized("refresh token expired"));
    }
    let user = db::users::find(&mut *tx, token.user_id).await?.ok_or_else(invalid)?;
    if user.disabled_at.is_some() {
        return Err(ApiError::unauthorized("account disabled"));
    }
    db::tokens::revoke(&mut *tx, token.id).await?;
    let pair = issue(state, &mut *tx, &user, token.family_id).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(pair)
}

/// Ends the login `session` of `user` (logout), and the login of the
/// refresh token `presented` if it is one of the user's; returns the latter
/// when it is another login.
pub async fn revoke(
    state: &AppState,
    user: &AuthUser,
    session: TokenFamilyId,
    presented: Option<&str>,
) -> Result<Option<TokenFamilyId>, ApiError> {
    let mut tx = state.db.begin().await.map_err(db::DbError::from)?;
    db::tokens::revoke_family(&mut *tx, session).await?;
    let mut other = None;
    if let Some(presented) = presented
        && let Some(token) = db::tokens::find_for_update(&mut *tx, &hash(presented)).await?
        && token.user_id == user.id
        && token.family_id != session
    {
        db::tokens::revoke_family(&mut *tx, token.family_id).await?;
        other = Some(token.family_id);
    }
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(other)
}
