//! `/interviews`: recruiters define interviews; candidates start sessions on them.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shared::db::{self, interviews::Interview, interviews::NewInterview};
use shared::domain::{Language, Role};
use shared::ids::{InterviewId, UserId};
use shared::rubric::{self, Criterion};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, NotJson, RateLimited, TooLarge, Unauthorized, Unavailable,
};
use crate::routes::RequestId;
use crate::routes::sessions::SessionOut;
use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(read)).routes(routes!(start_session))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InterviewIn {
    title: String,
    position: String,
    language: Language,
    topics: Vec<String>,
    max_turns: i32,
    duration_minutes: i32,
    /// The rubric; the four default criteria when absent or null.
    #[serde(default)]
    criteria: Option<Vec<Criterion>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct InterviewOut {
    id: InterviewId,
    owner_id: UserId,
    title: String,
    position: String,
    language: Language,
    topics: Vec<String>,
    max_turns: i32,
    duration_minutes: i32,
    criteria: Vec<Criterion>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Interview> for InterviewOut {
    fn from(i: Interview) -> Self {
        Self {
            id: i.id,
            owner_id: i.owner_id,
            title: i.title,
            position: i.position,
            language: i.language,
            topics: i.topics.0,
            max_turns: i.max_turns,
            duration_minutes: i.duration_minutes,
            criteria: i.criteria.0,
            created_at: i.created_at,
        }
    }
}

fn text_field(name: &str, value: String, max: usize) -> ApiResult<String> {
    // The length is of what was sent (the limit the OpenAPI document states).
    let sent = value.chars().count();
    let value = value.trim().to_owned();
    if value.is_empty() || sent > max {
        return Err(ApiError::invalid(format!("{name}: must be 1 to {max} characters")));
    }
    Ok(value)
}

impl InterviewIn {
    fn validate(self) -> ApiResult<NewInterview> {
        if self.topics.is_empty() || self.topics.len() > 50 {
            return Err(ApiError::invalid("topics: must hold 1 to 50 topics"));
        }
        let topics = self
            .topics
            .into_iter()
            .enumerate()
            .map(|(i, t)| text_field(&format!("topics[{i}]"), t, 500))
            .collect::<ApiResult<Vec<_>>>()?;
        if !(1..=100).contains(&self.max_turns) {
            return Err(ApiError::invalid("max_turns: must be between 1 and 100"));
        }
        if !(1..=1440).contains(&self.duration_minutes) {
            return Err(ApiError::invalid("duration_minutes: must be between 1 and 1440"));
        }
        let criteria = match self.criteria {
            None => rubric::default_criteria(),
            Some(given) => rubric::validate(given).map_err(ApiError::invalid)?,
        };
        Ok(NewInterview {
            title: text_field("title", self.title, 200)?,
            position: text_field("position", self.position, 200)?,
            language: self.language,
            topics,
            max_turns: self.max_turns,
            duration_minutes: self.duration_minutes,
            criteria,
        })
    }
}

#[utoipa::path(post, path = "/interviews", tag = "interviews", request_body = InterviewIn, responses(
        (status = 201, description = "Created", body = InterviewOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Forbidden, RateLimited, Unavailable), security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<InterviewIn>,
) -> ApiResult<impl IntoResponse> {
    user.require(&[Role::Recruiter, Role::Admin])?;
    let interview = db::interviews::insert(&state.db, user.id, &body.validate()?).await?;
    Ok((StatusCode::CREATED, axum::Json(InterviewOut::from(interview))))
}

#[utoipa::path(get, path = "/interviews", tag = "interviews", responses(
        (status = 200, description = "The caller's interviews (all, for an admin)", body = Vec<InterviewOut>),
        Unauthorized, Forbidden, RateLimited, Unavailable), security(("bearer" = [])))]
async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<impl IntoResponse> {
    user.require(&[Role::Recruiter, Role::Admin])?;
    let owner = (user.role != Role::Admin).then_some(user.id);
    let interviews = db::interviews::list(&state.db, owner, 200).await?;
    Ok(axum::Json(interviews.into_iter().map(InterviewOut::from).collect::<Vec<_>>()))
}

#[utoipa::path(get, path = "/interviews/{id}", operation_id = "read_interview", tag = "interviews", params(("id" = uuid::Uuid, Path, description = "The interview's id")), responses(
        (status = 200, description = "The interview", body = InterviewOut),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<InterviewId>,
) -> ApiResult<impl IntoResponse> {
    user.require(&[Role::Recruiter, Role::Admin])?;
    let interview = db::interviews::find(&state.db, id).await?.ok_or_else(|| ApiError::not_found("interview"))?;
    if user.role != Role::Admin && interview.owner_id != user.id {
        return Err(ApiError::not_found("interview"));
    }
    Ok(axum::Json(InterviewOut::from(interview)))
}

#[utoipa::path(post, path = "/interviews/{id}/sessions", tag = "interviews", params(("id" = uuid::Uuid, Path, description = "The interview's id")), responses(
        (status = 201, description = "Started; the opening turn is queued", body = crate::routes::sessions::SessionOut),
        BadRequest, TooLarge, NotJson, Invalid, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn start_session(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<InterviewId>,
) -> ApiResult<impl IntoResponse> {
    user.require(&[Role::Candidate])?;
    let interview = db::interviews::find(&state.db, id).await?.ok_or_else(|| ApiError::not_found("interview"))?;
    let (session, _opening) = state.core.start_session(&interview, user.id, &request_id).await?;
    tracing::info!(session_id = %session.id, interview_id = %id, "Interview session started");
    Ok((StatusCode::CREATED, axum::Json(SessionOut::from(&session))))
}
