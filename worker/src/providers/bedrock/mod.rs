//! AWS Bedrock through ConverseStream, which serves every Bedrock model
//! (model ids, inference-profile ids and ARNs alike), on the AWS SDK: SigV4
//! with the credential chain maintained by AWS (or a Bedrock API key as a
//! bearer), the event stream decoded with its CRCs checked.
//!
//! One attempt is one request: the SDK's retries and its stalled-stream
//! protection are off, and its timeouts are ours (`BEDROCK_TIMEOUT` to
//! connect and to the response, and between two events of the stream).
//! Retries, failover, rate limits and the circuit are the chain's.

mod converse;
mod failure;
mod tool;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::{Credentials, Token};
use aws_sdk_bedrockruntime::operation::converse_stream::builders::ConverseStreamFluentBuilder;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ConverseStreamOutput, InferenceConfiguration};
use futures::StreamExt;
use futures::stream::BoxStream;
use shared::config::{BedrockAuth, BedrockConfig};
use shared::events::Usage;

use super::{Answered, ChatProvider, ChatRequest, Chunk, FailureKind, ProviderError};

/// The provider's name in turns, logs and metrics.
pub const NAME: &str = "aws_bedrock";

/// Bedrock's Converse API.
pub struct Bedrock {
    client: Client,
    model: String,
    prices: (f64, f64),
    timeout: Duration,
    inference: InferenceConfiguration,
}

impl Bedrock {
    /// A client for `config`. Nothing is sent yet: credentials from the
    /// default chain are fetched at the first call, cached, and fetched
    /// again shortly before they expire.
    pub async fn new(config: &BedrockConfig) -> Self {
        let endpoint = &config.endpoint;
        let timeouts =
            TimeoutConfig::builder().connect_timeout(endpoint.timeout).read_timeout(endpoint.timeout).build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if config.endpoint_overridden {
            loader = loader.endpoint_url(&endpoint.base_url);
        }
        loader = match &config.auth {
            // No credentials: the bearer token is the one identity, so nothing is signed.
            BedrockAuth::ApiKey(_) => loader.no_credentials(),
            BedrockAuth::Keys { access_key_id, secret_access_key, session_token } => {
                let token = session_token.as_ref().map(|t| t.0.clone());
                let keys = Credentials::new(access_key_id, &secret_access_key.0, token, None, "environment");
                loader.credentials_provider(keys)
            }
            BedrockAuth::DefaultChain => loader,
        };
        let mut builder = aws_sdk_bedrockruntime::config::Builder::from(&loader.load().await);
        if let BedrockAuth::ApiKey(key) = &config.auth {
            builder = builder.bearer_token(Token::new(key.0.clone(), None));
        }
        let inference = InferenceConfiguration::builder()
            .max_tokens(i32::try_from(config.max_tokens).unwrap_or(i32::MAX))
            .set_temperature(config.temperature)
            .build();
        Self {
            client: Client::from_conf(builder.build()),
            model: endpoint.model.clone(),
            prices: endpoint.prices,
            timeout: endpoint.timeout,
            inference,
        }
    }
}

type Events = EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>;

/// Where a stream is.
enum State {
    Opening(Box<ConverseStreamFluentBuilder>),
    Streaming { events: Box<Events>, stopped: bool, usage: Option<Usage>, chars: usize },
    Done,
}

impl ChatProvider for Bedrock {
    fn name(&self) -> &str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn prices(&self) -> (f64, f64) {
        self.prices
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>> {
        let (system, messages) = match converse::conversation(&request) {
            Ok(conversation) => conversation,
            Err(e) => return futures::stream::once(async move { Err(rejected(e)) }).boxed(),
        };
        // An evaluation asks for the scorecard as the input of a forced tool.
        let tools = match request.scorecard_schema().map(|schema| tool::scorecard(&schema)).transpose() {
            Ok(tools) => tools,
            Err(e) => return futures::stream::once(async move { Err(rejected(e)) }).boxed(),
        };
        let call = self
            .client
            .converse_stream()
            .model_id(&self.model)
            .set_system((!system.is_empty()).then_some(system))
            .set_messages(Some(messages))
            .inference_config(self.inference.clone())
            .set_tool_config(tools);
        // Shared by every step of the stream: cloned per chunk as a pointer.
        let reading = std::sync::Arc::new(Reading {
            by: Answered::by(self),
            timeout: self.timeout,
            estimate: super::prompt_estimate(&request),
        });
        futures::stream::unfold(State::Opening(Box::new(call)), move |state| step(state, reading.clone())).boxed()
    }
}

/// What a stream needs to know besides its state.
struct Reading {
    by: Answered,
    timeout: Duration,
    /// Prompt tokens to store when no `metadata` event comes.
    estimate: i32,
}

/// The next chunk of the stream, and the state after it.
async fn step(mut state: State, reading: std::sync::Arc<Reading>) -> Option<(Result<Chunk, ProviderError>, State)> {
    loop {
        state = match state {
            State::Done => return None,
            State::Opening(call) => match call.send().await {
                Ok(output) => {
                    State::Streaming { events: Box::new(output.stream), stopped: false, usage: None, chars: 0 }
                }
                Err(e) => return Some((Err(failure::of_call(&e)), State::Done)),
            },
            State::Streaming { mut events, mut stopped, mut usage, chars } => {
                let event = match tokio::time::timeout(reading.timeout, events.recv()).await {
                    Ok(Ok(Some(event))) => event,
                    Ok(Ok(None)) if stopped => {
                        let usage = usage.unwrap_or_else(|| super::estimated_usage(reading.estimate, chars));
                        return Some((Ok(Chunk::Done { usage, by: reading.by.clone() }), State::Done));
                    }
                    Ok(Ok(None)) => return Some((Err(fault("the stream ended before messageStop")), State::Done)),
                    Ok(Err(e)) => return Some((Err(failure::of_event(&e)), State::Done)),
                    Err(_) => {
                        let message = format!("no event for {} s", reading.timeout.as_secs());
                        return Some((Err(fault(&message)), State::Done));
                    }
                };
                match read(event, &mut stopped, &mut usage) {
                    Ok(Some(text)) => {
                        let chars = chars + text.chars().count();
                        return Some((Ok(Chunk::Delta(text)), State::Streaming { events, stopped, usage, chars }));
                    }
                    Ok(None) => State::Streaming { events, stopped, usage, chars },
                    Err(e) => return Some((Err(e), State::Done)),
                }
            }
        };
    }
}

/// Text to pass on, if the event carries some; `messageStop` and
/// `metadata` are noted in `stopped` and `usage`.
fn read(
    event: ConverseStreamOutput,
    stopped: &mut bool,
    usage: &mut Option<Usage>,
) -> Result<Option<String>, ProviderError> {
    match event {
        ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta {
            Some(ContentBlockDelta::Text(text)) if !text.is_empty() => return Ok(Some(text)),
            // The forced scorecard tool's input: the scorecard's JSON, in pieces.
            Some(ContentBlockDelta::ToolUse(tool)) if !tool.input.is_empty() => return Ok(Some(tool.input)),
            _ => {}
        },
        ConverseStreamOutput::MessageStop(stop) => {
            let reason = stop.stop_reason.as_str();
            // A filtered reply is no answer, and asking Bedrock again gives the same.
            if matches!(reason, "content_filtered" | "guardrail_intervened") {
                let message = format!("the reply was stopped by the provider's content filter ({reason})");
                return Err(ProviderError::new(NAME, FailureKind::Filtered, message));
            }
            *stopped = true;
        }
        ConverseStreamOutput::Metadata(metadata) => {
            *usage = metadata.usage.map(|u| Usage {
                prompt_tokens: u.input_tokens,
                completion_tokens: u.output_tokens,
                estimated: false,
            });
        }
        _ => {}
    }
    Ok(None)
}

fn fault(message: &str) -> ProviderError {
    ProviderError::new(NAME, FailureKind::Fault, message)
}

fn rejected(message: String) -> ProviderError {
    ProviderError::new(NAME, FailureKind::Rejected, message)
}
