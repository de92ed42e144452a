//! Vertex AI's OpenAI-compatible Chat Completions endpoint, as "Using
//! OpenAI libraries with Vertex AI" describes it, behind Google's bearer
//! token check. Errors are Google's (AIP-193): `{"error": {"code",
//! "message", "status", "details"?}}`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{CLOUD_PLATFORM, Outcome, Shared, State, VertexReply, VertexRequest, lock, usage_of};

const DEVCONSOLE: &str = "Expected OAuth 2 access token, login cookie or other valid authentication credential. \
     See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const METHOD: &str = "google.cloud.aiplatform.v1.PredictionService.ChatCompletions";

pub(super) fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions", post(chat))
}

/// A refusal: Google's error (code, status, message, `ErrorInfo` reason)
/// and the reason recorded.
struct Refusal {
    code: u16,
    status: &'static str,
    message: String,
    info: Option<&'static str>,
    why: String,
}

impl Refusal {
    fn response(&self) -> Response {
        google_error(self.code, self.status, &self.message, self.info)
    }
}

/// A Google API error body, with an `ErrorInfo` detail when `reason` is given.
fn google_error(code: u16, status: &str, message: &str, reason: Option<&str>) -> Response {
    let mut error = json!({ "code": code, "message": message, "status": status });
    if let Some(reason) = reason {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": { "service": "aiplatform.googleapis.com", "method": METHOD }
        }]);
    }
    let mut response =
        (StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(json!({ "error": error })))
            .into_response();
    if code == 401 {
        response.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
    }
    response
}

fn unauthenticated(message: String, info: Option<&'static str>, why: String) -> Refusal {
    Refusal { code: 401, status: "UNAUTHENTICATED", message, info, why }
}

fn invalid_argument(message: &str, why: String) -> Refusal {
    Refusal { code: 400, status: "INVALID_ARGUMENT", message: message.to_owned(), info: None, why }
}

/// The bearer token's check: issued here, not revoked, not expired, with `cloud-platform`.
fn authenticate(state: &State, headers: &HeaderMap) -> Result<(), Refusal> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
        let message = format!("Request is missing required authentication credential. {DEVCONSOLE}");
        return Err(unauthenticated(message, Some("CREDENTIALS_MISSING"), format!("no bearer token ({header:?})")));
    };
    let invalid = format!("Request had invalid authentication credentials. {DEVCONSOLE}");
    let Some((issued, revoked)) = state.tokens.get(token) else {
        return Err(unauthenticated(invalid, None, "a token the fake never issued".into()));
    };
    if *revoked {
        return Err(unauthenticated(invalid, None, "a revoked token".into()));
    }
    if issued.issued_at.elapsed() >= issued.lifetime {
        let why = format!("a token expired {:?} ago", issued.issued_at.elapsed() - issued.lifetime);
        return Err(unauthenticated(invalid, Some("ACCESS_TOKEN_EXPIRED"), why));
    }
    if !issued.scopes.iter().any(|s| s == CLOUD_PLATFORM) {
        return Err(Refusal {
            code: 403,
            status: "PERMISSION_DENIED",
            message: "Request had insufficient authentication scopes.".into(),
            info: Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
            why: format!("a token with scopes {:?}", issued.scopes),
        });
    }
    Ok(())
}

/// The body's checks: JSON, `messages`, a `google/` model, `response_format`.
fn validate(body: &Value, project: &str, location: &str) -> Result<(), Refusal> {
    if !body.is_object() {
        return Err(invalid_argument("Invalid JSON payload received.", "the body is not a JSON object".into()));
    }
    if body["messages"].as_array().is_none_or(Vec::is_empty) {
        return Err(invalid_argument("messages must not be empty", "no messages".into()));
    }
    let model = body["model"].as_str().unwrap_or_default();
    let Some((publisher, name)) = model.split_once('/').filter(|(p, n)| !p.is_empty() && !n.is_empty()) else {
        let message = format!("Malformed publisher model name `{model}`: expected format '<publisher>/<model>'.");
        return Err(invalid_argument(&message, format!("model {model:?} is not <publisher>/<model>")));
    };
    if publisher != "google" {
        let message = format!(
            "Publisher Model `projects/{project}/locations/{location}/publishers/{publisher}/models/{name}` was not found \
             or your project does not have access to it. Please ensure you are using a valid model version. \
             For more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"
        );
        return Err(Refusal {
            code: 404,
            status: "NOT_FOUND",
            message,
            info: None,
            why: format!("publisher {publisher:?}"),
        });
    }
    check_response_format(&body["response_format"]).map_err(|why| invalid_argument(&why, why.clone()))
}

/// `response_format`: `text`, `json_object`, or `json_schema` with a name
/// and a schema object (`strict` a boolean when present). The guide also
/// passes a Gemini MIME type through as `response_mime_type`; Gemini takes
/// `text/plain`, `application/json` and `text/x.enum`.
fn check_response_format(format: &Value) -> Result<(), String> {
    if format.is_null() {
        return Ok(());
    }
    match format["type"].as_str() {
        Some("text" | "json_object" | "text/plain" | "application/json" | "text/x.enum") => Ok(()),
        Some("json_schema") => {
            let spec = &format["json_schema"];
            if spec["name"].as_str().is_none_or(str::is_empty) {
                return Err("response_format.json_schema.name is required.".into());
            }
            if !spec["schema"].is_object() {
                return Err("response_format.json_schema.schema must be a JSON schema object.".into());
            }
            if !spec["strict"].is_null() && !spec["strict"].is_boolean() {
                return Err("response_format.json_schema.strict must be a boolean.".into());
            }
            Ok(())
        }
        _ => Err(format!("Invalid response_format type: {}.", format["type"])),
    }
}

async fn chat(
    Extract(state): Extract<Shared>,
    Path((project, location)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = lock(&state);
    let checked = authenticate(&state, &headers).and_then(|()| validate(&json, &project, &location));
    let (reply, outcome) = match checked {
        Err(refusal) => (Err(refusal.response()), Outcome::Refused { status: refusal.code, reason: refusal.why }),
        Ok(()) => {
            let default = VertexReply::Stream(state.default_text.clone());
            let reply = state.next.pop_front().unwrap_or(default);
            let outcome = match &reply {
                VertexReply::Stream(_) => Outcome::Accepted,
                VertexReply::Status { status, .. } => Outcome::Scripted { status: *status },
            };
            (Ok(reply), outcome)
        }
    };
    state.received.push(VertexRequest {
        at: Instant::now(),
        path: uri.path().to_owned(),
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: json.clone(),
        outcome,
    });
    drop(state);
    match reply {
        Err(response) => response,
        Ok(reply) => answer(reply, &json),
    }
}

fn answer(reply: VertexReply, request: &Value) -> Response {
    let model = request["model"].as_str().unwrap_or_default();
    match reply {
        VertexReply::Status { status, body, retry_after } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, [("content-type", "application/json; charset=UTF-8")], body).into_response();
            if let Some(after) = retry_after.and_then(|a| a.parse().ok()) {
                response.headers_mut().insert("retry-after", after);
            }
            response
        }
        VertexReply::Stream(text) if request["stream"] == true => {
            let events = sse_events(&text, model, request["stream_options"]["include_usage"] == true);
            let chunks = events.into_iter().map(|e| Ok::<_, std::io::Error>(Bytes::from(e)));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        VertexReply::Stream(text) => {
            let (prompt, completion) = usage_of(&text);
            axum::Json(json!({
                "id": response_id(), "object": "chat.completion", "created": created(), "model": model,
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion }
            }))
            .into_response()
        }
    }
}

fn created() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn response_id() -> String {
    super::random_hex()[..22].to_owned()
}

/// `text` as chat.completion.chunk events of a few characters, a chunk
/// with `finish_reason: "stop"`, the usage chunk (empty `choices`) when
/// asked for, and `data: [DONE]`; each event its own write.
fn sse_events(text: &str, model: &str, include_usage: bool) -> Vec<String> {
    let (id, created) = (response_id(), created());
    let chunk = |delta: Value, finish_reason: Value| {
        json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }] })
    };
    let chars: Vec<char> = text.chars().collect();
    let mut events: Vec<Value> = chars
        .chunks(5)
        .map(|piece| chunk(json!({ "role": "assistant", "content": piece.iter().collect::<String>() }), Value::Null))
        .collect();
    events.push(chunk(json!({ "role": "assistant" }), json!("stop")));
    if include_usage {
        let (prompt, completion) = usage_of(text);
        events.push(json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion } }));
    }
    let mut out: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    out.push("data: [DONE]\n\n".into());
    out
}
