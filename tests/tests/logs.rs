//! Following one request through the worker's logs (the seed's procedure,
//! issue 14): every line the worker logs for a turn that was retried and
//! failed over carries the turn's request id, at any `LOG_LEVEL`, and its
//! trace id when tracing is on.

use std::time::Duration;

use tests::captured::{Lines, spawn_captured};
use tests::fake_llm::{FakeLlm, Reply};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. Tell me about a queue you have run in production.";

/// The worker's JSON lines about a turn that was retried once and failed
/// over, at `log_level`, exporting traces to `otlp` if given.
async fn lines_of_a_failed_over_turn(log_level: &str, otlp: Option<&str>) -> anyhow::Result<Vec<serde_json::Value>> {
    let primary = FakeLlm::start("never sent").await?;
    for _ in 0..2 {
        primary.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    }
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&primary)
        .set("OPENAI_COMPATIBLE_MAX_RETRIES", "1")
        .set("AI_FALLBACK_PROVIDERS", "azure_openai")
        .set("AZURE_OPENAI_ENDPOINT", &fallback.origin)
        .set("AZURE_OPENAI_API_KEY", "azure-key")
        .set("AZURE_OPENAI_DEPLOYMENT", "fallback-model")
        .set("LOG_LEVEL", log_level);
    if let Some(endpoint) = otlp {
        env.set("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    let api = env.start_api().await?;
    let lines: Lines = Default::default();
    let (mut worker, readers) = spawn_captured("worker", &[], &env.vars, &lines)?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    assert_eq!((primary.received().len(), fallback.received().len()), (2, 1), "retried once, then failed over");
    tests::terminate(&worker)?;
    tokio::time::timeout(WAIT, worker.wait()).await??;
    for reader in readers {
        reader.await?;
    }

    let lines = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // The worker's own lines about the turn: its job, and the provider chain under it.
    let of_the_turn: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|(_, line)| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|l| {
            l["module"]
                .as_str()
                .is_some_and(|m| m.starts_with("worker::providers") || m.starts_with("worker::jobs::turn"))
        })
        .collect();
    Ok(of_the_turn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_worker_line_of_a_retried_and_failed_over_turn_has_its_request_and_trace_id() -> anyhow::Result<()> {
    let receiver = tests::otlp::OtlpReceiver::start().await?;
    let of_the_turn = lines_of_a_failed_over_turn("DEBUG", Some(&receiver.endpoint)).await?;
    let retries_and_failover =
        of_the_turn.iter().filter(|l| l["module"].as_str().is_some_and(|m| m.starts_with("worker::providers")));
    assert!(retries_and_failover.count() >= 2, "the chain logged its retry and failover: {of_the_turn:?}");
    let without: Vec<&serde_json::Value> = of_the_turn.iter().filter(|l| !l["request_id"].is_string()).collect();
    assert!(without.is_empty(), "lines without a request id: {without:?}");
    let ids: std::collections::BTreeSet<&str> = of_the_turn.iter().filter_map(|l| l["request_id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one turn, one request id: {ids:?}");
    let traces: std::collections::BTreeSet<&str> =
        of_the_turn.iter().filter_map(|l| l["context"]["trace_id"].as_str()).collect();
    assert_eq!(traces.len(), 1, "one turn, one trace: {of_the_turn:?}");
    assert!(of_the_turn.iter().all(|l| l["context"]["trace_id"].is_string()), "lines without a trace id");
    assert!(traces.iter().all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit())), "{traces:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_log_level_warning_the_warnings_of_a_turn_still_have_its_request_id() -> anyhow::Result<()> {
    let of_the_turn = lines_of_a_failed_over_turn("WARNING", None).await?;
    assert!(of_the_turn.len() >= 2, "the retry and the failover: {of_the_turn:?}");
    assert!(of_the_turn.iter().all(|l| l["level"] == "WARNING" || l["level"] == "ERROR"), "{of_the_turn:?}");
    assert!(of_the_turn.iter().all(|l| l["request_id"].is_string()), "lines without a request id: {of_the_turn:?}");
    assert!(of_the_turn.iter().all(|l| l["context"]["trace_id"].is_null()), "no trace id without tracing");
    Ok(())
}
