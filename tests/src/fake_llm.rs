//! An OpenAI-compatible chat endpoint over real HTTP, for exercising the
//! production provider code: it serves the plain, Azure, Bedrock and Vertex
//! URL shapes, checks the credentials it is told to expect, streams replies
//! as server-sent events, and can be told to answer the next requests with a
//! status (429 with `Retry-After`, 5xx, 4xx with any body), a stream that
//! ends without a finish_reason or is cut mid-event, or after a delay. It
//! counts requests per time window.

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
}

/// The credentials a route expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer {token}` (plain, Bedrock, Vertex).
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
            .route("/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions", post(chat))
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
        let default = Reply::Stream(script.default_text.clone());
        script.next.pop_front().unwrap_or(default)
    };
    answer(reply).await
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

async fn answer(reply: Reply) -> Response {
    let mut reply = reply;
    while let Reply::Slow(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Slow(..) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Reply::Stream(text) => sse(&text, true),
        Reply::BrokenStream(text) => sse(first_half(&text), false),
        Reply::TruncatedStream(text) => event_stream(first_half(&sse_body(&text, true)).to_owned()),
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

/// `text` as chat-completion chunks of a few characters; finished or not.
fn sse(text: &str, finish: bool) -> Response {
    event_stream(sse_body(text, finish))
}

fn event_stream(body: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn sse_body(text: &str, finish: bool) -> String {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }]
        })
    };
    let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }), Value::Null)];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(8) {
        events.push(chunk(json!({ "content": piece.iter().collect::<String>() }), Value::Null));
    }
    let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if finish {
        out.push_str(&format!("data: {}\n\n", chunk(json!({}), json!("stop"))));
        let (prompt, completion) = usage_of(text);
        let usage = json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
            "choices": [], "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion }
        });
        out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    }
    out
}
