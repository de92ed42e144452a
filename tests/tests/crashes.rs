//! A worker killed without cleanup while it holds a turn.

use std::time::{Duration, Instant};

use tests::{TestEnv, is};

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
