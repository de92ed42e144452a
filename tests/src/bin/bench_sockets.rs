//! `bench_sockets`: what an open WebSocket costs the API (issue 15, part).
//! One API process (release, as `scripts/bench` builds it) on real
//! PostgreSQL and Redis; `BENCH_SOCKETS` sockets (10,000) opened to it
//! across sessions (100 sockets a session, 1,000 a candidate, the
//! `WS_MAX_CONNECTIONS_PER_USER` ceiling), held idle; the API's resident
//! memory before and after, and what one socket adds. The client side keeps
//! its own buffers small so the load generator fits beside it.
//! `scripts/bench` raises the open-file limit first.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tests::{Client, TestEnv};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const PER_SESSION: usize = 100;
const PER_CANDIDATE: usize = 1_000;
const OPENING_AT_ONCE: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sockets: usize = std::env::var("BENCH_SOCKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut env = TestEnv::new().await?;
    env.set("LOG_LEVEL", "WARNING").set("WS_MAX_CONNECTIONS_PER_USER", &PER_CANDIDATE.to_string());
    let port = tests::free_port()?.to_string();
    let api = env.spawn_process("api", &[("API_PORT", &port)])?;
    let anon = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    anon.until_live(Duration::from_secs(30)).await?;
    let interview = anon.user("recruiter@example.com", "recruiter").await?.interview("en", 100).await?;
    // (candidate token, session) for each socket.
    let mut targets = Vec::with_capacity(sockets);
    for c in 0..sockets.div_ceil(PER_CANDIDATE) {
        let candidate = anon.user(&format!("candidate{c}@example.com"), "candidate").await?;
        let token = candidate.token.clone().context("a candidate token")?;
        let here = PER_CANDIDATE.min(sockets - c * PER_CANDIDATE);
        for _ in 0..here.div_ceil(PER_SESSION) {
            let session = candidate.start_session(&interview).await?;
            let n = PER_SESSION.min(here - targets.iter().filter(|(t, _)| *t == token).count());
            targets.extend(std::iter::repeat_n((token.clone(), session), n));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kb(&api)?;
    eprintln!("api RSS before the sockets: {:.1} MB; opening {sockets}", before as f64 / 1024.0);
    let started = Instant::now();
    let mut open = Vec::with_capacity(sockets);
    let mut pending = FuturesUnordered::new();
    let mut queue = targets.into_iter();
    loop {
        while pending.len() < OPENING_AT_ONCE {
            let Some((token, session)) = queue.next() else { break };
            pending.push(connect(port.clone(), token, session));
        }
        match pending.next().await {
            Some(ws) => open.push(ws?),
            None => break,
        }
    }
    let opening = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(&api)?;
    let per_socket = (after.saturating_sub(before) * 1024) as f64 / open.len() as f64;
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| {} idle WebSockets on one api process ({} sessions) | RSS {:.1} → {:.1} MB; {:.1} KB a socket; opened in {:.1} s |",
        open.len(),
        open.len().div_ceil(PER_SESSION),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per_socket / 1024.0,
        opening.as_secs_f64()
    );
    drop(open);
    Ok(())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens one socket as the candidate with `token`, with small client buffers.
async fn connect(port: String, token: String, session: String) -> anyhow::Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/api/v1/ws/sessions/{session}").into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let config = WebSocketConfig::default().read_buffer_size(4_096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    Ok(ws)
}

/// The child's resident memory (VmRSS), in KB.
fn rss_kb(child: &tokio::process::Child) -> anyhow::Result<u64> {
    tests::process_memory_kb(child, "VmRSS:")
}
