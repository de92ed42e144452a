//! The API's clients: HTTP with an optional bearer token, and the
//! candidate's WebSocket.

use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// An HTTP client of the API, with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    /// `http://host:port/api/v1`.
    pub base: String,
    http: reqwest::Client,
    /// The access token sent, if any.
    pub token: Option<String>,
}

/// Status and JSON body of a response.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Every header.
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    async fn read(res: reqwest::Response) -> anyhow::Result<Reply> {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = res.text().await?;
        Ok(Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), retry_after, headers })
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

impl Client {
    /// A client of the API at `base` (`http://host:port/api/v1`).
    pub fn new(base: &str) -> Client {
        Client { base: base.to_owned(), http: reqwest::Client::new(), token: None }
    }

    /// The same client authenticated with `token`.
    pub fn with_token(&self, token: &str) -> Client {
        Client { token: Some(token.to_owned()), ..self.clone() }
    }

    /// Sends a request.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Reply::read(req.send().await?).await
    }

    /// Sends a raw body with a content type.
    pub async fn send_raw(&self, method: &str, path: &str, body: Vec<u8>, content_type: &str) -> anyhow::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req =
            self.http.request(method, format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        Reply::read(req.send().await?).await
    }

    /// Waits up to `limit` for `/health/live` to answer 200 (an API process starting).
    pub async fn until_live(&self, limit: std::time::Duration) -> anyhow::Result<()> {
        crate::eventually(limit, || async {
            Ok(self.get("/health/live").await.ok().filter(|r| r.status == 200).map(|_| ()))
        })
        .await
        .map_err(|e| anyhow::anyhow!("the api at {} did not come up: {e}", self.base))
    }

    /// GET.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send("GET", path, None, &[]).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Reply> {
        self.send("POST", path, Some(body), &[]).await
    }

    /// Logs in; returns the token pair.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Value> {
        let r = self.post("/auth/login", json!({ "email": email, "password": password })).await?;
        anyhow::ensure!(r.status == 200, "login {email}: {r:?}");
        Ok(r.body)
    }

    /// Registers (as admin for non-candidates) and logs in; returns an authenticated client.
    pub async fn user(&self, email: &str, role: &str) -> anyhow::Result<Client> {
        let password = crate::USER_PASSWORD;
        let registrar = if role == "candidate" {
            self.clone()
        } else {
            let admin = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
            self.with_token(admin["access_token"].as_str().context("admin token")?)
        };
        let r = registrar.post("/auth/register", json!({ "email": email, "password": password, "role": role })).await?;
        anyhow::ensure!(r.status == 201, "register {email}: {r:?}");
        let tokens = self.login(email, password).await?;
        Ok(self.with_token(tokens["access_token"].as_str().context("access token")?))
    }

    /// Creates an interview (as a recruiter); returns its id.
    pub async fn interview(&self, language: &str, max_turns: i32) -> anyhow::Result<String> {
        let r = self
            .post(
                "/interviews",
                json!({
                    "title": "Backend interview", "position": "Backend Engineer", "language": language,
                    "topics": ["Rust", "PostgreSQL", "Redis queues"], "max_turns": max_turns, "duration_minutes": 30
                }),
            )
            .await?;
        anyhow::ensure!(r.status == 201, "create interview: {r:?}");
        Ok(r.body["id"].as_str().context("interview id")?.to_owned())
    }

    /// Starts a session (as a candidate); returns its id.
    pub async fn start_session(&self, interview: &str) -> anyhow::Result<String> {
        let r = self.post(&format!("/interviews/{interview}/sessions"), json!({})).await?;
        anyhow::ensure!(r.status == 201, "start session: {r:?}");
        Ok(r.body["id"].as_str().context("session id")?.to_owned())
    }

    /// Opens the session's WebSocket (with `after_seq` when given).
    pub async fn ws(&self, session: &str, after_seq: Option<i64>) -> anyhow::Result<Ws> {
        let query = after_seq.map(|s| format!("?after_seq={s}")).unwrap_or_default();
        self.ws_with(session, &query, &[]).await
    }

    /// Opens the session's WebSocket with a query string (`?…` or empty) and
    /// extra handshake headers (an `Origin`, say).
    pub async fn ws_with(&self, session: &str, query: &str, headers: &[(&'static str, &str)]) -> anyhow::Result<Ws> {
        let base = self.base.replacen("http://", "ws://", 1);
        let mut request = format!("{base}/ws/sessions/{session}{query}").into_client_request()?;
        if let Some(token) = &self.token {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
        }
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse()?);
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws { stream, seen: Vec::new() })
    }
}

/// A WebSocket client that records every event it receives.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every event received, in order.
    pub seen: Vec<Value>,
}

impl Ws {
    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        self.stream.send(Message::Text(frame.to_string().into())).await?;
        Ok(())
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.stream.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// The next event, or `None` on close; errors after `limit`.
    pub async fn next(&mut self, limit: Duration) -> anyhow::Result<Option<Value>> {
        loop {
            let message = tokio::time::timeout(limit, self.stream.next()).await.context("no event in time")?;
            match message {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(text.as_str())?;
                    self.seen.push(event.clone());
                    return Ok(Some(event));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Reads events until one matches; returns it.
    pub async fn until(&mut self, limit: Duration, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Some(event) if matches(&event) => return Ok(event),
                Some(_) => {}
                None => anyhow::bail!("socket closed while waiting; seen: {:?}", self.seen),
            }
        }
    }

    /// Sends answer `number` ("Answer {number}.") and waits up to `limit`
    /// for the interviewer's reply to it.
    pub async fn answer(&mut self, number: i64, limit: Duration) -> anyhow::Result<Value> {
        let frame =
            json!({ "type": "answer", "text": format!("Answer {number}."), "client_msg_id": format!("a{number}") });
        self.send(frame).await?;
        self.until(limit, |e| is(e, "turn.completed") && e["number"] == number).await
    }

    /// The deltas' text before the first `turn.reset` and after it.
    pub fn text_around_reset(&self) -> anyhow::Result<(String, String)> {
        let reset = self.seen.iter().position(|e| is(e, "turn.reset")).context("no turn.reset")?;
        let text = |events: &[Value]| -> String {
            events.iter().filter(|e| is(e, "turn.delta")).filter_map(|e| e["text"].as_str()).collect()
        };
        Ok((text(&self.seen[..reset]), text(&self.seen[reset..])))
    }

    /// The close frame's code, waiting up to `limit`.
    pub async fn close_code(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        Ok(self.close_frame(limit).await?.map(|(code, _)| code))
    }

    /// The close frame's code and reason, waiting up to `limit` (events
    /// before it are skipped).
    pub async fn close_frame(&mut self, limit: Duration) -> anyhow::Result<Option<(u16, String)>> {
        loop {
            match tokio::time::timeout(limit, self.stream.next()).await.context("socket did not close")? {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| (f.code.into(), f.reason.to_string()))),
                None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(_)) => return Ok(None),
            }
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// Whether `event` has type `kind`.
pub fn is(event: &Value, kind: &str) -> bool {
    event["type"] == kind
}
