//! Users.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use super::{DbError, conflict};
use crate::domain::{Email, Role};
use crate::ids::{TokenFamilyId, UserId};

/// A user row.
#[derive(Debug, Clone, FromRow)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email as registered.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// Whether TOTP is required at login.
    pub mfa_enabled: bool,
    /// When an admin disabled the account.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, email, password_hash, role, mfa_enabled, disabled_at, created_at"
    };
}

/// Inserts a user; an email already taken is `Conflict("users_email_key")`.
pub async fn insert(db: impl PgExecutor<'_>, email: &Email, password_hash: &str, role: Role) -> Result<User, DbError> {
    sqlx::query_as(concat!(
        "INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING ",
        columns!()
    ))
    .bind(UserId::new())
    .bind(email.as_str())
    .bind(password_hash)
    .bind(role.as_str())
    .fetch_one(db)
    .await
    .map_err(conflict)
}

/// The user with this email, whatever its case.
pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<User>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM users WHERE lower(email) = lower($1)"))
        .bind(email.trim())
        .fetch_optional(db)
        .await?)
}

/// The user with this id.
pub async fn find(db: impl PgExecutor<'_>, id: UserId) -> Result<Option<User>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM users WHERE id = $1")).bind(id).fetch_optional(db).await?)
}

/// Whether any admin exists.
pub async fn admin_exists(db: impl PgExecutor<'_>) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')").fetch_one(db).await?)
}

/// What an access token of `user` in login `session` may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed, with the user's current role and whether they enrolled in MFA.
    Allowed(Role, bool),
    /// The login was ended (logout, password change, reused refresh token).
    Revoked,
    /// The account is disabled.
    Disabled,
    /// The user no longer exists.
    Gone,
}

/// Checks an access token's user and login against what was revoked since
/// it was issued (one indexed read per request).
pub async fn access(db: impl PgExecutor<'_>, user: UserId, session: TokenFamilyId) -> Result<Access, DbError> {
    let row: Option<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT role, disabled_at IS NOT NULL,
                EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND user_id = $1 AND revoked_at IS NULL),
                mfa_enabled
         FROM users WHERE id = $1",
    )
    .bind(user)
    .bind(session)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => Access::Gone,
        Some((_, true, _, _)) => Access::Disabled,
        Some((_, false, false, _)) => Access::Revoked,
        Some((role, false, true, mfa)) => {
            Access::Allowed(role.parse().map_err(|e: String| DbError::Sqlx(sqlx::Error::Decode(e.into())))?, mfa)
        }
    })
}

/// Disables (or enables again) an account; false when there is no such user.
pub async fn set_disabled(db: impl PgExecutor<'_>, id: UserId, disabled: bool) -> Result<bool, DbError> {
    Ok(sqlx::query("UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END WHERE id = $1")
        .bind(id)
        .bind(disabled)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Replaces a user's password hash.
pub async fn set_password(db: impl PgExecutor<'_>, id: UserId, password_hash: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1").bind(id).bind(password_hash).execute(db).await?;
    Ok(())
}
