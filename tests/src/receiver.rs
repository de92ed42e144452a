//! A local HTTP receiver standing in for Slack's and Teams' incoming
//! webhooks: it records every JSON body posted to it, by path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use serde_json::Value;

/// Every post: its path and body.
type Posts = Arc<Mutex<Vec<(String, Value)>>>;

/// The running receiver; stops with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:{port}`.
    pub origin: String,
    posts: Posts,
}

impl Receiver {
    /// Starts on a free port.
    pub async fn start() -> anyhow::Result<Receiver> {
        let posts: Posts = Arc::default();
        let app = axum::Router::new().route("/{*path}", post(record)).with_state(posts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { origin: format!("http://{addr}"), posts })
    }

    /// The bodies posted to `path` so far.
    pub fn posted(&self, path: &str) -> Vec<Value> {
        let posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        posts.iter().filter(|(p, _)| p == path).map(|(_, v)| v.clone()).collect()
    }
}

async fn record(State(posts): State<Posts>, uri: Uri, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    posts.lock().unwrap_or_else(|p| p.into_inner()).push((uri.path().to_owned(), value));
    StatusCode::OK
}
