//! The connection pool, as every part of the service uses it: [`Db`] runs
//! each statement given to it the same way whether PostgreSQL is reached
//! directly or through a pooler in transaction mode.
//!
//! Behind a transaction pooler (PgBouncer `pool_mode = transaction`,
//! `DATABASE_TRANSACTION_POOLING=true`) a server connection is ours only
//! inside a transaction. sqlx prepares a statement (Parse, Describe, Sync)
//! and then binds and executes it (Bind, Execute, Sync) in two round trips;
//! outside a transaction the pooler may send the two to different servers,
//! and the second fails, or runs a statement of another client's of the
//! same name. So in that mode every statement not already in a transaction
//! runs in one of its own, and sqlx's statement cache is off (a statement
//! prepared in one transaction would be looked for on another server). The
//! pooler must then forget prepared statements when a server changes hands
//! (`server_reset_query = DEALLOCATE ALL`, `server_reset_query_always = 1`):
//! docs/managed-services.md.

use std::str::FromStr;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres, SqlStr};

use super::{MIGRATOR, Tx, failover};
use crate::config::DatabaseConfig;

/// How long a pooled connection may sit idle before it is pinged when handed out.
const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The pool of connections to PostgreSQL; pass `&db` wherever SQL runs.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    /// `DATABASE_TRANSACTION_POOLING`: every statement in a transaction.
    transaction_pooling: bool,
}

impl Db {
    /// Opens the pool (lazily: start-up does not fail while the database is
    /// still coming up; readiness reports it). After a read-only error the
    /// connections it hands out are checked ([`failover`]).
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        let mut options = PgConnectOptions::from_str(&config.url)?.application_name("ai-interviewer");
        if config.transaction_pooling {
            options = options.statement_cache_capacity(0);
        }
        // sqlx pings every connection it hands out: a round trip per
        // statement outside a transaction, half of the worker's round trips
        // per turn (docs/capacity.md). Only a connection idle for a while is
        // pinged now; a busy one that broke fails its statement, which is
        // then answered 503 or retried like any lost connection.
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_AFTER_IDLE && sqlx::Connection::ping(&mut *conn).await.is_err() {
                        return Ok(false);
                    }
                    Ok(failover::still_writable(conn).await)
                })
            })
            .connect_lazy_with(options);
        Ok(Self { pool, transaction_pooling: config.transaction_pooling })
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Connects once (the start-up check): whether a connection can be had.
    pub async fn check_connect(&self) -> Result<(), sqlx::Error> {
        self.pool.acquire().await.map(drop)
    }

    /// Connections open and handed out (for health and metrics).
    pub fn connections_in_use(&self) -> u32 {
        self.pool.size().saturating_sub(u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX))
    }

    /// Applies pending migrations. Behind a transaction pooler they run in
    /// one transaction, so that sqlx's migration lock (a session-level
    /// advisory lock) and each step stay on one server connection.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        if !self.transaction_pooling {
            return MIGRATOR.run(&self.pool).await;
        }
        let mut tx = self.pool.begin().await?;
        MIGRATOR.run(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl<'d> Executor<'d> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'd: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return (&self.pool).fetch_many(query);
        }
        let pool = self.pool.clone();
        // The results are gathered before the commit: a stream handed out
        // would keep the transaction open for as long as its reader dawdles.
        stream::once(async move {
            let mut tx = pool.begin().await?;
            let results: Vec<_> = (&mut *tx).fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(stream::iter(results.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'd: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return (&self.pool).fetch_optional(query);
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = (&mut *tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'd: 'e,
    {
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'd: 'e,
    {
        (&self.pool).describe(sql)
    }
}
