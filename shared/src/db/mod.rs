//! PostgreSQL access. All SQL of the service lives in this module, as
//! functions taking an executor; parameters are always bound.

pub mod batch_runs;
pub mod evaluations;
pub mod events;
pub mod failover;
pub mod interviews;
pub mod sessions;
pub mod tokens;
pub mod turns;
pub mod users;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;

use crate::config::DatabaseConfig;

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

/// Opens the pool (lazily: start-up does not fail while the database is
/// still coming up; readiness reports it). After a read-only error the
/// connections it hands out are checked ([`failover`]).
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(&config.url)?.application_name("ai-interviewer");
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .before_acquire(|conn, _| Box::pin(async move { Ok(failover::still_writable(conn).await) }))
        .connect_lazy_with(options))
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether every embedded migration has been applied.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await?;
    Ok(MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).all(|m| applied.contains(&m.version)))
}

/// `migrate` subcommand: applies pending migrations and says how many ran.
pub async fn migrate_command(config: &DatabaseConfig) -> anyhow::Result<()> {
    let pool = pool(config)?;
    migrate(&pool).await?;
    println!("migrations applied ({} known)", MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count());
    Ok(())
}
