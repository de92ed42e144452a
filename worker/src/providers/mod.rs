//! The one provider trait every LLM call goes through: the built-in
//! `scripted` interviewer, or one OpenAI-compatible endpoint (any, Azure
//! OpenAI, AWS Bedrock). The providers issue adds Vertex, and the failover
//! chain, rate limits and circuit breaker behind this trait.

pub mod chain;
pub mod openai_compatible;
pub mod scripted;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use shared::config::{JobsConfig, ProviderKind, WorkerConfig};
use shared::domain::Language;
use shared::events::Usage;

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
}

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
    /// 429, 5xx, timeouts, broken connections: yes; other 4xx: no.
    pub retryable: bool,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
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

/// Estimated cost of `usage` at `prices`.
pub fn cost(prices: (f64, f64), usage: Usage) -> f64 {
    (f64::from(usage.prompt_tokens) * prices.0 + f64::from(usage.completion_tokens) * prices.1) / 1000.0
}

/// The chain `AI_PROVIDER`, then `AI_FALLBACK_PROVIDERS`, name, each with
/// its retry budget, backing off as `jobs` says.
pub fn from_config(config: &WorkerConfig, jobs: &JobsConfig) -> Result<Arc<dyn ChatProvider>, String> {
    let kinds = config.providers.as_ref().ok_or("provider settings are read only in the worker's configuration")?;
    let mut chain = Vec::with_capacity(kinds.len());
    for kind in kinds {
        chain.push(match kind {
            ProviderKind::Scripted => {
                (Arc::new(scripted::Scripted::new(config.scripted_delta_delay)) as Arc<dyn ChatProvider>, 0)
            }
            ProviderKind::OpenAiCompatible(endpoint) => (
                Arc::new(openai_compatible::OpenAiCompatible::new("openai_compatible", endpoint)?)
                    as Arc<dyn ChatProvider>,
                endpoint.max_retries,
            ),
            ProviderKind::AzureOpenAi(settings) => (
                Arc::new(openai_compatible::OpenAiCompatible::azure(settings)?) as Arc<dyn ChatProvider>,
                settings.max_retries,
            ),
            ProviderKind::GcpVertex(endpoint, token_file) => (
                Arc::new(openai_compatible::OpenAiCompatible::vertex(endpoint, token_file)?) as Arc<dyn ChatProvider>,
                endpoint.max_retries,
            ),
            ProviderKind::AwsBedrock(endpoint) => (
                Arc::new(openai_compatible::OpenAiCompatible::new("aws_bedrock", endpoint)?) as Arc<dyn ChatProvider>,
                endpoint.max_retries,
            ),
        });
    }
    // The scripted provider alone needs no chain around it.
    if let [(only, 0)] = chain.as_slice() {
        return Ok(only.clone());
    }
    Ok(Arc::new(chain::Chain::new(chain, jobs.clone())))
}
