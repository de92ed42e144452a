//! Lost work: a worker killed without cleanup while it holds a turn, and a
//! Redis flushed while turns wait in it.

use std::time::{Duration, Instant};

use tests::{PrivateRedis, TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_s_turn_completes_on_another_once() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    // A slow worker process: the opening turn streams for several seconds.
    let mut doomed = env.spawn_process("worker", &[("SCRIPTED_DELTA_DELAY_MS", "300")])?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 5).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.delta")).await?;

    doomed.start_kill()?; // SIGKILL: no cleanup, the turn stays `running` under its lease
    doomed.wait().await?;
    let killed_at = Instant::now();
    let _survivor = env.start_worker().await?;

    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let took = killed_at.elapsed();
    // TURN_LEASE_SECONDS=3 and RECONCILE_INTERVAL_SECONDS=1 in tests.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(ws.seen.iter().any(|e| is(e, "turn.reset")), "the client is told to drop the partial text");
    // Give a duplicate the time to show up, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ws.send(serde_json::json!({ "type": "ping" })).await?;
    ws.until(WAIT, |e| is(e, "pong")).await?;
    let messages = ws.seen.iter().filter(|e| is(e, "turn.completed")).count();
    assert_eq!(messages, 1, "one interviewer message: {:?}", ws.seen);
    let db = env.db().await?;
    let (status, attempts, message): (String, i32, String) =
        sqlx::query_as("SELECT status, attempts, interviewer_message FROM turns WHERE number = 0")
            .fetch_one(&db)
            .await?;
    assert_eq!(status, "completed");
    assert_eq!(attempts, 2);
    assert_eq!(Some(message.as_str()), completed["message"].as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turns_queued_when_redis_is_flushed_are_re_enqueued_and_complete() -> anyhow::Result<()> {
    // FLUSHALL must not touch the Redis other tests share: this test has its own.
    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new().await?;
    env.set("REDIS_URL", &redis.url);
    let api = env.start_api().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let interview = recruiter.interview("en", 5).await?;
    // No worker yet: every opening turn waits in the queue.
    let mut sessions = Vec::new();
    for i in 0..5 {
        let candidate = anon.user(&format!("c{i}@example.com"), "candidate").await?;
        sessions.push((candidate.start_session(&interview).await?, candidate));
    }
    let mut conn = redis::Client::open(redis.url.as_str())?.get_multiplexed_async_connection().await?;
    let queued: u64 = redis::cmd("ZCARD").arg(format!("{}-turns:scheduled", env.prefix)).query_async(&mut conn).await?;
    assert_eq!(queued, 5, "the five opening turns are queued in Redis");
    let health = anon.get("/health").await?.body;
    assert_eq!(health["checks"]["queues"]["turns"]["pending"], 5, "{health}");
    assert_eq!(health["checks"]["queues"]["turns"]["scheduled"], 0, "{health}");
    redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;

    let flushed = Instant::now();
    let _worker = env.start_worker().await?;
    for (session, candidate) in &sessions {
        let mut ws = candidate.ws(session, None).await?;
        ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    }
    // RECONCILE_QUEUED_AFTER_SECONDS=2, RECONCILE_INTERVAL_SECONDS=1 in tests.
    assert!(flushed.elapsed() < Duration::from_secs(8), "took {:?}", flushed.elapsed());
    let db = env.db().await?;
    let statuses: Vec<(String, i32)> = sqlx::query_as("SELECT status, attempts FROM turns").fetch_all(&db).await?;
    assert_eq!(statuses, vec![("completed".to_owned(), 1); 5]);
    Ok(())
}
