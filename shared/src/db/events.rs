//! The stored event stream of a session (everything but deltas).

use sqlx::PgExecutor;
use sqlx::types::Json;

use super::DbError;
use crate::events::Event;
use crate::ids::{SessionId, TurnId};

/// Stores an event in the session's stream.
pub async fn append(db: impl PgExecutor<'_>, event: &Event) -> Result<(), DbError> {
    sqlx::query("INSERT INTO session_events (session_id, seq, event) VALUES ($1, $2, $3)")
        .bind(event.session_id)
        .bind(event.seq)
        .bind(Json(event))
        .execute(db)
        .await?;
    Ok(())
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
