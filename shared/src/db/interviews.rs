//! Interviews.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor};

use super::DbError;
use crate::domain::Language;
use crate::ids::{InterviewId, SessionId, UserId};
use crate::rubric::Criterion;

/// An interview row.
#[derive(Debug, Clone, FromRow)]
pub struct Interview {
    /// Id.
    pub id: InterviewId,
    /// The recruiter (or admin) who created it.
    pub owner_id: UserId,
    /// Title.
    pub title: String,
    /// The position interviewed for.
    pub position: String,
    /// Language of the conversation.
    #[sqlx(try_from = "String")]
    pub language: Language,
    /// The question plan: topics asked in order.
    pub topics: Json<Vec<String>>,
    /// Candidate answers before the session completes.
    pub max_turns: i32,
    /// Length of a session.
    pub duration_minutes: i32,
    /// What the evaluation scores.
    pub criteria: Json<Vec<Criterion>>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// What a new interview holds.
#[derive(Debug, Clone)]
pub struct NewInterview {
    /// Title.
    pub title: String,
    /// Position.
    pub position: String,
    /// Language.
    pub language: Language,
    /// Topics.
    pub topics: Vec<String>,
    /// Max answers.
    pub max_turns: i32,
    /// Minutes.
    pub duration_minutes: i32,
    /// Criteria, validated ([`crate::rubric::validate`]).
    pub criteria: Vec<Criterion>,
}

macro_rules! columns {
    () => {
        "id, owner_id, title, position, language, topics, max_turns, duration_minutes, criteria, created_at"
    };
}

/// Inserts an interview.
pub async fn insert(db: impl PgExecutor<'_>, owner: UserId, new: &NewInterview) -> Result<Interview, DbError> {
    Ok(sqlx::query_as(concat!(
        "INSERT INTO interviews (id, owner_id, title, position, language, topics, max_turns, duration_minutes, criteria)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
        columns!()
    ))
    .bind(InterviewId::new())
    .bind(owner)
    .bind(&new.title)
    .bind(&new.position)
    .bind(new.language.as_str())
    .bind(Json(&new.topics))
    .bind(new.max_turns)
    .bind(new.duration_minutes)
    .bind(Json(&new.criteria))
    .fetch_one(db)
    .await?)
}

/// The interview with this id.
pub async fn find(db: impl PgExecutor<'_>, id: InterviewId) -> Result<Option<Interview>, DbError> {
    Ok(sqlx::query_as(concat!("SELECT ", columns!(), " FROM interviews WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// The interview a session belongs to.
pub async fn of_session(db: impl PgExecutor<'_>, session: SessionId) -> Result<Option<Interview>, DbError> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM interviews WHERE id = (SELECT interview_id FROM sessions WHERE id = $1)"
    ))
    .bind(session)
    .fetch_optional(db)
    .await?)
}

/// Interviews newest first: those of `owner`, or all when `owner` is `None`.
pub async fn list(db: impl PgExecutor<'_>, owner: Option<UserId>, limit: i64) -> Result<Vec<Interview>, DbError> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM interviews WHERE ($1::uuid IS NULL OR owner_id = $1) ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(owner)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
