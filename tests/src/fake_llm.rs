//! An OpenAI-compatible chat endpoint over real HTTP, for exercising the
//! production provider code: it serves the plain and Azure URL shapes
//! (Vertex has its own fake, `fake_gcp`), checks the credentials it is told
//! to expect and `response_format` as OpenAI documents it, streams replies
//! as server-sent events, and can be told to answer the next requests with a
//! status (429 with `Retry-After`, 5xx, 4xx with any body), a stream that
//! ends without a finish_reason or is cut mid-event, a reply withheld by a
//! content filter, or after a delay. It counts requests per time window.
//!
//! On Azure's paths it streams as Azure OpenAI documents: a first chunk with
//! empty `choices` and the `prompt_filter_results`, `content_filter_results`
//! on each choice, and it refuses `stream_options` on the api-versions that
//! predate it (400 "Unrecognized request argument supplied").

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A streamed reply of `text`, with a finish_reason and usage.
    Stream(String),
    /// A status with an optional `Retry-After` and a body.
    Status { status: u16, retry_after: Option<String>, body: String },
    /// The first part of `text`, then the body ends without a finish_reason.
    BrokenStream(String),
    /// The first part of `text`, then the body is cut in the middle of an event.
    TruncatedStream(String),
    /// `reply`, after `delay` (before the response headers).
    Slow(Duration, Box<Reply>),
    /// The first part of `text`, then `finish_reason: "content_filter"`.
    Filtered(String),
}

/// Azure api-versions whose schema has no `stream_options` (it came with
/// 2024-09-01-preview; the 2024-10-21 GA schema lacks it too).
const AZURE_VERSIONS_WITHOUT_STREAM_OPTIONS: &[&str] = &[
    "2023-05-15",
    "2024-02-01",
    "2024-06-01",
    "2024-10-21",
    "2024-02-15-preview",
    "2024-03-01-preview",
    "2024-04-01-preview",
    "2024-05-01-preview",
    "2024-07-01-preview",
    "2024-08-01-preview",
];

/// The credentials a route expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer {token}`.
    Bearer(String),
    /// `api-key: {key}` (Azure).
    ApiKey(String),
}

/// The usage the fake reports for a streamed `text`: (prompt, completion) tokens.
pub fn usage_of(text: &str) -> (u32, u32) {
    (42, (text.chars().count() / 4) as u32)
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Path and query.
    pub uri: String,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Its `api-key` header (Azure).
    pub api_key: Option<String>,
    /// Its JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Script {
    next: VecDeque<Reply>,
    default_text: String,
    received: Vec<Received>,
    expected_auth: Option<Auth>,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeLlm {
    /// `http://127.0.0.1:{port}/v1`.
    pub base_url: String,
    /// `http://127.0.0.1:{port}` (Azure's base: it adds `/openai/deployments/...`).
    pub origin: String,
    script: Arc<Mutex<Script>>,
}

impl FakeLlm {
    /// Starts on a free port; answers every request with a stream of `default_text`
    /// unless told otherwise.
    pub async fn start(default_text: &str) -> anyhow::Result<FakeLlm> {
        let script = Arc::new(Mutex::new(Script { default_text: default_text.to_owned(), ..Default::default() }));
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/openai/deployments/{deployment}/chat/completions", post(chat))
            .route("/openai/v1/chat/completions", post(chat))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeLlm { base_url: format!("http://{addr}/v1"), origin: format!("http://{addr}"), script })
    }

    /// Answers the next request with `reply` (after those queued before it).
    pub fn then(&self, reply: Reply) {
        self.lock().next.push_back(reply);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// From now on, a request without these credentials gets a 401.
    pub fn expect_auth(&self, auth: Auth) {
        self.lock().expected_auth = Some(auth);
    }

    /// The most requests that arrived within any span of `window`.
    pub fn max_in_window(&self, window: Duration) -> usize {
        let arrivals: Vec<Instant> = self.lock().received.iter().map(|r| r.at).collect();
        let mut most = 0;
        let mut start = 0;
        for (end, at) in arrivals.iter().enumerate() {
            while *at - arrivals[start] >= window {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn chat(State(script): State<Arc<Mutex<Script>>>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let reply = {
        let mut script = script.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        script.received.push(Received {
            at: Instant::now(),
            uri: uri.to_string(),
            authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
            api_key: headers.get("api-key").and_then(|v| v.to_str().ok()).map(str::to_owned),
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        });
        let authorized = match &script.expected_auth {
            None => true,
            Some(Auth::Bearer(token)) => header(&headers, "authorization") == Some(format!("Bearer {token}")),
            Some(Auth::ApiKey(key)) => header(&headers, "api-key").as_ref() == Some(key),
        };
        if !authorized {
            let body = json!({ "error": { "message": "invalid credentials", "type": "invalid_request_error" } });
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
        let azure = uri.path().starts_with("/openai/");
        let version = uri.query().and_then(|q| q.split('&').find_map(|p| p.strip_prefix("api-version=")));
        let body: Value = script.received.last().map(|r| r.body.clone()).unwrap_or(Value::Null);
        if azure
            && version.is_some_and(|v| AZURE_VERSIONS_WITHOUT_STREAM_OPTIONS.contains(&v))
            && !body["stream_options"].is_null()
        {
            let body = json!({ "error": { "message": "Unrecognized request argument supplied: stream_options", "type": "invalid_request_error", "param": null, "code": null } });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
        if let Err(message) = check_response_format(&body["response_format"], azure.then_some(version).flatten()) {
            let body = json!({ "error": { "message": message, "type": "invalid_request_error", "param": "response_format", "code": null } });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
        let default = Reply::Stream(script.default_text.clone());
        let reply = script.next.pop_front().unwrap_or(default);
        let shape = Shape { azure, usage: body["stream_options"]["include_usage"] == true };
        (reply, shape)
    };
    answer(reply.0, reply.1).await
}

/// `response_format` as OpenAI's reference and structured-outputs guide
/// describe it: `text`, `json_object`, or `json_schema` with a name of
/// `[a-zA-Z0-9_-]{1,64}` and a schema; with `strict`, every object closed
/// (`additionalProperties: false`) and every property required. Azure took
/// `json_schema` from api-version 2024-08-01-preview on.
fn check_response_format(format: &Value, azure_version: Option<&str>) -> Result<(), String> {
    match format["type"].as_str() {
        _ if format.is_null() => Ok(()),
        Some("text" | "json_object") => Ok(()),
        Some("json_schema") => {
            if azure_version.is_some_and(|v| v.trim_end_matches("-preview") < "2024-08-01") {
                return Err(
                    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
                        .into(),
                );
            }
            let spec = &format["json_schema"];
            let name = spec["name"].as_str().unwrap_or_default();
            if !(1..=64).contains(&name.len()) || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
                return Err("Invalid 'response_format.json_schema.name': must match ^[a-zA-Z0-9_-]{1,64}$.".into());
            }
            if !spec["schema"].is_object() {
                return Err("Missing required parameter: 'response_format.json_schema.schema'.".into());
            }
            if spec["strict"] == true {
                strict_schema(&spec["schema"], "")?;
            }
            Ok(())
        }
        _ => Err(format!("Invalid value for 'response_format.type': {}.", format["type"])),
    }
}

/// Strict mode's rules, checked through nested objects.
fn strict_schema(schema: &Value, at: &str) -> Result<(), String> {
    if schema["type"] != "object" {
        return Ok(());
    }
    if schema["additionalProperties"] != false {
        return Err(format!(
            "Invalid schema for response_format: In context=({at}), 'additionalProperties' is required to be supplied and to be false."
        ));
    }
    let properties = schema["properties"].as_object().cloned().unwrap_or_default();
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for (name, property) in &properties {
        if !required.contains(&name.as_str()) {
            return Err(format!(
                "Invalid schema for response_format: In context=({at}), 'required' is required to be supplied and to be an array including every key in properties. Missing '{name}'."
            ));
        }
        strict_schema(property, &format!("{at}/{name}"))?;
    }
    Ok(())
}

/// How a stream is written: Azure's extra chunks, and the usage chunk only
/// when `stream_options.include_usage` asked for it.
#[derive(Clone, Copy)]
struct Shape {
    azure: bool,
    usage: bool,
}

fn first_half(text: &str) -> &str {
    let mut end = text.len() / 2;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn answer(reply: Reply, shape: Shape) -> Response {
    let mut reply = reply;
    while let Reply::Slow(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Slow(..) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Reply::Stream(text) => event_stream(sse_body(&text, Some("stop"), shape)),
        Reply::Filtered(text) => event_stream(sse_body(first_half(&text), Some("content_filter"), shape)),
        Reply::BrokenStream(text) => event_stream(sse_body(first_half(&text), None, shape)),
        Reply::TruncatedStream(text) => event_stream(first_half(&sse_body(&text, Some("stop"), shape)).to_owned()),
        Reply::Status { status, retry_after, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, body).into_response();
            if let Some(after) = retry_after
                && let Ok(value) = after.parse()
            {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
    }
}

fn event_stream(body: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `text` as chat-completion chunks of a few characters, then the chunk
/// with `finish_reason` (none: the stream just ends), the usage chunk when
/// asked for, and `[DONE]`.
fn sse_body(text: &str, finish_reason: Option<&str>, shape: Shape) -> String {
    let safe = json!({ "hate": { "filtered": false, "severity": "safe" }, "self_harm": { "filtered": false, "severity": "safe" },
        "sexual": { "filtered": false, "severity": "safe" }, "violence": { "filtered": false, "severity": "safe" } });
    let chunk = |delta: Value, finish_reason: Value| {
        let mut choice = json!({ "index": 0, "delta": delta, "finish_reason": finish_reason });
        if shape.azure {
            let filtered = finish_reason == "content_filter";
            choice["content_filter_results"] =
                if filtered { json!({ "violence": { "filtered": true, "severity": "high" } }) } else { safe.clone() };
        }
        json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [choice] })
    };
    let mut events = Vec::new();
    if shape.azure {
        // Azure's first chunk: the prompt's filter results, no choices, empty fields.
        events.push(json!({ "choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{ "prompt_index": 0, "content_filter_results": safe }] }));
    }
    events.push(chunk(json!({ "role": "assistant", "content": "" }), Value::Null));
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(8) {
        events.push(chunk(json!({ "content": piece.iter().collect::<String>() }), Value::Null));
    }
    let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    let Some(reason) = finish_reason else { return out };
    out.push_str(&format!("data: {}\n\n", chunk(json!({}), json!(reason))));
    if shape.usage {
        let (prompt, completion) = usage_of(text);
        let usage = json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
            "choices": [], "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion }
        });
        out.push_str(&format!("data: {usage}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}
