//! The rate limit belongs to the provider account: three worker processes
//! share it, and the provider never sees more than the limit in any window.

use std::time::Duration;

use tests::TestEnv;
use tests::fake_llm::FakeLlm;

/// 600 RPM over 1 s windows: 10 requests per window (scaled for test speed).
const PER_WINDOW: usize = 10;
const WINDOW: Duration = Duration::from_secs(1);
/// Ten times what one window allows.
const TURNS: usize = 10 * PER_WINDOW;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_never_exceed_the_provider_s_limit_and_use_most_of_it() -> anyhow::Result<()> {
    let fake = FakeLlm::start("Tell me about a system you scaled.").await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake)
        .set("OPENAI_COMPATIBLE_RPM", "600")
        .set("AI_RATE_LIMIT_WINDOW_SECONDS", "1")
        .set("AI_RATE_LIMIT_MAX_WAIT_MS", "60000")
        .set("TURN_WORKER_CONCURRENCY", "16");
    let api = env.start_api().await?;
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    // The backlog first, so that the workers are never short of work.
    for _ in 0..TURNS {
        candidate.start_session(&interview).await?;
    }
    let workers: Vec<_> = (0..3).map(|_| env.spawn_process("worker", &[])).collect::<Result<_, _>>()?;

    let db = env.db().await?;
    let done: i64 = tests::eventually(Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM turns WHERE status IN ('completed', 'failed')")
                .fetch_one(&db)
                .await?;
            Ok((done == TURNS as i64).then_some(done))
        }
    })
    .await?;
    for worker in &workers {
        tests::terminate(worker)?;
    }
    let (completed, by_workers): (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE status = 'completed'), count(DISTINCT worker) FROM turns")
            .fetch_one(&db)
            .await?;
    assert_eq!(completed, done, "every turn completed: none gave up waiting");
    assert_eq!(by_workers, 3, "all three processes took turns");

    let received = fake.received();
    assert_eq!(received.len(), TURNS, "one request per turn");
    let most = fake.max_in_window(WINDOW);
    assert!(most <= PER_WINDOW, "{most} requests within one window; the limit is {PER_WINDOW}");
    // n requests at the full rate take (n / limit - 1) windows from the first
    // to the last: the throughput is n per (span + one window).
    let span = received[TURNS - 1].at - received[0].at + WINDOW;
    let rate = TURNS as f64 / span.as_secs_f64();
    let limit = PER_WINDOW as f64 / WINDOW.as_secs_f64();
    eprintln!("fleet limit: {most} at most per window, {rate:.2}/s of {limit:.2}/s over {span:?}");
    assert!(rate >= 0.9 * limit, "throughput {rate:.2}/s is under 90 % of {limit:.2}/s");
    Ok(())
}
