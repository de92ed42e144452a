//! What the admin page charts and shows of a dead job (issue 14): the
//! fleet's minutes (jobs per queue and outcome, turns finished and their
//! latency, depth as the workers sampled it), and a dead job in full, each
//! failed attempt with its error and the payload's secrets redacted.

use std::time::Duration;

use serde_json::{Value, json};
use shared::jobs::QueueName;
use tests::fake_llm::{FakeLlm, Reply};
use tests::{Client, TestEnv, is};

const WAIT: Duration = Duration::from_secs(30);

/// One number summed over every minute of `history`.
fn sum(history: &Value, pointer: &str) -> u64 {
    history.as_array().into_iter().flatten().filter_map(|m| m.pointer(pointer).and_then(Value::as_u64)).sum()
}

async fn history(admin: &Client, minutes: u32) -> anyhow::Result<Value> {
    let r = admin.get(&format!("/admin/history?minutes={minutes}")).await?;
    anyhow::ensure!(r.status == 200, "{r:?}");
    Ok(r.body["history"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_completed_turns_and_one_failed_are_in_the_minutes_they_finished() -> anyhow::Result<()> {
    let fake = FakeLlm::start("Tell me more about that.").await?;
    fake.then(Reply::Status { status: 400, retry_after: None, body: "model not found".into() });
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let admin = api.admin().await?;
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    let failing = candidate.start_session(&interview).await?;
    candidate.ws(&failing, None).await?.until(WAIT, |e| is(e, "turn.failed")).await?;
    for _ in 0..3 {
        let session = candidate.start_session(&interview).await?;
        candidate.ws(&session, None).await?.until(WAIT, |e| is(e, "turn.completed")).await?;
    }

    // Jobs are counted once their handler returns, and depth is sampled
    // every second here: a few minutes' window holds them all even across
    // a minute's end.
    let minutes = tests::eventually(WAIT, || async {
        let h = history(&admin, 5).await?;
        let settled = sum(&h, "/jobs/turns/completed") == 3
            && sum(&h, "/jobs/turns/dead") == 1
            && h.as_array().is_some_and(|m| m.iter().any(|m| m["depth"]["turns"]["dead"] == 1));
        Ok(settled.then_some(h))
    })
    .await?;
    let list = minutes.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 5, "one entry per minute: {minutes}");
    let starts: Vec<i64> = list
        .iter()
        .filter_map(|m| m["minute"].as_str()?.parse::<chrono::DateTime<chrono::Utc>>().ok())
        .map(|t| t.timestamp())
        .collect();
    assert!(starts.len() == 5 && starts.windows(2).all(|w| w[1] - w[0] == 60), "{starts:?}");
    let now = chrono::Utc::now().timestamp();
    assert!(starts[4] <= now && now - starts[4] < 62, "the last is the current minute: {starts:?} {now}");
    assert_eq!(sum(&minutes, "/jobs/turns/failed"), 0, "nothing apalis had to run again");
    assert_eq!(sum(&minutes, "/jobs/batch/completed") + sum(&minutes, "/jobs/batch/dead"), 0);
    assert_eq!((sum(&minutes, "/turns/completed"), sum(&minutes, "/turns/failed")), (3, 1));

    // Latency: between the fastest and the slowest turn as stored.
    let db = env.db().await?;
    let (fastest, slowest): (f64, f64) = sqlx::query_as(
        "SELECT min(extract(epoch FROM completed_at - created_at)::float8 * 1000),
                max(extract(epoch FROM completed_at - created_at)::float8 * 1000)
         FROM turns WHERE status = 'completed'",
    )
    .fetch_one(&db)
    .await?;
    let with_latency: Vec<&Value> = list.iter().filter(|m| !m["turns"]["latency_p50_ms"].is_null()).collect();
    assert!(!with_latency.is_empty(), "{minutes}");
    for m in with_latency {
        let (p50, p95) = (m["turns"]["latency_p50_ms"].as_f64(), m["turns"]["latency_p95_ms"].as_f64());
        let (p50, p95) = (p50.unwrap_or(-1.0), p95.unwrap_or(-1.0));
        assert!(fastest - 0.1 <= p50 && p50 <= p95 && p95 <= slowest + 0.1, "{fastest} ≤ {p50} ≤ {p95} ≤ {slowest}");
    }
    let sampled = list.iter().rev().find(|m| !m["depth"]["turns"].is_null()).cloned().unwrap_or_default();
    assert_eq!(sampled["depth"]["turns"], json!({ "pending": 0, "scheduled": 0, "running": 0, "dead": 1 }));

    // The default is the last hour; the range is checked.
    assert_eq!(history(&admin, 60).await?.as_array().map(Vec::len), Some(60));
    assert_eq!(admin.get("/admin/history").await?.body["history"].as_array().map(Vec::len), Some(60));
    for bad in ["minutes=0", "minutes=1441", "minutes=abc", "minutes=-1", "hours=1"] {
        let r = admin.get(&format!("/admin/history?{bad}")).await?;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(bad.split('=').next().unwrap_or(bad)), "{bad}: {message}");
    }
    assert_eq!(candidate.get("/admin/history").await?.status, 403);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_job_shows_each_attempt_and_no_secret() -> anyhow::Result<()> {
    let fake = FakeLlm::start("Tell me more about that.").await?;
    fake.then(Reply::Status { status: 503, retry_after: None, body: "upstream overloaded".into() });
    fake.then(Reply::Status { status: 400, retry_after: None, body: "model not found".into() });
    let mut env = TestEnv::new().await?;
    // One request per attempt: the chain does not retry the provider itself.
    env.use_fake_llm(&fake).set("OPENAI_COMPATIBLE_MAX_RETRIES", "0");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let admin = api.admin().await?;
    let (candidate, session, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    let secret = "sk-live-0123456789";
    let raw = json!({ "kind": "no_such_job", "api_key": secret, "auth": { "password": "hunter2" }, "note": "kept" });
    env.push_raw(QueueName::Batch, &[raw]).await?;
    env.until_dead(QueueName::Batch, 1).await?;
    env.until_dead(QueueName::Turns, 1).await?;

    let listed = admin.get("/admin/queues/turns/dead").await?.body;
    let id = listed["dead"][0]["id"].as_str().unwrap_or_default().to_owned();
    let r = admin.get(&format!("/admin/queues/turns/dead/{id}")).await?;
    assert_eq!(r.status, 200, "{r:?}");
    let job = r.body;
    assert_eq!((job["queue"].as_str(), job["id"].as_str()), (Some("turns"), Some(id.as_str())));
    assert_eq!(job["payload"]["session_id"], session.as_str());
    assert!(job["error"].as_str().is_some_and(|e| e.contains("400")), "why it died: {job}");
    let work = &job["work"];
    assert_eq!(
        (work["kind"].as_str(), work["status"].as_str(), work["attempts"].as_i64()),
        (Some("turn"), Some("failed"), Some(2))
    );
    assert_eq!(work["id"], job["payload"]["turn_id"]);
    let errors = work["attempt_errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.iter().map(|e| e["attempt"].as_i64()).collect::<Vec<_>>(), [Some(1), Some(2)], "{work}");
    assert!(errors[0]["error"].as_str().is_some_and(|e| e.contains("503")), "{work}");
    assert!(errors[1]["error"].as_str().is_some_and(|e| e.contains("400")), "{work}");
    assert!(
        errors.iter().all(|e| e["at"].as_str().is_some_and(|t| t.parse::<chrono::DateTime<chrono::Utc>>().is_ok()))
    );

    // A payload that never decoded: apalis's record, its secrets redacted
    // here and in the list.
    let batch = admin.get("/admin/queues/batch/dead").await?.body;
    let batch_id = batch["dead"][0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(batch["dead"][0]["payload"]["api_key"], "***");
    let r = admin.get(&format!("/admin/queues/batch/dead/{batch_id}")).await?;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["payload"], json!({ "kind": "no_such_job", "api_key": "***", "auth": "***", "note": "kept" }));
    assert!(r.body["work"].is_null(), "{}", r.body);
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("undecodable")), "{}", r.body);
    assert_eq!(r.body["attempts"], 1);
    assert!(!r.body.to_string().contains(secret) && !r.body.to_string().contains("hunter2"));

    // Refusals.
    assert_eq!(admin.get("/admin/queues/turns/dead/01ABCDEFGHJKMNPQRSTVWXYZ00").await?.status, 404);
    assert_eq!(admin.get(&format!("/admin/queues/batch/dead/{id}")).await?.status, 404, "another queue's");
    assert_eq!(admin.get(&format!("/admin/queues/nope/dead/{id}")).await?.status, 404);
    assert_eq!(candidate.get(&format!("/admin/queues/turns/dead/{id}")).await?.status, 403);

    // Retried, the turn starts over with a clean record and completes.
    assert_eq!(admin.post(&format!("/admin/queues/turns/dead/{id}/retry"), json!({})).await?.status, 200);
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let db = env.db().await?;
    let (status, attempts, errors): (String, i32, Value) = tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let row: (String, i32, Value) =
                sqlx::query_as("SELECT status, attempts, attempt_errors FROM turns WHERE number = 0")
                    .fetch_one(&db)
                    .await?;
            Ok((row.0 == "completed").then_some(row))
        }
    })
    .await?;
    assert_eq!((status.as_str(), attempts, errors), ("completed", 1, json!([])));
    Ok(())
}
