//! Failovers while candidates answer: a PostgreSQL primary that turns
//! read-only (connections cut, new ones read-only, as a demoted primary
//! behind a switched DNS name answers), and Redis's connections killed.
//! While the fault lasts an answer gets 503 with `Retry-After` or is
//! accepted and stored; a client that retries with the same
//! `Idempotency-Key` gets exactly one turn; nothing restarts, and
//! everything completes after.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::{Client, TestEnv, is};

const WAIT: Duration = Duration::from_secs(30);

/// Posts answer `text` under `key` until it is accepted (as a client honouring
/// `Retry-After` would, but faster) or `limit` has passed; every reply must be
/// a 202 or a 503 with `Retry-After`. Returns the statuses seen.
async fn answer_until_accepted(
    candidate: &Client,
    session: &str,
    text: &str,
    key: &str,
    limit: Duration,
) -> anyhow::Result<Vec<u16>> {
    let started = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let path = format!("/sessions/{session}/turns");
        let r = candidate.send("POST", &path, Some(json!({ "text": text })), &[("Idempotency-Key", key)]).await?;
        statuses.push(r.status);
        match r.status {
            202 => return Ok(statuses),
            503 => anyhow::ensure!(r.retry_after.is_some(), "a 503 without Retry-After: {r:?}"),
            _ => anyhow::bail!("neither accepted nor 503 during the fault: {r:?}"),
        }
        if started.elapsed() >= limit {
            return Ok(statuses);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_turned_read_only_gives_503s_and_loses_no_answer() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("JOB_BACKOFF_BASE_MS", "200").set("JOB_BACKOFF_MAX_MS", "1000").set("JOB_MAX_ATTEMPTS", "20");
    let api = env.start_api().await?;
    let worker = env.start_worker().await?;
    let tests::OpenedSession { candidate, session, mut ws, .. } = api.opened_session(5).await?;
    let admin = sqlx::PgPool::connect(&tests::admin_database_url()).await?;
    let database = env.database.clone();
    // The failover: the database turns read-only and every connection to it
    // is cut; connections made during the fault stay read-only after it.
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {database} SET default_transaction_read_only = on")))
        .execute(&admin)
        .await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database)
    .execute(&admin)
    .await?;
    let fault_ends = Instant::now() + Duration::from_secs(5);
    let during =
        answer_until_accepted(&candidate, &session, "During the failover.", "k1", Duration::from_secs(4)).await?;
    tokio::time::sleep(fault_ends.saturating_duration_since(Instant::now())).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {database} RESET default_transaction_read_only")))
        .execute(&admin)
        .await?;
    // The same key again: the answer is stored once, whether or not it was
    // accepted during the fault.
    let after = answer_until_accepted(&candidate, &session, "During the failover.", "k1", WAIT).await?;
    assert_eq!(after.last(), Some(&202));
    ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == 1).await?;
    ws.answer(2, WAIT).await?;
    let db = env.db().await?;
    let answers: Vec<(i32, String)> =
        sqlx::query_as("SELECT number, candidate_message FROM turns WHERE number > 0 ORDER BY number")
            .fetch_all(&db)
            .await?;
    assert_eq!(answers.len(), 2, "one turn per answer: {answers:?}");
    assert_eq!(answers[0].1, "During the failover.");
    assert_eq!(during.first(), Some(&503), "refused while read-only: {during:?}");
    assert!(!worker.is_finished() && !api.is_finished(), "nothing restarted");
    // The read-only connections made during the fault were let go of: writes work.
    let unfinished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM turns WHERE status <> 'completed'").fetch_one(&db).await?;
    assert_eq!(unfinished, 0);
    Ok(())
}

/// Waits until turn `number` is completed in the database.
async fn completed(env: &TestEnv, number: i32) -> anyhow::Result<()> {
    let db = env.db().await?;
    tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let status: Option<String> = sqlx::query_scalar("SELECT status FROM turns WHERE number = $1")
                .bind(number)
                .fetch_optional(&db)
                .await?;
            Ok((status.as_deref() == Some("completed")).then_some(()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_connections_killed_and_redis_restarted_lose_no_answer() -> anyhow::Result<()> {
    let mut redis = tests::PrivateRedis::start().await?;
    let mut env = TestEnv::new().await?;
    env.set("REDIS_URL", &redis.url)
        .set("REDIS_SOCKET_TIMEOUT", "1")
        .set("RECONCILE_INTERVAL_SECONDS", "1")
        .set("RECONCILE_QUEUED_AFTER_SECONDS", "2");
    let api = env.start_api().await?;
    let worker = env.start_worker().await?;
    let tests::OpenedSession { candidate, session, .. } = api.opened_session(5).await?;

    // Every connection killed at once (a proxy or a failover cutting them).
    let client = redis::Client::open(redis.url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").exec_async(&mut conn).await?;
    let statuses = answer_until_accepted(&candidate, &session, "After the cut.", "k1", WAIT).await?;
    assert_eq!(statuses.last(), Some(&202), "{statuses:?}");
    completed(&env, 1).await?;

    // Redis down for two seconds, then back empty (a restart without persistence).
    redis.stop().await?;
    let during =
        answer_until_accepted(&candidate, &session, "While Redis is down.", "k2", Duration::from_secs(2)).await?;
    redis.restart().await?;
    let after = answer_until_accepted(&candidate, &session, "While Redis is down.", "k2", WAIT).await?;
    assert_eq!(after.last(), Some(&202), "during: {during:?}, after: {after:?}");
    completed(&env, 2).await?;
    let db = env.db().await?;
    let answers: Vec<String> =
        sqlx::query_scalar("SELECT candidate_message FROM turns WHERE number > 0 ORDER BY number")
            .fetch_all(&db)
            .await?;
    assert_eq!(answers, ["After the cut.", "While Redis is down."], "each answer once");
    assert!(!worker.is_finished() && !api.is_finished(), "nothing restarted");
    Ok(())
}
