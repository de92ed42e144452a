//! Evaluations (scorecards), one per session.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor};

use super::DbError;
use crate::domain::EvaluationStatus;
use crate::events::Usage;
use crate::ids::SessionId;

/// An evaluation row.
#[derive(Debug, Clone, FromRow)]
pub struct Evaluation {
    /// The session.
    pub session_id: SessionId,
    /// Status.
    #[sqlx(try_from = "String")]
    pub status: EvaluationStatus,
    /// Criterion → 1..5.
    pub scores: Option<Json<BTreeMap<String, i32>>>,
    /// The weighted mean of the scores, when the rubric has weights.
    pub overall_score: Option<f64>,
    /// Summary.
    pub summary: Option<String>,
    /// Recommendation.
    pub recommendation: Option<String>,
    /// Provider.
    pub provider: Option<String>,
    /// Tokens sent.
    pub prompt_tokens: Option<i32>,
    /// Tokens received.
    pub completion_tokens: Option<i32>,
    /// Whether the tokens are (at least partly) our estimate.
    pub usage_estimated: bool,
    /// Estimated cost.
    pub cost_usd: Option<f64>,
    /// Attempts so far.
    pub attempts: i32,
    /// Last error.
    pub error: Option<String>,
    /// The request that ended the session.
    pub request_id: Option<String>,
    /// Finished.
    pub completed_at: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "session_id, status, scores, overall_score, summary, recommendation, provider, prompt_tokens,
    completion_tokens, usage_estimated, cost_usd, attempts, error, request_id, completed_at"
    };
}

/// Creates the pending evaluation of a session (once).
pub async fn create(
    db: impl PgExecutor<'_>,
    session: SessionId,
    request_id: &str,
    job_id: &str,
) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "INSERT INTO evaluations (session_id, request_id, job_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(session)
    .bind(request_id)
    .bind(job_id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// The evaluation of a session.
pub async fn find(db: impl PgExecutor<'_>, session: SessionId) -> Result<Option<Evaluation>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM evaluations WHERE session_id = $1"))
        .bind(session)
        .fetch_optional(db)
        .await?)
}

/// Records which queue job carries the evaluation now.
pub async fn set_job(db: impl PgExecutor<'_>, session: SessionId, job_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE evaluations SET job_id = $2 WHERE session_id = $1")
        .bind(session)
        .bind(job_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Takes the evaluation if pending or held under an expired lease; returns the attempt.
pub async fn claim(db: impl PgExecutor<'_>, session: SessionId, lease: Duration) -> Result<Option<i32>, DbError> {
    Ok(sqlx::query_scalar(concat!(
        "UPDATE evaluations SET status = 'running', attempts = attempts + 1,
             lease_until = now() + make_interval(secs => $2), ",
        attempt_taken_over!(),
        "
         WHERE session_id = $1 AND (status = 'pending' OR (status = 'running' AND lease_until < now()))
         RETURNING attempts"
    ))
    .bind(session)
    .bind(lease.as_secs_f64())
    .fetch_optional(db)
    .await?)
}

/// A finished scorecard.
#[derive(Debug, Clone)]
pub struct Scorecard {
    /// Criterion → 1..5.
    pub scores: BTreeMap<String, i32>,
    /// The weighted mean of the scores, when the rubric has weights.
    pub overall_score: Option<f64>,
    /// Summary.
    pub summary: String,
    /// Recommendation.
    pub recommendation: String,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Tokens.
    pub usage: Usage,
    /// Estimated cost.
    pub cost_usd: f64,
    /// Latency.
    pub latency_ms: i32,
}

/// Stores the scorecard if this attempt still holds the evaluation.
pub async fn complete(
    db: impl PgExecutor<'_>,
    session: SessionId,
    attempt: i32,
    card: &Scorecard,
) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE evaluations SET status = 'completed', scores = $3, summary = $4, recommendation = $5,
             provider = $6, model = $7, prompt_tokens = $8, completion_tokens = $9, cost_usd = $10,
             latency_ms = $11, usage_estimated = $12, overall_score = $13, error = NULL, lease_until = NULL, completed_at = now()
         WHERE session_id = $1 AND attempts = $2 AND status = 'running'",
    )
    .bind(session)
    .bind(attempt)
    .bind(Json(&card.scores))
    .bind(&card.summary)
    .bind(&card.recommendation)
    .bind(&card.provider)
    .bind(&card.model)
    .bind(card.usage.prompt_tokens)
    .bind(card.usage.completion_tokens)
    .bind(card.cost_usd)
    .bind(card.latency_ms)
    .bind(card.usage.estimated)
    .bind(card.overall_score)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Hands the evaluation back for a retry, or fails it for good.
pub async fn release(
    db: impl PgExecutor<'_>,
    session: SessionId,
    attempt: i32,
    error: &str,
    give_up: bool,
) -> Result<bool, DbError> {
    Ok(sqlx::query(concat!(
        "UPDATE evaluations SET status = CASE WHEN $4 THEN 'failed' ELSE 'pending' END, error = $3,
             lease_until = NULL, enqueued_at = now(), attempt_errors = ",
        attempt_error!("$2", "$3"),
        " WHERE session_id = $1 AND attempts = $2 AND status = 'running'"
    ))
    .bind(session)
    .bind(attempt)
    .bind(error)
    .bind(give_up)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// An evaluation the reconciler found unattended.
#[derive(Debug, Clone, FromRow)]
pub struct Unattended {
    /// The session.
    pub session_id: SessionId,
    /// Request id.
    pub request_id: Option<String>,
    /// The job that last carried it.
    pub job_id: Option<String>,
    /// Running under an expired lease.
    pub lease_expired: bool,
}

/// Evaluations pending longer than `after`, or running under an expired lease.
pub async fn unattended(db: impl PgExecutor<'_>, after: Duration, limit: i64) -> Result<Vec<Unattended>, DbError> {
    Ok(sqlx::query_as(
        "UPDATE evaluations e SET enqueued_at = now()
         FROM (SELECT session_id, status = 'running' AS lease_expired FROM evaluations
               WHERE (status = 'pending' AND enqueued_at < now() - make_interval(secs => $1))
                  OR (status = 'running' AND lease_until < now()
                      AND enqueued_at < now() - make_interval(secs => least($1, 1.0)))
               ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
         WHERE e.session_id = due.session_id
         RETURNING e.session_id, e.request_id, e.job_id, due.lease_expired",
    )
    .bind(after.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Puts a failed evaluation back in line under job `job_id` (an operator
/// retries its dead job).
pub async fn requeue_failed(db: impl PgExecutor<'_>, session: SessionId, job_id: &str) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "UPDATE evaluations SET status = 'pending', attempts = 0, error = NULL, attempt_errors = '[]',
             lease_until = NULL, job_id = $2, enqueued_at = now()
         WHERE session_id = $1 AND status = 'failed'",
    )
    .bind(session)
    .bind(job_id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}
