//! Users.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use super::{DbError, conflict};
use crate::domain::{Email, Role};
use crate::ids::UserId;

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
    /// Created.
    pub created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, email, password_hash, role, mfa_enabled, created_at"
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
