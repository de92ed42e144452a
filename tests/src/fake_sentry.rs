//! A Sentry ingestion endpoint: `POST /api/{project}/envelope/` with an
//! envelope (a JSON header line, then items: a JSON item header line and its
//! payload, `length` bytes or up to the newline), authenticated by the
//! `X-Sentry-Auth` header's `sentry_key`, as Sentry's envelope documentation
//! describes. It keeps the `event` items.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// The public key of the DSN it hands out.
const KEY: &str = "fe11c0ffee0123456789abcdef012345";

/// The running endpoint.
#[derive(Clone)]
pub struct FakeSentry {
    /// `http://KEY@127.0.0.1:{port}/42`: a `SENTRY_DSN`.
    pub dsn: String,
    events: Arc<Mutex<Vec<Value>>>,
    rejected: Arc<Mutex<Vec<String>>>,
}

impl FakeSentry {
    /// Starts on a free port.
    pub async fn start() -> anyhow::Result<FakeSentry> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let fake =
            FakeSentry { dsn: format!("http://{KEY}@{addr}/42"), events: Arc::default(), rejected: Arc::default() };
        let app = axum::Router::new().route("/api/{project}/envelope/", post(envelope)).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(fake)
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Envelopes refused, with why.
    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn envelope(
    State(fake): State<FakeSentry>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let auth = headers.get("x-sentry-auth").and_then(|v| v.to_str().ok()).unwrap_or("");
    let keyed = auth.starts_with("Sentry ") && auth.split([' ', ',']).any(|p| p.trim() == format!("sentry_key={KEY}"));
    let parsed = if project != "42" {
        Err(format!("project {project}"))
    } else if !keyed {
        Err(format!("X-Sentry-Auth {auth:?}"))
    } else {
        items(&body)
    };
    match parsed {
        Ok(items) => {
            let events = items.into_iter().filter(|(h, _)| h["type"] == "event").map(|(_, p)| p);
            if let Ok(mut all) = fake.events.lock() {
                all.extend(events);
            }
            StatusCode::OK
        }
        Err(why) => {
            if let Ok(mut rejected) = fake.rejected.lock() {
                rejected.push(why);
            }
            StatusCode::BAD_REQUEST
        }
    }
}

/// The items of an envelope: (item header, payload as JSON or a string).
fn items(body: &[u8]) -> Result<Vec<(Value, Value)>, String> {
    let (_, mut rest) = line(body);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (header, after) = line(rest);
        if header.is_empty() {
            rest = after;
            continue;
        }
        let header: Value = serde_json::from_slice(header).map_err(|e| format!("item header: {e}"))?;
        let (payload, after) = match header["length"].as_u64() {
            Some(n) => {
                let n = usize::try_from(n).map_err(|e| e.to_string())?;
                let payload = after.get(..n).ok_or("payload shorter than its length")?;
                let after = after.get(n..).unwrap_or_default();
                (payload, after.strip_prefix(b"\n").unwrap_or(after))
            }
            None => line(after),
        };
        let payload = serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
        out.push((header, payload));
        rest = after;
    }
    Ok(out)
}

fn line(buf: &[u8]) -> (&[u8], &[u8]) {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (buf, &[]),
    }
}
