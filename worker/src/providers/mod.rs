//! The one provider trait every LLM call goes through: the built-in
//! `scripted` interviewer, or the chain of providers (AWS Bedrock's
//! Converse API, and the OpenAI-compatible endpoints: any, Azure OpenAI,
//! Vertex AI) with failover, each behind its fleet-wide rate limit and
//! circuit breaker ([`guard`]).

pub mod bedrock;
pub mod chain;
pub mod guard;
pub mod openai_compatible;
pub mod scripted;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use redis::aio::ConnectionManager;
use shared::config::{Config, EndpointConfig, ProviderKind};
use shared::domain::Language;
use shared::events::Usage;
use shared::provider_state::registry;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// Instructions.
    System,
    /// The candidate.
    User,
    /// The interviewer.
    Assistant,
}

/// One chat message of the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Speaker.
    pub speaker: Speaker,
    /// Text.
    pub content: String,
}

/// What the call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The interviewer's next message for turn `number` (0 = opening);
    /// `last` when the answer being replied to is the final one.
    Turn {
        /// Turn number.
        number: i32,
        /// Whether this reply closes the interview.
        last: bool,
    },
    /// A JSON scorecard of the whole session.
    Evaluation,
}

/// A chat-completion request: the prompt for real models, plus the
/// interview's facts the scripted interviewer works from.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The prompt.
    pub messages: Vec<ChatMessage>,
    /// Turn or evaluation.
    pub purpose: Purpose,
    /// Interview language.
    pub language: Language,
    /// The question plan.
    pub topics: Vec<String>,
    /// The position.
    pub position: String,
    /// The candidate's answers so far, in order (what the scripted
    /// interviewer scores; the prompt carries them for real models).
    pub answers: Vec<String>,
    /// For an evaluation: the rubric the scorecard must follow (empty for a turn).
    pub criteria: Vec<shared::rubric::Criterion>,
}

impl ChatRequest {
    /// For an evaluation, the scorecard's JSON schema: what each provider
    /// asks its model for as structured output.
    pub fn scorecard_schema(&self) -> Option<serde_json::Value> {
        (self.purpose == Purpose::Evaluation).then(|| shared::rubric::scorecard_schema(&self.criteria))
    }
}

/// The name the scorecard's schema (or Bedrock's tool) goes by.
pub const SCORECARD: &str = "scorecard";

/// A piece of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Text to append.
    Delta(String),
    /// The text so far is void: the stream broke and the reply restarts on
    /// the next provider of the chain.
    Reset {
        /// Why, for the client.
        reason: String,
    },
    /// The end, with the usage the provider reported.
    Done {
        /// Tokens.
        usage: Usage,
        /// Which provider answered.
        by: Answered,
    },
}

/// The provider that produced a reply, as stored with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// Provider name (`scripted`, `azure_openai`, ...).
    pub provider: String,
    /// Model.
    pub model: String,
    /// USD per 1,000 prompt and completion tokens.
    pub prices: (f64, f64),
}

impl Answered {
    /// What `provider` would store.
    pub fn by(provider: &dyn ChatProvider) -> Self {
        Self { provider: provider.name().to_owned(), model: provider.model().to_owned(), prices: provider.prices() }
    }
}

/// A failed call, knowing whether it is worth retrying.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    /// Which provider.
    pub provider: String,
    /// What happened.
    pub message: String,
    /// What kind of failure, for retries, failover and the circuit.
    pub kind: FailureKind,
    /// The provider's `Retry-After` (or our limiter's or circuit's wait).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// A failure of `provider`.
    pub fn new(provider: impl Into<String>, kind: FailureKind, message: impl Into<String>) -> Self {
        Self { provider: provider.into(), message: message.into(), kind, retry_after: None }
    }

    /// Whether the job may try the whole chain again later: not for a
    /// rejection (the same question gets the same answer), nor for a reply
    /// every provider's filter withheld.
    pub fn retryable(&self) -> bool {
        !matches!(self.kind, FailureKind::Rejected | FailureKind::Filtered)
    }
}

/// The kinds of failure the chain treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 5xx, 408, timeout, broken connection or stream: retried, and counted
    /// by the provider's circuit.
    Fault,
    /// The provider answered 429: retried after its `Retry-After`.
    RateLimited,
    /// Another 4xx or an unusable answer: asking again gives the same.
    Rejected,
    /// The provider's content filter withheld the reply (`finish_reason:
    /// content_filter`, Bedrock's `content_filtered` / `guardrail_intervened`):
    /// not asked again, but the next provider of the chain is, once.
    Filtered,
    /// Not sent: the provider's circuit is open or its rate limit is used
    /// up for longer than a call may wait. The next provider is asked.
    Skipped,
}

impl FailureKind {
    /// The span's `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Fault => "fault",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Rejected => "rejected",
            FailureKind::Filtered => "filtered",
            FailureKind::Skipped => "skipped",
        }
    }
}

/// An LLM endpoint.
pub trait ChatProvider: Send + Sync {
    /// Name as stored with each turn (`scripted`, `azure_openai`, ...).
    fn name(&self) -> &str;
    /// Model as stored with each turn.
    fn model(&self) -> &str;
    /// USD per 1,000 prompt and completion tokens.
    fn prices(&self) -> (f64, f64);
    /// Streams the reply.
    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>>;
}

/// Prompt tokens taken for a stream that reports no usage: a rough
/// estimate (characters / 4), at least 1.
pub fn prompt_estimate(request: &ChatRequest) -> i32 {
    let chars: usize = request.messages.iter().map(|m| m.content.chars().count()).sum();
    i32::try_from(chars / 4).unwrap_or(i32::MAX).max(1)
}

/// The usage to store when a stream reported none: the prompt's estimate
/// and the reply's `reply_chars` / 4, marked as estimated.
pub fn estimated_usage(prompt_estimate: i32, reply_chars: usize) -> Usage {
    let completion_tokens = i32::try_from(reply_chars.div_ceil(4)).unwrap_or(i32::MAX);
    Usage { prompt_tokens: prompt_estimate, completion_tokens, estimated: true }
}

/// Estimated cost of `usage` at `prices`.
pub fn cost(prices: (f64, f64), usage: Usage) -> f64 {
    (f64::from(usage.prompt_tokens) * prices.0 + f64::from(usage.completion_tokens) * prices.1) / 1000.0
}

/// The chain `AI_PROVIDER`, then `AI_FALLBACK_PROVIDERS`, each with its
/// retry budget and its [`guard::Guard`] on `conn`, backing off as
/// `config.jobs` says, counting into `registry`. The chain is registered
/// for the API to report on.
pub async fn from_config(
    config: &Config,
    conn: ConnectionManager,
    registry: &shared::metrics::Registry,
) -> Result<Arc<dyn ChatProvider>, String> {
    let metrics = Arc::new(crate::metrics::ProviderMetrics::new(registry));
    let worker = &config.worker;
    let kinds = worker.providers.as_ref().ok_or("provider settings are read only in the worker's configuration")?;
    let mut links = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let (provider, endpoint): (Arc<dyn ChatProvider>, Option<&EndpointConfig>) = match kind {
            ProviderKind::Scripted => (Arc::new(scripted::Scripted::new(worker.scripted_delta_delay)), None),
            ProviderKind::OpenAiCompatible(e) => {
                (Arc::new(openai_compatible::OpenAiCompatible::new("openai_compatible", e)?), Some(e))
            }
            ProviderKind::AzureOpenAi(azure) => {
                (Arc::new(openai_compatible::OpenAiCompatible::azure(azure)?), Some(&azure.endpoint))
            }
            ProviderKind::GcpVertex(vertex) => {
                (Arc::new(openai_compatible::OpenAiCompatible::vertex(vertex)?), Some(&vertex.endpoint))
            }
            ProviderKind::AwsBedrock(b) => (Arc::new(bedrock::Bedrock::new(b).await), Some(&b.endpoint)),
        };
        let guard = guard::Guard::new(provider.as_ref(), endpoint, config, conn.clone(), metrics.clone());
        links.push(chain::Link { provider, retries: endpoint.map_or(0, |e| e.max_retries), guard });
    }
    // The scripted provider alone fails nothing and limits nothing: no chain.
    let alone = matches!(kinds.as_slice(), [ProviderKind::Scripted]).then(|| links[0].provider.clone());
    let chain = chain::Chain::new(links, config.jobs.clone());
    let mut conn = conn;
    if let Err(e) = registry::register(&mut conn, &config.redis.key_prefix, &chain.registered()).await {
        tracing::warn!(error = %e, "provider chain not registered; the API cannot report on it");
    }
    Ok(alone.unwrap_or_else(|| Arc::new(chain)))
}
