//! Sessions and their event sequence counter.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use super::DbError;
use crate::domain::SessionStatus;
use crate::ids::{InterviewId, SessionId, UserId};

/// A session row, with the owner of its interview (for access checks).
#[derive(Debug, Clone, FromRow)]
pub struct Session {
    /// Id.
    pub id: SessionId,
    /// The interview.
    pub interview_id: InterviewId,
    /// The candidate.
    pub candidate_id: UserId,
    /// The interview's owner.
    pub owner_id: UserId,
    /// Status.
    #[sqlx(try_from = "String")]
    pub status: SessionStatus,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Last answer or reply.
    pub last_activity_at: DateTime<Utc>,
    /// Started + the interview's duration.
    pub expires_at: DateTime<Utc>,
    /// When it stopped being active.
    pub ended_at: Option<DateTime<Utc>>,
    /// Asked to end while a turn was in flight.
    pub end_requested_at: Option<DateTime<Utc>>,
    /// The newest event `seq` handed out.
    pub last_seq: i64,
    /// The interview's `max_turns`.
    pub max_turns: i32,
}

macro_rules! select {
    () => {
        "SELECT s.id, s.interview_id, s.candidate_id, i.owner_id, s.status, s.started_at,
    s.last_activity_at, s.expires_at, s.ended_at, s.end_requested_at, s.last_seq, i.max_turns
    FROM sessions s JOIN interviews i ON i.id = s.interview_id"
    };
}

/// Inserts an active session.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: SessionId,
    interview: InterviewId,
    candidate: UserId,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO sessions (id, interview_id, candidate_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(interview)
        .bind(candidate)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

/// The session with this id.
pub async fn find(db: impl PgExecutor<'_>, id: SessionId) -> Result<Option<Session>, DbError> {
    Ok(sqlx::query_as(concat!(select!(), " WHERE s.id = $1")).bind(id).fetch_optional(db).await?)
}

/// The session, its row locked until the transaction ends: every producer of
/// events for it waits here, which is what keeps publish order equal to `seq` order.
pub async fn lock(db: impl PgExecutor<'_>, id: SessionId) -> Result<Option<Session>, DbError> {
    Ok(sqlx::query_as(concat!(select!(), " WHERE s.id = $1 FOR UPDATE OF s")).bind(id).fetch_optional(db).await?)
}

/// Waits for any transaction producing events for the session to finish, then
/// returns its newest `seq`: after this, every published event is visible.
pub async fn settled_seq(db: impl PgExecutor<'_>, id: SessionId) -> Result<Option<(SessionStatus, i64)>, DbError> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT status, last_seq FROM sessions WHERE id = $1 FOR SHARE")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(|(status, seq)| Ok((status.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?, seq))).transpose()
}

/// Hands out the next `n` sequence numbers; returns the first.
pub async fn reserve_seqs(db: impl PgExecutor<'_>, id: SessionId, n: i64) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("UPDATE sessions SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq - $2 + 1")
        .bind(id)
        .bind(n)
        .fetch_one(db)
        .await?)
}

/// Ends an active session with `status` for `reason` (`finish_session`,
/// migration 0007): `session.completed` stored and returned as JSON to
/// publish, the pending evaluation created under job `job_id`. `None` if it
/// was not active. The caller holds the session row.
pub async fn finish(
    db: impl PgExecutor<'_>,
    id: SessionId,
    status: SessionStatus,
    reason: &str,
    request_id: &str,
    job_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar("SELECT finish_session($1, $2, $3, $4, $5)::text")
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .bind(request_id)
        .bind(job_id)
        .fetch_one(db)
        .await?)
}

/// Marks that the session should end once the turn in flight finishes.
pub async fn request_end(db: impl PgExecutor<'_>, id: SessionId) -> Result<(), DbError> {
    sqlx::query("UPDATE sessions SET end_requested_at = coalesce(end_requested_at, now()) WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Active sessions idle longer than `timeout` or past their duration, with
/// no turn in flight (a turn being answered is activity), oldest first.
pub async fn idle(
    db: impl PgExecutor<'_>,
    timeout: std::time::Duration,
    limit: i64,
) -> Result<Vec<SessionId>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT s.id FROM sessions s
         WHERE s.status = 'active'
           AND (s.last_activity_at < now() - make_interval(secs => $1) OR s.expires_at < now())
           AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.id AND t.status IN ('queued', 'running'))
         ORDER BY s.last_activity_at LIMIT $2",
    )
    .bind(timeout.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await?)
}
