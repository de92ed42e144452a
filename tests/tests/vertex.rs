//! Vertex AI as Google serves it: the worker gets its own access tokens
//! (from the metadata server, or a service-account key exchanged at its
//! `token_uri`), renews them when they expire, drops one Vertex refuses,
//! and calls the OpenAI-compatible endpoint with `google/` models; all
//! against the fake Google over real HTTP, which issues tokens that expire
//! when it says and refuses any other.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::fake_gcp::{CLOUD_PLATFORM, FakeGcp, Outcome, PROJECT_ID, VertexReply, Via};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. How would you make a job queue survive a crash of its workers?";
const SCORECARD: &str = r#"{"scores":{"communication":4,"technical_depth":3,"problem_solving":4,"engagement":5},"summary":"Clear and careful.","recommendation":"hire"}"#;

/// `AI_PROVIDER=gcp_vertex` on `fake`'s endpoint, tokens not configured yet.
async fn vertex_env(fake: &FakeGcp) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "gcp_vertex")
        .set("GCP_PROJECT_ID", PROJECT_ID)
        .set("VERTEX_AI_ENDPOINT", &fake.vertex_endpoint(PROJECT_ID, "global"))
        .set("VERTEX_AI_TIMEOUT", "5")
        .set("JOB_MAX_ATTEMPTS", "3");
    Ok(env)
}

/// The bearer token of each request Vertex received, in order.
fn bearers(fake: &FakeGcp) -> Vec<String> {
    let sent = fake.received().into_iter().filter_map(|r| r.authorization);
    sent.map(|a| a.trim_start_matches("Bearer ").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_server_tokens_expire_and_every_turn_carries_a_fresh_one() -> anyhow::Result<()> {
    let fake = FakeGcp::start(REPLY).await?;
    fake.set_token_lifetime(Duration::from_secs(2));
    let mut env = vertex_env(&fake).await?;
    env.set("GCE_METADATA_HOST", &fake.metadata_host());
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    for number in 1..=2 {
        // Past the last token's 2 s lifetime.
        tokio::time::sleep(Duration::from_secs(3)).await;
        ws.answer(number, WAIT).await?;
    }
    let received = fake.received();
    assert_eq!(received.len(), 3, "one request per turn: {received:?}");
    assert!(received.iter().all(|r| r.outcome == Outcome::Accepted), "none refused: {received:?}");
    let issued = fake.tokens_issued();
    let sent = bearers(&fake);
    for (request, token) in received.iter().zip(&sent) {
        let token = issued.iter().find(|t| &t.token == token).expect("a token the metadata server issued");
        assert_eq!(token.via, Via::Metadata);
        assert!(request.at - token.issued_at < token.lifetime, "sent before it expired");
    }
    assert!(sent[0] != sent[1] && sent[1] != sent[2], "each turn a fresh token: {sent:?}");
    assert_eq!(fake.token_requests().len(), 3, "one fetch per expired token");
    assert_eq!(
        received[0].path,
        format!("/v1/projects/{PROJECT_ID}/locations/global/endpoints/openapi/chat/completions")
    );
    assert_eq!(received[0].body["model"], "google/gemini-3.5-flash", "the default model, with its publisher");
    assert_eq!(env.troubled_turns().await?, 0, "no turn failed or was retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_token_is_dropped_and_the_request_sent_once_more_with_a_new_one() -> anyhow::Result<()> {
    let fake = FakeGcp::start(REPLY).await?;
    let mut env = vertex_env(&fake).await?;
    env.set("GCE_METADATA_HOST", &fake.metadata_host()).set("VERTEX_AI_MODEL", "gemini-3.1-flash-lite");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    // An hour's token, cached; revoked before it expires.
    fake.revoke_tokens();
    ws.answer(1, WAIT).await?;
    ws.answer(2, WAIT).await?;
    let outcomes: Vec<bool> = fake.received().iter().map(|r| r.outcome == Outcome::Accepted).collect();
    assert_eq!(outcomes, [true, false, true, true], "the revoked token refused once, then a new one");
    let sent = bearers(&fake);
    assert_eq!(sent[0], sent[1], "the cached token was used until refused");
    assert_ne!(sent[1], sent[2], "then dropped");
    assert_eq!(sent[2], sent[3], "the new one is cached in turn");
    assert_eq!(fake.token_requests().len(), 2);
    assert_eq!(fake.received()[0].body["model"], "google/gemini-3.1-flash-lite");
    assert!(!ws.seen.iter().any(|e| is(e, "turn.failed") || is(e, "turn.reset")));
    assert_eq!(env.troubled_turns().await?, 0, "the retry is inside the one attempt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_account_key_is_exchanged_at_its_token_uri_and_renewed() -> anyhow::Result<()> {
    let fake = FakeGcp::start(REPLY).await?;
    fake.set_token_lifetime(Duration::from_secs(2));
    for reply in [REPLY, REPLY, SCORECARD] {
        fake.then(VertexReply::Stream(reply.into()));
    }
    let mut env = vertex_env(&fake).await?;
    let key = std::env::temp_dir().join(format!("{}-service-account.json", env.prefix));
    fake.write_service_account_key(&key)?;
    env.set("GOOGLE_APPLICATION_CREDENTIALS", &key.display().to_string());
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let tests::OpenedSession { recruiter, session, mut ws, .. } = api.opened_session(1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.answer(1, WAIT).await?;
    let evaluation = ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    let _ = std::fs::remove_file(&key);
    assert_eq!(evaluation["recommendation"], "hire");

    let exchanges = fake.token_requests();
    assert!(exchanges.len() >= 2, "a new token after the first expired: {exchanges:?}");
    let token_uri = format!("{}/token", fake.origin);
    for exchange in &exchanges {
        assert_eq!((exchange.via, &exchange.outcome), (Via::ServiceAccount, &Outcome::Accepted), "{exchange:?}");
        let claims = exchange.claims.clone().unwrap_or(Value::Null);
        assert_eq!((&claims["iss"], &claims["aud"]), (&json!(fake.client_email()), &json!(token_uri)), "{claims}");
        assert!(claims["scope"].as_str().is_some_and(|s| s.split(' ').any(|s| s == CLOUD_PLATFORM)), "{claims}");
    }
    let received = fake.received();
    assert_eq!(received.len(), 3, "two turns and the evaluation");
    assert!(received.iter().all(|r| r.outcome == Outcome::Accepted), "{received:?}");
    let issued = fake.tokens_issued();
    let sent = bearers(&fake);
    assert!(sent.iter().all(|t| issued.iter().any(|i| &i.token == t && i.via == Via::ServiceAccount)));
    assert_ne!(sent[0], sent[1], "the first token had expired");
    // The scorecard is asked as Vertex's structured output.
    let format = &received[2].body["response_format"];
    assert_eq!((&format["type"], &format["json_schema"]["strict"]), (&json!("json_schema"), &json!(true)), "{format}");
    let criteria = &format["json_schema"]["schema"]["properties"]["scores"]["required"];
    assert_eq!(criteria, &json!(["communication", "technical_depth", "problem_solving", "engagement"]));
    let stored = recruiter.get(&format!("/sessions/{session}/evaluation")).await?.body;
    assert_eq!(stored["scores"]["engagement"], 5);
    assert_eq!(env.troubled_turns().await?, 0);
    Ok(())
}

/// A token from the fake's metadata server, as a sidecar would write to a file.
async fn mint(fake: &FakeGcp) -> anyhow::Result<String> {
    let url = format!("http://{}/computeMetadata/v1/instance/service-accounts/default/token", fake.metadata_host());
    let token: Value = reqwest::Client::new().get(url).header("Metadata-Flavor", "Google").send().await?.json().await?;
    Ok(token["access_token"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_file_is_read_for_every_request() -> anyhow::Result<()> {
    let fake = FakeGcp::start(REPLY).await?;
    let mut env = vertex_env(&fake).await?;
    let file = std::env::temp_dir().join(format!("{}-vertex-token", env.prefix));
    let first = mint(&fake).await?;
    std::fs::write(&file, format!("{first}\n"))?;
    env.set("VERTEX_AI_TOKEN_FILE", &file.display().to_string());
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    fake.revoke_tokens();
    let second = mint(&fake).await?;
    std::fs::write(&file, format!("{second}\n"))?;
    let started = Instant::now();
    ws.answer(1, WAIT).await?;
    let _ = std::fs::remove_file(&file);
    assert_eq!(bearers(&fake), [first, second], "the file's token at each request, nothing cached");
    assert!(started.elapsed() < WAIT);
    assert_eq!(env.troubled_turns().await?, 0);
    Ok(())
}
