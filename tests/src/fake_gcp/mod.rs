//! Google Cloud as Vertex AI's callers meet it, over real HTTP on one
//! port, written from Google's documentation, not from our client:
//!
//! - the Compute Engine **metadata server** ("About VM metadata", "Query VM
//!   metadata", "Troubleshoot the metadata server"):
//!   `GET /computeMetadata/v1/instance/service-accounts/default/token`
//!   (optionally `?scopes=a,b`) needs `Metadata-Flavor: Google` and no
//!   `X-Forwarded-For` (else 403) and answers a new access token each call;
//!   `project/project-id`, `universe/universe_domain`, the default account's
//!   `email` and the probes `/` and `/computeMetadata/v1/` answer too, every
//!   answer carrying `Metadata-Flavor: Google`. Clients find it through
//!   `GCE_METADATA_HOST` ([`FakeGcp::metadata_host`]);
//! - the **OAuth 2.0 token endpoint** of a service-account key ("Using
//!   OAuth 2.0 for Server to Server Applications"): `POST /token` with the
//!   JWT bearer grant (RFC 7523); the assertion's RS256 signature is checked
//!   against the key [`FakeGcp::write_service_account_key`] wrote, and its
//!   header and claims as Google documents them (`iss`, `aud`, `scope`,
//!   `iat`, `exp` at most an hour after `iat`, `sub` only with domain-wide
//!   delegation); refusals are 400s with `error`/`error_description`;
//! - **Vertex AI's OpenAI-compatible Chat Completions** ("Using OpenAI
//!   libraries with Vertex AI"):
//!   `POST /v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions`
//!   takes only bearer tokens this fake issued, unexpired and unrevoked (401
//!   `UNAUTHENTICATED` in Google's error format otherwise, 403 when the
//!   token lacks the `cloud-platform` scope), models named `google/<model>`,
//!   and `response_format` of type `text`, `json_object` or `json_schema`;
//!   it streams chat.completion.chunk events (usage in a last chunk when
//!   `stream_options.include_usage` asks) or answers a chat.completion.

mod key;
mod metadata;
mod oauth;
#[cfg(test)]
mod tests;
mod vertex;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use serde_json::Value;

pub use key::PROJECT_ID;

/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// What the chat endpoint answers to one request that passed its checks.
#[derive(Debug, Clone)]
pub enum VertexReply {
    /// `text` in chunks of a few characters, `finish_reason: "stop"`, the
    /// usage chunk when asked for, `[DONE]` (or one chat.completion when the
    /// request did not ask to stream).
    Stream(String),
    /// A status with a body and an optional `Retry-After`.
    Status {
        /// HTTP status.
        status: u16,
        /// The body as sent (a Google error is `{"error": {"code", "message", "status"}}`).
        body: String,
        /// `Retry-After`, if any.
        retry_after: Option<String>,
    },
}

/// How the fake answered a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed every check and got a reply (a token, or a stream).
    Accepted,
    /// It passed every check and got a [`VertexReply::Status`] it was told to give.
    Scripted {
        /// The status sent.
        status: u16,
    },
    /// A check failed.
    Refused {
        /// The status sent.
        status: u16,
        /// Which check, in words.
        reason: String,
    },
}

impl Outcome {
    fn refused(status: u16, reason: impl Into<String>) -> Outcome {
        Outcome::Refused { status, reason: reason.into() }
    }
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The metadata server.
    Metadata,
    /// The token endpoint, for a service-account JWT.
    ServiceAccount,
}

/// An access token the fake issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token.
    pub token: String,
    /// Who issued it.
    pub via: Via,
    /// When.
    pub issued_at: Instant,
    /// How long it lives.
    pub lifetime: Duration,
    /// The scopes it carries.
    pub scopes: Vec<String>,
}

/// A call to the metadata server's token path or the token endpoint.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// When it arrived.
    pub at: Instant,
    /// Which of the two.
    pub via: Via,
    /// Path and query.
    pub path: String,
    /// The JWT assertion's claims, when one could be decoded.
    pub claims: Option<Value>,
    /// The token issued, if one was.
    pub token: Option<String>,
    /// How it was answered.
    pub outcome: Outcome,
}

/// A chat request the fake received.
#[derive(Debug, Clone)]
pub struct VertexRequest {
    /// When it arrived.
    pub at: Instant,
    /// The path.
    pub path: String,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
    /// How it was answered.
    pub outcome: Outcome,
}

/// The usage the fake reports for a reply of `text`: (prompt, completion) tokens.
pub fn usage_of(text: &str) -> (u32, u32) {
    (31, (text.chars().count() / 4 + 1) as u32)
}

struct State {
    account: key::ServiceAccount,
    token_uri: String,
    lifetime: Duration,
    /// Every token issued, by value; revoked ones are flagged.
    tokens: HashMap<String, (IssuedToken, bool)>,
    issued: Vec<IssuedToken>,
    token_requests: Vec<TokenRequest>,
    next: VecDeque<VertexReply>,
    default_text: String,
    received: Vec<VertexRequest>,
}

impl State {
    /// Issues a new token of the configured lifetime.
    fn issue(&mut self, via: Via, scopes: Vec<String>) -> IssuedToken {
        let kind = match via {
            Via::Metadata => "mds",
            Via::ServiceAccount => "sa",
        };
        let token = IssuedToken {
            token: format!("ya29.fake-{kind}-{}", random_hex()),
            via,
            issued_at: Instant::now(),
            lifetime: self.lifetime,
            scopes,
        };
        self.tokens.insert(token.token.clone(), (token.clone(), false));
        self.issued.push(token.clone());
        token
    }
}

fn random_hex() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// `expires_in` for a lifetime: whole seconds, rounded down, at least 1.
fn expires_in(lifetime: Duration) -> u64 {
    lifetime.as_secs().max(1)
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeGcp {
    /// `http://127.0.0.1:{port}`.
    pub origin: String,
    state: Shared,
}

impl FakeGcp {
    /// Starts on a free port with a new service account; chat requests that
    /// pass the checks get a stream of `default_text` unless told otherwise.
    pub async fn start(default_text: &str) -> anyhow::Result<FakeGcp> {
        let account = tokio::task::spawn_blocking(key::ServiceAccount::generate).await??;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let origin = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State {
            account,
            token_uri: format!("{origin}/token"),
            lifetime: Duration::from_secs(3600),
            tokens: HashMap::new(),
            issued: Vec::new(),
            token_requests: Vec::new(),
            next: VecDeque::new(),
            default_text: default_text.to_owned(),
            received: Vec::new(),
        }));
        // Chunks go out as they are written: no Nagle delay between events.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = metadata::router().merge(oauth::router()).merge(vertex::router()).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeGcp { origin, state })
    }

    /// `127.0.0.1:{port}`, the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.origin.trim_start_matches("http://").to_owned()
    }

    /// `{origin}/v1/projects/{project}/locations/{location}/endpoints/openapi`,
    /// the base URL an OpenAI client adds `/chat/completions` to.
    pub fn vertex_endpoint(&self, project: &str, location: &str) -> String {
        format!("{}/v1/projects/{project}/locations/{location}/endpoints/openapi", self.origin)
    }

    /// The service account's `client_email`.
    pub fn client_email(&self) -> String {
        self.lock().account.client_email.clone()
    }

    /// Tokens issued from now on live `lifetime` (default 3600 s).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().lifetime = lifetime;
    }

    /// Writes the service account's JSON key file to `path`.
    pub fn write_service_account_key(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let file = {
            let state = self.lock();
            state.account.key_file(&state.token_uri)
        };
        std::fs::write(path, serde_json::to_vec_pretty(&file)?)?;
        Ok(())
    }

    /// A JWT of `header` and `claims` signed with the service account's key,
    /// for tests that build their own assertions.
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> anyhow::Result<String> {
        self.lock().account.sign_jwt(header, claims)
    }

    /// Every token issued so far is refused from now on (401).
    pub fn revoke_tokens(&self) {
        for (_, revoked) in self.lock().tokens.values_mut() {
            *revoked = true;
        }
    }

    /// Answers the next chat request that passes the checks with `reply`
    /// (after those queued before it); refused requests take none.
    pub fn then(&self, reply: VertexReply) {
        self.lock().next.push_back(reply);
    }

    /// Every chat request received so far.
    pub fn received(&self) -> Vec<VertexRequest> {
        self.lock().received.clone()
    }

    /// Every token issued so far, in order.
    pub fn tokens_issued(&self) -> Vec<IssuedToken> {
        self.lock().issued.clone()
    }

    /// Every call to the metadata token path or the token endpoint, refused ones too.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.lock().token_requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}
