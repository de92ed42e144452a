//! Job retries back off with millisecond precision: a delayed job is due
//! when its delay says, not at the next whole second (apalis-redis scores
//! scheduled jobs in seconds), so the first retries of a doubling cap are
//! sub-second.

use std::time::{Duration, Instant};

use shared::ids::{SessionId, TurnId};
use shared::jobs::{QueueName, TurnJob};
use shared::queue::{Queues, new_job_id, promote_due, queue_config};
use tests::fake_llm::{FakeLlm, Reply};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(30);
const REPLY: &str = "Thank you. What would you measure first?";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delayed_job_is_due_after_its_milliseconds_not_the_next_second() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut redis = env.redis().await?;
    let queues = Queues::new(redis.clone(), &env.prefix, shared::metrics::JobMetrics::new());
    let scheduled = queue_config(&env.prefix, QueueName::Turns).scheduled_jobs_set();
    // Push at .100–.150 of a second: a whole-second score would make a
    // 300 ms delay due at the next second, 850 ms or more later.
    loop {
        let ms = chrono::Utc::now().timestamp_subsec_millis();
        if (100..150).contains(&ms) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pushed = Instant::now();
    let job =
        TurnJob { turn_id: TurnId::new(), session_id: SessionId::new(), request_id: "r".into(), traceparent: None };
    queues.push_turn(&new_job_id(), job, Some(Duration::from_millis(300))).await?;
    let promoted = loop {
        promote_due(&mut redis, &env.prefix, QueueName::Turns).await?;
        let left: u64 = redis::cmd("ZCARD").arg(&scheduled).query_async(&mut redis).await?;
        if left == 0 {
            break pushed.elapsed();
        }
        anyhow::ensure!(pushed.elapsed() < Duration::from_secs(3), "never promoted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(promoted >= Duration::from_millis(300), "not before its delay: {promoted:?}");
    assert!(promoted < Duration::from_millis(600), "due after 300 ms, not at the next second: {promoted:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_turn_is_retried_at_intervals_drawn_from_a_doubling_cap() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    for _ in 0..4 {
        fake.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    }
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake)
        .set("OPENAI_COMPATIBLE_MAX_RETRIES", "0")
        .set("JOB_MAX_ATTEMPTS", "5")
        .set("JOB_BACKOFF_BASE_MS", "200")
        .set("JOB_BACKOFF_MAX_MS", "5000")
        .set("AI_CIRCUIT_BREAKER_FAILURES", "10");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let at: Vec<Instant> = fake.received().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 5, "four failures, then the reply");
    // Full jitter: attempt n waits a random time up to 200 ms × 2^(n-1).
    // Allowance for the attempt itself and the 250 ms promotion tick.
    let allowance = Duration::from_millis(600);
    for (n, pair) in at.windows(2).enumerate() {
        let (gap, cap) = (pair[1] - pair[0], Duration::from_millis(200 << n));
        assert!(gap <= cap + allowance, "retry {} came after {gap:?}, its cap is {cap:?}", n + 1);
    }
    assert!(at[2] - at[0] < Duration::from_millis(1_800), "the first two retries are sub-second: {:?}", at[2] - at[0]);
    Ok(())
}
