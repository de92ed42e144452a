//! `DATABASE_*`: PostgreSQL.

use std::time::Duration;

use super::{Vars, redis};

/// PostgreSQL.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`; the seed's `postgresql+asyncpg://` scheme is accepted.
    pub url: String,
    /// `DATABASE_POOL_SIZE` + `DATABASE_MAX_OVERFLOW`: sqlx has one pool size, the sum.
    pub max_connections: u32,
    /// `DATABASE_POOL_TIMEOUT`: how long a request waits for a connection.
    pub acquire_timeout: Duration,
    /// `RUN_MIGRATIONS`: apply pending migrations at start-up.
    pub run_migrations: bool,
    /// `DATABASE_TRANSACTION_POOLING`: `DATABASE_URL` reaches a pooler in
    /// transaction mode (PgBouncer `pool_mode = transaction`), so every
    /// statement runs in a transaction and none is cached ([`crate::db::Db`]).
    pub transaction_pooling: bool,
}

// `DATABASE_URL` holds the password: not `Debug` as it is.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.redacted_url())
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("run_migrations", &self.run_migrations)
            .field("transaction_pooling", &self.transaction_pooling)
            .finish_non_exhaustive()
    }
}

impl DatabaseConfig {
    /// `DATABASE_URL` with its password (and a `password` or `sslpassword`
    /// parameter) replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        let url = redis::redact(&self.url);
        let Some((base, query)) = url.split_once('?') else { return url };
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if matches!(key, "password" | "sslpassword") => format!("{key}=***"),
                _ => param.to_owned(),
            })
            .collect();
        format!("{base}?{}", params.join("&"))
    }
}

pub(super) fn read(v: &mut Vars) -> DatabaseConfig {
    DatabaseConfig {
        url: database_url(v),
        max_connections: v.ranged("DATABASE_POOL_SIZE", 20, 1, 1000) + v.ranged("DATABASE_MAX_OVERFLOW", 10, 0, 1000),
        acquire_timeout: v.seconds("DATABASE_POOL_TIMEOUT", 30, 1, 600),
        run_migrations: v.flag("RUN_MIGRATIONS", true),
        transaction_pooling: v.flag("DATABASE_TRANSACTION_POOLING", false),
    }
}

fn database_url(v: &mut Vars) -> String {
    let url = v.required("DATABASE_URL");
    // The seed's SQLAlchemy URL names its driver; sqlx speaks the protocol itself.
    let url = url.replacen("postgresql+asyncpg://", "postgres://", 1).replacen("postgresql://", "postgres://", 1);
    if !url.is_empty() && !url.starts_with("postgres://") {
        v.problem("DATABASE_URL", "must start with postgres:// or postgresql://");
    }
    url
}
