//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one trace covers
//! the HTTP request that started a session (continuing the caller's
//! `traceparent`), the worker's turn job and its provider call with the
//! GenAI attributes, exported over OTLP/HTTP to a receiver that decodes the
//! protobuf; unset, nothing is exported. Sentry: a provoked error of the
//! worker reaches a fake Sentry with its request id, environment and release.

use std::time::Duration;

use tests::fake_llm::{FakeLlm, Reply};
use tests::fake_sentry::FakeSentry;
use tests::otlp::{OtlpReceiver, Span};
use tests::{Client, TestEnv};

const WAIT: Duration = Duration::from_secs(30);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// An API and a worker process on `env`, and a client of the API.
async fn processes(env: &TestEnv) -> anyhow::Result<(Vec<tokio::process::Child>, Client)> {
    let port = tests::free_port()?;
    let api = env.spawn_process("api", &[("API_PORT", &port.to_string())])?;
    let worker = env.spawn_process("worker", &[("METRICS_PORT", &tests::free_port()?.to_string())])?;
    let client = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    client.until_live(WAIT).await?;
    Ok((vec![api, worker], client))
}

/// A candidate's session started with `headers` on the start request.
async fn start_session(client: &Client, headers: &[(&str, &str)]) -> anyhow::Result<String> {
    let interview = client.user("r@example.com", "recruiter").await?.interview("en", 5).await?;
    let candidate = client.user("c@example.com", "candidate").await?;
    let started = candidate.send("POST", &format!("/interviews/{interview}/sessions"), None, headers).await?;
    anyhow::ensure!(started.status == 201, "{started:?}");
    Ok(started.body["id"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_runs_from_the_request_through_the_turn_job_to_the_provider_call() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let fake = FakeLlm::start("Tell me more about that.").await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake)
        .set("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .set("OTEL_BSP_SCHEDULE_DELAY", "100");
    let (_processes, client) = processes(&env).await?;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    start_session(&client, &[("traceparent", &traceparent)]).await?;

    let ours = |spans: &[Span]| spans.iter().filter(|s| s.trace_id == TRACE_ID).cloned().collect::<Vec<_>>();
    // Each process exports on its own schedule: the worker's spans can arrive before the api's.
    let names = ["POST /api/v1/interviews/{id}/sessions", "turn", "chat fake-model"];
    let spans = tests::eventually(WAIT, || async {
        let spans = ours(&receiver.spans());
        Ok(names.iter().all(|name| spans.iter().any(|s| s.name == *name)).then_some(spans))
    })
    .await?;
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
    let request = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/interviews/{id}/sessions")
        .ok_or_else(|| anyhow::anyhow!("no request span in {spans:#?}"))?;
    assert_eq!((request.service.as_str(), request.kind), ("api-backend", 2), "a server span");
    assert_eq!(request.parent_span_id, CALLER_SPAN, "the caller's span is its parent");
    assert_eq!(request.int("http.response.status_code"), Some(201), "{request:?}");
    let turn = spans.iter().find(|s| s.name == "turn").ok_or_else(|| anyhow::anyhow!("no turn span in {spans:#?}"))?;
    assert_eq!((turn.service.as_str(), turn.kind), ("worker", 5), "a consumer span");
    assert_eq!(turn.parent_span_id, request.span_id, "the job continues the request's trace");
    let call = spans.iter().find(|s| s.name == "chat fake-model").ok_or_else(|| anyhow::anyhow!("no call"))?;
    assert_eq!(call.kind, 3, "a client span");
    assert_eq!(call.parent_span_id, turn.span_id);
    assert_eq!(call.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(call.str("gen_ai.system"), Some("openai"));
    assert_eq!(call.str("gen_ai.request.model"), Some("fake-model"));
    let (prompt, completion) = tests::fake_llm::usage_of("Tell me more about that.");
    assert_eq!(fake.received().len(), 1);
    assert_eq!(call.int("gen_ai.usage.input_tokens"), Some(i64::from(prompt)), "{call:?}");
    assert_eq!(call.int("gen_ai.usage.output_tokens"), Some(i64::from(completion)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_endpoint_nothing_is_exported_and_jobs_carry_no_traceparent() -> anyhow::Result<()> {
    // A receiver where an exporter with no endpoint set would post (the
    // OTLP/HTTP default), if that port is free here.
    let default = OtlpReceiver::start_on("127.0.0.1:4318").await.ok();
    let fake = FakeLlm::start("Tell me more about that.").await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake);
    let (_processes, client) = processes(&env).await?;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    start_session(&client, &[("traceparent", &traceparent)]).await?;
    tests::eventually(WAIT, || async { Ok((fake.received().len() == 1).then_some(())) }).await?;
    let mut redis = env.redis().await?;
    let data: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(format!("{}-turns:data", env.prefix)).query_async(&mut redis).await?;
    assert!(!data.is_empty());
    for payload in data.values() {
        assert!(!payload.contains("traceparent"), "{payload}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(default) = default {
        assert!(default.spans().is_empty() && default.rejected().is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_turn_reaches_sentry_with_its_request_id_environment_and_release() -> anyhow::Result<()> {
    let sentry = FakeSentry::start().await?;
    let fake = FakeLlm::start("unused").await?;
    // The provider refuses the request: the turn fails for good, an ERROR.
    fake.then(Reply::Status { status: 400, retry_after: None, body: r#"{"error":{"message":"bad"}}"#.into() });
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake).set("SENTRY_DSN", &sentry.dsn).set("APP_VERSION", "9.9.9-test");
    let (_processes, client) = processes(&env).await?;
    start_session(&client, &[("x-request-id", "req-sentry-0001")]).await?;
    let event = tests::eventually(WAIT, || async {
        Ok(sentry.events().into_iter().find(|e| e["tags"]["request_id"] == "req-sentry-0001"))
    })
    .await?;
    assert!(sentry.rejected().is_empty(), "{:?}", sentry.rejected());
    // Sentry leaves out the default level, error.
    assert!(event["level"].is_null() || event["level"] == "error", "{event}");
    assert_eq!(event["tags"]["service"], "worker");
    assert_eq!(event["environment"], "test");
    assert_eq!(event["release"], "9.9.9-test");
    assert!(event["message"].as_str().is_some_and(|m| !m.is_empty()), "{event}");
    Ok(())
}
