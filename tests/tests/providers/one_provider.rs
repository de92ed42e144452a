//! One provider's calls: the stream, its retries within the provider's
//! budget, the job's retry, and the tokens and cost it reports.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_turn_streams_from_an_openai_compatible_endpoint() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    fake.expect_auth(Auth::Bearer("sk-test-key".into()));
    let env = env_with(&fake).await?;
    let api = env.start_api().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let deltas: String = ws.seen.iter().filter(|e| is(e, "turn.delta")).filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(deltas, REPLY, "the deltas add up to the message");
    assert_eq!(completed["usage"]["prompt_tokens"], 42, "usage from the stream: {completed}");
    let (status, attempts, message, provider, prompt_tokens) = opening_turn(&env).await?;
    assert_eq!((status.as_str(), attempts), ("completed", 1));
    assert_eq!(message.as_deref(), Some(REPLY));
    assert_eq!(provider.as_deref(), Some("openai_compatible"));
    assert_eq!(prompt_tokens, Some(42));
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].authorization.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!(received[0].body["model"], "fake-model");
    assert_eq!(received[0].body["stream"], true);
    assert_eq!(received[0].body["stream_options"]["include_usage"], true);
    assert_eq!(received[0].body["messages"][0]["role"], "system");
    let health = api.client().get("/health").await?.body;
    assert_eq!(health["checks"]["ai_provider"]["provider"], "openai_compatible", "{health}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_is_retried_once_after_its_retry_after() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    fake.then(Reply::Status {
        status: 429,
        retry_after: Some("2".into()),
        body: "<html>Too Many Requests</html>".into(),
    });
    let env = env_with(&fake).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let received = fake.received();
    assert_eq!(received.len(), 2, "one request per attempt: no hidden retries");
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_secs(2), "Retry-After: 2 was honoured: {gap:?}");
    assert!(gap < Duration::from_secs(5), "{gap:?}");
    assert_eq!(opening_turn(&env).await?.1, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_stream_restarts_and_the_client_drops_the_partial_text() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    fake.then(Reply::BrokenStream(REPLY.into()));
    let env = env_with(&fake).await?;
    let api = env.start_api().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let reset = ws.seen.iter().position(|e| is(e, "turn.reset")).unwrap_or(usize::MAX);
    let last_partial = ws.seen.iter().rposition(|e| is(e, "turn.delta") && e["text"] != "").unwrap_or(0);
    assert!(reset < last_partial, "turn.reset comes before the new deltas: {:?}", ws.seen);
    let after_reset: String =
        ws.seen[reset..].iter().filter(|e| is(e, "turn.delta")).filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(after_reset, REPLY);
    assert_eq!(fake.received().len(), 2);
    Ok(())
}

/// One turn through `AI_PROVIDER` with `vars`; returns what the fake received.
async fn one_turn_with(fake: &FakeLlm, vars: &[(&str, &str)]) -> anyhow::Result<Vec<tests::fake_llm::Received>> {
    let mut env = TestEnv::new().await?;
    for (k, v) in vars {
        env.set(k, v);
    }
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    // turn.completed is published just before its transaction commits.
    let db = env.db().await?;
    let provider: String = tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            Ok(sqlx::query_scalar("SELECT provider FROM turns WHERE number = 0 AND status = 'completed'")
                .fetch_optional(&db)
                .await?)
        }
    })
    .await?;
    assert_eq!(Some(provider.as_str()), vars.iter().find(|(k, _)| *k == "AI_PROVIDER").map(|(_, v)| *v));
    Ok(fake.received())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_openai_calls_the_deployment_with_its_api_key_header() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    fake.expect_auth(Auth::ApiKey("azure-key".into()));
    let received = one_turn_with(
        &fake,
        &[
            ("AI_PROVIDER", "azure_openai"),
            ("AZURE_OPENAI_ENDPOINT", &fake.origin),
            ("AZURE_OPENAI_API_KEY", "azure-key"),
            ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-interviews"),
            ("AZURE_OPENAI_API_VERSION", "2024-10-21"),
        ],
    )
    .await?;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].uri, "/openai/deployments/gpt-4o-interviews/chat/completions?api-version=2024-10-21");
    assert_eq!(received[0].api_key.as_deref(), Some("azure-key"));
    assert_eq!(received[0].authorization, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_is_retried_within_its_budget_before_the_job_is() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    for _ in 0..2 {
        fake.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    }
    let mut env = env_with(&fake).await?;
    env.set("OPENAI_COMPATIBLE_MAX_RETRIES", "2");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let received = fake.received();
    assert_eq!(received.len(), 3, "two retries on the provider");
    // Backoff with full jitter within JOB_BACKOFF_MAX_MS=500 (tests).
    assert!(received[2].at - received[0].at < Duration::from_millis(1_500));
    let (status, attempts, ..) = opening_turn(&env).await?;
    assert_eq!((status.as_str(), attempts), ("completed", 1), "one job attempt");
    assert!(!ws.seen.iter().any(|e| is(e, "turn.reset")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_and_cost_are_the_fake_s_usage_times_the_configured_prices() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    let env = env_with(&fake).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    ws.answer(1, WAIT).await?;
    answered_by(&env, 2).await?;
    let db = env.db().await?;
    let rows: Vec<(i32, i32, f64)> = sqlx::query_as(
        "SELECT prompt_tokens, completion_tokens, cost_usd FROM turns WHERE status = 'completed' ORDER BY number",
    )
    .fetch_all(&db)
    .await?;
    let (prompt, completion) = usage_of(REPLY);
    // OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K=0.5, _OUTPUT_PER_1K=1.5 (env_with).
    let expected = (f64::from(prompt) * 0.5 + f64::from(completion) * 1.5) / 1000.0;
    assert_eq!(rows.len(), 2);
    for (p, c, cost) in rows {
        assert_eq!((p as u32, c as u32), (prompt, completion));
        assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
    }
    Ok(())
}
