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

// The refusals the handlers list in `responses(...)`: one description of
// each, every body the one error schema.
/// 400.
#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "Malformed JSON, header or path parameter")]
pub struct BadRequest(pub ErrorBody);

/// 401.
#[derive(utoipa::IntoResponses)]
#[response(status = 401, description = "Missing, invalid, expired or revoked token")]
pub struct Unauthorized(pub ErrorBody);

/// 403.
#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "Not allowed to this caller")]
pub struct Forbidden(pub ErrorBody);

/// 403.
#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "A password or code that does not match (`does_not_match`)")]
pub struct Mismatch(pub ErrorBody);

/// 404.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Not found, or not visible to this caller")]
pub struct NotFound(pub ErrorBody);

/// 409.
#[derive(utoipa::IntoResponses)]
#[response(status = 409, description = "Conflicts with the current state")]
pub struct Conflict(pub ErrorBody);

/// 413.
#[derive(utoipa::IntoResponses)]
#[response(status = 413, description = "Body larger than MAX_REQUEST_BODY_BYTES")]
pub struct TooLarge(pub ErrorBody);

/// 415.
#[derive(utoipa::IntoResponses)]
#[response(status = 415, description = "Body without Content-Type: application/json")]
pub struct NotJson(pub ErrorBody);

/// 422.
#[derive(utoipa::IntoResponses)]
#[response(status = 422, description = "Invalid input; the message names the field")]
pub struct Invalid(pub ErrorBody);

/// 429.
#[derive(utoipa::IntoResponses)]
#[response(status = 429, description = "Over RATE_LIMIT_PER_MINUTE (or login throttling); see Retry-After")]
pub struct RateLimited(pub ErrorBody);

/// 503.
#[derive(utoipa::IntoResponses)]
#[response(status = 503, description = "PostgreSQL or Redis unavailable for now; see Retry-After")]
pub struct Unavailable(pub ErrorBody);

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

/// Request bodies as the JSON extractor reads them (`extract.rs`): strings
/// hold no NUL character (PostgreSQL cannot store one), and no field beyond
/// those named is accepted.
const REQUEST_TYPES_END: &str = "In";
const OTHER_REQUEST_TYPES: [&str; 2] = ["RunBody", "Criterion"];

/// Characters Rust's `trim` removes (Unicode White_Space), as a regex class body.
const SPACE: &str = "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// Text with something besides white space (and no NUL).
fn non_blank() -> String {
    format!("^[^\\u0000]*[^\\u0000{SPACE}][^\\u0000]*$")
}

/// What `Email::parse` accepts: white space around, none inside, one `@`, a
/// dot in a domain that neither starts nor ends with one.
fn email() -> String {
    let part = format!("[^@\\u0000{SPACE}]");
    let edge = format!("[^@.\\u0000{SPACE}]");
    format!("^[{SPACE}]*{part}+@{edge}{part}*\\.{part}*{edge}[{SPACE}]*$")
}

/// The document as served: what the derive wrote, plus what the extractor
/// and the handlers enforce on request bodies (the derive cannot say it:
/// the rules are not the types'). JSON, as utoipa's types do not keep every
/// keyword.
pub fn refine(document: &OpenApi, answer_max_chars: usize) -> serde_json::Value {
    use serde_json::json;
    let mut value = serde_json::to_value(document).unwrap_or_default();
    let Some(schemas) = value.pointer_mut("/components/schemas").and_then(serde_json::Value::as_object_mut) else {
        return value;
    };
    let text = |min: usize, max: usize| json!({ "type": "string", "minLength": min, "maxLength": max, "pattern": non_blank() });
    let password = || {
        json!({ "type": "string", "minLength": crate::auth::password::MIN_CHARS,
        "maxLength": crate::auth::password::MAX_CHARS, "pattern": "^[^\\u0000]*$" })
    };
    let rules: Vec<(&str, &str, serde_json::Value)> = vec![
        ("RegisterIn", "email", json!({ "type": "string", "maxLength": 254, "pattern": email() })),
        ("RegisterIn", "password", password()),
        ("PasswordIn", "new_password", password()),
        ("AnswerIn", "text", text(1, answer_max_chars)),
        ("InterviewIn", "title", text(1, 200)),
        ("InterviewIn", "position", text(1, 200)),
        ("InterviewIn", "topics", json!({ "type": "array", "minItems": 1, "maxItems": 50, "items": text(1, 500) })),
        (
            "InterviewIn",
            "criteria",
            json!({ "type": ["array", "null"], "minItems": shared::rubric::CRITERIA_RANGE.start(),
            "maxItems": shared::rubric::CRITERIA_RANGE.end(), "items": { "$ref": "#/components/schemas/Criterion" },
            "description": "The rubric; the four default criteria when absent or null. Names are unique, ignoring case." }),
        ),
        ("InterviewIn", "max_turns", json!({ "type": "integer", "minimum": 1, "maximum": 100 })),
        ("InterviewIn", "duration_minutes", json!({ "type": "integer", "minimum": 1, "maximum": 1440 })),
        (
            "Criterion",
            "name",
            json!({ "type": "string", "minLength": 1, "maxLength": shared::rubric::NAME_MAX,
            "pattern": format!("^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f{SPACE}][^\\u0000-\\u001f\\u007f-\\u009f]*$") }),
        ),
        ("Criterion", "description", text(1, shared::rubric::DESCRIPTION_MAX)),
        (
            "Criterion",
            "weight",
            json!({ "type": ["number", "null"], "exclusiveMinimum": 0, "maximum": shared::rubric::WEIGHT_MAX }),
        ),
        ("RunBody", "date", json!({ "type": ["string", "null"], "format": "date" })),
    ];
    for (schema, field, rule) in rules {
        if let Some(slot) = schemas.get_mut(schema).and_then(|s| s.pointer_mut(&format!("/properties/{field}"))) {
            *slot = rule;
        }
    }
    for (name, schema) in schemas.iter_mut() {
        if name.ends_with(REQUEST_TYPES_END) || OTHER_REQUEST_TYPES.contains(&name.as_str()) {
            close(schema);
        }
    }
    value
}

/// No NUL in strings, no unknown fields, all the way down.
fn close(schema: &mut serde_json::Value) {
    let Some(object) = schema.as_object_mut() else { return };
    let is_string = match object.get("type") {
        Some(serde_json::Value::String(t)) => t == "string",
        Some(serde_json::Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    if is_string && !object.contains_key("format") && !object.contains_key("enum") && !object.contains_key("pattern") {
        object.insert("pattern".into(), "^[^\\u0000]*$".into());
    }
    if let Some(properties) = object.get_mut("properties").and_then(serde_json::Value::as_object_mut) {
        properties.values_mut().for_each(close);
        object.insert("additionalProperties".into(), false.into());
    }
    for key in ["items", "oneOf", "anyOf", "allOf"] {
        match object.get_mut(key) {
            Some(serde_json::Value::Array(list)) => list.iter_mut().for_each(close),
            Some(item @ serde_json::Value::Object(_)) => close(item),
            _ => {}
        }
    }
}

/// `{prefix}/openapi.json` and the Swagger UI at `{prefix}/docs`.
pub fn docs(prefix: &str, document: &OpenApi, answer_max_chars: usize) -> Router<AppState> {
    let served = refine(document, answer_max_chars);
    SwaggerUi::new(format!("{prefix}/docs")).external_url_unchecked(format!("{prefix}/openapi.json"), served).into()
}
