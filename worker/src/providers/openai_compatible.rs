//! OpenAI-compatible endpoints (any such endpoint, Azure OpenAI, Vertex
//! AI's), on async-openai behind an HTTP service of ours (`docs/async-openai-findings.md`): async-openai's own retry layer is
//! gone, so one attempt is one request and the job's retry policy is the only
//! one; a non-2xx answer keeps its status and `Retry-After` whatever its body.
//!
//! Vertex AI's endpoint too: its bearer token is read from a file for every
//! request. Rate limits and the circuit are the chain's ([`super::guard`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_openai::Client;
use std::sync::Arc;

use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionResponseStream, ChatCompletionStreamOptions,
    CreateChatCompletionRequest, ResponseFormat,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::HeaderMap;
use shared::config::{AzureConfig as AzureSettings, EndpointConfig};
use shared::events::Usage;

use super::{ChatProvider, ChatRequest, Chunk, FailureKind, ProviderError, Purpose, Speaker};

/// Bytes of an error body kept for the failure reason.
const ERROR_BODY_LIMIT: usize = 2_048;

/// A non-2xx answer, read before async-openai parses (and loses) anything.
#[derive(Debug)]
struct HttpFailure {
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

impl std::error::Error for HttpFailure {}

/// Sends each request once; with a bearer file, with the token it holds now.
#[derive(Clone)]
struct OneShot {
    http: reqwest::Client,
    bearer_file: Option<Arc<std::path::PathBuf>>,
}

/// The bearer file could not be read (a token being rotated): retryable.
#[derive(Debug)]
struct TokenUnavailable(String);

impl std::fmt::Display for TokenUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no access token: {}", self.0)
    }
}

impl std::error::Error for TokenUnavailable {}

impl tower::Service<HttpRequestFactory> for OneShot {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let bearer_file = self.bearer_file.clone();
        Box::pin(async move {
            let mut request = factory.build().await?;
            if let Some(path) = bearer_file {
                // Read for every request: whoever refreshes the token (a
                // sidecar, the GKE metadata agent, a cron) only rewrites the file.
                let unavailable = |e: String| OpenAIError::Boxed(Box::new(TokenUnavailable(e)));
                let token = tokio::fs::read_to_string(path.as_path())
                    .await
                    .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
            }
            let response = http.execute(request).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status();
            let retry_after = retry_after(response.headers(), SystemTime::now());
            let bytes = response.bytes().await.unwrap_or_default();
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_LIMIT)]).trim().to_owned();
            Err(OpenAIError::Boxed(Box::new(HttpFailure { status, retry_after, body })))
        })
    }
}

/// `retry-after-ms` (OpenAI, Azure), else `retry-after` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

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
}

impl OpenAiCompatible {
    /// A client for an OpenAI-compatible `endpoint` (bearer key), named
    /// `name` in turns and logs.
    pub fn new(name: &'static str, endpoint: &EndpointConfig) -> Result<Self, String> {
        let config = bearer_config(&endpoint.base_url, &endpoint.api_key);
        Self::build(name, Arc::new(config), endpoint.timeout, endpoint.model.clone(), endpoint.prices, None)
    }

    /// A client for Vertex AI's OpenAI-compatible endpoint: its access token
    /// expires within the hour, so it is read from `token_file` for every
    /// request (see the README on keeping that file fresh).
    pub fn vertex(endpoint: &EndpointConfig, token_file: &std::path::Path) -> Result<Self, String> {
        let config = bearer_config(&endpoint.base_url, "");
        let file = Some(Arc::new(token_file.to_path_buf()));
        Self::build("gcp_vertex", Arc::new(config), endpoint.timeout, endpoint.model.clone(), endpoint.prices, file)
    }

    /// A client for an Azure OpenAI deployment (`api-key` header, `api-version`).
    pub fn azure(settings: &AzureSettings) -> Result<Self, String> {
        let endpoint = &settings.endpoint;
        let config = AzureConfig::new()
            .with_api_base(&endpoint.base_url)
            .with_api_key(&endpoint.api_key)
            .with_deployment_id(&endpoint.model)
            .with_api_version(&settings.api_version);
        Self::build("azure_openai", Arc::new(config), endpoint.timeout, endpoint.model.clone(), endpoint.prices, None)
    }

    fn build(
        name: &'static str,
        config: Arc<dyn Config>,
        timeout: Duration,
        model: String,
        prices: (f64, f64),
        bearer_file: Option<Arc<std::path::PathBuf>>,
    ) -> Result<Self, String> {
        // read_timeout bounds the wait for headers and every gap in the
        // stream; a total timeout would cut long replies off.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let client = Client::build(http.clone(), config).with_http_service(OneShot { http, bearer_file });
        Ok(Self { name, client, model, prices })
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
            stream_options: Some(ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None }),
            // A scorecard is asked for as a JSON object (still validated: not
            // every endpoint honours it).
            response_format: (request.purpose == Purpose::Evaluation).then_some(ResponseFormat::JsonObject),
            ..Default::default()
        }
    }
}

/// Where a stream is.
enum State {
    Opening(Client<Arc<dyn Config>>, Box<CreateChatCompletionRequest>),
    Streaming { stream: ChatCompletionResponseStream, finished: bool, usage: Option<Usage> },
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
                            Ok(stream) => state = State::Streaming { stream, finished: false, usage: None },
                            Err(e) => return Some((Err(classify(name, &e)), State::Done)),
                        },
                        State::Streaming { mut stream, mut finished, mut usage } => match stream.next().await {
                            Some(Ok(chunk)) => {
                                if let Some(u) = &chunk.usage {
                                    usage = Some(Usage {
                                        prompt_tokens: u.prompt_tokens as i32,
                                        completion_tokens: u.completion_tokens as i32,
                                    });
                                }
                                let mut text = String::new();
                                for choice in &chunk.choices {
                                    finished |= choice.finish_reason.is_some();
                                    if let Some(content) = &choice.delta.content {
                                        text.push_str(content);
                                    }
                                }
                                state = State::Streaming { stream, finished, usage };
                                if !text.is_empty() {
                                    return Some((Ok(Chunk::Delta(text)), state));
                                }
                            }
                            Some(Err(e)) => return Some((Err(classify(name, &e)), State::Done)),
                            // A stream is only complete with a finish_reason: `[DONE]`
                            // or EOF without one is a broken stream.
                            None if finished => {
                                let usage =
                                    usage.unwrap_or(Usage { prompt_tokens: prompt_estimate, completion_tokens: 0 });
                                return Some((Ok(Chunk::Done { usage, by: by.clone() }), State::Done));
                            }
                            None => {
                                let message = "the stream ended without a finish_reason";
                                let error = ProviderError::new(name, FailureKind::Fault, message);
                                return Some((Err(error), State::Done));
                            }
                        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_milliseconds_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("header value"));
            }
            h
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "2")]), now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1"), ("retry-after-ms", "1500")]), now),
            Some(Duration::from_millis(1500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }
}
