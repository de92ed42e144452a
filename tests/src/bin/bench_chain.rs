//! `bench_chain`: what the provider chain adds to a call, for
//! `docs/benchmarks.md`. The same streamed reply from the fake LLM (in this
//! process, over real HTTP on loopback), fetched three ways, interleaved so
//! that the machine's noise falls on all three alike:
//!
//! 1. direct: one reqwest POST, the SSE body read to its end;
//! 2. the provider alone: async-openai behind our one-attempt HTTP service;
//! 3. the chain: the same provider behind its guard (circuit check, a
//!    fleet rate-limit slot with its sent mark and token settlement, the
//!    statistics), as the worker runs it, on the local Redis.
//!
//! `scripts/bench` runs it after `bench`. `BENCH_CHAIN_CALLS` (2,000) sets the
//! calls per way.

use std::time::{Duration, Instant};

use futures::StreamExt;
use shared::config::{Component, ProviderKind};
use shared::domain::Language;
use tests::TestEnv;
use tests::fake_llm::FakeLlm;
use worker::providers::{ChatMessage, ChatProvider, ChatRequest, Chunk, Purpose, Speaker};

const REPLY: &str =
    "Thank you. Could you walk me through how you would design a job queue in Rust, and what you would measure first?";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::var("BENCH_CHAIN_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
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
    let chain = worker::providers::from_config(&config, env.redis().await?).await.map_err(anyhow::Error::msg)?;
    let http = reqwest::Client::new();
    let request = ChatRequest {
        messages: vec![
            ChatMessage { speaker: Speaker::System, content: "You are a technical interviewer.".into() },
            ChatMessage { speaker: Speaker::User, content: "I have built a few queues.".into() },
        ],
        purpose: Purpose::Turn { number: 1, last: false },
        language: Language::En,
        topics: vec!["Rust".into()],
        position: "Backend Engineer".into(),
    };
    let body = serde_json::json!({
        "model": "fake-model", "stream": true, "stream_options": { "include_usage": true },
        "messages": [
            { "role": "system", "content": "You are a technical interviewer." },
            { "role": "user", "content": "I have built a few queues." }
        ]
    });
    let url = format!("{}/chat/completions", fake.base_url);

    let (mut direct, mut provider, mut chained) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..calls + 100 {
        let start = Instant::now();
        let response = http.post(&url).bearer_auth("sk-bench").json(&body).send().await?;
        anyhow::ensure!(response.status().is_success(), "direct: {}", response.status());
        let text = response.text().await?;
        anyhow::ensure!(text.contains("[DONE]"), "direct: incomplete body");
        let t_direct = start.elapsed();
        let t_provider = through(&alone, &request).await?;
        let t_chain = through(chain.as_ref(), &request).await?;
        // The first 100 of each warm the connections and the scripts.
        if i >= 100 {
            direct.push(t_direct);
            provider.push(t_provider);
            chained.push(t_chain);
        }
    }
    let added: Vec<Duration> = chained.iter().zip(&direct).map(|(c, d)| c.saturating_sub(*d)).collect();
    let guard: Vec<Duration> = chained.iter().zip(&provider).map(|(c, p)| c.saturating_sub(*p)).collect();
    println!("| way ({calls} calls each) | p50 | p99 |");
    println!("|---|---|---|");
    for (name, samples) in [
        ("direct HTTP (reqwest)", direct),
        ("the provider alone (async-openai + our HTTP service)", provider),
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
