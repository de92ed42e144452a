//! Refresh tokens, stored as SHA-256 hashes.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use super::DbError;
use crate::ids::{TokenFamilyId, UserId};

/// A refresh-token row.
#[derive(Debug, Clone, FromRow)]
pub struct RefreshToken {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub user_id: UserId,
    /// Rotation family.
    pub family_id: TokenFamilyId,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Set when rotated or logged out.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a new token.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user: UserId,
    family: TokenFamilyId,
    hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(family)
    .bind(hash)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// The token with this hash, locked for the rotation in progress.
pub async fn find_for_update(db: impl PgExecutor<'_>, hash: &[u8]) -> Result<Option<RefreshToken>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, family_id, expires_at, revoked_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash)
    .fetch_optional(db)
    .await?)
}

/// Revokes one token.
pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Revokes every token of a family; returns how many were still live.
pub async fn revoke_family(db: impl PgExecutor<'_>, family: TokenFamilyId) -> Result<u64, DbError> {
    Ok(sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family)
        .execute(db)
        .await?
        .rows_affected())
}

/// Revokes every live token of `user`, except those of the login `keep`;
/// returns how many.
pub async fn revoke_user(db: impl PgExecutor<'_>, user: UserId, keep: Option<TokenFamilyId>) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2",
    )
    .bind(user)
    .bind(keep)
    .execute(db)
    .await?
    .rows_affected())
}

/// Deletes expired tokens and those revoked longer than `retention` ago;
/// returns how many of each.
pub async fn delete_stale(db: impl PgExecutor<'_>, retention: std::time::Duration) -> Result<(i64, i64), DbError> {
    Ok(sqlx::query_as(
        "WITH deleted AS (
             DELETE FROM refresh_tokens
             WHERE expires_at < now() OR revoked_at < now() - make_interval(secs => $1)
             RETURNING expires_at < now() AS expired)
         SELECT count(*) FILTER (WHERE expired), count(*) FILTER (WHERE NOT expired) FROM deleted",
    )
    .bind(retention.as_secs_f64())
    .fetch_one(db)
    .await?)
}
