//! The provider chain: failover within an attempt, a reset when a stream
//! breaks mid-reply, circuits, fleet-wide pauses and timeouts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_pauses_the_provider_for_the_whole_fleet() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    primary.then(Reply::Status { status: 429, retry_after: Some("5".into()), body: "slow down".into() });
    let fallback = FakeLlm::start(REPLY).await?;
    let env = chain_env(&primary, &fallback).await?;
    let api = env.start_api().await?;
    // The first worker meets the 429 (no retries on the primary: it fails over).
    let first = env.start_worker().await?;
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(opening_turn(&env).await?.3.as_deref(), Some("azure_openai"));
    let throttled_at = primary.received().first().map(|r| r.at).context("the primary was asked")?;
    let admin = api.admin().await?;
    let paused = admin.get("/admin/providers").await?.body["providers"][0]["circuit"]["paused_for_ms"].clone();
    assert!(paused.as_u64().is_some_and(|ms| ms > 0 && ms <= 5_000), "shown to operators: {paused}");
    first.stop().await?;
    // Another worker of the fleet, which never saw the 429, waits it out.
    let _second = env.start_worker().await?;
    let candidate = api.client().user("c2@example.com", "candidate").await?;
    let session = candidate.start_session(&interview).await?;
    let asked_at = std::time::Instant::now();
    anyhow::ensure!(asked_at - throttled_at < Duration::from_secs(4), "too slow to show anything: the pause is over");
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let received = primary.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let gap = received[1].at - throttled_at;
    assert!(gap >= Duration::from_millis(4_900), "the second worker kept off for Retry-After: {gap:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_400_fails_the_turn_at_once_with_its_status_and_no_failover() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    primary.then(Reply::Status {
        status: 400,
        retry_after: None,
        body: "<html>Bad Request: model not found</html>".into(),
    });
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&primary, &fallback).await?;
    env.set("OPENAI_COMPATIBLE_MAX_RETRIES", "3");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let failed = ws.until(WAIT, |e| is(e, "turn.failed")).await?;
    assert_eq!(failed["retryable"], false);
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("400") && reason.contains("model not found"), "{reason}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((primary.received().len(), fallback.received().len()), (1, 0), "no retry, no failover");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_provider_fails_over_to_the_next_in_the_same_attempt() -> anyhow::Result<()> {
    let primary = FakeLlm::start("never sent").await?;
    primary.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    let fallback = FakeLlm::start(REPLY).await?;
    let env = chain_env(&primary, &fallback).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    assert!(!ws.seen.iter().any(|e| is(e, "turn.reset")), "nothing to drop: {:?}", ws.seen);
    let (status, attempts, _, provider, _) = opening_turn(&env).await?;
    assert_eq!((status.as_str(), attempts, provider.as_deref()), ("completed", 1, Some("azure_openai")));
    assert_eq!((primary.received().len(), fallback.received().len()), (1, 1));
    Ok(())
}

/// The primary's stream fails with `broken` after some text: the client
/// gets `turn.reset`, then the fallback's whole reply, which is stored.
async fn restarts_on_the_next_provider(broken: Reply) -> anyhow::Result<()> {
    let primary = FakeLlm::start("never sent").await?;
    primary.then(broken);
    let fallback = FakeLlm::start(REPLY).await?;
    let env = chain_env(&primary, &fallback).await?;
    let api = env.start_api().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    // Started once the socket is open, so that it sees every delta.
    let _worker = env.start_worker().await?;
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["message"], REPLY);
    let (before, after) = ws.text_around_reset()?;
    assert!(before.starts_with("This reply from the primary"), "{before:?}");
    assert_eq!(after, REPLY);
    let seqs: Vec<i64> = ws.seen.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq strictly increasing: {seqs:?}");
    let (status, attempts, message, provider, _) = opening_turn(&env).await?;
    assert_eq!((status.as_str(), attempts, provider.as_deref()), ("completed", 1, Some("azure_openai")));
    assert_eq!(message.as_deref(), Some(REPLY));
    Ok(())
}

const PRIMARY_TEXT: &str = "This reply from the primary provider breaks off halfway through, in a sentence or two.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_ends_without_finishing_restarts_on_the_next_provider_after_a_reset() -> anyhow::Result<()> {
    restarts_on_the_next_provider(Reply::BrokenStream(PRIMARY_TEXT.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_cut_mid_event_restarts_on_the_next_provider_after_a_reset() -> anyhow::Result<()> {
    restarts_on_the_next_provider(Reply::TruncatedStream(PRIMARY_TEXT.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_primary_opens_its_circuit_and_a_successful_probe_closes_it() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    for _ in 0..2 {
        primary.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    }
    let fallback = FakeLlm::start(REPLY).await?;
    let receiver = tests::receiver::Receiver::start().await?;
    let mut env = chain_env(&primary, &fallback).await?;
    env.set("AI_CIRCUIT_BREAKER_FAILURES", "2")
        .set("AI_CIRCUIT_BREAKER_COOLDOWN_SECONDS", "2")
        .set("TEAMS_WEBHOOK_URL", &format!("{}/teams", receiver.origin));
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(10).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    ws.answer(1, WAIT).await?;
    // Two faults in a row: open. The next turn does not try the primary.
    assert_eq!(circuit_state(&env, "openai_compatible").await?, "open");
    // Alerts go out in the background.
    let titles: Vec<String> = tests::eventually(WAIT, || async {
        let titles: Vec<String> =
            receiver.posted("/teams").iter().filter_map(|c| c["title"].as_str().map(str::to_owned)).collect();
        Ok((titles.len() >= 2).then_some(titles))
    })
    .await?;
    assert_eq!(
        titles,
        [
            "🟠 MEDIUM ALERT (P3): AI provider openai_compatible failed over",
            "🔴 HIGH ALERT (P2): AI provider openai_compatible circuit opened"
        ],
        "one failover alert (the second within the window), then the circuit"
    );
    ws.answer(2, WAIT).await?;
    assert_eq!(primary.received().len(), 2, "the open circuit skipped the primary");
    // After the cool-down one probe goes to the primary, which has recovered.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    ws.answer(3, WAIT).await?;
    // The outcome is booked just after the reply's last chunk went out.
    tests::eventually(WAIT, || async {
        Ok((circuit_state(&env, "openai_compatible").await? == "closed").then_some(()))
    })
    .await?;
    ws.answer(4, WAIT).await?;
    assert_eq!(primary.received().len(), 4, "probe, then traffic as usual");
    let providers = answered_by(&env, 5).await?;
    assert_eq!(providers, ["azure_openai", "azure_openai", "azure_openai", "openai_compatible", "openai_compatible"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_see_each_provider_s_circuit_headroom_usage_and_cost() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    primary.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&primary, &fallback).await?;
    env.set("OPENAI_COMPATIBLE_RPM", "60")
        .set("OPENAI_COMPATIBLE_TPM", "100000")
        .set("AZURE_OPENAI_PRICE_INPUT_PER_1K", "3")
        .set("AZURE_OPENAI_PRICE_OUTPUT_PER_1K", "15");
    let api = env.start_api().await?;
    let worker = env.start_worker().await?;
    let (candidate, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    answered_by(&env, 1).await?;

    let admin = api.admin().await?;
    let (prompt, completion) = usage_of(REPLY);
    let cost = (f64::from(prompt) * 3.0 + f64::from(completion) * 15.0) / 1000.0;
    // The last outcome is booked just after the reply's last chunk went out.
    let report = tests::eventually(WAIT, || async {
        let r = admin.get("/admin/providers").await?;
        anyhow::ensure!(r.status == 200, "{r:?}");
        Ok((r.body["providers"][1]["requests"]["ok"] == 1).then_some(r.body))
    })
    .await?;
    let (first, second) = (&report["providers"][0], &report["providers"][1]);
    assert_eq!((first["name"].as_str(), first["position"].as_u64()), (Some("openai_compatible"), Some(0)), "{report}");
    assert_eq!(first["requests"]["error"], 1);
    assert_eq!(first["circuit"]["state"], "closed");
    assert_eq!(first["circuit"]["consecutive_failures"], 1);
    assert!(first["circuit"]["last_error"].as_str().unwrap_or_default().contains("503"), "{first}");
    assert_eq!(first["rate_limit"]["requests"], serde_json::json!({ "limit": 60, "used": 1, "remaining": 59 }));
    assert_eq!(first["rate_limit"]["tokens"]["limit"], 100_000);
    assert_eq!(first["recent"]["error_rate"], 1.0);
    assert_eq!((second["name"].as_str(), second["model"].as_str()), (Some("azure_openai"), Some("fallback-model")));
    assert_eq!(second["rate_limit"]["requests"], serde_json::Value::Null, "unlimited");
    assert_eq!(second["today"]["tokens"], serde_json::json!({ "prompt": prompt, "completion": completion }));
    assert!((second["today"]["cost_usd"].as_f64().unwrap_or(-1.0) - cost).abs() < 1e-9, "{second}");
    assert_eq!(second["latency_ms"]["samples"], 1);
    assert!(second["latency_ms"]["p95"].is_u64(), "{second}");
    assert_eq!(candidate.get("/admin/providers").await?.status, 403);

    let health = api.client().get("/health").await?.body;
    let ai = &health["checks"]["ai_provider"];
    assert_eq!((ai["status"].as_str(), ai["provider"].as_str()), (Some("healthy"), Some("openai_compatible")), "{ai}");
    assert_eq!(ai["circuits"], serde_json::json!({ "openai_compatible": "closed", "azure_openai": "closed" }));
    assert_eq!(ai["quota_remaining"], 100_000 - first["rate_limit"]["tokens"]["used"].as_u64().unwrap_or(0));

    // The worker's own series (ai_circuit_open, read at a scrape: tests/tests/metrics.rs).
    let text = shared::metrics::encode(&worker.registry);
    let samples = tests::prometheus::parse(&text).map_err(anyhow::Error::msg)?;
    let (primary, fallback) = (
        [("provider", "openai_compatible"), ("model", "fake-model")],
        [("provider", "azure_openai"), ("model", "fallback-model")],
    );
    for (name, labels, extra, want) in [
        ("ai_request_count", primary, Some(("status", "error")), 1.0),
        ("ai_request_count", fallback, Some(("status", "ok")), 1.0),
        ("ai_token_usage_total", fallback, Some(("type", "prompt")), f64::from(prompt)),
        ("ai_error_count", primary, None, 1.0),
        ("ai_request_duration_ms_count", fallback, None, 1.0),
    ] {
        let labels: Vec<(&str, &str)> = labels.into_iter().chain(extra).collect();
        assert_eq!(tests::prometheus::value(&samples, name, &labels), Some(want), "{name} {labels:?} in\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_the_rate_limit_would_hold_too_long_goes_to_the_next_provider() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&primary, &fallback).await?;
    // One request per minute on the primary; a call waits at most 200 ms.
    env.set("OPENAI_COMPATIBLE_RPM", "1").set("AI_RATE_LIMIT_MAX_WAIT_MS", "200");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    ws.answer(1, WAIT).await?;
    assert_eq!(answered_by(&env, 2).await?, ["openai_compatible", "azure_openai"]);
    assert_eq!((primary.received().len(), fallback.received().len()), (1, 1), "the limit was not exceeded");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_slower_than_its_timeout_fails_over() -> anyhow::Result<()> {
    let primary = FakeLlm::start(REPLY).await?;
    primary.then(Reply::Slow(Duration::from_secs(4), Box::new(Reply::Stream(REPLY.into()))));
    let fallback = FakeLlm::start(REPLY).await?;
    let mut env = chain_env(&primary, &fallback).await?;
    env.set("OPENAI_COMPATIBLE_TIMEOUT", "1");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let started = std::time::Instant::now();
    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "the 1 s timeout cut the wait short: {took:?}");
    let (status, attempts, _, provider, _) = opening_turn(&env).await?;
    assert_eq!((status.as_str(), attempts, provider.as_deref()), ("completed", 1, Some("azure_openai")));
    assert_eq!((primary.received().len(), fallback.received().len()), (1, 1));
    Ok(())
}
