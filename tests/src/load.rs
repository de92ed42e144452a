//! The benches' answer load: 50 connections, each taking the next session
//! and answering it once (a session holds one turn in flight), the same
//! generator for our API and for a peer's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;

use crate::Client;

/// Connections the load generator keeps busy.
pub const CONNECTIONS: usize = 50;

/// One answer to each session, spread over 50 connections; returns the
/// latency of every `202`, the time the whole load took and the number of
/// other answers.
pub async fn submit_answers(candidate: &Client, ids: &[String]) -> anyhow::Result<(Vec<Duration>, Duration, usize)> {
    let ids = Arc::new(ids.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = FuturesUnordered::new();
    for _ in 0..CONNECTIONS {
        let (candidate, ids, next) = (candidate.clone(), ids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let key = format!("bench-{i}");
                let t0 = Instant::now();
                let r = candidate
                    .send(
                        "POST",
                        &format!("/sessions/{id}/turns"),
                        Some(json!({ "text": "I would shard the queue by session." })),
                        &[("Idempotency-Key", &key)],
                    )
                    .await?;
                if r.status == 202 {
                    latencies.push(t0.elapsed());
                } else {
                    errors += 1;
                    if errors <= 3 {
                        eprintln!("answer {i}: {} {}", r.status, r.body);
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(part) = tasks.next().await {
        let (l, e) = part??;
        latencies.extend(l);
        errors += e;
    }
    Ok((latencies, started.elapsed(), errors))
}

/// The `p`th percentile (nearest rank) of `samples`; zero when there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
