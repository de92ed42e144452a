//! `batch_runs`: every run of a batch, scheduled or by hand. The unique
//! `(batch, scheduled_for)` makes each cron tick run once, whatever the number
//! of scheduler replicas.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::DbError;
use crate::domain::{Batch, BatchStatus, BatchTrigger};
use crate::ids::BatchRunId;

/// A run as operators see it.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct BatchRun {
    /// Id.
    pub id: BatchRunId,
    /// Which batch.
    #[sqlx(try_from = "String")]
    pub batch: Batch,
    /// The tick it is for; none for a run by hand.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Why it ran.
    #[sqlx(try_from = "String")]
    pub trigger: BatchTrigger,
    /// Where it is.
    #[sqlx(try_from = "String")]
    pub status: BatchStatus,
    /// What it was asked to do.
    pub params: serde_json::Value,
    /// Attempts so far.
    pub attempts: i32,
    /// Recorded.
    pub enqueued_at: DateTime<Utc>,
    /// Last started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it touched.
    pub counts: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Its queue job.
    #[serde(skip)]
    pub job_id: Option<String>,
}

/// The columns of [`BatchRun`], for `concat!`.
macro_rules! columns {
    () => {
        "id, batch, scheduled_for, trigger, status, params, attempts, enqueued_at, started_at, finished_at, counts, error, job_id"
    };
}

/// Records the run of `batch` for the tick `scheduled_for`, carried by job
/// `job_id`; `None` when that tick already has its run.
pub async fn insert_tick(
    db: impl PgExecutor<'_>,
    batch: Batch,
    scheduled_for: DateTime<Utc>,
    trigger: BatchTrigger,
    job_id: &str,
) -> Result<Option<BatchRunId>, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO batch_runs (id, batch, scheduled_for, trigger, job_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (batch, scheduled_for) DO NOTHING RETURNING id",
    )
    .bind(BatchRunId::new())
    .bind(batch.as_str())
    .bind(scheduled_for)
    .bind(trigger.as_str())
    .bind(job_id)
    .fetch_optional(db)
    .await?)
}

/// Records a run by hand with `params`.
pub async fn insert_manual(
    db: impl PgExecutor<'_>,
    batch: Batch,
    params: &serde_json::Value,
    job_id: Option<&str>,
) -> Result<BatchRunId, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO batch_runs (id, batch, trigger, params, job_id) VALUES ($1, $2, 'manual', $3, $4) RETURNING id",
    )
    .bind(BatchRunId::new())
    .bind(batch.as_str())
    .bind(params)
    .bind(job_id)
    .fetch_one(db)
    .await?)
}

/// One run.
pub async fn find(db: impl PgExecutor<'_>, id: BatchRunId) -> Result<Option<BatchRun>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM batch_runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// The last `limit` runs of `batch`, newest first.
pub async fn recent(db: impl PgExecutor<'_>, batch: Batch, limit: i64) -> Result<Vec<BatchRun>, DbError> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM batch_runs WHERE batch = $1 ORDER BY enqueued_at DESC, id DESC LIMIT $2"
    ))
    .bind(batch.as_str())
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Takes a queued run (or one whose worker's lease expired) for a worker:
/// `running`, one more attempt, leased for `lease`. `None` when it is
/// finished or held.
pub async fn claim(db: impl PgExecutor<'_>, id: BatchRunId, lease: Duration) -> Result<Option<BatchRun>, DbError> {
    Ok(sqlx::query_as(concat!(
        "UPDATE batch_runs SET status = 'running', attempts = attempts + 1, started_at = now(),
             lease_until = now() + make_interval(secs => $2), ",
        attempt_taken_over!(),
        "
         WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND lease_until < now()))
         RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(lease.as_secs_f64())
    .fetch_optional(db)
    .await?)
}

/// Extends a running run's lease.
pub async fn renew(db: impl PgExecutor<'_>, id: BatchRunId, attempt: i32, lease: Duration) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE batch_runs SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND attempts = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(attempt)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends attempt `attempt`: `succeeded` with `counts`, or `failed` with `error`.
pub async fn finish(
    db: impl PgExecutor<'_>,
    id: BatchRunId,
    attempt: i32,
    outcome: Result<&serde_json::Value, &str>,
) -> Result<bool, DbError> {
    let (status, counts, error) = match outcome {
        Ok(counts) => ("succeeded", Some(counts), None),
        Err(error) => ("failed", None, Some(error)),
    };
    let done = sqlx::query(concat!(
        "UPDATE batch_runs SET status = $3, counts = $4, error = $5, finished_at = now(), lease_until = NULL,
             attempt_errors = CASE WHEN $5::text IS NULL THEN attempt_errors ELSE ",
        attempt_error!("$2", "$5"),
        " END
         WHERE id = $1 AND attempts = $2 AND status = 'running'"
    ))
    .bind(id)
    .bind(attempt)
    .bind(status)
    .bind(counts)
    .bind(error)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands attempt `attempt` back to the queue after `error`, under job `job_id`.
pub async fn release(
    db: impl PgExecutor<'_>,
    id: BatchRunId,
    attempt: i32,
    error: &str,
    job_id: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(concat!(
        "UPDATE batch_runs SET status = 'queued', error = $3, job_id = $4, lease_until = NULL, enqueued_at = now(),
             attempt_errors = ",
        attempt_error!("$2", "$3"),
        " WHERE id = $1 AND attempts = $2 AND status = 'running'"
    ))
    .bind(id)
    .bind(attempt)
    .bind(error)
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A run nobody is looking after.
#[derive(Debug, Clone, FromRow)]
pub struct Unattended {
    /// The run.
    pub id: BatchRunId,
    /// Its job, as recorded.
    pub job_id: Option<String>,
    /// It was running under a lease that expired (its worker died).
    pub lease_expired: bool,
}

/// Runs `queued` longer than `after` or `running` under an expired lease,
/// claimed for re-enqueueing (their `enqueued_at` is reset, so one reconciler
/// takes each).
pub async fn unattended(db: impl PgExecutor<'_>, after: Duration, limit: i64) -> Result<Vec<Unattended>, DbError> {
    Ok(sqlx::query_as(
        "UPDATE batch_runs r SET enqueued_at = now()
         FROM (SELECT id, status = 'running' AS lease_expired FROM batch_runs
               WHERE (status = 'queued' AND enqueued_at < now() - make_interval(secs => $1))
                  OR (status = 'running' AND lease_until < now()
                      AND enqueued_at < now() - make_interval(secs => least($1, 1.0)))
               ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
         WHERE r.id = due.id
         RETURNING r.id, r.job_id, due.lease_expired",
    )
    .bind(after.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Sets the job carrying a run.
pub async fn set_job(db: impl PgExecutor<'_>, id: BatchRunId, job_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE batch_runs SET job_id = $2 WHERE id = $1").bind(id).bind(job_id).execute(db).await?;
    Ok(())
}

/// Puts a failed run back in line under job `job_id` (an operator retries
/// its dead job).
pub async fn requeue_failed(db: impl PgExecutor<'_>, id: BatchRunId, job_id: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE batch_runs SET status = 'queued', attempts = 0, error = NULL, attempt_errors = '[]', finished_at = NULL,
             lease_until = NULL, job_id = $2, enqueued_at = now()
         WHERE id = $1 AND status = 'failed'",
    )
    .bind(id)
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
