//! Bedrock's stream going wrong, against the fake AWS over real HTTP:
//! exception events inside a 200 stream, streams cut before `messageStop`
//! or mid-frame, a frame with a bad CRC, each mapped to our failure kinds
//! (retry, failover, the circuit, or a turn failed at once).

use std::time::Duration;

use tests::fake_aws::{Converse, FakeAws};
use tests::fake_llm::FakeLlm;
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REGION: &str = "eu-central-1";
const PRIMARY_TEXT: &str = "This reply from Bedrock breaks off halfway through, somewhere in its second sentence.";
const REPLY: &str = "Thank you. Which part of that design would you test first, and how?";

/// `aws_bedrock` (on `fake`, with keys) first, then `openai_compatible` (on `fallback`).
async fn chain_env(fake: &FakeAws, fallback: &FakeLlm) -> anyhow::Result<TestEnv> {
    fake.accept_keys("AKIAFAKESTREAM000001", "stream-secret");
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "aws_bedrock")
        .set("AWS_REGION", REGION)
        .set("BEDROCK_ENDPOINT", &fake.origin)
        .set("BEDROCK_MODEL_ID", "eu.amazon.nova-pro-v1:0")
        .set("AWS_ACCESS_KEY_ID", "AKIAFAKESTREAM000001")
        .set("AWS_SECRET_ACCESS_KEY", "stream-secret")
        .set("BEDROCK_TIMEOUT", "5")
        .set("JOB_MAX_ATTEMPTS", "3")
        .set("AI_FALLBACK_PROVIDERS", "openai_compatible");
    env.use_fake_llm(fallback).set("AI_PROVIDER", "aws_bedrock");
    Ok(env)
}

/// The opening turn once it is finished: (status, attempts, provider).
async fn opening_turn(env: &TestEnv) -> anyhow::Result<(String, i32, Option<String>)> {
    let t = env.opening_turn().await?;
    Ok((t.status, t.attempts, t.provider))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttling_exception_inside_a_200_stream_is_retried_then_fails_over() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, "never sent").await?;
    for _ in 0..2 {
        fake.then(Converse::Exception { text: String::new(), kind: "throttlingException".into() });
    }
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&fake, &fallback).await?;
    env.set("BEDROCK_MAX_RETRIES", "1");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    assert!(!ws.seen.iter().any(|e| is(e, "turn.reset")), "no text was sent before the exception: {:?}", ws.seen);
    assert_eq!(opening_turn(&env).await?, ("completed".into(), 1, Some("openai_compatible".into())));
    let received = fake.received();
    assert_eq!((received.len(), fallback.received().len()), (2, 1), "one retry on Bedrock, then the fallback");
    // The retry's own backoff is at most JOB_BACKOFF_MAX_MS=500 (tests): it
    // also waited out the fleet's one-second pause after the throttling.
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(950), "the fleet left Bedrock alone after it throttled: {gap:?}");
    // Counted as the provider's rate limiting, not as a fault.
    let admin = api.admin().await?;
    let report = tests::eventually(WAIT, || async {
        let r = admin.get("/admin/providers").await?;
        Ok((r.body["providers"][1]["requests"]["ok"] == 1).then_some(r.body))
    })
    .await?;
    let bedrock = &report["providers"][0];
    assert_eq!(bedrock["name"], "aws_bedrock");
    assert_eq!(bedrock["requests"]["rate_limited"], 2, "{bedrock}");
    assert_eq!(bedrock["rate_limited"]["provider"], 2, "{bedrock}");
    assert_eq!(bedrock["circuit"]["consecutive_failures"], 0, "throttling does not count towards the circuit");
    Ok(())
}

/// Bedrock's stream breaks with `broken` after some text: the client gets
/// `turn.reset`, then the fallback's whole reply, which is stored.
async fn restarts_on_the_next_provider(broken: Converse) -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, "never sent").await?;
    fake.then(broken);
    let fallback = FakeLlm::start(REPLY).await?;
    let env = chain_env(&fake, &fallback).await?;
    let api = env.start_api().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let (before, after) = ws.text_around_reset()?;
    assert!(PRIMARY_TEXT.starts_with(&before), "{:?}", ws.seen);
    assert!(!before.is_empty(), "Bedrock's deltas were streamed as they came");
    assert_eq!(after, REPLY);
    assert_eq!(opening_turn(&env).await?, ("completed".into(), 1, Some("openai_compatible".into())));
    assert_eq!(fake.received().len(), 1, "a stream that had sent text moves on at once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_before_message_stop_restarts_on_the_next_provider_after_a_reset() -> anyhow::Result<()> {
    restarts_on_the_next_provider(Converse::CutBeforeStop(PRIMARY_TEXT.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_mid_frame_restarts_on_the_next_provider_after_a_reset() -> anyhow::Result<()> {
    restarts_on_the_next_provider(Converse::CutMidFrame(PRIMARY_TEXT.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frame_with_a_bad_crc_restarts_on_the_next_provider_after_a_reset() -> anyhow::Result<()> {
    restarts_on_the_next_provider(Converse::BadCrc(PRIMARY_TEXT.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_stream_error_event_restarts_on_the_next_provider_and_counts_for_the_circuit() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, "never sent").await?;
    fake.then(Converse::Exception { text: PRIMARY_TEXT.into(), kind: "modelStreamErrorException".into() });
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&fake, &fallback).await?;
    env.set("AI_CIRCUIT_BREAKER_FAILURES", "1").set("AI_CIRCUIT_BREAKER_COOLDOWN_SECONDS", "60");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert!(ws.seen.iter().any(|e| is(e, "turn.reset")), "{:?}", ws.seen);
    let mut redis = env.redis().await?;
    let circuit: Option<String> = redis::cmd("HGET")
        .arg(format!("{}:provider:aws_bedrock:circuit", env.prefix))
        .arg("state")
        .query_async(&mut redis)
        .await?;
    assert_eq!(circuit.as_deref(), Some("open"), "a fault opens the circuit at AI_CIRCUIT_BREAKER_FAILURES=1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_validation_exception_event_fails_the_turn_at_once_without_failover() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, "never sent").await?;
    fake.then(Converse::Exception { text: String::new(), kind: "validationException".into() });
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&fake, &fallback).await?;
    env.set("BEDROCK_MAX_RETRIES", "3");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let failed = ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    assert_eq!(failed["retryable"], false);
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("validationException")), "{failed}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((fake.received().len(), fallback.received().len()), (1, 0), "no retry, no failover");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_429_is_retried_and_a_filtered_reply_goes_to_the_next_provider_once() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, "never sent").await?;
    fake.then(Converse::Error { status: 429, kind: "ThrottlingException".into(), message: "Too many requests".into() });
    fake.then(Converse::Stopped { text: "I cannot".into(), reason: "content_filtered".into() });
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&fake, &fallback).await?;
    env.set("BEDROCK_MAX_RETRIES", "3");
    let api = env.start_api().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    // The 429 is retried on Bedrock; the retry's reply is filtered: not asked
    // of Bedrock again, but of the next provider, which answers.
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    assert_eq!(ws.text_around_reset()?, ("I cannot".to_owned(), REPLY.to_owned()));
    assert_eq!(opening_turn(&env).await?, ("completed".into(), 1, Some("openai_compatible".into())));
    assert_eq!((fake.received().len(), fallback.received().len()), (2, 1));
    Ok(())
}
