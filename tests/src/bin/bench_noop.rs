//! `bench_noop`: jobs/s of our queue machinery alone, next to BullMQ's
//! (`scripts/peers/bullmq`, run by `scripts/bench` with the same N).
//!
//! N turn jobs are pushed the way the API pushes them
//! ([`shared::queue::Queues::push_turn`]: apalis-redis storage, our key
//! layout, a notification per push) while no worker runs. Then the worker's
//! own `run` starts, the turn pool built as in production (storage config,
//! heartbeat, wake strategy, concurrency, acks, restarts) with a handler
//! that does nothing, and drains them.
//!
//! jobs/s = N / (worker start → the N-th job acknowledged, i.e. in the
//! queue's `done` set), the definition the BullMQ script uses (worker
//! created → its N-th `completed` event). `BENCH_NOOP_JOBS` sets N (50,000),
//! `BENCH_NOOP_CONCURRENCY` the pool's concurrency (50, BullMQ's figure in
//! issue 15). Prints one line: `bench_noop queue=ours jobs=… jobs_per_sec=…`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use apalis::prelude::{Attempt, BoxDynError, Data};
use futures::StreamExt;
use shared::config::Component;
use shared::ids::{SessionId, TurnId};
use shared::jobs::{QueueName, TurnJob};
use tests::TestEnv;
use tokio_util::sync::CancellationToken;

/// Pushes in flight at once while filling the queue (not measured).
const PUSHES_IN_FLIGHT: usize = 64;
/// How often the `done` set is counted while draining.
const DONE_POLL: Duration = Duration::from_millis(5);
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// When the worker started; the handler's times are taken from it.
static STARTED: OnceLock<Instant> = OnceLock::new();
/// Microseconds from the start to the first and to the latest handler call.
static FIRST_PICKED_US: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_HANDLED_US: AtomicU64 = AtomicU64::new(0);

/// The turn handler's signature, doing nothing but note when it ran (to
/// tell the queue's start-up and its last acks apart from the draining).
async fn noop(_job: serde_json::Value, _deps: Data<Arc<worker::Deps>>, _attempt: Attempt) -> Result<(), BoxDynError> {
    if let Some(started) = STARTED.get() {
        let us = started.elapsed().as_micros() as u64;
        FIRST_PICKED_US.fetch_min(us, Ordering::Relaxed);
        LAST_HANDLED_US.fetch_max(us, Ordering::Relaxed);
    }
    Ok(())
}

fn from_env(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}: expected a count, got {v:?}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs = from_env("BENCH_NOOP_JOBS", 50_000)?;
    let concurrency = from_env("BENCH_NOOP_CONCURRENCY", 50)?;
    let mut env = TestEnv::new().await?;
    // The production defaults where TestEnv shortens them for tests (the
    // heartbeat is a third of the lease).
    for test_only in
        ["TURN_LEASE_SECONDS", "RECONCILE_INTERVAL_SECONDS", "RECONCILE_QUEUED_AFTER_SECONDS", "JOB_BACKOFF_BASE_MS"]
    {
        env.vars.remove(test_only);
    }
    env.set("TURN_WORKER_CONCURRENCY", &concurrency.to_string());
    let deps = worker::deps(env.config(Component::Worker)?).await?;

    eprintln!("pushing {jobs} no-op turn jobs (no worker running)");
    let queues = deps.core.queues.clone();
    let request_id = "bench-noop".to_owned();
    let pushed: Vec<_> = futures::stream::iter(0..jobs)
        .map(|_| {
            let job = TurnJob {
                turn_id: TurnId::new(),
                session_id: SessionId::new(),
                request_id: request_id.clone(),
                traceparent: None,
            };
            let queues = queues.clone();
            async move { queues.push_turn(&shared::queue::new_job_id(), job, None).await }
        })
        .buffer_unordered(PUSHES_IN_FLIGHT)
        .collect()
        .await;
    pushed.into_iter().collect::<Result<Vec<()>, _>>()?;

    let mut redis = env.redis().await?;
    let config = shared::queue::queue_config(&env.prefix, QueueName::Turns);
    let (done_set, dead_set) = (config.done_jobs_set(), config.dead_jobs_set());
    let stop = CancellationToken::new();
    let run_stop = stop.clone();
    let started = *STARTED.get_or_init(Instant::now);
    let worker = tokio::spawn(worker::run_with_turn_handler(deps, async move { run_stop.cancelled().await }, noop));
    let mut done = 0;
    while done < jobs {
        anyhow::ensure!(!worker.is_finished(), "the worker stopped with {done} of {jobs} jobs done");
        anyhow::ensure!(started.elapsed() < DRAIN_LIMIT, "{done} of {jobs} jobs done after {DRAIN_LIMIT:?}");
        tokio::time::sleep(DONE_POLL).await;
        done = redis::cmd("SCARD").arg(&done_set).query_async(&mut redis).await?;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    worker.await??;
    let dead: usize = redis::cmd("SCARD").arg(&dead_set).query_async(&mut redis).await?;
    anyhow::ensure!(dead == 0, "{dead} no-op jobs went dead");

    let rate = jobs as f64 / elapsed.as_secs_f64();
    let ms = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1000.0;
    eprintln!(
        "ours: {jobs} no-op jobs in {elapsed:.2?}, concurrency {concurrency}; first job picked at {:.0} ms, \
         last handled at {:.0} ms, last acknowledged at {:.0} ms",
        ms(&FIRST_PICKED_US),
        ms(&LAST_HANDLED_US),
        elapsed.as_secs_f64() * 1000.0
    );
    println!(
        "bench_noop queue=ours jobs={jobs} concurrency={concurrency} seconds={:.3} jobs_per_sec={rate:.0}",
        elapsed.as_secs_f64()
    );
    Ok(())
}
