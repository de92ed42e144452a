//! SIGTERM to a worker process in the middle of a turn: the turn finishes if
//! it can within `WORKER_SHUTDOWN_TIMEOUT_SECONDS`, otherwise it is handed
//! back and another worker completes it; the process exits within the
//! deadline either way, and the candidate gets one interviewer message.

use std::time::{Duration, Instant};

use tests::{TestEnv, is, terminate};

const WAIT: Duration = Duration::from_secs(20);

async fn turn_row(env: &TestEnv) -> anyhow::Result<(String, i32)> {
    let db = env.db().await?;
    Ok(sqlx::query_as("SELECT status, attempts FROM turns WHERE number = 0").fetch_one(&db).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_that_fits_the_deadline_finishes_and_the_worker_exits() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    // About 20 deltas at 100 ms: two seconds, inside the 5 s deadline.
    let mut worker =
        env.spawn_process("worker", &[("SCRIPTED_DELTA_DELAY_MS", "100"), ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "5")])?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.delta")).await?;

    terminate(&worker)?;
    let signalled = Instant::now();
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let status = tokio::time::timeout(Duration::from_secs(6), worker.wait()).await??;
    let exited = signalled.elapsed();
    assert!(status.success(), "worker exit status {status}");
    assert!(exited <= Duration::from_secs(5), "exited {exited:?} after SIGTERM; deadline 5 s");
    assert!(!ws.seen.iter().any(|e| is(e, "turn.reset")), "the turn was not restarted: {:?}", ws.seen);
    assert_eq!(turn_row(&env).await?, ("completed".to_owned(), 1));
    assert!(completed["message"].as_str().is_some_and(|m| !m.is_empty()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_longer_than_the_deadline_is_handed_back_and_completed_elsewhere() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    // About 20 deltas at 400 ms: eight seconds, well past the 3 s deadline.
    let mut worker =
        env.spawn_process("worker", &[("SCRIPTED_DELTA_DELAY_MS", "400"), ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "3")])?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.delta")).await?;

    terminate(&worker)?;
    let signalled = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), worker.wait()).await??;
    let exited = signalled.elapsed();
    assert!(status.success(), "worker exit status {status}");
    assert!(exited <= Duration::from_secs(3), "exited {exited:?} after SIGTERM; deadline 3 s");
    // Handed back: queued again, not left running under a lease.
    assert_eq!(turn_row(&env).await?, ("queued".to_owned(), 1));
    assert!(!ws.seen.iter().any(|e| is(e, "turn.completed")));

    let picked_up = Instant::now();
    let _next = env.start_worker().await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    // The hand-back pushed a job: no wait for a lease or the reconciler.
    assert!(picked_up.elapsed() < Duration::from_secs(2), "took {:?}", picked_up.elapsed());
    assert!(ws.seen.iter().any(|e| is(e, "turn.reset")), "the client drops the partial text");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ws.send(serde_json::json!({ "type": "ping" })).await?;
    ws.until(WAIT, |e| is(e, "pong")).await?;
    assert_eq!(ws.seen.iter().filter(|e| is(e, "turn.completed")).count(), 1, "{:?}", ws.seen);
    assert_eq!(turn_row(&env).await?, ("completed".to_owned(), 2));
    assert!(completed["message"].as_str().is_some_and(|m| !m.is_empty()));
    Ok(())
}
