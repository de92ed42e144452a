//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations as the router collects them (`utoipa-axum`: a route exists
//! only as a documented one), served at `{API_PREFIX}/openapi.json`, and
//! Swagger UI at `{API_PREFIX}/docs` from the crate's own copy of its assets
//! (no network at build or run time).

use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi};
use utoipa::{Modify, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a message naming what was wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// e.g. `validation_error`, `unauthorized`, `rate_limited`.
    pub code: String,
    /// For a person.
    pub message: String,
}

/// The document's fixed parts.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "AI Interviewer API",
        description = "AI interview turns and batches: the HTTP API. Errors are `{\"error\": {\"code\", \"message\"}}`; \
                       authenticated calls take `Authorization: Bearer <access token>`. The WebSocket protocol of \
                       `/ws/sessions/{id}` is in the README.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness and the dependency checks"),
        (name = "auth", description = "Accounts, tokens, MFA"),
        (name = "interviews", description = "Interviews and starting sessions"),
        (name = "sessions", description = "Sessions, answers, evaluations, the WebSocket"),
        (name = "admin", description = "Operators: queues, providers, batches, accounts"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        openapi
            .components
            .get_or_insert_with(Components::new)
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// `{prefix}/openapi.json` and the Swagger UI at `{prefix}/docs`.
pub fn docs(prefix: &str, document: OpenApi) -> Router<AppState> {
    SwaggerUi::new(format!("{prefix}/docs")).url(format!("{prefix}/openapi.json"), document).into()
}
