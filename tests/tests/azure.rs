//! Azure OpenAI as it serves today, against the fake speaking Azure's
//! stream (filter-result chunks, `content_filter` endings): the GA v1
//! surface by default, the deployment path with an `api-version`, and a
//! reply withheld by a content filter as its own failure.

use std::time::Duration;

use tests::fake_llm::{Auth, FakeLlm, Reply, usage_of};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. How would you keep two workers from answering the same turn?";

/// `AI_PROVIDER=azure_openai` on `fake`, deployment `interviews-gpt`.
async fn azure_env(fake: &FakeLlm) -> anyhow::Result<TestEnv> {
    fake.expect_auth(Auth::ApiKey("azure-key".into()));
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "azure_openai")
        .set("AZURE_OPENAI_ENDPOINT", &fake.origin)
        .set("AZURE_OPENAI_API_KEY", "azure-key")
        .set("AZURE_OPENAI_DEPLOYMENT", "interviews-gpt")
        .set("AZURE_OPENAI_MAX_RETRIES", "3")
        .set("JOB_MAX_ATTEMPTS", "3");
    Ok(env)
}

/// The opening turn once finished: (status, provider, prompt tokens, completion tokens).
async fn opening_turn(env: &TestEnv) -> anyhow::Result<(String, Option<String>, Option<i32>, Option<i32>)> {
    let t = env.opening_turn().await?;
    Ok((t.status, t.provider, t.prompt_tokens, t.completion_tokens))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_v1_surface_takes_the_deployment_as_model_and_filter_chunks_are_harmless() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    let env = azure_env(&fake).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY, "the prompt_filter_results chunk (no choices) breaks nothing");
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].uri, "/openai/v1/chat/completions", "no deployment path, no api-version");
    assert_eq!((received[0].api_key.as_deref(), received[0].authorization.as_deref()), (Some("azure-key"), None));
    assert_eq!(received[0].body["model"], "interviews-gpt");
    assert_eq!(received[0].body["stream_options"]["include_usage"], true);
    let (prompt, completion) = usage_of(REPLY);
    let turn = opening_turn(&env).await?;
    assert_eq!(turn, ("completed".into(), Some("azure_openai".into()), Some(prompt as i32), Some(completion as i32)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_version_without_stream_options_is_sent_none() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    let mut env = azure_env(&fake).await?;
    // The fake refuses stream_options on this GA version, as Azure does.
    env.set("AZURE_OPENAI_API_VERSION", "2024-10-21");
    let api = env.start_api().await?;
    let worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let received = fake.received();
    assert_eq!(received[0].uri, "/openai/deployments/interviews-gpt/chat/completions?api-version=2024-10-21");
    assert!(received[0].body.get("stream_options").is_none(), "{}", received[0].body);
    // No usage chunk comes: the turn stores an estimate, and says so everywhere.
    assert_eq!(completed["usage"]["estimated"], true, "{completed}");
    let (status, _, prompt, completion) = opening_turn(&env).await?;
    assert_eq!(status, "completed");
    assert!(prompt.is_some_and(|p| p > 0 && p != usage_of(REPLY).0 as i32), "not the fake's figure: {prompt:?}");
    assert!(completion.is_some_and(|c| c > 0), "the reply's length estimated: {completion:?}");
    let db = env.db().await?;
    let estimated: bool =
        sqlx::query_scalar("SELECT usage_estimated FROM turns WHERE number = 0").fetch_one(&db).await?;
    assert!(estimated);
    let admin = api.admin().await?;
    let report = tests::eventually(WAIT, || async {
        let r = admin.get("/admin/providers").await?;
        Ok((r.body["providers"][0]["requests"]["ok"] == 1).then_some(r.body))
    })
    .await?;
    let provider = &report["providers"][0];
    assert_eq!(provider["estimated_tokens"], provider["tokens"], "all of its tokens are estimates: {provider}");
    // The worker counted them.
    let samples = tests::prometheus::parse(&shared::metrics::encode(&worker.registry)).map_err(anyhow::Error::msg)?;
    let labels = [("provider", "azure_openai"), ("model", "interviews-gpt"), ("type", "prompt")];
    let estimated = tests::prometheus::value(&samples, "ai_token_usage_estimated_total", &labels);
    assert_eq!(estimated, Some(f64::from(prompt.unwrap_or(0))));
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive().to_string();
    env.run_batch(shared::domain::Batch::AnalyticsAggregation, serde_json::json!({ "date": today })).await?;
    let (requests, estimated): (i32, i32) =
        sqlx::query_as("SELECT requests, estimated_requests FROM daily_provider_usage WHERE provider = 'azure_openai'")
            .fetch_one(&db)
            .await?;
    assert_eq!((requests, estimated), (1, 1), "the day's figures say which are estimates");
    Ok(())
}

/// `azure_openai` (on `primary`), then `openai_compatible` (on `fallback`).
async fn chain_env(primary: &FakeLlm, fallback: &FakeLlm) -> anyhow::Result<TestEnv> {
    let mut env = azure_env(primary).await?;
    env.use_fake_llm(fallback).set("AI_PROVIDER", "azure_openai").set("AI_FALLBACK_PROVIDERS", "openai_compatible");
    Ok(env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_content_filter_ending_is_not_retried_there_but_tried_once_on_the_next_provider() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    primary.then(Reply::Filtered("Here is how one could hurt".into()));
    let fallback = FakeLlm::start(REPLY).await?;
    let env = chain_env(&primary, &fallback).await?;
    let api = env.start_api().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let (before, after) = ws.text_around_reset()?;
    assert!(!before.is_empty() && after == REPLY, "the withheld text is dropped: {:?}", ws.seen);
    assert_eq!(opening_turn(&env).await?.1.as_deref(), Some("openai_compatible"));
    assert_eq!((primary.received().len(), fallback.received().len()), (1, 1), "no retry on Azure");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_provider_filters_the_reply_the_candidate_is_told_why() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    primary.then(Reply::Filtered("Withheld".into()));
    let fallback = FakeLlm::start(REPLY).await?;
    fallback.then(Reply::Filtered("Withheld too".into()));
    let env = chain_env(&primary, &fallback).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let failed = ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    assert_eq!(failed["retryable"], false);
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("content filter"), "{reason}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((primary.received().len(), fallback.received().len()), (1, 1), "no job retry either");
    Ok(())
}
