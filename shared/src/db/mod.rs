//! PostgreSQL access. All SQL of the service lives in this module, as
//! functions taking an executor; parameters are always bound.

/// SQL: `attempt_errors` with one more failed attempt appended (migration
/// 0006), `$attempt` and `$error` being SQL expressions (parameters).
macro_rules! attempt_error {
    ($attempt:literal, $error:literal) => {
        concat!(
            "attempt_errors || jsonb_build_array(jsonb_build_object('attempt', ",
            $attempt,
            ", 'at', now(), 'error', ",
            $error,
            "))"
        )
    };
}

/// SQL for a claim: a row taken over while `running` (its lease expired)
/// records that attempt as failed.
macro_rules! attempt_taken_over {
    () => {
        concat!(
            "attempt_errors = CASE WHEN status = 'running' THEN ",
            attempt_error!("attempts", "'its worker stopped before it finished (lease expired)'"),
            " ELSE attempt_errors END"
        )
    };
}

pub mod attempts;
pub mod batch_runs;
pub mod evaluations;
pub mod events;
pub mod failover;
pub mod interviews;
pub mod mfa;
mod pool;
pub mod sessions;
pub mod tokens;
pub mod turns;
pub mod users;

use sqlx::migrate::Migrator;
use sqlx::{Postgres, Transaction};

use crate::config::DatabaseConfig;
pub use pool::Db;

/// The migrations in `migrations/`, embedded in every binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A transaction on the pool.
pub type Tx<'a> = Transaction<'a, Postgres>;

/// What the database layer reports.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique constraint was violated; names the constraint.
    #[error("conflict on {0}")]
    Conflict(String),
    /// Anything else.
    #[error(transparent)]
    Sqlx(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        failover::note(&e);
        DbError::Sqlx(e)
    }
}

impl DbError {
    /// Whether the database cannot serve now but will (see [`failover::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Sqlx(e) if failover::is_unavailable(e))
    }
}

/// Maps a unique violation to [`DbError::Conflict`].
pub(crate) fn conflict(e: sqlx::Error) -> DbError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return DbError::Conflict(db.constraint().unwrap_or("unique").to_owned());
    }
    DbError::Sqlx(e)
}

/// Whether every embedded migration has been applied.
pub async fn migrations_applied(db: &Db) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(db).await?;
    Ok(MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).all(|m| applied.contains(&m.version)))
}

/// `migrate` subcommand: applies pending migrations and says how many ran.
pub async fn migrate_command(config: &DatabaseConfig) -> anyhow::Result<()> {
    Db::connect_lazy(config)?.migrate().await?;
    println!("migrations applied ({} known)", MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count());
    Ok(())
}
