//! Attempts and backoff are ours and bounded: a provider that fails is
//! retried with our backoff up to `JOB_MAX_ATTEMPTS`, then the turn fails
//! with a reason and its job is dead; a non-retryable failure is not
//! retried; a payload that does not decode is dead at once and the pool
//! that fetched it keeps working.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::TaskSink;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use shared::config::Component;
use shared::jobs::QueueName;
use tests::{TestEnv, WorkerHandle, is};
use worker::providers::scripted::Scripted;
use worker::providers::{ChatProvider, ChatRequest, Chunk, FailureKind, ProviderError, Purpose};

const WAIT: Duration = Duration::from_secs(20);

/// The scripted interviewer, failing its first `failures` turn replies.
struct Failing {
    inner: Scripted,
    failures: usize,
    retryable: bool,
    calls: Arc<AtomicUsize>,
}

impl ChatProvider for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn model(&self) -> &str {
        "failing-1"
    }
    fn prices(&self) -> (f64, f64) {
        (0.0, 0.0)
    }
    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>> {
        if matches!(request.purpose, Purpose::Turn { .. }) && self.calls.fetch_add(1, Ordering::SeqCst) < self.failures
        {
            let status = if self.retryable { "503 Service Unavailable" } else { "400 Bad Request" };
            let kind = if self.retryable { FailureKind::Fault } else { FailureKind::Rejected };
            let error = ProviderError::new("failing", kind, status);
            return stream::iter([Err(error)]).boxed();
        }
        self.inner.stream(request)
    }
}

async fn worker_failing(
    env: &TestEnv,
    failures: usize,
    retryable: bool,
) -> anyhow::Result<(WorkerHandle, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let provider =
        Failing { inner: Scripted::new(Duration::from_millis(1)), failures, retryable, calls: calls.clone() };
    let deps = worker::deps_with_provider(env.config(Component::Worker)?, Arc::new(provider)).await?;
    Ok((env.run_worker(deps), calls))
}

/// The opening turn once it is finished (`turn.completed` and `turn.failed`
/// are published just before their transaction commits).
async fn opening_turn(env: &TestEnv) -> anyhow::Result<(i32, String, Option<String>)> {
    let db = env.db().await?;
    tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            Ok(sqlx::query_as(
                "SELECT attempts, status, error FROM turns WHERE number = 0 AND status IN ('completed', 'failed')",
            )
            .fetch_optional(&db)
            .await?)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retryable_failure_is_retried_with_backoff_and_then_completes() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("JOB_MAX_ATTEMPTS", "4");
    let api = env.start_api().await?;
    let (_worker, calls) = worker_failing(&env, 2, true).await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let started = Instant::now();
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    // Two backoffs of at most JOB_BACKOFF_MAX_MS=500, on whole-second queue scores.
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let (attempts, status, _) = opening_turn(&env).await?;
    assert_eq!((attempts, status.as_str()), (3, "completed"));
    assert!(!ws.seen.iter().any(|e| is(e, "turn.failed")), "{:?}", ws.seen);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_that_keeps_failing_fails_the_turn_after_max_attempts() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("JOB_MAX_ATTEMPTS", "3");
    let api = env.start_api().await?;
    let (_worker, calls) = worker_failing(&env, usize::MAX, true).await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let failed = ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    assert_eq!(failed["retryable"], true);
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("3 attempts") && reason.contains("503"), "{reason}");

    // Nothing runs it again: not apalis (the job is dead), not the reconciler.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let (attempts, status, error) = opening_turn(&env).await?;
    assert_eq!((attempts, status.as_str()), (3, "failed"));
    assert!(error.unwrap_or_default().contains("503"));
    let mut redis = env.redis().await?;
    let dead: u64 = redis::cmd("SCARD").arg(format!("{}-turns:dead", env.prefix)).query_async(&mut redis).await?;
    assert_eq!(dead, 1);
    // A failed job is not a failed pool: health still counts it (heartbeats every 2 s).
    let health = api.client().get("/health").await?.body;
    assert_eq!(health["checks"]["queues"]["turns"]["workers"], 1, "{health}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_retryable_failure_fails_the_turn_at_once() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let (_worker, calls) = worker_failing(&env, 1, false).await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let failed = ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    assert_eq!(failed["retryable"], false);
    assert!(failed["reason"].as_str().unwrap_or_default().contains("400"), "{failed}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(opening_turn(&env).await?.0, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undecodable_payload_is_dead_and_the_pool_keeps_working() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    env.push_raw(QueueName::Turns, &[serde_json::json!({ "turn_id": 42, "unexpected": true })]).await?;
    env.until_dead(QueueName::Turns, 1).await?;

    // The same pool still runs real turns.
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let started = Instant::now();
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert!(started.elapsed() < Duration::from_secs(3), "pool restarted or stalled: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_beyond_lua_s_unpack_limit_is_worked_off() -> anyhow::Result<()> {
    // apalis-redis's fetch promotes every due job with one Lua `unpack`, which
    // fails beyond about 8,000 values; the workers' promoter keeps them under it.
    const BACKLOG: usize = 9_000;
    let env = TestEnv::new().await?;
    let conn = env.redis().await?;
    let mut storage: apalis_redis::RedisStorage<shared::jobs::TurnJob> = apalis_redis::RedisStorage::new(conn.clone())
        .with_config(shared::queue::queue_config(&env.prefix, QueueName::Turns));
    // Jobs for turns that do not exist: each is a quick no-op for the worker.
    let jobs: Vec<_> = (0..BACKLOG)
        .map(|i| shared::jobs::TurnJob {
            turn_id: shared::ids::TurnId::new(),
            session_id: shared::ids::SessionId::new(),
            request_id: format!("backlog-{i}"),
            traceparent: None,
        })
        .collect();
    for chunk in jobs.chunks(1_000) {
        storage.push_bulk(chunk.to_vec()).await?;
    }
    let mut redis = conn.clone();
    let scheduled: usize =
        redis::cmd("ZCARD").arg(format!("{}-turns:scheduled", env.prefix)).query_async(&mut redis).await?;
    assert_eq!(scheduled, BACKLOG);

    let _worker = env.start_worker().await?;
    let done_set = format!("{}-turns:done", env.prefix);
    tests::eventually(Duration::from_secs(120), || {
        let mut redis = redis.clone();
        let done_set = done_set.clone();
        async move {
            let done: usize = redis::cmd("SCARD").arg(&done_set).query_async(&mut redis).await?;
            Ok((done == BACKLOG).then_some(()))
        }
    })
    .await?;
    Ok(())
}
