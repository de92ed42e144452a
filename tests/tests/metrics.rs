//! Each process exports its own series: the API on `/metrics`, the worker
//! and the scheduler on `METRICS_PORT`, all behind `METRICS_TOKEN`; each
//! exposition parses strictly and passes `promtool check metrics` (the
//! seed's names aside); the fleet's counters come from the workers only.

use std::time::Duration;

use tests::fake_llm::{FakeLlm, Reply};
use tests::prometheus::{Sample, promtool_check, scrape, value};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "scrape-token-0123456789";

fn v(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_worker_and_scheduler_each_export_what_they_did() -> anyhow::Result<()> {
    let fake = FakeLlm::start("Tell me more about that.").await?;
    // The first call fails: the job's attempt is retried (no retry on the provider itself).
    fake.then(Reply::Status { status: 503, retry_after: None, body: "overloaded".into() });
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake).set("METRICS_TOKEN", TOKEN).set("OPENAI_COMPATIBLE_MAX_RETRIES", "0");
    let api = env.start_api().await?;
    let (worker_port, scheduler_port) = (tests::free_port()?, tests::free_port()?);
    let _worker = env.spawn_process("worker", &[("METRICS_PORT", &worker_port.to_string())])?;
    let _scheduler = env.spawn_process(
        "scheduler",
        &[
            ("METRICS_PORT", &scheduler_port.to_string()),
            ("BATCH_EXPIRED_SESSIONS_CLEANUP_ENABLED", "true"),
            ("BATCH_EXPIRED_SESSIONS_CLEANUP_CRON", "* * * * * *"),
        ],
    )?;
    let api_url = format!("http://{}/metrics", api.addr);
    let worker_url = format!("http://127.0.0.1:{worker_port}/metrics");
    let scheduler_url = format!("http://127.0.0.1:{scheduler_port}/metrics");

    let (_, _, mut ws) = api.candidate_session(5).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let (worker_text, worker) = tests::eventually(WAIT, || async {
        let Ok((text, s)) = scrape(&worker_url, Some(TOKEN)).await else { return Ok(None) };
        Ok((v(&s, "jobs_total", &[("queue", "turns"), ("outcome", "ok")]) >= 1.0).then_some((text, s)))
    })
    .await?;
    let (scheduler_text, scheduler) = tests::eventually(WAIT, || async {
        let Ok((text, s)) = scrape(&scheduler_url, Some(TOKEN)).await else { return Ok(None) };
        let ticks = [("batch", "expired_sessions_cleanup"), ("result", "enqueued")];
        Ok((v(&s, "scheduler_ticks_total", &ticks) >= 1.0).then_some((text, s)))
    })
    .await?;
    // The worker's pool registers with its first heartbeat.
    let (api_text, api_samples) = tests::eventually(WAIT, || async {
        let (text, s) = scrape(&api_url, Some(TOKEN)).await?;
        Ok((v(&s, "queue_workers", &[("queue", "turns")]) == 1.0).then_some((text, s)))
    })
    .await?;

    // The worker: its jobs (a failed attempt, then the reply) and its provider calls.
    assert_eq!(fake.received().len(), 2, "two calls");
    let provider = ("provider", "openai_compatible");
    assert_eq!(v(&worker, "ai_request_count", &[provider, ("status", "ok")]), 1.0);
    assert_eq!(v(&worker, "ai_request_count", &[provider, ("status", "error")]), 1.0);
    assert_eq!(v(&worker, "ai_error_count", &[provider]), 1.0);
    assert_eq!(v(&worker, "jobs_total", &[("queue", "turns"), ("outcome", "retried")]), 1.0);
    assert_eq!(v(&worker, "jobs_total", &[("queue", "turns"), ("outcome", "dead")]), 0.0);
    let completion = tests::fake_llm::usage_of("Tell me more about that.").1;
    assert_eq!(v(&worker, "ai_token_usage_total", &[("type", "completion")]), f64::from(completion));
    assert!(v(&worker, "ai_estimated_cost_usd", &[provider]) >= 0.0);
    assert_eq!(v(&worker, "job_duration_seconds_count", &[("queue", "turns")]), 2.0);
    assert_eq!(v(&worker, "ai_circuit_open", &[("provider", "openai_compatible")]), 0.0);
    assert!(worker.iter().any(|s| s.name == "ai_request_duration_ms_bucket"));
    // The scheduler: its ticks, and no job or HTTP series.
    assert!(!scheduler.iter().any(|s| s.name.starts_with("api_") || s.name.starts_with("ai_")));
    // The API: its requests and the fleet's state, none of the workers' counters.
    let register = [("method", "POST"), ("endpoint", "/api/v1/auth/register"), ("status", "201")];
    assert!(v(&api_samples, "api_request_count", &register) >= 1.0);
    assert!(v(&api_samples, "auth_login_count", &[("outcome", "success")]) >= 2.0);
    assert_eq!(v(&api_samples, "websocket_active_connections", &[]), 1.0);
    assert_eq!(v(&api_samples, "interview_active_sessions", &[]), 1.0);
    assert!(v(&api_samples, "websocket_message_count", &[("direction", "out")]) > 0.0);
    assert_eq!(v(&api_samples, "db_connection_pool_size", &[]), 8.0);
    for name in ["db_connection_pool_in_use", "db_connection_pool_available", "queue_oldest_pending_age_seconds"] {
        assert!(api_samples.iter().any(|s| s.name == name), "the API exports {name}");
    }
    for name in ["jobs_total", "ai_request_count", "ai_token_usage_total", "batch_runs_total"] {
        assert!(!api_samples.iter().any(|s| s.name == name), "the API exports no {name}");
    }

    // Every exposition passes promtool (where scripts/test installed it).
    for (who, text) in [("api", &api_text), ("worker", &worker_text), ("scheduler", &scheduler_text)] {
        match promtool_check(text) {
            Ok(true) => {}
            Ok(false) => eprintln!("promtool is not installed: {who}'s exposition checked by the strict parser only"),
            Err(e) => anyhow::bail!("{who}: {e}\n{text}"),
        }
    }

    // Without the token: 401, on every port.
    for url in [&api_url, &worker_url, &scheduler_url] {
        assert_eq!(reqwest::get(url.as_str()).await?.status(), 401, "{url}");
        let wrong = reqwest::Client::new().get(url.as_str()).bearer_auth("scrape-token-x").send().await?;
        assert_eq!(wrong.status(), 401, "{url}");
    }
    Ok(())
}

#[test]
fn promtool_passes_the_seed_names_only() {
    let seed = "# HELP api_request_count Requests.\n# TYPE api_request_count counter\napi_request_count 1\n";
    let ours = "# HELP jobs_handled Jobs.\n# TYPE jobs_handled counter\njobs_handled 1\n";
    match promtool_check(seed) {
        Ok(false) => eprintln!("promtool is not installed"),
        seed => {
            assert_eq!(seed, Ok(true));
            let ours = promtool_check(ours).expect_err("a counter of ours without _total");
            assert!(ours.contains("jobs_handled"), "{ours}");
            assert!(promtool_check("api_request_count{ 1").is_err(), "unparseable");
        }
    }
}
