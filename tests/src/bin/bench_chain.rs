//! `bench_chain`: what the provider chain adds to a call, for
//! `docs/benchmarks.md`. The same streamed reply from a fake (in this
//! process, over real HTTP on loopback), fetched three ways, interleaved so
//! that the machine's noise falls on all three alike:
//!
//! 1. direct: one reqwest POST, the body read to its end;
//! 2. the provider alone: our client for that endpoint;
//! 3. the chain: the same provider behind its guard (circuit check, a
//!    fleet rate-limit slot with its sent mark and token settlement, the
//!    statistics), as the worker runs it, on the local Redis.
//!
//! Two paths: the OpenAI-compatible one (the fake LLM's SSE; async-openai
//! behind our one-attempt HTTP service) and Bedrock's Converse (the fake
//! AWS's event-stream frames; the AWS SDK, signing each request with SigV4,
//! which the fake verifies; the direct call sends the fake's bearer key
//! instead, so the signature and its check count against the chain).
//!
//! `scripts/bench` runs it after `bench`. `BENCH_CHAIN_CALLS` (2,000) sets the
//! calls per way.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shared::config::{Component, ProviderKind};
use shared::domain::Language;
use tests::TestEnv;
use tests::fake_aws::FakeAws;
use tests::fake_llm::FakeLlm;
use worker::providers::{ChatMessage, ChatProvider, ChatRequest, Chunk, Purpose, Speaker};

const REPLY: &str =
    "Thank you. Could you walk me through how you would design a job queue in Rust, and what you would measure first?";
const SYSTEM: &str = "You are a technical interviewer.";
const ANSWER: &str = "I have built a few queues.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::var("BENCH_CHAIN_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let request = ChatRequest {
        messages: vec![
            ChatMessage { speaker: Speaker::System, content: SYSTEM.into() },
            ChatMessage { speaker: Speaker::User, content: ANSWER.into() },
        ],
        purpose: Purpose::Turn { number: 1, last: false },
        language: Language::En,
        topics: vec!["Rust".into()],
        position: "Backend Engineer".into(),
        answers: vec![ANSWER.into()],
        criteria: vec![],
    };
    let http = reqwest::Client::new();

    let fake = FakeLlm::start(REPLY).await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake)
        // Limits far above the load: every call takes the limiter's path.
        .set("OPENAI_COMPATIBLE_RPM", "10000000")
        .set("OPENAI_COMPATIBLE_TPM", "1000000000")
        .set("LOG_LEVEL", "ERROR");
    let config = env.config(Component::Worker)?;
    let Some([ProviderKind::OpenAiCompatible(endpoint)]) = config.worker.providers.as_deref() else {
        anyhow::bail!("expected one openai_compatible provider");
    };
    let alone = worker::providers::openai_compatible::OpenAiCompatible::new("openai_compatible", endpoint)
        .map_err(anyhow::Error::msg)?;
    let chain = worker::providers::from_config(&config, env.redis().await?, &Default::default())
        .await
        .map_err(anyhow::Error::msg)?;
    let body = serde_json::json!({
        "model": "fake-model", "stream": true, "stream_options": { "include_usage": true },
        "messages": [{ "role": "system", "content": SYSTEM }, { "role": "user", "content": ANSWER }]
    });
    let url = format!("{}/chat/completions", fake.base_url);
    let direct = || async {
        let response = http.post(&url).bearer_auth("sk-bench").json(&body).send().await?;
        anyhow::ensure!(response.status().is_success(), "direct: {}", response.status());
        anyhow::ensure!(response.text().await?.contains("[DONE]"), "direct: incomplete body");
        Ok(())
    };
    println!("OpenAI-compatible (SSE):\n");
    measure(calls, direct, &alone, chain.as_ref(), &request).await?;
    drop(env);

    let aws = FakeAws::start("us-east-1", REPLY).await?;
    aws.accept_keys("AKIAFAKEBENCH0000001", "bench-secret");
    aws.accept_bearer("bench-key");
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "aws_bedrock")
        .set("AWS_REGION", "us-east-1")
        .set("BEDROCK_ENDPOINT", &aws.origin)
        .set("BEDROCK_MODEL_ID", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        .set("AWS_ACCESS_KEY_ID", "AKIAFAKEBENCH0000001")
        .set("AWS_SECRET_ACCESS_KEY", "bench-secret")
        .set("BEDROCK_RPM", "10000000")
        .set("BEDROCK_TPM", "1000000000")
        .set("LOG_LEVEL", "ERROR");
    let config = env.config(Component::Worker)?;
    let Some([ProviderKind::AwsBedrock(bedrock)]) = config.worker.providers.as_deref() else {
        anyhow::bail!("expected one aws_bedrock provider");
    };
    let alone = worker::providers::bedrock::Bedrock::new(bedrock).await;
    let chain = worker::providers::from_config(&config, env.redis().await?, &Default::default())
        .await
        .map_err(anyhow::Error::msg)?;
    let body = serde_json::json!({
        "system": [{ "text": SYSTEM }],
        "messages": [{ "role": "user", "content": [{ "text": ANSWER }] }],
        "inferenceConfig": { "maxTokens": 2048 }
    });
    let url = format!("{}/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream", aws.origin);
    let direct = || async {
        let response = http.post(&url).bearer_auth("bench-key").json(&body).send().await?;
        anyhow::ensure!(response.status().is_success(), "direct: {}", response.status());
        let frames = response.bytes().await?;
        anyhow::ensure!(frames.windows(11).any(|w| w == b"messageStop"), "direct: incomplete body");
        Ok(())
    };
    println!("\nBedrock ConverseStream (event-stream frames, SigV4):\n");
    measure(calls, direct, &alone, chain.as_ref(), &request).await?;
    anyhow::ensure!(aws.received().iter().all(|r| r.refused.is_none()), "the fake refused a request");
    Ok(())
}

/// `calls` rounds (after 100 to warm up) of the three ways, then the table.
async fn measure<F, Fut>(
    calls: usize,
    direct: F,
    alone: &dyn ChatProvider,
    chain: &dyn ChatProvider,
    request: &ChatRequest,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (mut direct_times, mut provider, mut chained) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..calls + 100 {
        let start = Instant::now();
        direct().await?;
        let t_direct = start.elapsed();
        let t_provider = through(alone, request).await?;
        let t_chain = through(chain, request).await?;
        // The first 100 of each warm the connections and the scripts.
        if i >= 100 {
            direct_times.push(t_direct);
            provider.push(t_provider);
            chained.push(t_chain);
        }
    }
    let added: Vec<Duration> = chained.iter().zip(&direct_times).map(|(c, d)| c.saturating_sub(*d)).collect();
    let guard: Vec<Duration> = chained.iter().zip(&provider).map(|(c, p)| c.saturating_sub(*p)).collect();
    println!("| way ({calls} calls each) | p50 | p99 |");
    println!("|---|---|---|");
    for (name, samples) in [
        ("direct HTTP (reqwest)", direct_times),
        ("the provider alone", provider),
        ("the chain (guard: circuit, fleet limiter, statistics)", chained),
        ("chain − direct, per interleaved call", added),
        ("chain − provider alone (the guard's own cost)", guard),
    ] {
        let (p50, p99) = percentiles(samples);
        println!("| {name} | {:.3} ms | {:.3} ms |", ms(p50), ms(p99));
    }
    Ok(())
}

/// Streams `request` through `provider` to its end.
async fn through(provider: &dyn ChatProvider, request: &ChatRequest) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut stream = provider.stream(request.clone());
    while let Some(chunk) = stream.next().await {
        if let Chunk::Done { .. } = chunk? {
            return Ok(start.elapsed());
        }
    }
    anyhow::bail!("{}: the stream ended without Done", provider.name())
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: f64| samples.get(((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    (at(0.50).unwrap_or_default(), at(0.99).unwrap_or_default())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
