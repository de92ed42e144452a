//! Health: healthy with everything up; with Redis unreachable `/health`
//! still answers within its timeout and readiness fails.

use std::time::{Duration, Instant};

use tests::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthy_with_both_services_up() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let client = api.client();
    // The worker pools heartbeat every two seconds.
    let body = tests::eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let r = client.get("/health").await?;
            Ok((r.status == 200 && r.body["status"] == "healthy").then_some(r.body))
        }
    })
    .await?;
    assert_eq!(body["checks"]["database"]["status"], "healthy");
    assert!(body["checks"]["database"]["connection_pool"]["size"].is_u64());
    assert_eq!(body["checks"]["redis"]["connected"], true);
    assert!(body["checks"]["redis"]["memory_used_mb"].is_u64());
    assert_eq!(body["checks"]["queues"]["turns"]["workers"], 1);
    assert!(body["checks"]["websocket"]["active_connections"].is_i64());
    for field in ["version", "environment", "timestamp"] {
        assert!(body[field].is_string(), "{field}");
    }
    assert_eq!(client.get("/health/ready").await?.status, 200);
    assert_eq!(client.get("/health/live").await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_unreachable_degrades_health_and_fails_readiness() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    env.set("REDIS_URL", &format!("redis://127.0.0.1:{closed}/0"));
    let api = env.start_api().await?;
    let client = api.client();
    let start = Instant::now();
    let r = client.get("/health").await?;
    let took = start.elapsed();
    assert_eq!(r.status, 200, "degraded is still 200: {r:?}");
    assert_eq!(r.body["status"], "degraded");
    assert_eq!(r.body["checks"]["redis"]["status"], "unhealthy");
    assert_eq!(r.body["checks"]["redis"]["connected"], false);
    assert!(r.body["checks"]["redis"]["error"].is_string());
    assert_eq!(r.body["checks"]["database"]["status"], "healthy");
    // HEALTH_CHECK_TIMEOUT_MS is 1000 in tests; the checks run concurrently.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let ready = client.get("/health/ready").await?;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.body["redis"], "unreachable");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_worker_pool_shows_in_health() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let mut worker = env.spawn_process("worker", &[])?;
    let client = api.client();
    let workers = |body: &serde_json::Value| body["checks"]["queues"]["turns"]["workers"].as_u64();
    // Both pools (turns and batch) register on their own first heartbeat:
    // healthy only once both have (a cold start on a busy machine takes a while).
    let up = tests::eventually(Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            let r = client.get("/health").await?;
            let both = ["turns", "batch"].iter().all(|q| r.body["checks"]["queues"][q]["workers"] == 1);
            Ok(both.then_some(r.body))
        }
    })
    .await?;
    assert_eq!(up["status"], "healthy", "{up}");

    worker.start_kill()?; // no cleanup: only the missing heartbeats tell
    worker.wait().await?;
    let killed = Instant::now();
    let down = tests::eventually(Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            let r = client.get("/health").await?;
            Ok((workers(&r.body) == Some(0)).then_some(r.body))
        }
    })
    .await?;
    // Three missed pool heartbeats of two seconds.
    assert!(killed.elapsed() < Duration::from_secs(9), "took {:?}", killed.elapsed());
    assert_eq!(down["status"], "degraded");
    assert_eq!(down["checks"]["queues"]["status"], "degraded");
    assert!(down["checks"]["queues"]["error"].is_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_rides_out_dropped_redis_connections() -> anyhow::Result<()> {
    // Dropping every client connection must not disturb other tests: a Redis of our own.
    let redis = tests::PrivateRedis::start().await?;
    let mut env = TestEnv::new().await?;
    env.set("REDIS_URL", &redis.url);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let interview = recruiter.interview("en", 5).await?;
    let first = anon.user("c1@example.com", "candidate").await?;
    let session = first.start_session(&interview).await?;
    first.ws(&session, None).await?.until(Duration::from_secs(10), |e| tests::is(e, "turn.completed")).await?;

    // The pools have reported in (they heartbeat every 2 s).
    tests::eventually(Duration::from_secs(10), || {
        let client = api.client();
        async move {
            let body = client.get("/health").await?.body;
            Ok((body["checks"]["queues"]["turns"]["workers"] == 1).then_some(()))
        }
    })
    .await?;
    let mut conn = redis::Client::open(redis.url.as_str())?.get_multiplexed_async_connection().await?;
    let me: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await?;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await?;
    assert!(killed >= 2, "the API's and the worker's connections were dropped (me: {me})");

    // The pools reconnect: a new turn completes, and no pool died for it
    // (a restarted pool registers as `turns-{worker}-{run}` with run > 0).
    let second = anon.user("c2@example.com", "candidate").await?;
    let session = second.start_session(&interview).await?;
    second.ws(&session, None).await?.until(Duration::from_secs(10), |e| tests::is(e, "turn.completed")).await?;
    let pools: Vec<String> =
        redis::cmd("ZRANGE").arg(format!("{}-turns:workers", env.prefix)).arg(0).arg(-1).query_async(&mut conn).await?;
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert!(pools.iter().all(|p| p.ends_with("-0")), "a pool restarted: {pools:?}");
    let body = api.client().get("/health").await?.body;
    assert_eq!(body["checks"]["queues"]["turns"]["workers"], 1, "{body}");
    Ok(())
}
