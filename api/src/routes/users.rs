//! `/admin/users/{id}/disable` and `/enable` (admin role): a disabled
//! account cannot log in, and every login it has ends at once (tokens
//! refused, WebSockets closed).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use shared::db::{self, DbError};
use shared::domain::Role;
use shared::ids::UserId;

use crate::auth::AuthUser;
use crate::auth::revoke::{self, Reason, Revocation};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/users/{id}/disable", post(disable)).route("/admin/users/{id}/enable", post(enable))
}

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

async fn enable(State(state): State<AppState>, admin: AuthUser, Path(id): Path<UserId>) -> ApiResult<StatusCode> {
    admin.require(&[Role::Admin])?;
    if !db::users::set_disabled(&state.db, id, false).await? {
        return Err(ApiError::not_found("user"));
    }
    tracing::info!(user_id = %id, by = %admin.id, "account enabled");
    Ok(StatusCode::NO_CONTENT)
}
