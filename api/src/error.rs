//! The API's one error type: a status, a stable code and a message that names
//! what was wrong, as `{"error": {"code", "message"}}`. Internal details are
//! logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::db::DbError;
use shared::flow::FlowError;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For a person: what was wrong.
    pub message: String,
    /// `Retry-After` in seconds (a 503 gets a default one).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Any status with a code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }
    /// The same, telling the client when to try again.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// 400: the request could not be read.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 422: well-formed but invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "you may not access this resource")
    }
    /// 404 for `what`.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    /// 403: a password or code the caller gave to prove who they are does
    /// not match (`field: does not match`).
    pub fn mismatch(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "does_not_match", message)
    }
    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// 500: logs the cause, answers without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }
}

/// Seconds a client is told to wait after a 503: a failover or a restart
/// is usually over within a few.
const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 2;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        let retry_after = self.retry_after.or_else(|| {
            (self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(u64::from(UNAVAILABLE_RETRY_AFTER_SECS))
        });
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sqlx(sqlx::Error::PoolTimedOut) => ApiError::unavailable("database busy, try again"),
            // Text PostgreSQL cannot store (the JSON extractor refuses NULs first).
            DbError::Sqlx(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
                ApiError::invalid("text contains characters that cannot be stored")
            }
            // A failover, a restart, a demoted primary: nothing was stored.
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable(
                    "database unavailable (failing over or restarting); nothing was stored, try again",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::NotFound(what) => ApiError::not_found(what),
            FlowError::Forbidden => ApiError::forbidden(),
            FlowError::NotActive(_) => ApiError::conflict("session_not_active", e.to_string()),
            FlowError::Expired => ApiError::conflict("session_expired", e.to_string()),
            FlowError::TurnInProgress(_) => ApiError::conflict("turn_in_progress", e.to_string()),
            FlowError::KeyReused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", e.to_string())
            }
            FlowError::Db(db) => db.into(),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
