//! Idle pickup latency. A file of its own: cargo runs test files one after
//! another, so nothing else runs beside it and the system really is idle.

use std::time::Duration;

use serde_json::json;
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_an_idle_system_each_turn_starts_within_100_ms() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("SCRIPTED_DELTA_DELAY_MS", "0");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 60).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;

    // Pickup runs from the moment the turn is enqueued (the answer is
    // committed and its job pushed, which is when `answer.accepted` is sent)
    // to the worker's claim (`started_at`). The API's own commit is not in
    // it: on these machines a PostgreSQL COMMIT occasionally stalls 100-300 ms
    // on fsync while other tests create and drop databases.
    let mut enqueued_ms = Vec::new();
    for i in 1..=50 {
        // Let the queue go idle between submissions.
        tokio::time::sleep(Duration::from_millis(150)).await;
        ws.send(json!({ "type": "answer", "text": format!("answer {i}") })).await?;
        ws.until(WAIT, |e| is(e, "answer.accepted")).await?;
        enqueued_ms.push(chrono::Utc::now().timestamp_micros() as f64 / 1000.0);
        ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == i).await?;
    }
    let db = env.db().await?;
    let started_ms: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at)::float8 * 1000 FROM turns WHERE number > 0 ORDER BY number",
    )
    .fetch_all(&db)
    .await?;
    let waits: Vec<f64> = started_ms.iter().zip(&enqueued_ms).map(|(started, enqueued)| started - enqueued).collect();
    assert_eq!(waits.len(), 50);
    let worst = waits.iter().cloned().fold(0.0, f64::max);
    assert!(worst < 100.0, "slowest pickup {worst:.1} ms; all: {waits:?}");
    Ok(())
}
