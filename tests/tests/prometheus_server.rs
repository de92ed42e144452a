//! A real Prometheus scrapes two API and two worker processes: its totals
//! are what the test drove (requests, completed jobs) and the queue depth
//! Redis holds, through the documented queries (`sum` for what processes
//! did, `max` for the fleet's state, the KEDA trigger's query as shipped);
//! with the shipped alert rules (`for:` shortened), killing every worker
//! fires NoWorkers and a failing provider fires AiErrorRate.

use std::time::Duration;

use tests::fake_llm::{FakeLlm, Reply};
use tests::prometheus_server::{Prometheus, installed, shortened_rules};
use tests::{Client, TestEnv};

const WAIT: Duration = Duration::from_secs(40);

/// The ScaledObject's query in docker/k8s/worker.yaml.
fn keda_query() -> anyhow::Result<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/k8s/worker.yaml");
    let text = std::fs::read_to_string(path)?;
    let line =
        text.lines().find_map(|l| l.trim().strip_prefix("query: ")).ok_or_else(|| anyhow::anyhow!("no query"))?;
    Ok(line.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_sums_two_replicas_of_each_process_and_the_alerts_fire() -> anyhow::Result<()> {
    if !installed() {
        eprintln!("prometheus is not installed (scripts/test installs it): skipped");
        return Ok(());
    }
    let fake = FakeLlm::start("Tell me more about that.").await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake);
    let api_ports = [tests::free_port()?, tests::free_port()?];
    let worker_ports = [tests::free_port()?, tests::free_port()?];
    let mut processes = Vec::new();
    for port in api_ports {
        processes.push(env.spawn_process("api", &[("API_PORT", &port.to_string())])?);
    }
    let mut workers = Vec::new();
    for port in worker_ports {
        workers.push(env.spawn_process("worker", &[("METRICS_PORT", &port.to_string())])?);
    }
    let apis = api_ports.map(|p| Client::new(&format!("http://127.0.0.1:{p}/api/v1")));
    for api in &apis {
        api.until_live(WAIT).await?;
    }
    let target = |p: &u16| format!("127.0.0.1:{p}");
    let prometheus = Prometheus::start(
        &[("api", api_ports.iter().map(target).collect()), ("worker", worker_ports.iter().map(target).collect())],
        &shortened_rules()?,
    )
    .await?;
    prometheus.until("sum(up)", 4.0, WAIT).await?;

    // What the test drives: 23 + 14 liveness checks, and four sessions (two
    // through each API), each with its opening turn.
    for (api, n) in apis.iter().zip([23, 14]) {
        for _ in 0..n {
            anyhow::ensure!(api.get("/health/live").await?.status == 200);
        }
    }
    let interview = apis[0].user("r@example.com", "recruiter").await?.interview("en", 5).await?;
    for i in 0..4 {
        let candidate = apis[i % 2].user(&format!("c{i}@example.com"), "candidate").await?;
        candidate.start_session(&interview).await?;
    }
    // Each API also answered the one liveness check that found it up.
    let live_checks = r#"api_request_count{endpoint="/api/v1/health/live"}"#;
    prometheus.until(&format!("sum({live_checks})"), 24.0 + 15.0, WAIT).await?;
    for (port, n) in api_ports.iter().zip([24.0, 15.0]) {
        let one = format!(
            r#"sum({{__name__="api_request_count",endpoint="/api/v1/health/live",instance="127.0.0.1:{port}"}})"#
        );
        assert_eq!(prometheus.scalar(&one).await?, Some(n), "{port}");
    }
    prometheus.until(r#"sum(jobs_total{queue="turns",outcome="ok"})"#, 4.0, WAIT).await?;
    prometheus.until(r#"sum(ai_request_count{status="ok"})"#, 4.0, WAIT).await?;
    prometheus.until(r#"sum(job_duration_seconds_count{queue="turns"})"#, 4.0, WAIT).await?;
    assert_eq!(fake.received().len(), 4, "one call per turn");

    // Every worker killed: three sessions started now wait on the queue.
    for worker in &mut workers {
        worker.kill().await?;
    }
    for i in 4..7 {
        let candidate = apis[i % 2].user(&format!("c{i}@example.com"), "candidate").await?;
        candidate.start_session(&interview).await?;
    }
    let mut redis = env.redis().await?;
    let pending = shared::queue_admin::view(&mut redis, &env.prefix, shared::jobs::QueueName::Turns).await?.pending;
    assert_eq!(pending, 3, "Redis holds the three turns");
    // The KEDA trigger's query: the true depth. A sum over the two API pods doubles it.
    prometheus.until(&keda_query()?, 3.0, WAIT).await?;
    prometheus.until(r#"sum(queue_jobs{queue="turns",state="pending"})"#, 6.0, WAIT).await?;
    tests::eventually(WAIT, || async {
        Ok(prometheus.firing().await?.contains(&"NoWorkers".to_owned()).then_some(()))
    })
    .await?;

    // A worker again, on a provider that fails every call: the provider alert.
    for _ in 0..200 {
        fake.then(Reply::Status { status: 500, retry_after: None, body: "{\"error\":\"boom\"}".into() });
    }
    let _failing = env.spawn_process("worker", &[("METRICS_PORT", &worker_ports[0].to_string())])?;
    tests::eventually(WAIT, || async {
        Ok(prometheus.firing().await?.contains(&"AiErrorRate".to_owned()).then_some(()))
    })
    .await?;
    drop(processes);
    Ok(())
}
