//! The three writes of a turn's life, one statement each (functions of
//! migration 0007): the candidate's answer, a worker's claim with the
//! reply's start, and the reply stored. Each runs in a transaction of its
//! own whose events the caller publishes before it commits.

use std::time::Duration;

use sqlx::{FromRow, PgExecutor};

use super::Turn;
use crate::db::DbError;
use crate::domain::{SessionStatus, TurnStatus};
use crate::events::Usage;
use crate::ids::{SessionId, TurnId};

/// What [`submit`] did with an answer.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// `created`, `replayed`, or why it was refused: `not_found`,
    /// `forbidden`, `not_active`, `end_requested`, `expired`,
    /// `in_progress`, `key_reused` (migration 0007, `submit_answer`).
    pub outcome: String,
    /// The session's status (absent when not found).
    pub session_status: Option<SessionStatus>,
    /// The turn created or replayed.
    pub turn_id: Option<TurnId>,
    /// Its number; for `in_progress`, the number of the turn in flight.
    pub turn_number: Option<i32>,
    /// Its status.
    pub turn_status: Option<TurnStatus>,
    /// `turn.queued` as stored, to publish before the commit (`created` only).
    pub event: Option<String>,
}

/// The candidate's answer in one statement (`submit_answer`, migration
/// 0007): the session locked and checked, the idempotency key looked up,
/// the turn in flight refused, the turn `turn_id` stored under job `job_id`
/// with its `turn.queued`. The caller publishes the event and commits only
/// when it was `created`; a refusal rolls the session's touch back.
#[allow(clippy::too_many_arguments)]
pub async fn submit(
    db: impl PgExecutor<'_>,
    session: SessionId,
    candidate: crate::ids::UserId,
    text: &str,
    idempotency_key: Option<&str>,
    request_id: &str,
    job_id: &str,
    turn_id: TurnId,
) -> Result<Submitted, DbError> {
    #[derive(FromRow)]
    struct Row {
        outcome: String,
        session_status: Option<String>,
        turn_id: Option<TurnId>,
        turn_number: Option<i32>,
        turn_status: Option<String>,
        event: Option<String>,
    }
    let row: Row = sqlx::query_as(
        "SELECT outcome, session_status, turn_id, turn_number, turn_status, event::text AS event
         FROM submit_answer($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(session)
    .bind(candidate)
    .bind(text)
    .bind(idempotency_key)
    .bind(request_id)
    .bind(job_id)
    .bind(turn_id)
    .fetch_one(db)
    .await?;
    Ok(Submitted {
        outcome: row.outcome,
        session_status: decode(row.session_status)?,
        turn_id: row.turn_id,
        turn_number: row.turn_number,
        turn_status: decode(row.turn_status)?,
        event: row.event,
    })
}

/// A status column read as text.
fn decode<T: std::str::FromStr<Err = String>>(text: Option<String>) -> Result<Option<T>, DbError> {
    text.map(|t| t.parse().map_err(|e: String| DbError::Sqlx(sqlx::Error::Decode(e.into())))).transpose()
}

/// A turn a worker now holds.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct Claim {
    /// The attempt number: the fencing token every later write checks.
    pub attempt: i32,
    /// Whether an earlier attempt had started (and may have streamed text).
    pub restarted: bool,
}

/// A claimed turn and what starting it produced.
#[derive(Debug, Clone)]
pub struct Started {
    /// The turn, as claimed.
    pub turn: Turn,
    /// The attempt.
    pub claim: Claim,
    /// The events to publish before the commit, in order (`turn.reset`
    /// after a dead attempt, then `turn.started`), as JSON; none when the
    /// turn has used up `max_attempts` and only its failure remains.
    pub events: Vec<String>,
    /// The first of the sequence numbers reserved for the deltas (the one
    /// after `turn.started`'s); `None` with no events.
    pub first_delta: Option<i64>,
}

/// One statement: takes the turn if it is queued, or running under an
/// expired lease (its worker died), and, while its attempts are within
/// `max_attempts`, stores its `turn.reset` (after a dead attempt) and
/// `turn.started` with `block` sequence numbers reserved for the deltas.
/// `None` if it is finished or another worker holds it. The caller
/// publishes the events, then commits.
pub async fn start(
    db: impl PgExecutor<'_>,
    id: TurnId,
    worker: &str,
    lease: Duration,
    max_attempts: u32,
    block: i64,
) -> Result<Option<Started>, DbError> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        turn: Turn,
        events: Vec<String>,
        first_delta: Option<i64>,
    }
    let row: Option<Row> = sqlx::query_as(concat!(
        "WITH claimed AS (
             UPDATE turns SET status = 'running', attempts = attempts + 1, worker = $2,
                 lease_until = now() + make_interval(secs => $3), started_at = coalesce(started_at, now()), ",
        attempt_taken_over!(),
        "
             WHERE id = $1 AND CASE status WHEN 'queued' THEN true WHEN 'running' THEN lease_until < now() ELSE false END
             RETURNING *)
         SELECT ",
        columns!(),
        ", events, (events[cardinality(events)]::jsonb->>'seq')::bigint + 1 AS first_delta
         FROM claimed, LATERAL (SELECT CASE WHEN attempts <= $4
                THEN start_turn_events(session_id, id, number, attempts > 1, $5) ELSE '{}' END AS events) started"
    ))
    .bind(id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .bind(block)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|Row { turn, events, first_delta }| {
        let claim = Claim { attempt: turn.attempts, restarted: turn.attempts > 1 };
        Started { turn, claim, events, first_delta }
    }))
}

/// What a finished provider call produced.
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    /// The whole message.
    pub message: &'a str,
    /// Tokens.
    pub usage: Usage,
    /// Provider name.
    pub provider: &'a str,
    /// Model.
    pub model: &'a str,
    /// Estimated cost.
    pub cost_usd: f64,
    /// Latency of the call.
    pub latency_ms: i32,
}

/// One statement: stores the reply if this attempt still holds the turn,
/// with its `turn.completed` (`event`: its `seq` is set here), and ends the
/// session (`session.completed`, its evaluation created under job
/// `evaluation_job_id`) when that was its last turn or an end was asked for.
/// Returns the events to publish, in order, then commit; `None` if the
/// attempt lost the turn (roll back).
pub async fn complete(
    db: impl PgExecutor<'_>,
    id: TurnId,
    attempt: i32,
    reply: &Reply<'_>,
    event: &crate::events::Event,
    request_id: &str,
    evaluation_job_id: &str,
) -> Result<Option<Vec<String>>, DbError> {
    Ok(sqlx::query_scalar("SELECT complete_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
        .bind(id)
        .bind(attempt)
        .bind(reply.message)
        .bind(reply.usage.prompt_tokens)
        .bind(reply.usage.completion_tokens)
        .bind(reply.provider)
        .bind(reply.model)
        .bind(reply.cost_usd)
        .bind(reply.latency_ms)
        .bind(reply.usage.estimated)
        .bind(sqlx::types::Json(event))
        .bind(request_id)
        .bind(evaluation_job_id)
        .fetch_one(db)
        .await?)
}
