//! The scorecard a provider returns is validated by us: an invalid one is
//! asked for again once with the reason, then the evaluation fails with it;
//! the usage of both rounds is counted.

use std::time::Duration;

use serde_json::json;
use tests::fake_llm::{FakeLlm, Reply, usage_of};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. Could you walk me through how you would design a job queue in Rust?";

/// The fake as the OpenAI-compatible provider, at 0.5 and 1.5 USD per 1,000 tokens.
async fn env_with(fake: &FakeLlm) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(fake)
        .set("OPENAI_COMPATIBLE_TIMEOUT", "5")
        .set("OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K", "0.5")
        .set("OPENAI_COMPATIBLE_PRICE_OUTPUT_PER_1K", "1.5")
        .set("JOB_MAX_ATTEMPTS", "3");
    Ok(env)
}

const SCORECARD: &str = r#"{"scores":{"communication":4,"technical_depth":3,"problem_solving":4,"engagement":5},"summary":"Clear and careful.","recommendation":"hire"}"#;

/// A one-answer interview on `fake` (opening turn and last turn answered
/// with `REPLY`), ended by its answer; its evaluation is then asked with
/// the fake's next replies. Returns the evaluation as the recruiter reads it.
async fn evaluated_with(fake: &FakeLlm, evaluation_replies: &[&str]) -> anyhow::Result<serde_json::Value> {
    fake.then(Reply::Stream(REPLY.into()));
    fake.then(Reply::Stream(REPLY.into()));
    for reply in evaluation_replies {
        fake.then(Reply::Stream((*reply).into()));
    }
    let env = env_with(fake).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let tests::OpenedSession { recruiter, session, mut ws, .. } = api.opened_session(1).await?;
    ws.answer(1, WAIT).await?;
    ws.until(WAIT, |e| is(e, "session.completed")).await?;
    tests::eventually(WAIT, || async {
        let r = recruiter.get(&format!("/sessions/{session}/evaluation")).await?;
        Ok(matches!(r.body["status"].as_str(), Some("completed" | "failed")).then_some(r.body))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_scorecard_is_asked_again_once_with_the_validation_error() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    let evaluation = evaluated_with(&fake, &["Overall a solid candidate.", SCORECARD]).await?;
    assert_eq!(evaluation["status"], "completed", "{evaluation}");
    assert_eq!(evaluation["recommendation"], "hire");
    assert_eq!(evaluation["scores"]["engagement"], 5);
    // Both rounds' usage, at env_with's prices (0.5 and 1.5 USD per 1,000).
    let (prompt, completion) = (usage_of("x").0 * 2, usage_of("Overall a solid candidate.").1 + usage_of(SCORECARD).1);
    assert_eq!(evaluation["usage"], serde_json::json!({ "prompt_tokens": prompt, "completion_tokens": completion }));
    let cost = (f64::from(prompt) * 0.5 + f64::from(completion) * 1.5) / 1000.0;
    assert!((evaluation["cost_usd"].as_f64().unwrap_or(-1.0) - cost).abs() < 1e-12, "{evaluation}");
    let received = fake.received();
    assert_eq!(received.len(), 4, "two turns, two evaluation requests");
    let format = &received[2].body["response_format"];
    assert_eq!((&format["type"], &format["json_schema"]["strict"]), (&json!("json_schema"), &json!(true)), "{format}");
    let criteria = &format["json_schema"]["schema"]["properties"]["scores"]["required"];
    assert_eq!(criteria, &json!(["communication", "technical_depth", "problem_solving", "engagement"]));
    assert_eq!(received[0].body.get("response_format"), None, "turns are plain text");
    let retry = received[3].body["messages"].as_array().cloned().unwrap_or_default();
    let last = retry.last().and_then(|m| m["content"].as_str()).unwrap_or_default();
    assert!(last.contains("not a valid scorecard"), "the validation error is sent back: {last}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scorecard_invalid_twice_fails_the_evaluation_with_the_reason() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    let evaluation = evaluated_with(&fake, &["Overall a solid candidate.", r#"{"scores":{}}"#]).await?;
    assert_eq!(evaluation["status"], "failed", "{evaluation}");
    let error = evaluation["error"].as_str().unwrap_or_default();
    assert!(error.contains("invalid scorecard twice"), "{error}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.received().len(), 4, "no further attempt after the second invalid scorecard");
    Ok(())
}
