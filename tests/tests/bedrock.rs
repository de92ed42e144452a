//! AWS Bedrock as Bedrock speaks: ConverseStream signed with SigV4 (keys
//! from the environment, or web identity through STS) or called with a
//! Bedrock API key, against the fake AWS over real HTTP, which checks every
//! signature and Converse's validation rules.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tests::fake_aws::{Converse, FakeAws, usage_of};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REGION: &str = "us-east-1";
const KEY_ID: &str = "AKIAFAKEBEDROCK00001";
const SECRET: &str = "fake/Secret+Key/for/the/bedrock/tests00";
/// An inference profile: its `:` travels percent-encoded in the path.
const MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const REPLY: &str = "Thank you. How would you make a job queue survive a crash of its workers?";
const SCORECARD: &str = r#"{"scores":{"communication":4,"technical_depth":4,"problem_solving":3,"engagement":5},"summary":"Clear answers.","recommendation":"hire"}"#;

/// `AI_PROVIDER=aws_bedrock` on `fake`, with prices, and no credentials yet.
async fn bedrock_env(fake: &FakeAws) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "aws_bedrock")
        .set("AWS_REGION", REGION)
        .set("BEDROCK_ENDPOINT", &fake.origin)
        .set("BEDROCK_MODEL_ID", MODEL)
        .set("BEDROCK_TIMEOUT", "5")
        .set("BEDROCK_PRICE_INPUT_PER_1K", "3")
        .set("BEDROCK_PRICE_OUTPUT_PER_1K", "15")
        .set("JOB_MAX_ATTEMPTS", "3");
    Ok(env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_streams_through_converse_stream_signed_with_environment_keys() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, REPLY).await?;
    fake.accept_keys(KEY_ID, SECRET);
    for reply in [REPLY, REPLY, REPLY, SCORECARD] {
        fake.then(Converse::Stream(reply.into()));
    }
    let mut env = bedrock_env(&fake).await?;
    env.set("AWS_ACCESS_KEY_ID", KEY_ID).set("AWS_SECRET_ACCESS_KEY", SECRET);
    let api = env.start_api().await?;
    let (recruiter, candidate, interview) = api.interview_for_candidate(2).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    let opening = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(opening["message"], REPLY);
    let deltas: String = ws.seen.iter().filter(|e| is(e, "turn.delta")).filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(deltas, REPLY, "the deltas add up to the message");
    ws.answer(1, WAIT).await?;
    ws.answer(2, WAIT).await?;
    ws.until(WAIT, |e| is(e, "session.completed")).await?;
    let evaluation = tests::eventually(WAIT, || async {
        let r = recruiter.get(&format!("/sessions/{session}/evaluation")).await?;
        Ok(matches!(r.body["status"].as_str(), Some("completed" | "failed")).then_some(r.body))
    })
    .await?;
    assert_eq!(
        (evaluation["status"].as_str(), evaluation["recommendation"].as_str()),
        (Some("completed"), Some("hire"))
    );
    let (input, output) = usage_of(SCORECARD);
    assert_eq!(evaluation["usage"], json!({ "prompt_tokens": input, "completion_tokens": output }), "{evaluation}");

    let received = fake.received();
    assert_eq!(received.len(), 4, "three turns and the evaluation, one request each");
    for r in &received {
        assert_eq!(r.refused, None, "{r:?}");
        assert_eq!(r.signed_with.as_deref(), Some(KEY_ID), "every request signed with the keys: {r:?}");
        assert_eq!(r.model, MODEL);
        assert_eq!(r.path, "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream");
        assert_eq!(r.body["inferenceConfig"]["maxTokens"], 2048);
        assert!(r.body["system"][0]["text"].as_str().is_some_and(|t| t.contains("interviewer")), "{}", r.body);
    }
    let opening_messages = &received[0].body["messages"];
    assert_eq!(opening_messages.as_array().map(Vec::len), Some(1), "{opening_messages}");
    assert_eq!(opening_messages[0]["role"], "user", "the opening turn starts with a user message");
    let evaluation_messages = received[3].body["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(evaluation_messages.last().map(|m| m["role"].clone()), Some(json!("user")));

    let db = env.db().await?;
    let turns: Vec<(String, String, i32, i32, f64)> = sqlx::query_as(
        "SELECT provider, model, prompt_tokens, completion_tokens, cost_usd FROM turns
         WHERE status = 'completed' ORDER BY number",
    )
    .fetch_all(&db)
    .await?;
    let (input, output) = usage_of(REPLY);
    let cost = (f64::from(input) * 3.0 + f64::from(output) * 15.0) / 1000.0;
    assert_eq!(turns.len(), 3);
    for (provider, model, prompt, completion, cost_usd) in turns {
        assert_eq!((provider.as_str(), model.as_str()), ("aws_bedrock", MODEL));
        assert_eq!((prompt as u32, completion as u32), (input, output), "usage from the metadata event");
        assert!((cost_usd - cost).abs() < 1e-12, "{cost_usd} != {cost}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_fails_the_turn_with_aws_s_reason_and_is_not_retried() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, REPLY).await?;
    fake.accept_keys(KEY_ID, SECRET);
    let mut env = bedrock_env(&fake).await?;
    env.set("AWS_ACCESS_KEY_ID", KEY_ID).set("AWS_SECRET_ACCESS_KEY", "not-the-secret").set("BEDROCK_MAX_RETRIES", "3");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let failed = ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    assert_eq!(failed["retryable"], false);
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("403") && reason.contains("InvalidSignatureException"), "{reason}");
    assert!(reason.contains("Check your AWS Secret Access Key"), "AWS's own words reach the operator: {reason}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = fake.received();
    assert_eq!(received.len(), 1, "not retried as if transient");
    assert_eq!(received[0].refused, Some((403, "InvalidSignatureException".to_owned())));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_identity_credentials_come_from_sts_and_are_renewed_when_they_expire() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, REPLY).await?;
    let role = "arn:aws:iam::123456789012:role/ai-interviewer-worker";
    let lifetime = Duration::from_secs(3);
    fake.allow_web_identity(role, "eyJhbGciOiJSUzI1NiJ9.fake-projected-token", lifetime);
    let env = bedrock_env(&fake).await?;
    let token_file = std::env::temp_dir().join(format!("{}-web-identity-token", env.prefix));
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.fake-projected-token")?;
    let api = env.start_api().await?;
    // The AWS credential chain reads the process environment: the worker
    // runs as its own process, with EKS IRSA's variables and nothing else.
    let token_path = token_file.display().to_string();
    let _worker = env.spawn_process(
        "worker",
        &[("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path), ("AWS_ROLE_ARN", role), ("AWS_ENDPOINT_URL_STS", &fake.origin)],
    )?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    for number in 1..=2 {
        // Past the credentials' lifetime: the fake refuses them from now on.
        tokio::time::sleep(lifetime + Duration::from_millis(500)).await;
        ws.answer(number, WAIT).await?;
    }
    let _ = std::fs::remove_file(&token_file);
    let received = fake.received();
    assert_eq!(received.len(), 3, "one request per turn: {received:?}");
    assert!(received.iter().all(|r| r.refused.is_none()), "no request refused: {received:?}");
    let issued: Vec<String> = fake.issued().into_iter().map(|(_, key)| key).collect();
    let used: Vec<String> = received.iter().filter_map(|r| r.signed_with.clone()).collect();
    assert_eq!(used.len(), 3);
    assert!(used.iter().all(|k| issued.contains(k)), "signed with STS's credentials: {used:?} of {issued:?}");
    assert!(used[0] != used[1] && used[1] != used[2], "new credentials after each expiry: {used:?}");
    assert!(received.iter().all(|r| r.security_token.is_some()), "the session token is sent");
    assert_eq!(env.troubled_turns().await?, 0, "no turn failed or needed a second attempt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_credentials_come_from_the_ecs_or_pod_identity_endpoint() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, REPLY).await?;
    fake.allow_container_credentials("pod-identity-token", Duration::from_secs(900));
    let env = bedrock_env(&fake).await?;
    let token_file = std::env::temp_dir().join(format!("{}-pod-identity-token", env.prefix));
    std::fs::write(&token_file, "pod-identity-token")?;
    let api = env.start_api().await?;
    // EKS Pod Identity's variables (ECS sets the same FULL_URI kind).
    let (uri, token_path) = (format!("{}/container-credentials", fake.origin), token_file.display().to_string());
    let _worker = env.spawn_process(
        "worker",
        &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri), ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path)],
    )?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    ws.answer(1, WAIT).await?;
    let _ = std::fs::remove_file(&token_file);
    let issued: Vec<String> = fake.issued().into_iter().map(|(_, key)| key).collect();
    assert_eq!(issued.len(), 1, "fetched once and cached while valid: {issued:?}");
    let received = fake.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.signed_with.as_ref() == issued.first()), "{received:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_bedrock_api_key_the_bearer_is_sent_and_nothing_is_signed() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, REPLY).await?;
    fake.accept_bearer("ABSKbedrock-api-key");
    let mut env = bedrock_env(&fake).await?;
    // Keys in the environment too: the API key wins.
    env.set("AWS_BEARER_TOKEN_BEDROCK", "ABSKbedrock-api-key")
        .set("AWS_ACCESS_KEY_ID", KEY_ID)
        .set("AWS_SECRET_ACCESS_KEY", SECRET);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].authorization.as_deref(), Some("Bearer ABSKbedrock-api-key"));
    assert_eq!((received[0].signed_with.as_deref(), received[0].security_token.as_deref()), (None, None));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fake_enforces_converse_s_rules() -> anyhow::Result<()> {
    let fake = FakeAws::start(REGION, REPLY).await?;
    fake.accept_bearer("key");
    let url = format!("{}/model/{}/converse-stream", fake.origin, "amazon.nova-lite-v1%3A0");
    let http = reqwest::Client::new();
    let send = |body: Value| http.post(&url).bearer_auth("key").json(&body).send();
    let text = |t: &str| json!([{ "text": t }]);
    for (body, expected) in [
        (json!({ "messages": [{ "role": "assistant", "content": text("Hello") }] }), "must start with a user message"),
        (
            json!({ "messages": [{ "role": "user", "content": text("a") }, { "role": "user", "content": text("b") }] }),
            "must alternate",
        ),
        (json!({ "messages": [{ "role": "user", "content": text("  ") }] }), "is blank"),
        (json!({ "messages": [] }), "at least one message"),
    ] {
        let response = send(body).await?;
        assert_eq!(response.status().as_u16(), 400);
        let kind = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(kind.starts_with("ValidationException"), "{kind}");
        let message: Value = response.json().await?;
        assert!(message["message"].as_str().is_some_and(|m| m.contains(expected)), "{message} lacks {expected:?}");
    }
    let ok = send(json!({ "messages": [{ "role": "user", "content": text("Hi") }] })).await?;
    assert_eq!(ok.status().as_u16(), 200);
    let unsigned = http.post(&url).json(&json!({})).send().await?;
    assert_eq!(unsigned.status().as_u16(), 403, "no credentials, no answer");
    let received = fake.received();
    assert_eq!(received.last().and_then(|r| r.refused.clone()).context("refused")?.0, 403);
    Ok(())
}
