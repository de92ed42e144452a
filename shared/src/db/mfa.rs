//! TOTP MFA: the sealed secret and the last accepted time step of each user,
//! recovery codes, and the challenges of logins waiting for a code. Every
//! acceptance is one conditional UPDATE, so two replicas cannot both accept
//! the same code.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::{DbError, Tx};
use crate::ids::UserId;

/// A user's TOTP state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Totp {
    /// The sealed secret (set at setup).
    pub sealed: Option<Vec<u8>>,
    /// Confirmed by a code.
    pub enabled: bool,
}

/// The user's TOTP state; none when there is no such user.
pub async fn totp(db: impl PgExecutor<'_>, user: UserId) -> Result<Option<Totp>, DbError> {
    Ok(sqlx::query_as("SELECT totp_secret_sealed AS sealed, mfa_enabled AS enabled FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(db)
        .await?)
}

/// Stores a new, unconfirmed secret (a setup); false when MFA is already on.
pub async fn set_pending(db: impl PgExecutor<'_>, user: UserId, sealed: &[u8]) -> Result<bool, DbError> {
    Ok(sqlx::query("UPDATE users SET totp_secret_sealed = $2, totp_last_step = NULL WHERE id = $1 AND NOT mfa_enabled")
        .bind(user)
        .bind(sealed)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Turns MFA on with the secret a code of `step` was computed from; the
/// step counts as used. False when another setup replaced the secret.
pub async fn confirm(db: impl PgExecutor<'_>, user: UserId, sealed: &[u8], step: i64) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE users SET mfa_enabled = true, totp_last_step = $3
         WHERE id = $1 AND NOT mfa_enabled AND totp_secret_sealed = $2",
    )
    .bind(user)
    .bind(sealed)
    .bind(step)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Accepts a code of `step` if no code of this or a later step was accepted
/// before (each code works once).
pub async fn accept_step(db: impl PgExecutor<'_>, user: UserId, step: i64) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE users SET totp_last_step = $2
         WHERE id = $1 AND mfa_enabled AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(user)
    .bind(step)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Turns MFA off: the secret and the recovery codes go.
pub async fn disable(tx: &mut Tx<'_>, user: UserId) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET mfa_enabled = false, totp_secret_sealed = NULL, totp_last_step = NULL WHERE id = $1")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user).execute(&mut **tx).await?;
    Ok(())
}

/// Replaces the user's recovery codes with these hashes.
pub async fn replace_recovery_codes(tx: &mut Tx<'_>, user: UserId, hashes: &[Vec<u8>]) -> Result<(), DbError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user).execute(&mut **tx).await?;
    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::bytea[])")
        .bind(user)
        .bind(hashes)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Spends the recovery code with this hash; false when it is not one of
/// the user's or was used.
pub async fn use_recovery_code(db: impl PgExecutor<'_>, user: UserId, hash: &[u8]) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user)
    .bind(hash)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// A login waiting for its second factor.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Challenge {
    /// Whose.
    pub user_id: UserId,
    /// Wrong codes so far.
    pub failures: i32,
    /// Completed (a code was accepted).
    pub completed: bool,
    /// Past its expiry.
    pub expired: bool,
}

/// Opens a challenge valid for `ttl`.
pub async fn create_challenge(
    db: impl PgExecutor<'_>,
    user: UserId,
    ttl: std::time::Duration,
) -> Result<Uuid, DbError> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO mfa_challenges (id, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(id)
    .bind(user)
    .bind(ttl.as_secs_f64())
    .execute(db)
    .await?;
    Ok(id)
}

/// The challenge, if it exists.
pub async fn challenge(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Challenge>, DbError> {
    Ok(sqlx::query_as(
        "SELECT user_id, failures, completed_at IS NOT NULL AS completed, expires_at <= now() AS expired
         FROM mfa_challenges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Counts a wrong code; returns how many there are now.
pub async fn fail_challenge(db: impl PgExecutor<'_>, id: Uuid) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar("UPDATE mfa_challenges SET failures = failures + 1 WHERE id = $1 RETURNING failures")
        .bind(id)
        .fetch_optional(db)
        .await?
        .unwrap_or(i32::MAX))
}

/// Completes the challenge if it is still open (not completed, expired or
/// void after `max_failures`); false otherwise.
pub async fn complete_challenge(db: impl PgExecutor<'_>, id: Uuid, max_failures: i32) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE mfa_challenges SET completed_at = now()
         WHERE id = $1 AND completed_at IS NULL AND failures < $2 AND expires_at > now()",
    )
    .bind(id)
    .bind(max_failures)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Deletes challenges past their expiry (spent or not); returns how many.
pub async fn delete_stale_challenges(db: impl PgExecutor<'_>) -> Result<u64, DbError> {
    Ok(sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < now()").execute(db).await?.rows_affected())
}
