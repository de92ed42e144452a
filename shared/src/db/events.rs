//! The stored event stream of a session (everything but deltas).

use sqlx::PgExecutor;
use sqlx::types::Json;

use super::DbError;
use crate::events::Event;
use crate::ids::{SessionId, TurnId};

/// Gives `event` the session's next `seq` (reserving `n` numbers: the rest
/// are for the deltas that follow it), stores it, and returns the `seq`. One
/// statement (`append_session_event`, migration 0007); the session row stays
/// locked until the transaction ends.
pub async fn append_next(db: impl PgExecutor<'_>, event: &Event, n: i64) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT (append_session_event($1, $2, $3 - 1)->>'seq')::bigint")
        .bind(event.session_id)
        .bind(Json(event))
        .bind(n)
        .fetch_one(db)
        .await?)
}

/// Stored events with `seq > after`, oldest first.
pub async fn after(db: impl PgExecutor<'_>, session: SessionId, after: i64, limit: i64) -> Result<Vec<Event>, DbError> {
    let rows: Vec<Json<Event>> =
        sqlx::query_scalar("SELECT event FROM session_events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(session)
            .bind(after)
            .bind(limit)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|Json(e)| e).collect())
}

/// The event that finished a turn (`turn.completed` or `turn.failed`), to
/// publish again when a finished turn's job is delivered twice.
pub async fn turn_outcome(db: impl PgExecutor<'_>, session: SessionId, turn: TurnId) -> Result<Option<Event>, DbError> {
    let row: Option<Json<Event>> = sqlx::query_scalar(
        "SELECT event FROM session_events
         WHERE session_id = $1 AND event->>'turn_id' = $2 AND event->>'type' IN ('turn.completed', 'turn.failed')
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(session)
    .bind(turn.to_string())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|Json(e)| e))
}
