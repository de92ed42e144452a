//! An OpenAI-compatible chat endpoint over real HTTP, for exercising the
//! production provider code: it streams replies as server-sent events and can
//! be told to answer the next requests with a status (429 with `Retry-After`,
//! 5xx, 4xx with any body) or a stream that breaks off.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
        let default = Reply::Stream(script.default_text.clone());
        script.next.pop_front().unwrap_or(default)
    };
    match reply {
        Reply::Stream(text) => sse(&text, true),
        Reply::BrokenStream(text) => sse(&text[..text.len() / 2], false),
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
        let usage = json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
            "choices": [], "usage": { "prompt_tokens": 42, "completion_tokens": chars.len() / 4, "total_tokens": 42 + chars.len() / 4 }
        });
        out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    }
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(out))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
