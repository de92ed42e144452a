//! OpenAI-compatible endpoints (any such endpoint, Azure OpenAI, Vertex
//! AI's), on async-openai behind an HTTP service of ours ([`http`],
//! `docs/async-openai-findings.md`): async-openai's own retry layer is gone,
//! so one attempt is one request and the job's retry policy is the only one.
//! Rate limits and the circuit are the chain's ([`super::guard`]).

mod azure;
mod google;
mod http;

use std::sync::Arc;

use async_openai::Client;
use async_openai::config::{Config, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionResponseStream, ChatCompletionStreamOptions,
    CreateChatCompletionRequest, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use shared::config::{AzureConfig as AzureSettings, EndpointConfig, VertexConfig as VertexSettings};
use shared::events::Usage;

use self::http::{HttpFailure, OneShot};
use super::{ChatProvider, ChatRequest, Chunk, FailureKind, ProviderError, Speaker};

/// `{base}/chat/completions` with a bearer key. Organisation and project are
/// set empty: `OpenAIConfig::new` would take them from `OPENAI_*` variables.
fn bearer_config(base: &str, key: &str) -> OpenAIConfig {
    OpenAIConfig::new().with_api_base(base).with_api_key(key).with_org_id("").with_project_id("")
}

/// An OpenAI-compatible chat endpoint.
pub struct OpenAiCompatible {
    name: &'static str,
    client: Client<Arc<dyn Config>>,
    model: String,
    prices: (f64, f64),
    /// What the api-version accepts: not every Azure one takes
    /// `stream_options` or a JSON-schema `response_format`.
    accepts: Accepts,
}

/// What an endpoint accepts beyond the basic chat request.
#[derive(Debug, Clone, Copy)]
struct Accepts {
    /// `stream_options.include_usage` (the usage chunk).
    stream_usage: bool,
    /// `response_format: json_schema` (else `json_object`).
    json_schema: bool,
}

impl Accepts {
    const ALL: Accepts = Accepts { stream_usage: true, json_schema: true };
}

impl OpenAiCompatible {
    /// A client for an OpenAI-compatible `endpoint` (bearer key), named
    /// `name` in turns and logs.
    pub fn new(name: &'static str, endpoint: &EndpointConfig) -> Result<Self, String> {
        let config = bearer_config(&endpoint.base_url, &endpoint.api_key);
        Self::build(name, Arc::new(config), endpoint, None, Accepts::ALL)
    }

    /// A client for Vertex AI's OpenAI-compatible endpoint, with access
    /// tokens obtained and refreshed as `settings.auth` says ([`google`]).
    pub fn vertex(settings: &VertexSettings) -> Result<Self, String> {
        let config = bearer_config(&settings.endpoint.base_url, "");
        let google = Arc::new(google::GoogleAuth::new(&settings.auth)?);
        Self::build("gcp_vertex", Arc::new(config), &settings.endpoint, Some(google), Accepts::ALL)
    }

    /// A client for an Azure OpenAI deployment (`api-key` header): the v1
    /// surface, or the deployment path with `AZURE_OPENAI_API_VERSION`.
    pub fn azure(settings: &AzureSettings) -> Result<Self, String> {
        let accepts =
            Accepts { stream_usage: settings.accepts_stream_options(), json_schema: settings.accepts_json_schema() };
        Self::build("azure_openai", azure::config(settings), &settings.endpoint, None, accepts)
    }

    fn build(
        name: &'static str,
        config: Arc<dyn Config>,
        endpoint: &EndpointConfig,
        google: Option<Arc<google::GoogleAuth>>,
        accepts: Accepts,
    ) -> Result<Self, String> {
        // read_timeout bounds the wait for headers and every gap in the
        // stream; a total timeout would cut long replies off.
        let http = reqwest::Client::builder()
            .connect_timeout(endpoint.timeout)
            .read_timeout(endpoint.timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let client = Client::build(http.clone(), config).with_http_service(OneShot { http, google });
        Ok(Self { name, client, model: endpoint.model.clone(), prices: endpoint.prices, accepts })
    }

    fn request(&self, request: &ChatRequest) -> CreateChatCompletionRequest {
        let messages = request
            .messages
            .iter()
            .map(|m| match m.speaker {
                Speaker::System => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                    content: m.content.clone().into(),
                    ..Default::default()
                }),
                Speaker::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                    content: m.content.clone().into(),
                    ..Default::default()
                }),
                Speaker::Assistant => ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                    content: Some(m.content.clone().into()),
                    ..Default::default()
                }),
            })
            .collect();
        CreateChatCompletionRequest {
            model: self.model.clone(),
            messages,
            stream: Some(true),
            stream_options: self
                .accepts
                .stream_usage
                .then_some(ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None }),
            response_format: request.scorecard_schema().map(|schema| self.scorecard_format(schema)),
            ..Default::default()
        }
    }
}

impl OpenAiCompatible {
    /// The scorecard as strict structured output (still validated by us);
    /// a JSON object where the api-version predates JSON schemas.
    fn scorecard_format(&self, schema: serde_json::Value) -> ResponseFormat {
        if !self.accepts.json_schema {
            return ResponseFormat::JsonObject;
        }
        ResponseFormat::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: Some("The interview's scorecard on its criteria.".into()),
                name: super::SCORECARD.into(),
                schema,
                strict: Some(true),
            },
        }
    }
}

/// Where a stream is.
enum State {
    Opening(Client<Arc<dyn Config>>, Box<CreateChatCompletionRequest>),
    Streaming { stream: ChatCompletionResponseStream, finished: bool, usage: Option<Usage>, chars: usize },
    Done,
}

impl ChatProvider for OpenAiCompatible {
    fn name(&self) -> &str {
        self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn prices(&self) -> (f64, f64) {
        self.prices
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>> {
        let prompt_estimate = super::prompt_estimate(&request);
        let body = self.request(&request);
        let name = self.name;
        let by = super::Answered::by(self);
        futures::stream::unfold(State::Opening(self.client.clone(), Box::new(body)), move |state| {
            let by = by.clone();
            async move {
                let mut state = state;
                loop {
                    match state {
                        State::Done => return None,
                        State::Opening(client, body) => match client.chat().create_stream(*body).await {
                            Ok(stream) => state = State::Streaming { stream, finished: false, usage: None, chars: 0 },
                            Err(e) => return Some((Err(classify(name, &e)), State::Done)),
                        },
                        State::Streaming { mut stream, mut finished, mut usage, mut chars } => {
                            match stream.next().await {
                                Some(Ok(chunk)) => {
                                    if let Some(u) = &chunk.usage {
                                        usage = Some(Usage {
                                            prompt_tokens: u.prompt_tokens as i32,
                                            completion_tokens: u.completion_tokens as i32,
                                            estimated: false,
                                        });
                                    }
                                    let mut text = String::new();
                                    for choice in &chunk.choices {
                                        // Azure's filter withheld the rest: no answer, and asking
                                        // this provider again gives the same.
                                        if choice.finish_reason == Some(FinishReason::ContentFilter) {
                                            let message = "the reply was stopped by the provider's content filter";
                                            let error = ProviderError::new(name, FailureKind::Filtered, message);
                                            return Some((Err(error), State::Done));
                                        }
                                        finished |= choice.finish_reason.is_some();
                                        if let Some(content) = &choice.delta.content {
                                            text.push_str(content);
                                        }
                                    }
                                    chars += text.chars().count();
                                    state = State::Streaming { stream, finished, usage, chars };
                                    if !text.is_empty() {
                                        return Some((Ok(Chunk::Delta(text)), state));
                                    }
                                }
                                Some(Err(e)) => return Some((Err(classify(name, &e)), State::Done)),
                                // A stream is only complete with a finish_reason: `[DONE]`
                                // or EOF without one is a broken stream.
                                None if finished => {
                                    let usage = usage.unwrap_or_else(|| super::estimated_usage(prompt_estimate, chars));
                                    return Some((Ok(Chunk::Done { usage, by: by.clone() }), State::Done));
                                }
                                None => {
                                    let message = "the stream ended without a finish_reason";
                                    let error = ProviderError::new(name, FailureKind::Fault, message);
                                    return Some((Err(error), State::Done));
                                }
                            }
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

/// What a failed call means: 429 is a rate limit; 408, 5xx, transport
/// errors and broken streams are faults worth another attempt; other
/// statuses are rejections, not retried.
fn classify(name: &'static str, e: &OpenAIError) -> ProviderError {
    let (message, kind, retry_after) = match e {
        OpenAIError::Boxed(inner) => match inner.downcast_ref::<HttpFailure>() {
            Some(failure) => {
                let kind = match failure.status.as_u16() {
                    429 => FailureKind::RateLimited,
                    408 | 500.. => FailureKind::Fault,
                    _ => FailureKind::Rejected,
                };
                (failure.to_string(), kind, failure.retry_after)
            }
            // The access token could not be read (one being rotated).
            None => (inner.to_string(), FailureKind::Fault, None),
        },
        OpenAIError::Reqwest(e) => (format!("request failed: {e}"), FailureKind::Fault, None),
        OpenAIError::StreamError(e) => (format!("stream broke: {e}"), FailureKind::Fault, None),
        // A 2xx whose chunk did not parse: treated as a broken stream.
        OpenAIError::JSONDeserialize(e, _) => (format!("unreadable reply: {e}"), FailureKind::Fault, None),
        other => (other.to_string(), FailureKind::Rejected, None),
    };
    ProviderError { retry_after, ..ProviderError::new(name, kind, message) }
}
