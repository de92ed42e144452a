//! Turns: stored `queued` before their job is pushed, claimed by one worker
//! at a time under a lease, finished with a fencing check on the attempt.
//!
//! A statement that takes a turn by id tests its status inside a `CASE`:
//! a plain `status = 'running'` lets the planner prove the predicate of the
//! partial index `turns_unfinished` and, when the statistics predate a
//! backlog, scan that index (every queued turn) instead of the primary key:
//! each claim then cost O(backlog), 40 ms with 10,000 queued turns.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use super::{DbError, conflict};
use crate::domain::TurnStatus;
use crate::ids::{SessionId, TurnId};

/// A turn row.
#[derive(Debug, Clone, FromRow)]
pub struct Turn {
    /// Id.
    pub id: TurnId,
    /// Session.
    pub session_id: SessionId,
    /// 0 for the opening turn, then 1, 2, ...
    pub number: i32,
    /// The candidate's answer (none for the opening turn).
    pub candidate_message: Option<String>,
    /// The interviewer's reply, once completed.
    pub interviewer_message: Option<String>,
    /// Status.
    #[sqlx(try_from = "String")]
    pub status: TurnStatus,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The HTTP request that created it.
    pub request_id: Option<String>,
    /// Provider that answered.
    pub provider: Option<String>,
    /// Model that answered.
    pub model: Option<String>,
    /// Tokens sent.
    pub prompt_tokens: Option<i32>,
    /// Tokens received.
    pub completion_tokens: Option<i32>,
    /// Whether the tokens are our estimate (the provider reported none).
    pub usage_estimated: bool,
    /// Estimated cost in USD.
    pub cost_usd: Option<f64>,
    /// Provider latency.
    pub latency_ms: Option<i32>,
    /// Attempts so far.
    pub attempts: i32,
    /// Last error.
    pub error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Finished.
    pub completed_at: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "id, session_id, number, candidate_message, interviewer_message, status, idempotency_key,
    request_id, provider, model, prompt_tokens, completion_tokens, usage_estimated, cost_usd, latency_ms, attempts, error,
    created_at, completed_at"
    };
}

mod steps;
pub use steps::{Claim, Reply, Started, Submitted, complete, start, submit};

/// Inserts a queued turn; a repeated idempotency key is `Conflict("turns_session_id_idempotency_key_key")`.
pub async fn insert(
    db: impl PgExecutor<'_>,
    session: SessionId,
    number: i32,
    candidate_message: Option<&str>,
    idempotency_key: Option<&str>,
    request_id: &str,
    job_id: &str,
) -> Result<Turn, DbError> {
    sqlx::query_as(concat!(
        "INSERT INTO turns (id, session_id, number, candidate_message, idempotency_key, request_id, job_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        columns!()
    ))
    .bind(TurnId::new())
    .bind(session)
    .bind(number)
    .bind(candidate_message)
    .bind(idempotency_key)
    .bind(request_id)
    .bind(job_id)
    .fetch_one(db)
    .await
    .map_err(conflict)
}

/// The turn with this id.
pub async fn find(db: impl PgExecutor<'_>, id: TurnId) -> Result<Option<Turn>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM turns WHERE id = $1")).bind(id).fetch_optional(db).await?)
}

/// The newest turn of a session.
pub async fn last(db: impl PgExecutor<'_>, session: SessionId) -> Result<Option<Turn>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM turns WHERE session_id = $1 ORDER BY number DESC LIMIT 1"))
        .bind(session)
        .fetch_optional(db)
        .await?)
}

/// Every turn of a session, in order.
pub async fn list(db: impl PgExecutor<'_>, session: SessionId) -> Result<Vec<Turn>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM turns WHERE session_id = $1 ORDER BY number"))
        .bind(session)
        .fetch_all(db)
        .await?)
}

/// Records which queue job carries the turn now.
pub async fn set_job(db: impl PgExecutor<'_>, id: TurnId, job_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE turns SET job_id = $2 WHERE id = $1").bind(id).bind(job_id).execute(db).await?;
    Ok(())
}

/// Extends the lease of a held turn; false if the turn was taken over.
pub async fn renew(db: impl PgExecutor<'_>, id: TurnId, attempt: i32, lease: Duration) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE turns SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND attempts = $2 AND CASE status WHEN 'running' THEN true ELSE false END",
    )
    .bind(id)
    .bind(attempt)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Hands the turn back to the queue after a retryable failure.
pub async fn release(db: impl PgExecutor<'_>, id: TurnId, attempt: i32, error: &str) -> Result<bool, DbError> {
    Ok(sqlx::query(concat!(
        "UPDATE turns SET status = 'queued', error = $3, lease_until = NULL, enqueued_at = now(), attempt_errors = ",
        attempt_error!("$2", "$3"),
        " WHERE id = $1 AND attempts = $2 AND CASE status WHEN 'running' THEN true ELSE false END"
    ))
    .bind(id)
    .bind(attempt)
    .bind(error)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Marks the turn failed for good.
pub async fn fail(db: impl PgExecutor<'_>, id: TurnId, attempt: i32, error: &str) -> Result<bool, DbError> {
    Ok(sqlx::query(concat!(
        "UPDATE turns SET status = 'failed', error = $3, lease_until = NULL, completed_at = now(), attempt_errors = ",
        attempt_error!("$2", "$3"),
        " WHERE id = $1 AND attempts = $2 AND CASE status WHEN 'running' THEN true WHEN 'queued' THEN true ELSE false END"
    ))
    .bind(id)
    .bind(attempt)
    .bind(error)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// A turn the reconciler found unattended.
#[derive(Debug, Clone, FromRow)]
pub struct Unattended {
    /// The turn.
    pub id: TurnId,
    /// Its session.
    pub session_id: SessionId,
    /// Its request id.
    pub request_id: Option<String>,
    /// The job that last carried it.
    pub job_id: Option<String>,
    /// Whether it is `running` under an expired lease (else `queued` for long).
    pub lease_expired: bool,
}

/// Turns queued longer than `queued_after`, or running under an expired
/// lease. Each is stamped so the next pass leaves it alone for `queued_after`.
pub async fn unattended(
    db: impl PgExecutor<'_>,
    queued_after: Duration,
    limit: i64,
) -> Result<Vec<Unattended>, DbError> {
    Ok(sqlx::query_as(
        "UPDATE turns t SET enqueued_at = now()
         FROM (SELECT id, status = 'running' AS lease_expired FROM turns
               WHERE (status = 'queued' AND enqueued_at < now() - make_interval(secs => $1))
                  OR (status = 'running' AND lease_until < now()
                      AND enqueued_at < now() - make_interval(secs => least($1, 1.0)))
               ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
         WHERE t.id = due.id
         RETURNING t.id, t.session_id, t.request_id, t.job_id, due.lease_expired",
    )
    .bind(queued_after.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Puts a failed turn back in line under job `job_id` (an operator retries
/// its dead job): only while it is its session's last turn and the session
/// is active, so a retried turn never overtakes a newer one.
pub async fn requeue_failed(db: impl PgExecutor<'_>, id: TurnId, job_id: &str) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE turns t SET status = 'queued', attempts = 0, error = NULL, attempt_errors = '[]', lease_until = NULL,
             worker = NULL, completed_at = NULL, job_id = $2, enqueued_at = now()
         FROM sessions s
         WHERE t.id = $1 AND t.status = 'failed' AND s.id = t.session_id AND s.status = 'active'
           AND t.number = (SELECT max(number) FROM turns WHERE session_id = t.session_id)",
    )
    .bind(id)
    .bind(job_id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Turns that finished in one minute.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FinishedInMinute {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Turns completed.
    pub completed: i64,
    /// Turns failed for good.
    pub failed: i64,
    /// Median time of the completed ones from the answer accepted (the
    /// turn stored, `created_at`) to the reply stored (`completed_at`), in
    /// ms: what the candidate waited, retries included.
    pub latency_p50_ms: Option<f64>,
    /// Its 95th percentile.
    pub latency_p95_ms: Option<f64>,
}

/// Per minute since `from` (a minute's start), oldest first: the turns
/// that finished in it and their latency. Minutes without one are absent.
pub async fn finished_per_minute(
    db: impl PgExecutor<'_>,
    from: DateTime<Utc>,
) -> Result<Vec<FinishedInMinute>, DbError> {
    Ok(sqlx::query_as(
        "SELECT date_trunc('minute', completed_at, 'UTC') AS minute,
                count(*) FILTER (WHERE status = 'completed') AS completed,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at)::float8 * 1000)
                    FILTER (WHERE status = 'completed') AS latency_p50_ms,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at)::float8 * 1000)
                    FILTER (WHERE status = 'completed') AS latency_p95_ms
         FROM turns
         WHERE completed_at >= $1
         GROUP BY 1
         ORDER BY 1",
    )
    .bind(from)
    .fetch_all(db)
    .await?)
}
