//! A Redis that refuses us: in protected mode (it denies clients that are
//! not on its loopback interface, so it runs in a network namespace of the
//! test's own), start-up stops with Redis's own reason instead of "broken
//! pipe"; and one that starts asking for a password after start-up shows
//! its reason in `/health`.

use std::time::Duration;

use shared::config::{Component, Config, Vars};
use tests::netns::RemoteRedis;
use tests::{PrivateRedis, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protected_mode_stops_start_up_with_redis_s_reason() -> anyhow::Result<()> {
    let redis = RemoteRedis::start(&["--protected-mode", "yes"]).await?;
    let env = TestEnv::new().await?;
    let mut vars = env.vars.clone();
    vars.insert("REDIS_URL".into(), redis.url.clone());
    let config = Config::from_vars(Vars::from_map(vars), Component::Api).map_err(|e| anyhow::anyhow!("{e}"))?;
    let error = match api::Api::build(config).await {
        Ok(_) => anyhow::bail!("started against a Redis in protected mode"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("REDIS_URL") && error.contains("DENIED Redis is running in protected mode"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_shows_why_redis_refuses_us_after_start_up() -> anyhow::Result<()> {
    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new().await?;
    env.set("REDIS_URL", &redis.url).set("REDIS_SOCKET_TIMEOUT", "1");
    let api = env.start_api().await?;
    let anon = api.client();
    assert_eq!(anon.get("/health").await?.body["checks"]["redis"]["status"], "healthy");
    // The password changes under us (a rotation we were not told of).
    let mut admin = redis::Client::open(redis.url.as_str())?.get_multiplexed_async_connection().await?;
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("rotated-pass").exec_async(&mut admin).await?;
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").exec_async(&mut admin).await.ok();
    let check = tests::eventually(Duration::from_secs(10), || async {
        let health = anon.get("/health").await?;
        let redis = health.body["checks"]["redis"].clone();
        // The first check after the cut may see the cut itself ("broken pipe").
        let refused = redis["status"] == "unhealthy" && redis["error"].as_str().is_some_and(|e| e.contains("NOAUTH"));
        Ok(refused.then_some((health.status, health.body["status"].clone(), redis)))
    })
    .await?;
    let error = check.2["error"].as_str().unwrap_or_default().to_owned();
    assert_eq!((check.0, check.1.as_str()), (200, Some("degraded")), "{:?}", check.2);
    assert!(!error.contains("rotated-pass"));
    Ok(())
}
