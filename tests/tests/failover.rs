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
