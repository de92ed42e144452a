//! The providers against fakes of their endpoints over real HTTP: the
//! production code path, with its failures injected. `one_provider` is a
//! single provider's calls, retries and accounting; `chain` is failover
//! between providers and their circuits.

mod chain;
mod one_provider;

use std::time::Duration;

use anyhow::Context;

use tests::fake_llm::{Auth, FakeLlm, Reply, usage_of};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. Could you walk me through how you would design a job queue in Rust?";

async fn env_with(fake: &FakeLlm) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(fake)
        .set("OPENAI_COMPATIBLE_TIMEOUT", "5")
        .set("OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K", "0.5")
        .set("OPENAI_COMPATIBLE_PRICE_OUTPUT_PER_1K", "1.5")
        .set("JOB_MAX_ATTEMPTS", "3");
    Ok(env)
}

/// The opening turn once it is finished (`turn.completed` is published just
/// before its transaction commits).
async fn opening_turn(env: &TestEnv) -> anyhow::Result<(String, i32, Option<String>, Option<String>, Option<i32>)> {
    let t = env.opening_turn().await?;
    Ok((t.status, t.attempts, t.interviewer_message, t.provider, t.prompt_tokens))
}

/// The chain `openai_compatible` (on `primary`), then `azure_openai` (on `fallback`).
async fn chain_env(primary: &FakeLlm, fallback: &FakeLlm) -> anyhow::Result<TestEnv> {
    let mut env = env_with(primary).await?;
    // No retries on the primary: its first failure moves on.
    env.set("AI_FALLBACK_PROVIDERS", "azure_openai")
        .set("OPENAI_COMPATIBLE_MAX_RETRIES", "0")
        .set("AZURE_OPENAI_ENDPOINT", &fallback.origin)
        .set("AZURE_OPENAI_API_KEY", "azure-key")
        .set("AZURE_OPENAI_DEPLOYMENT", "fallback-model");
    Ok(env)
}

/// The providers that answered each completed turn, in order.
async fn answered_by(env: &TestEnv, turns: usize) -> anyhow::Result<Vec<String>> {
    let db = env.db().await?;
    tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let providers: Vec<String> =
                sqlx::query_scalar("SELECT provider FROM turns WHERE status = 'completed' ORDER BY number")
                    .fetch_all(&db)
                    .await?;
            Ok((providers.len() == turns).then_some(providers))
        }
    })
    .await
}

/// The state of `provider`'s circuit, as Redis holds it.
async fn circuit_state(env: &TestEnv, provider: &str) -> anyhow::Result<String> {
    let mut redis = env.redis().await?;
    let state: Option<String> = redis::cmd("HGET")
        .arg(format!("{}:provider:{provider}:circuit", env.prefix))
        .arg("state")
        .query_async(&mut redis)
        .await?;
    Ok(state.unwrap_or_else(|| "closed".into()))
}
