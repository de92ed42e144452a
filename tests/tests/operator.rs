//! The operator surface: the same queue counts everywhere an operator looks,
//! equal to what Redis holds; dead jobs retried and deleted; `/metrics`.

use std::time::Duration;

use serde_json::{Value, json};
use shared::jobs::{QueueName, TurnJob};
use tests::fake_llm::{FakeLlm, Reply};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(30);

/// pending, scheduled, running, done, dead of `queue`, read from the keys
/// here, independently of the code under test.
async fn held_by_redis(env: &TestEnv, queue: &str) -> anyhow::Result<[u64; 5]> {
    let mut redis = env.redis().await?;
    let q = format!("{}-{queue}", env.prefix);
    let now = chrono::Utc::now().timestamp();
    let (active, due, later, done, dead, workers): (u64, u64, u64, u64, u64, Vec<String>) = redis::pipe()
        .llen(format!("{q}:active"))
        .zcount(format!("{q}:scheduled"), "-inf", now)
        .zcount(format!("{q}:scheduled"), format!("({now}"), "+inf")
        .scard(format!("{q}:done"))
        .scard(format!("{q}:dead"))
        .zrange(format!("{q}:workers"), 0, -1)
        .query_async(&mut redis)
        .await?;
    let mut running = 0;
    for w in workers {
        let n: u64 = redis::cmd("SCARD").arg(format!("{q}:inflight:{w}")).query_async(&mut redis).await?;
        running += n;
    }
    Ok([active + due, later, running, done, dead])
}

fn counts(v: &Value) -> [u64; 5] {
    ["pending", "scheduled", "running", "done", "dead"].map(|k| v[k].as_u64().unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_surface_shows_the_queue_counts_redis_holds() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // Slow turns, one at a time: some run, the rest wait.
    env.set("SCRIPTED_DELTA_DELAY_MS", "1000").set("TURN_WORKER_CONCURRENCY", "1");
    let api = env.start_api().await?;
    let admin = api.admin().await?;
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    // More than a worker fetches ahead.
    for _ in 0..30 {
        candidate.start_session(&interview).await?;
    }
    let ctx = env.batch_context().await?;
    // A retry waiting for its backoff (a job of a turn that does not exist).
    let ghost = TurnJob {
        turn_id: shared::ids::TurnId::new(),
        session_id: shared::ids::SessionId::new(),
        request_id: "r".into(),
        traceparent: None,
    };
    ctx.core.queues.push_turn(&shared::queue::new_job_id(), ghost, Some(Duration::from_secs(600))).await?;
    // A payload no handler can read: dead at its first fetch.
    env.push_raw(QueueName::Batch, &[json!({ "kind": "no_such_job" })]).await?;
    let _worker = env.spawn_process("worker", &[])?;
    tests::eventually(WAIT, || async {
        let (turns, batch) = (held_by_redis(&env, "turns").await?, held_by_redis(&env, "batch").await?);
        let pools = admin.get("/admin/queues").await?.body["queues"][0]["workers"].as_array().map_or(0, Vec::len);
        Ok((turns[2] >= 1 && batch[4] == 1 && turns[1] == 1 && pools == 1).then_some(()))
    })
    .await?;

    // States move as turns finish: compare while Redis holds still.
    let mut last = String::new();
    for _ in 0..5 {
        let before = [held_by_redis(&env, "turns").await?, held_by_redis(&env, "batch").await?];
        let api_view = admin.get("/admin/queues").await?.body;
        let health = api.client().get("/health").await?.body;
        let metrics = reqwest::get(format!("http://{}/metrics", api.addr)).await?.text().await?;
        let cli = env.command("worker")?.arg("queues").output().await?;
        let after = [held_by_redis(&env, "turns").await?, held_by_redis(&env, "batch").await?];
        if before != after {
            continue;
        }
        let samples = tests::prometheus::parse(&metrics).map_err(anyhow::Error::msg)?;
        let cli = String::from_utf8_lossy(&cli.stdout).into_owned();
        for (i, queue) in ["turns", "batch"].iter().enumerate() {
            let want = before[i];
            let from_api =
                api_view["queues"].as_array().and_then(|qs| qs.iter().find(|q| q["queue"] == *queue)).cloned();
            assert_eq!(counts(&from_api.unwrap_or_default()), want, "admin API, {queue}");
            assert_eq!(counts(&health["checks"]["queues"][queue]), want, "health, {queue}");
            let from_metrics = ["pending", "scheduled", "running", "done", "dead"].map(|st| {
                tests::prometheus::value(&samples, "queue_jobs", &[("queue", queue), ("state", st)])
                    .map_or(u64::MAX, |v| v as u64)
            });
            assert_eq!(from_metrics, want, "metrics, {queue}");
            let row: Vec<u64> = cli
                .lines()
                .find(|l| l.split_whitespace().next() == Some(queue))
                .map(|l| l.split_whitespace().skip(1).take(5).filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_default();
            assert_eq!(row, want.to_vec(), "CLI, {queue}:\n{cli}");
        }
        assert!(
            before[0][0] >= 1 && before[0][2] >= 1 && before[0][1] == 1 && before[1][4] == 1,
            "every state: {before:?}"
        );
        let oldest = api_view["queues"][0]["oldest_pending_age_seconds"].as_f64().unwrap_or(-1.0);
        assert!(oldest > 0.0, "{api_view}");
        assert_eq!(api_view["queues"][0]["workers"].as_array().map(Vec::len), Some(1), "{api_view}");
        return Ok(());
    }
    last.push_str("Redis never held still for a whole comparison");
    anyhow::bail!(last)
}

async fn dead_turns(admin: &tests::Client) -> anyhow::Result<Vec<Value>> {
    Ok(admin.get("/admin/queues/turns/dead").await?.body["dead"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_job_retried_completes_and_a_deleted_one_is_gone() -> anyhow::Result<()> {
    let fake = FakeLlm::start("Tell me more about that.").await?;
    let refuse = || fake.then(Reply::Status { status: 400, retry_after: None, body: "model not found".into() });
    refuse();
    let receiver = tests::receiver::Receiver::start().await?;
    let mut env = TestEnv::new().await?;
    env.set("SLACK_WEBHOOK_URL", &format!("{}/slack", receiver.origin));
    env.use_fake_llm(&fake);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let admin = api.admin().await?;
    let (candidate, session, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    let dead =
        tests::eventually(WAIT, || async { Ok(Some(dead_turns(&admin).await?).filter(|d| d.len() == 1)) }).await?;
    let job = &dead[0];
    assert!(job["error"].as_str().unwrap_or_default().contains("400"), "{job}");
    assert_eq!(job["payload"]["session_id"], session.as_str());
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    // Alerts go out in the background.
    let alerted =
        tests::eventually(WAIT, || async { Ok(Some(receiver.posted("/slack")).filter(|p| !p.is_empty())) }).await?;
    assert_eq!(alerted.len(), 1, "jobs going dead alert");
    assert_eq!(alerted[0]["text"], "🟠 MEDIUM: Jobs going dead on the turns queue");
    assert_eq!(candidate.get("/admin/queues/turns/dead").await?.status, 403);
    assert_eq!(candidate.post(&format!("/admin/queues/turns/dead/{id}/retry"), json!({})).await?.status, 403);
    assert_eq!(admin.get("/admin/queues/nope/dead").await?.status, 404);

    // Retried: the turn runs again and completes.
    let r = admin.post(&format!("/admin/queues/turns/dead/{id}/retry"), json!({})).await?;
    assert_eq!(r.status, 200, "{r:?}");
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["number"], 0);
    assert!(dead_turns(&admin).await?.is_empty());
    let db = env.db().await?;
    let status: String = tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let s: String = sqlx::query_scalar("SELECT status FROM turns WHERE number = 0").fetch_one(&db).await?;
            Ok((s == "completed").then_some(s))
        }
    })
    .await?;
    assert_eq!(status, "completed");
    assert_eq!(
        admin.post(&format!("/admin/queues/turns/dead/{id}/retry"), json!({})).await?.status,
        404,
        "no longer dead"
    );

    // Another dead one, listed by the CLI, deleted through the API.
    refuse();
    ws.send(json!({ "type": "answer", "text": "An answer.", "client_msg_id": "a1" })).await?;
    ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    let dead =
        tests::eventually(WAIT, || async { Ok(Some(dead_turns(&admin).await?).filter(|d| d.len() == 1)) }).await?;
    let id = dead[0]["id"].as_str().unwrap_or_default().to_owned();
    let listed = env.command("worker")?.args(["dead", "turns"]).output().await?;
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id), "the CLI lists it");
    assert_eq!(candidate.send("DELETE", &format!("/admin/queues/turns/dead/{id}"), None, &[]).await?.status, 403);
    assert_eq!(admin.send("DELETE", &format!("/admin/queues/turns/dead/{id}"), None, &[]).await?.status, 204);
    assert!(dead_turns(&admin).await?.is_empty());
    assert_eq!(admin.send("DELETE", &format!("/admin/queues/turns/dead/{id}"), None, &[]).await?.status, 404);
    assert_eq!(receiver.posted("/slack").len(), 1, "the second death is within ALERT_DEDUP_MINUTES");
    let mut redis = env.redis().await?;
    let data: bool =
        redis::cmd("HEXISTS").arg(format!("{}-turns:data", env.prefix)).arg(&id).query_async(&mut redis).await?;
    assert!(!data, "its payload is gone too");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workers_trim_the_done_set_to_its_retention() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let done =
        tests::eventually(WAIT, || async { Ok(Some(held_by_redis(&env, "turns").await?[3]).filter(|d| *d >= 1)) })
            .await?;
    worker.stop().await?;
    let mut redis = env.redis().await?;
    let ids: Vec<String> =
        redis::cmd("SMEMBERS").arg(format!("{}-turns:done", env.prefix)).query_async(&mut redis).await?;
    assert_eq!(ids.len() as u64, done);

    // A worker keeping finished jobs for 0 hours trims them when it starts.
    let _trimmer = env.spawn_process("worker", &[("QUEUE_DONE_RETENTION_HOURS", "0")])?;
    tests::eventually(WAIT, || async { Ok((held_by_redis(&env, "turns").await?[3] == 0).then_some(())) }).await?;
    for id in &ids {
        let (data, meta): (bool, bool) = redis::pipe()
            .hexists(format!("{}-turns:data", env.prefix), id)
            .exists(format!("{}-turns:meta:{id}", env.prefix))
            .query_async(&mut redis)
            .await?;
        assert!(!data && !meta, "job {id}'s payload and metadata are gone too");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_cli_watches_and_retries_every_dead_job() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let worker = env.start_worker().await?;
    env.push_raw(
        QueueName::Batch,
        &[
            json!({ "kind": "no_such_job", "n": 0, "api_key": "sk-live-secret" }),
            json!({ "kind": "no_such_job", "n": 1 }),
        ],
    )
    .await?;
    tests::eventually(WAIT, || async { Ok((held_by_redis(&env, "batch").await?[4] == 2).then_some(())) }).await?;
    worker.stop().await?;

    // Listed with the payloads' secrets redacted, as the admin API lists them.
    let listed = env.command("worker")?.args(["dead", "batch"]).output().await?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(r#""api_key": "***""#) && !listed.contains("sk-live-secret"), "{listed}");

    // --watch redraws every 2 s until stopped.
    let mut watch = env.command("worker")?;
    let watch = watch.args(["queues", "--watch"]).stdout(std::process::Stdio::piped()).spawn()?;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    tests::terminate(&watch)?;
    let out = watch.wait_with_output().await?;
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("QUEUE").count() >= 2, "redrawn:\n{text}");
    assert!(
        text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["batch", "0", "0", "0", "0", "2", "-", "0"]),
        "{text}"
    );

    let retried = env.command("worker")?.args(["dead", "retry", "batch", "--all"]).output().await?;
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    assert_eq!(String::from_utf8_lossy(&retried.stdout).matches("retried ").count(), 2);
    assert_eq!(held_by_redis(&env, "batch").await?, [2, 0, 0, 0, 0], "both back in line, nothing dead");
    let unknown =
        env.command("worker")?.args(["dead", "retry", "batch", "01ABCDEFGHJKMNPQRSTVWXYZ00"]).output().await?;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no dead job"));
    let bad_queue = env.command("worker")?.args(["dead", "emails"]).output().await?;
    assert_eq!(bad_queue.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_queue.stderr).contains("unknown queue \"emails\""));
    Ok(())
}
