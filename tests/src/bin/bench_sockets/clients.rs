//! The clients: sockets opened through the API's handshake, each read by a
//! task of its own that times every streamed event it receives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

/// Handshakes in flight at once.
const OPENING_AT_ONCE: usize = 64;

/// When each streamed event was published, and how long each took to reach
/// a socket.
#[derive(Default)]
pub struct Deliveries {
    published: Mutex<HashMap<(Uuid, i64), Instant>>,
    latencies: Mutex<Vec<Duration>>,
    /// Sockets that ended before the bench closed them.
    pub ended: AtomicUsize,
}

/// The fields of an event the clients look at.
#[derive(Deserialize)]
struct Stamp {
    seq: i64,
    session_id: Uuid,
}

impl Deliveries {
    /// Notes that the event `seq` of `session` is being published now.
    pub fn publishing(&self, session: Uuid, seq: i64) {
        self.published.lock().unwrap_or_else(PoisonError::into_inner).insert((session, seq), Instant::now());
    }

    fn received(&self, text: &str) {
        let Ok(stamp) = serde_json::from_str::<Stamp>(text) else { return };
        let now = Instant::now();
        let sent =
            self.published.lock().unwrap_or_else(PoisonError::into_inner).get(&(stamp.session_id, stamp.seq)).copied();
        if let Some(sent) = sent {
            self.latencies.lock().unwrap_or_else(PoisonError::into_inner).push(now - sent);
        }
    }

    /// Events published so far.
    pub fn published(&self) -> usize {
        self.published.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Every delivery's latency so far, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut all = self.latencies.lock().unwrap_or_else(PoisonError::into_inner).clone();
        all.sort_unstable();
        all
    }
}

/// Opens a socket for each `(port, token, session)`, each then read by its
/// own task until the set is dropped.
pub async fn open(targets: Vec<(u16, String, Uuid)>, deliveries: &Arc<Deliveries>) -> anyhow::Result<JoinSet<()>> {
    let mut readers = JoinSet::new();
    let mut pending = FuturesUnordered::new();
    let mut queue = targets.into_iter();
    loop {
        while pending.len() < OPENING_AT_ONCE {
            let Some((port, token, session)) = queue.next() else { break };
            pending.push(connect(port, token, session));
        }
        let Some(opened) = pending.next().await else { break };
        let mut ws = opened?;
        let deliveries = Arc::clone(deliveries);
        readers.spawn(async move {
            // Reading also answers the API's pings.
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    deliveries.received(text.as_str());
                }
            }
            deliveries.ended.fetch_add(1, Ordering::Relaxed);
        });
    }
    Ok(readers)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens one socket as the candidate with `token`, with small client buffers
/// (the load generator runs beside the API).
async fn connect(port: u16, token: String, session: Uuid) -> anyhow::Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/api/v1/ws/sessions/{session}").into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let config = WebSocketConfig::default().read_buffer_size(4_096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    Ok(ws)
}
