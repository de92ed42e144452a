//! `bench`: the figures of `docs/benchmarks.md`, measured on this machine
//! against release builds of `api` and `worker` run as processes, on real
//! PostgreSQL and Redis, with the scripted provider at zero delay.
//!
//! 1. Worker turn jobs/s: N sessions are started with no worker running,
//!    then one worker process drains their N opening turns.
//! 2. Answer submission: 50 connections each `POST /sessions/{id}/turns` to
//!    sessions of their own (one answer per session: a session holds one
//!    turn in flight), authenticated, with an `Idempotency-Key`, while no
//!    worker runs (as the seed's figure: the API and what it writes).
//! 3. Answer → `turn.completed`: 100 WebSocket clients, each answering and
//!    waiting for the interviewer's reply, round after round.
//! 4. Idle-queue pickup: answers submitted one at a time after 100 ms of
//!    idleness; pickup = from the `202` (the turn committed and its job
//!    pushed) to the worker's claim (`started_at`).
//! 5. Peak RSS (VmHWM) of the api process and of the last worker process;
//!    the api's RSS before the first registration and after the benchmark.
//!
//! The load generator shares the machine's cores with the system under test.
//! `scripts/bench` builds everything in release mode and runs this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use tests::load::{CONNECTIONS, percentile, submit_answers};
use tests::{Client, TestEnv, is};

const LIVE_SESSIONS: usize = 100;
const LIVE_ROUNDS: usize = 20;
const PICKUPS: usize = 100;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sessions: usize = std::env::var("BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut env = TestEnv::new().await?;
    for (k, v) in [
        ("SCRIPTED_DELTA_DELAY_MS", "0"),
        ("DATABASE_POOL_SIZE", "20"),
        ("DATABASE_MAX_OVERFLOW", "10"),
        ("TURN_LEASE_SECONDS", "30"),
        ("RECONCILE_INTERVAL_SECONDS", "5"),
        ("RECONCILE_QUEUED_AFTER_SECONDS", "120"),
        ("LOG_LEVEL", "WARNING"),
    ] {
        env.set(k, v);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut api_process = env.spawn_process("api", &[("API_PORT", &port)])?;
    let anon = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    anon.until_live(Duration::from_secs(30)).await?;
    // Before any registration or login: the argon2 bursts are measured against it.
    let rss_before_logins = rss_mb(&api_process, "VmRSS:")?;
    let recruiter = anon.user("recruiter@example.com", "recruiter").await?;
    let candidate = anon.user("candidate@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 100).await?;
    let db = env.db().await?;

    // 1. Worker throughput on N queued opening turns.
    eprintln!("starting {sessions} sessions (no worker running yet)");
    let ids = start_sessions(&candidate, &interview, sessions).await?;
    let mut worker_process = env.spawn_process("worker", &[])?;
    let started = Instant::now();
    tests::eventually(Duration::from_secs(600), || {
        let db = db.clone();
        async move {
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM turns WHERE status = 'completed'").fetch_one(&db).await?;
            Ok((done as usize >= sessions).then_some(()))
        }
    })
    .await?;
    let drained = started.elapsed();
    let jobs_per_sec = sessions as f64 / drained.as_secs_f64();
    eprintln!("worker: {sessions} turns in {drained:.2?}");
    eprintln!("  api RSS now {:.0} MB", rss_mb(&api_process, "VmRSS:")?);

    // 2. Answer submission, one answer per session, 50 connections. The
    // worker is stopped, so this measures the API (and PostgreSQL and Redis
    // behind it), not the turns it enqueues; a new worker drains them after.
    tests::terminate(&worker_process)?;
    worker_process.wait().await?;
    eprintln!("submitting {sessions} answers over {CONNECTIONS} connections");
    let (latencies, elapsed, errors) = submit_answers(&candidate, &ids).await?;
    let submit_rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let mut worker_process = env.spawn_process("worker", &[])?;
    tests::eventually(Duration::from_secs(600), || {
        let db = db.clone();
        async move {
            let waiting: i64 =
                sqlx::query_scalar("SELECT count(*) FROM turns WHERE status <> 'completed'").fetch_one(&db).await?;
            Ok((waiting == 0).then_some(()))
        }
    })
    .await?;
    eprintln!("submission: {submit_rate:.0} req/s, p99 {:.2?}", percentile(&latencies, 99.0));
    eprintln!("  api RSS now {:.0} MB", rss_mb(&api_process, "VmRSS:")?);

    // 3. Answer → turn.completed, 100 concurrent sessions over WebSockets.
    eprintln!("{LIVE_SESSIONS} live sessions × {LIVE_ROUNDS} rounds over WebSockets");
    let round_trips = live_rounds(&anon, &interview).await?;
    eprintln!(
        "answer → turn.completed: p50 {:.2?}, p99 {:.2?}",
        percentile(&round_trips, 50.0),
        percentile(&round_trips, 99.0)
    );

    // 4. Idle pickup.
    eprintln!("{PICKUPS} answers one at a time on an idle queue");
    eprintln!("  api RSS now {:.0} MB", rss_mb(&api_process, "VmRSS:")?);
    let pickup = idle_pickups(&candidate, &interview, &db).await?;

    // 5. Memory.
    let api_rss = peak_rss_mb(&api_process)?;
    let rss_after = rss_mb(&api_process, "VmRSS:")?;
    let worker_rss = peak_rss_mb(&worker_process)?;
    let _ = api_process.start_kill();
    let _ = worker_process.start_kill();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| answer submission, {CONNECTIONS} connections | {submit_rate:.0} req/s; p50 {:.2} ms, p99 {:.2} ms ({} answers, {errors} errors) |",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        latencies.len()
    );
    println!(
        "| answer → turn.completed, {LIVE_SESSIONS} sessions | p50 {:.2} ms, p99 {:.2} ms ({} round trips) |",
        ms(percentile(&round_trips, 50.0)),
        ms(percentile(&round_trips, 99.0)),
        round_trips.len()
    );
    println!(
        "| idle-queue pickup | p50 {:.2} ms, p99 {:.2} ms ({} turns) |",
        ms(percentile(&pickup, 50.0)),
        ms(percentile(&pickup, 99.0)),
        pickup.len()
    );
    println!(
        "| worker turn jobs/s, 1 process | {jobs_per_sec:.0} jobs/s ({sessions} opening turns in {drained:.2?}) |"
    );
    println!("| peak RSS | api {api_rss:.1} MB, worker {worker_rss:.1} MB |");
    println!(
        "| api RSS, before the logins → after the benchmark | {rss_before_logins:.0} → {rss_after:.0} MB (ratio {:.2}, target ≤ 1.5) |",
        rss_after / rss_before_logins
    );
    Ok(())
}

/// Starts `n` sessions over 50 connections; returns their ids.
async fn start_sessions(candidate: &Client, interview: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = FuturesUnordered::new();
    for _ in 0..CONNECTIONS {
        let (candidate, interview, next) = (candidate.clone(), interview.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                ids.push(candidate.start_session(&interview).await?);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(part) = tasks.next().await {
        ids.extend(part??);
    }
    Ok(ids)
}

/// 100 candidates (a user's sockets are limited) each answer over their
/// session's WebSocket and wait for the reply, round after round; returns
/// every answer → `turn.completed` time.
async fn live_rounds(anon: &Client, interview: &str) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = FuturesUnordered::new();
    for i in 0..LIVE_SESSIONS {
        let (anon, interview) = (anon.clone(), interview.to_owned());
        tasks.push(tokio::spawn(async move {
            let candidate = anon.user(&format!("live-{i}@example.com"), "candidate").await?;
            let id = candidate.start_session(&interview).await?;
            let mut ws = candidate.ws(&id, None).await?;
            ws.until(WAIT, |e| is(e, "turn.completed")).await?;
            anyhow::Ok(ws)
        }));
    }
    let mut sockets = Vec::new();
    while let Some(ws) = tasks.next().await {
        sockets.push(ws??);
    }
    let mut tasks = FuturesUnordered::new();
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(LIVE_ROUNDS);
            for round in 1..=LIVE_ROUNDS {
                let t0 = Instant::now();
                ws.send(json!({ "type": "answer", "text": format!("answer {round}"), "client_msg_id": format!("live-{round}") }))
                    .await?;
                ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == round).await?;
                times.push(t0.elapsed());
                ws.seen.clear();
            }
            ws.close().await;
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    while let Some(part) = tasks.next().await {
        all.extend(part??);
    }
    Ok(all)
}

/// Answers one at a time after 100 ms of idleness, 50 per session, one
/// socket open at a time (a user's sockets are limited).
async fn idle_pickups(candidate: &Client, interview: &str, db: &sqlx::PgPool) -> anyhow::Result<Vec<Duration>> {
    const PER_SESSION: usize = 50;
    let (mut turn_ids, mut enqueued_ms) = (Vec::new(), Vec::new());
    for _ in 0..PICKUPS.div_ceil(PER_SESSION) {
        let id = candidate.start_session(interview).await?;
        let mut ws = candidate.ws(&id, None).await?;
        ws.until(WAIT, |e| is(e, "turn.completed")).await?;
        for round in 1..=PER_SESSION {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r =
                candidate.post(&format!("/sessions/{id}/turns"), json!({ "text": format!("idle {round}") })).await?;
            anyhow::ensure!(r.status == 202, "{r:?}");
            // Enqueued: the 202 comes after the commit and the push.
            enqueued_ms.push(chrono::Utc::now().timestamp_micros() as f64 / 1000.0);
            turn_ids.push(r.body["turn_id"].as_str().context("turn_id")?.to_owned());
            ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == round).await?;
            ws.seen.clear();
        }
        ws.close().await;
    }
    let mut waits = Vec::with_capacity(turn_ids.len());
    for (id, enqueued) in turn_ids.iter().zip(enqueued_ms) {
        let started: f64 =
            sqlx::query_scalar("SELECT extract(epoch FROM started_at)::float8 * 1000 FROM turns WHERE id::text = $1")
                .bind(id)
                .fetch_one(db)
                .await?;
        waits.push(Duration::from_secs_f64(((started - enqueued) / 1000.0).max(0.0)));
    }
    Ok(waits)
}

/// Peak resident memory of a child process, in MB (VmHWM).
fn peak_rss_mb(child: &tokio::process::Child) -> anyhow::Result<f64> {
    rss_mb(child, "VmHWM:")
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of a child process, in MB.
fn rss_mb(child: &tokio::process::Child, field: &str) -> anyhow::Result<f64> {
    Ok(tests::process_memory_kb(child, field)? as f64 / 1024.0)
}
