//! A database that is failing over: errors that mean "not now" rather than
//! "never" (a primary demoted to read-only, a server shutting down or not
//! accepting connections yet, a connection cut), and the pool letting go of
//! connections to a server that has turned read-only.
//!
//! After a failover a pooled connection may still reach the old primary,
//! which answers every write with `25006 read_only_sql_transaction` for as
//! long as the connection lives. Once such an error is seen, connections
//! are checked when handed out (`SHOW transaction_read_only`) for a while,
//! and a read-only one is closed: the pool opens a new one, which resolves
//! the host again and reaches the new primary.

use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::{PgConnection, Row};

/// How long after a read-only error connections are checked, in ms.
const CHECK_FOR_MS: i64 = 60_000;

/// When a read-only error was last seen (ms since the epoch; 0: never).
static READ_ONLY_SEEN_MS: AtomicI64 = AtomicI64::new(0);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The SQLSTATE of a server error.
fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Notes a read-only error (so that connections get checked).
pub(super) fn note(e: &sqlx::Error) {
    if code(e).as_deref() == Some("25006") {
        READ_ONLY_SEEN_MS.store(now_ms(), Ordering::Relaxed);
    }
}

/// Whether `e` means the database cannot serve us right now but will
/// (read-only, shutting down, starting, out of connections, connection
/// lost, pool exhausted): worth a 503 with `Retry-After`, not a 500.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(_) => code(e).is_some_and(|c| {
            // read-only transaction; admin / crash shutdown, cannot connect now;
            // too many connections; the connection-exception class.
            matches!(c.as_str(), "25006" | "57P01" | "57P02" | "57P03" | "53300") || c.starts_with("08")
        }),
        _ => false,
    }
}

/// Whether a connection handed out by the pool may be used: not when a
/// read-only error was seen lately and this one reaches a read-only server.
pub(super) async fn still_writable(conn: &mut PgConnection) -> bool {
    if now_ms() - READ_ONLY_SEEN_MS.load(Ordering::Relaxed) > CHECK_FOR_MS {
        return true;
    }
    // The simple query protocol: one round trip, nothing prepared (which a
    // transaction pooler could not carry over; see `pool.rs`).
    let read_only = sqlx::raw_sql("SHOW transaction_read_only").fetch_one(conn).await;
    read_only.and_then(|row| row.try_get::<String, _>(0)).is_ok_and(|value| value != "on")
}
