//! `/sessions`: read a session, submit answers, end it, read its evaluation.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shared::db::{self, sessions::Session, turns::Turn};
use shared::domain::{EvaluationStatus, Role, SessionStatus, TurnStatus};
use shared::events::Usage;
use shared::flow::Ended;
use shared::ids::{InterviewId, SessionId, TurnId, UserId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use crate::routes::RequestId;
use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read)).routes(routes!(submit)).routes(routes!(end)).routes(routes!(evaluation))
}

/// A session as SPEC §4 names its fields.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionOut {
    id: SessionId,
    interview_id: InterviewId,
    candidate_id: UserId,
    status: SessionStatus,
    started_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    last_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    turns: Option<Vec<TurnOut>>,
}

impl From<&Session> for SessionOut {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id,
            interview_id: s.interview_id,
            candidate_id: s.candidate_id,
            status: s.status,
            started_at: s.started_at,
            expires_at: s.expires_at,
            ended_at: s.ended_at,
            last_seq: s.last_seq,
            turns: None,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct TurnOut {
    id: TurnId,
    number: i32,
    candidate_message: Option<String>,
    interviewer_message: Option<String>,
    status: TurnStatus,
    provider: Option<String>,
    model: Option<String>,
    usage: Usage,
    cost_usd: Option<f64>,
    latency_ms: Option<i32>,
    attempts: i32,
    error: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Turn> for TurnOut {
    fn from(t: Turn) -> Self {
        Self {
            id: t.id,
            number: t.number,
            candidate_message: t.candidate_message,
            interviewer_message: t.interviewer_message,
            status: t.status,
            provider: t.provider,
            model: t.model,
            usage: Usage {
                prompt_tokens: t.prompt_tokens.unwrap_or(0),
                completion_tokens: t.completion_tokens.unwrap_or(0),
                estimated: t.usage_estimated,
            },
            cost_usd: t.cost_usd,
            latency_ms: t.latency_ms,
            attempts: t.attempts,
            error: t.error,
            created_at: t.created_at,
            completed_at: t.completed_at,
        }
    }
}

/// Who may see a session: its candidate, its interview's owner, an admin.
/// Anyone else gets a 404, which does not reveal that it exists.
pub async fn visible_session(state: &AppState, user: &AuthUser, id: SessionId) -> ApiResult<Session> {
    let session = db::sessions::find(&state.db, id).await?.ok_or_else(|| ApiError::not_found("session"))?;
    if user.role == Role::Admin || session.candidate_id == user.id || session.owner_id == user.id {
        Ok(session)
    } else {
        Err(ApiError::not_found("session"))
    }
}

/// Waits until the transaction producing the session's latest event (if one
/// is under way) has committed: an event reaches the socket just before its
/// transaction commits, and a client that reads on seeing it must find
/// what it announced.
async fn settle(state: &AppState, id: SessionId) -> ApiResult<()> {
    db::sessions::settled_seq(&state.db, id).await?;
    Ok(())
}

#[utoipa::path(get, path = "/sessions/{id}", operation_id = "read_session", tag = "sessions", params(("id" = uuid::Uuid, Path, description = "The session's id")), responses(
        (status = 200, description = "The session with its turns", body = SessionOut),
        BadRequest, Unauthorized, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<SessionId>,
) -> ApiResult<impl IntoResponse> {
    settle(&state, id).await?;
    let session = visible_session(&state, &user, id).await?;
    let turns = db::turns::list(&state.db, id).await?;
    let mut out = SessionOut::from(&session);
    out.turns = Some(turns.into_iter().map(TurnOut::from).collect());
    Ok(axum::Json(out))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AnswerIn {
    text: String,
}

/// Checks an answer's text: not blank, not longer than `ANSWER_MAX_CHARS`.
pub fn answer_text(state: &AppState, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("text: must not be empty".into());
    }
    let max = state.config.api.answer_max_chars;
    if text.chars().count() > max {
        return Err(format!("text: must be at most {max} characters"));
    }
    Ok(())
}

/// Checks an idempotency key: 1 to 200 visible ASCII characters.
pub fn idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 200 visible ASCII characters".into());
    }
    Ok(())
}

#[utoipa::path(post, path = "/sessions/{id}/turns", tag = "sessions", request_body = AnswerIn, params(("id" = uuid::Uuid, Path, description = "The session's id"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,200}$", description = "1 to 200 visible ASCII characters; the same key answers with the same turn")), responses(
        (status = 202, description = "Accepted; `Idempotent-Replayed: true` when the key was seen", body = AnswerAccepted),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<SessionId>,
    headers: HeaderMap,
    Json(body): Json<AnswerIn>,
) -> ApiResult<impl IntoResponse> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| ApiError::bad_request("invalid_header", "Idempotency-Key: not ASCII"))?;
            idempotency_key(key)
                .map_err(|e| ApiError::bad_request("invalid_header", format!("Idempotency-Key: {e}")))?;
            Some(key)
        }
    };
    answer_text(&state, &body.text).map_err(ApiError::invalid)?;
    if user.role != Role::Candidate {
        visible_session(&state, &user, id).await?;
        return Err(ApiError::forbidden());
    }
    let accepted = state.core.submit_answer(id, user.id, &body.text, key, &request_id).await.map_err(|e| match e {
        // Another candidate's session: outsiders learn nothing about it.
        shared::flow::FlowError::Forbidden => ApiError::not_found("session"),
        other => other.into(),
    })?;
    let replayed = if accepted.created { "false" } else { "true" };
    Ok((
        StatusCode::ACCEPTED,
        [("idempotent-replayed", replayed)],
        axum::Json(AnswerAccepted { turn_id: accepted.turn_id, number: accepted.number, status: accepted.status }),
    ))
}

/// The turn an answer started (or, for a key seen before, started then).
#[derive(Serialize, utoipa::ToSchema)]
struct AnswerAccepted {
    turn_id: TurnId,
    number: i32,
    status: TurnStatus,
}

#[utoipa::path(post, path = "/sessions/{id}/end", tag = "sessions", params(("id" = uuid::Uuid, Path, description = "The session's id")), responses(
        (status = 202, description = "Ended, or ending once the turn in flight completes", body = SessionEnding),
        BadRequest, Unauthorized, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn end(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<SessionId>,
) -> ApiResult<impl IntoResponse> {
    let outcome = state.core.end_session(id, user.id, user.role, &request_id).await.map_err(|e| match e {
        // Outsiders learn nothing about the session.
        shared::flow::FlowError::Forbidden => ApiError::not_found("session"),
        other => other.into(),
    })?;
    let (status, note) = match outcome {
        Ended::Now => (SessionStatus::Completed, "ended; evaluation enqueued"),
        Ended::AfterTurn => (SessionStatus::Active, "ends when the turn in flight completes"),
        Ended::Already(status) => (status, "had already ended"),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(SessionEnding { session_id: id, status, detail: note })))
}

/// Where ending a session left it.
#[derive(Serialize, utoipa::ToSchema)]
struct SessionEnding {
    session_id: SessionId,
    status: SessionStatus,
    /// In words: ended, ends after the turn in flight, or had ended already.
    detail: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EvaluationOut {
    session_id: SessionId,
    status: EvaluationStatus,
    scores: BTreeMap<String, i32>,
    /// The weighted mean of the scores when the rubric has weights, else null.
    overall_score: Option<f64>,
    summary: Option<String>,
    recommendation: Option<String>,
    provider: Option<String>,
    usage: Usage,
    cost_usd: Option<f64>,
    error: Option<String>,
}

#[utoipa::path(get, path = "/sessions/{id}/evaluation", tag = "sessions", params(("id" = uuid::Uuid, Path, description = "The session's id")), responses(
        (status = 200, description = "The scorecard (`pending`, `running`, `completed` or `failed`)", body = EvaluationOut),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn evaluation(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<SessionId>,
) -> ApiResult<impl IntoResponse> {
    settle(&state, id).await?;
    let session = visible_session(&state, &user, id).await?;
    if !(user.role == Role::Admin || session.owner_id == user.id) {
        return Err(ApiError::forbidden());
    }
    let evaluation = db::evaluations::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("evaluation (the session has not ended)"))?;
    Ok(axum::Json(EvaluationOut {
        session_id: id,
        status: evaluation.status,
        scores: evaluation.scores.map(|s| s.0).unwrap_or_default(),
        overall_score: evaluation.overall_score,
        summary: evaluation.summary,
        recommendation: evaluation.recommendation,
        provider: evaluation.provider,
        usage: Usage {
            prompt_tokens: evaluation.prompt_tokens.unwrap_or(0),
            completion_tokens: evaluation.completion_tokens.unwrap_or(0),
            estimated: evaluation.usage_estimated,
        },
        cost_usd: evaluation.cost_usd,
        error: evaluation.error,
    }))
}
