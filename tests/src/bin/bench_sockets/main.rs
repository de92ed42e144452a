//! `bench_sockets`: WebSockets at scale on the API (issue 15, point 1).
//!
//! Release API processes (as `scripts/bench` builds them) on real PostgreSQL
//! and Redis hold `BENCH_SOCKETS` sockets (10,000), one per interview
//! session as a candidate's browser holds it, opened through the API's own
//! handshake (bearer token from the API's login; sessions written in bulk
//! to the database). Then, each second for `BENCH_STREAM_SECONDS` (30), a
//! turn (`turn.started`, 3 `turn.delta`, `turn.completed`) is streamed to
//! 1 % of the sessions through the worker's publish path, and every socket
//! times each event from the publish call to the frame read and parsed.
//!
//! Two runs: one API process with every socket; then two processes sharing
//! half as many sessions, each session with a socket on each process, so
//! each publish fans out through both relays (the same number of sockets
//! in all, so the load generator's open-file limit holds both).
//! `BENCH_API_PROCESSES=1` (or 2) runs one of them. Reported: each
//! process's memory before the sockets, with them idle, and at most while
//! streaming; what one socket adds; delivery latency p50/p99/max.
//! `scripts/bench` raises the open-file limit first. `BENCH_PAUSE_SECONDS`
//! waits before the sockets open, printing the API's pids (to attach
//! `heaptrack -p`).

mod clients;
mod fleet;
mod streamer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clients::Deliveries;
use fleet::Fleet;

/// The share of the sessions a turn is streamed to each second, in %.
const STREAMED_PERCENT: usize = 1;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sockets = env_number("BENCH_SOCKETS", 10_000)?;
    let seconds = env_number("BENCH_STREAM_SECONDS", 30)?;
    let runs = match std::env::var("BENCH_API_PROCESSES") {
        Ok(n) => vec![n.parse()?],
        Err(_) => vec![1, 2],
    };
    anyhow::ensure!(runs.iter().all(|n| (1..=2).contains(n)), "BENCH_API_PROCESSES: 1 or 2");
    println!(
        "| api processes | sockets (sessions) | RSS before → idle sockets → streaming, per process | per socket | delivery p50 / p99 / max | events/s per process |"
    );
    println!("|---|---|---|---|---|---|");
    for processes in runs {
        println!("{}", run(sockets, processes, seconds).await?);
    }
    Ok(())
}

/// One run: its table row.
async fn run(sockets: usize, processes: usize, seconds: usize) -> anyhow::Result<String> {
    let sessions = sockets / processes;
    anyhow::ensure!(sessions > 0, "BENCH_SOCKETS: at least one socket per api process");
    eprintln!("{processes} api process(es): starting {sessions} sessions");
    let fleet = Fleet::start(processes, sessions).await?;
    let targets: Vec<(u16, String, uuid::Uuid)> = fleet
        .sessions
        .iter()
        .flat_map(|(session, token)| fleet.apis.iter().map(|api| (api.port, token.clone(), *session)))
        .collect();
    let opened = targets.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Ok(pause) = std::env::var("BENCH_PAUSE_SECONDS") {
        // Time to attach a profiler (`heaptrack -p PID`) before the sockets.
        let pids: Vec<Option<u32>> = fleet.apis.iter().map(|api| api.child.id()).collect();
        eprintln!("api pids {pids:?}; opening the sockets in {pause} s");
        tokio::time::sleep(Duration::from_secs(pause.parse()?)).await;
    }
    let before = fleet.rss_kb()?;
    eprintln!("opening {opened} sockets");
    let deliveries = Arc::new(Deliveries::default());
    let started = Instant::now();
    let readers = clients::open(targets, &deliveries).await?;
    eprintln!("opened in {:.1?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = fleet.rss_kb()?;
    eprintln!("streaming for {seconds} s");
    let mut peak = idle.clone();
    streamer::stream(&fleet, &deliveries, STREAMED_PERCENT, seconds, || {
        for (peak, now) in peak.iter_mut().zip(fleet.rss_kb()?) {
            *peak = (*peak).max(now);
        }
        Ok(())
    })
    .await?;
    // The last events in flight.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let latencies = deliveries.latencies();
    let expected = deliveries.published() * processes;
    let ended = deliveries.ended.load(Ordering::Relaxed);
    drop(readers);
    fleet.stop().await;
    anyhow::ensure!(!latencies.is_empty(), "no event reached a socket");
    if latencies.len() != expected || ended > 0 {
        eprintln!("warning: {} of {expected} deliveries; {ended} sockets ended early", latencies.len());
    }
    let mb = |kb: u64| format!("{:.0}", kb as f64 / 1024.0);
    let memory: Vec<String> =
        (0..processes).map(|p| format!("{} → {} → {} MB", mb(before[p]), mb(idle[p]), mb(peak[p]))).collect();
    let per_socket: Vec<String> = (0..processes)
        .map(|p| format!("{:.1} KB", idle[p].saturating_sub(before[p]) as f64 / (opened / processes) as f64))
        .collect();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    let max = latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(format!(
        "| {processes} | {opened} ({sessions}) | {} | {} | {:.1} / {:.1} / {:.0} ms ({} of {expected} delivered) | {:.0} |",
        memory.join("; "),
        per_socket.join("; "),
        at(50),
        at(99),
        max,
        latencies.len(),
        latencies.len() as f64 / processes as f64 / seconds as f64,
    ))
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}: {e}")),
        Err(_) => Ok(default),
    }
}
