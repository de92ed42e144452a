//! Where the work of a job stands (a turn, an evaluation, a batch run), with
//! each failed attempt as the handlers recorded it (`attempt_errors`,
//! migration 0006): what a dead job's detail shows beside apalis's record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor};

use super::DbError;
use crate::ids::{BatchRunId, SessionId, TurnId};

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Its number (1, 2, …).
    pub attempt: i32,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub error: String,
}

/// A turn's, evaluation's or batch run's status, attempts and failures.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptLog {
    /// Its status (`failed` for the work of a dead job, unless retried since).
    pub status: String,
    /// Attempts started.
    pub attempts: i32,
    /// The last error.
    pub error: Option<String>,
    /// Every failed attempt, oldest first.
    pub attempt_errors: Json<Vec<AttemptError>>,
}

/// The turn's.
pub async fn of_turn(db: impl PgExecutor<'_>, id: TurnId) -> Result<Option<AttemptLog>, DbError> {
    Ok(sqlx::query_as("SELECT status, attempts, error, attempt_errors FROM turns WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// The evaluation's of session `session`.
pub async fn of_evaluation(db: impl PgExecutor<'_>, session: SessionId) -> Result<Option<AttemptLog>, DbError> {
    Ok(sqlx::query_as("SELECT status, attempts, error, attempt_errors FROM evaluations WHERE session_id = $1")
        .bind(session)
        .fetch_optional(db)
        .await?)
}

/// The batch run's.
pub async fn of_batch_run(db: impl PgExecutor<'_>, id: BatchRunId) -> Result<Option<AttemptLog>, DbError> {
    Ok(sqlx::query_as("SELECT status, attempts, error, attempt_errors FROM batch_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?)
}
