//! `/admin/users/{id}/disable` and `/enable` (admin role): a disabled
//! account cannot log in, and every login it has ends at once (tokens
//! refused, WebSockets closed).

use axum::extract::State;
use axum::http::StatusCode;
use shared::db::{self, DbError};
use shared::domain::Role;
use shared::ids::UserId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::auth::revoke::{self, Reason, Revocation};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::openapi::{BadRequest, Conflict, Forbidden, NotFound, RateLimited, Unauthorized, Unavailable};
use crate::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(disable)).routes(routes!(enable))
}

#[utoipa::path(post, path = "/admin/users/{id}/disable", operation_id = "disable_user", tag = "admin", params(("id" = uuid::Uuid, Path, description = "The user's id")), responses(
        (status = 204, description = "Disabled; every login of the account ended"),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RateLimited, Unavailable), security(("bearer" = [])))]
async fn disable(State(state): State<AppState>, admin: AuthUser, Path(id): Path<UserId>) -> ApiResult<StatusCode> {
    admin.require(&[Role::Admin])?;
    if id == admin.id {
        return Err(ApiError::conflict("cannot_disable_self", "an admin cannot disable their own account"));
    }
    let mut tx = state.db.begin().await.map_err(DbError::from)?;
    if !db::users::set_disabled(&mut *tx, id, true).await? {
        return Err(ApiError::not_found("user"));
    }
    let ended = db::tokens::revoke_user(&mut *tx, id, None).await?;
    tx.commit().await.map_err(DbError::from)?;
    let revocation = Revocation { user_id: id, only: None, except: None, reason: Reason::AccountDisabled };
    revoke::announce(&state, &revocation).await;
    tracing::warn!(user_id = %id, by = %admin.id, ended, "account disabled");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/users/{id}/enable", operation_id = "enable_user", tag = "admin", params(("id" = uuid::Uuid, Path, description = "The user's id")), responses(
        (status = 204, description = "Enabled"),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn enable(State(state): State<AppState>, admin: AuthUser, Path(id): Path<UserId>) -> ApiResult<StatusCode> {
    admin.require(&[Role::Admin])?;
    if !db::users::set_disabled(&state.db, id, false).await? {
        return Err(ApiError::not_found("user"));
    }
    tracing::info!(user_id = %id, by = %admin.id, "account enabled");
    Ok(StatusCode::NO_CONTENT)
}
