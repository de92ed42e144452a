//! Following one request through the worker's logs (the seed's procedure,
//! issue 14): every line the worker logs for a turn that was retried and
//! failed over carries the turn's request id.

use std::time::Duration;

use tests::captured::{Lines, spawn_captured};
use tests::fake_llm::{FakeLlm, Reply};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. Tell me about a queue you have run in production.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_worker_line_of_a_retried_and_failed_over_turn_has_its_request_id() -> anyhow::Result<()> {
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
        .set("LOG_LEVEL", "DEBUG");
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
    let retries_and_failover =
        of_the_turn.iter().filter(|l| l["module"].as_str().is_some_and(|m| m.starts_with("worker::providers")));
    assert!(retries_and_failover.count() >= 2, "the chain logged its retry and failover: {of_the_turn:?}");
    let without: Vec<&serde_json::Value> = of_the_turn.iter().filter(|l| !l["request_id"].is_string()).collect();
    assert!(without.is_empty(), "lines without a request id: {without:?}");
    let ids: std::collections::BTreeSet<&str> = of_the_turn.iter().filter_map(|l| l["request_id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one turn, one request id: {ids:?}");
    Ok(())
}
