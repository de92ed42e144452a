//! AWS as Bedrock's callers meet it, over real HTTP, written from AWS's
//! documentation (the Converse API reference, the event-stream encoding,
//! Signature Version 4, STS `AssumeRoleWithWebIdentity`), not from our
//! client: `POST /model/{modelId}/converse-stream` streams replies as
//! event-stream frames with valid CRCs (or exception events, or a stream
//! cut short), after checking the SigV4 signature against the keys it knows
//! (or the Bedrock API key as a bearer) and Converse's validation rules
//! (tool configurations included: a forced tool's answer streams as a
//! `toolUse` block);
//! `POST /` is STS, issuing credentials that expire when it says, and
//! `GET /container-credentials` the container credentials endpoint of ECS
//! and EKS Pod Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).

pub mod event_stream;
mod routes;
mod rules;
pub mod sigv4;
pub mod sts;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::serve::ListenerExt;
use serde_json::Value;

/// What the fake answers to one ConverseStream request.
#[derive(Debug, Clone)]
pub enum Converse {
    /// `text` in deltas of a few characters, `messageStop` (`end_turn`),
    /// then `metadata` with [`usage_of`]`(text)`.
    Stream(String),
    /// The first half of `text`, then the exception event `kind`
    /// (`throttlingException`, ...) inside the 200 stream.
    Exception {
        /// Text before the exception (its first half is sent).
        text: String,
        /// `:exception-type`.
        kind: String,
    },
    /// The first half of `text`, then the body ends: no `messageStop`.
    CutBeforeStop(String),
    /// The first half of `text`, then half of the next frame.
    CutMidFrame(String),
    /// The first half of `text`, then a frame whose message CRC is wrong.
    BadCrc(String),
    /// `text`, then `messageStop` with `reason` (`content_filtered`, ...).
    Stopped {
        /// The text.
        text: String,
        /// `stopReason`.
        reason: String,
    },
    /// An HTTP error before any stream: `x-amzn-ErrorType` `kind`, `{"message"}`.
    Error {
        /// Status.
        status: u16,
        /// `ThrottlingException`, ...
        kind: String,
        /// Its message.
        message: String,
    },
}

/// The usage the fake reports in `metadata` for `text`: (input, output) tokens.
pub fn usage_of(text: &str) -> (u32, u32) {
    (57, (text.chars().count() / 3 + 1) as u32)
}

/// A ConverseStream request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The model id from the path, decoded.
    pub model: String,
    /// The path as it arrived.
    pub path: String,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `X-Amz-Security-Token`.
    pub security_token: Option<String>,
    /// The access key of a verified SigV4 signature.
    pub signed_with: Option<String>,
    /// Why the request was refused, if it was: (status, error type).
    pub refused: Option<(u16, String)>,
    /// The JSON body.
    pub body: Value,
}

/// Credentials the fake accepts.
#[derive(Debug, Clone)]
struct Key {
    secret: String,
    session_token: Option<String>,
    expires: Option<SystemTime>,
}

#[derive(Default)]
struct State {
    region: String,
    keys: HashMap<String, Key>,
    bearer: Option<String>,
    role: Option<sts::Role>,
    container: Option<(String, Duration)>,
    issued: Vec<(Instant, String)>,
    next: VecDeque<Converse>,
    default_text: String,
    received: Vec<Received>,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeAws {
    /// `http://127.0.0.1:{port}`: Bedrock's runtime endpoint and STS's.
    pub origin: String,
    state: Arc<Mutex<State>>,
}

impl FakeAws {
    /// Starts on a free port for `region`; answers every authenticated
    /// request with a stream of `default_text` unless told otherwise. It
    /// accepts no credentials until told to.
    pub async fn start(region: &str, default_text: &str) -> anyhow::Result<FakeAws> {
        let state = Arc::new(Mutex::new(State {
            region: region.to_owned(),
            default_text: default_text.to_owned(),
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        // Frames go out as they are written, as from AWS: no Nagle delay
        // between a stream's small writes.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = routes::router(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeAws { origin: format!("http://{addr}"), state })
    }

    /// Accepts SigV4 signatures made with these long-term keys.
    pub fn accept_keys(&self, access_key_id: &str, secret: &str) {
        let key = Key { secret: secret.to_owned(), session_token: None, expires: None };
        self.lock().keys.insert(access_key_id.to_owned(), key);
    }

    /// Accepts `Authorization: Bearer {key}` (a Bedrock API key).
    pub fn accept_bearer(&self, key: &str) {
        self.lock().bearer = Some(key.to_owned());
    }

    /// STS lets `token` assume `role_arn`, with credentials living `lifetime`.
    pub fn allow_web_identity(&self, role_arn: &str, token: &str, lifetime: Duration) {
        self.lock().role = Some(sts::Role { arn: role_arn.to_owned(), token: token.to_owned(), lifetime });
    }

    /// The container credentials endpoint answers `Authorization: {token}`
    /// with credentials living `lifetime`.
    pub fn allow_container_credentials(&self, token: &str, lifetime: Duration) {
        self.lock().container = Some((token.to_owned(), lifetime));
    }

    /// Answers the next ConverseStream request with `reply` (after those queued before it).
    pub fn then(&self, reply: Converse) {
        self.lock().next.push_back(reply);
    }

    /// Every ConverseStream request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The access keys STS and the container endpoint issued, with when.
    pub fn issued(&self) -> Vec<(Instant, String)> {
        self.lock().issued.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
