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
