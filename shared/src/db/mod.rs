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

use sqlx::Executor as _;
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
/// still coming up; readiness reports it).
///
/// Behind a transaction pooler (`DATABASE_TRANSACTION_POOLING`), a statement
/// outside a transaction may reach a different server connection than the
/// one it was prepared on (sqlx parses, then binds, in two round trips), and
/// PgBouncer before 1.21 does not carry prepared statements across: so
/// statements are not cached, and every use of a pooled connection is one
/// transaction (`BEGIN` when it is handed out, `COMMIT` when it comes back),
/// which keeps it on one server connection. A transaction of ours inside it
/// (`pool.begin()`) ends it early; the closing `COMMIT` then has nothing to
/// do.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(&config.url)?.application_name("ai-interviewer");
    let pool = PgPoolOptions::new().max_connections(config.max_connections).acquire_timeout(config.acquire_timeout);
    if !config.transaction_pooling {
        let checked = pool.before_acquire(|conn, _| Box::pin(async move { Ok(failover::still_writable(conn).await) }));
        return Ok(checked.connect_lazy_with(options));
    }
    options = options.statement_cache_capacity(0);
    let pinned = pool
        .after_connect(|conn, _| Box::pin(async move { conn.execute("BEGIN").await.map(|_| ()) }))
        .before_acquire(|conn, _| {
            Box::pin(async move {
                if !failover::still_writable(conn).await {
                    return Ok(false);
                }
                conn.execute("BEGIN").await.map(|_| true)
            })
        })
        // A connection whose COMMIT fails is closed, not reused.
        .after_release(|conn, _| Box::pin(async move { Ok(conn.execute("COMMIT").await.is_ok()) }));
    Ok(pinned.connect_lazy_with(options))
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
