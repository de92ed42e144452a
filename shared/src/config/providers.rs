//! The worker's pools and its provider chain: `AI_PROVIDER`,
//! `AI_FALLBACK_PROVIDERS` and each provider's own variables.

use std::time::Duration;

use super::bedrock::{self, BedrockConfig};
use super::vertex::{self, VertexConfig};
use super::{Component, Vars};

/// Worker pools and provider.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `TURN_WORKER_CONCURRENCY`: turn jobs one worker process runs at once.
    pub turn_concurrency: usize,
    /// `BATCH_WORKER_CONCURRENCY`: evaluation and batch jobs at once, in their own pool.
    pub batch_concurrency: usize,
    /// `WORKER_SHUTDOWN_TIMEOUT_SECONDS`: on SIGTERM, how long held jobs may finish.
    pub shutdown_timeout: Duration,
    /// `AI_PROVIDER`, validated.
    pub provider_name: &'static str,
    /// `AI_FALLBACK_PROVIDERS`, validated: tried in order after it.
    pub fallback_names: Vec<&'static str>,
    /// The settings of the whole chain, primary first: read and validated
    /// only by the worker, the one part that calls providers (the API and
    /// the scheduler hold no provider keys).
    pub providers: Option<Vec<ProviderKind>>,
    /// `SCRIPTED_DELTA_DELAY_MS`: pause between the scripted provider's deltas.
    pub scripted_delta_delay: Duration,
    /// Rate limits and circuit breaking, for every provider of the chain.
    pub policy: ProviderPolicy,
}

/// The provider kinds of SPEC §7.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKind {
    /// The built-in deterministic interviewer.
    Scripted,
    /// Any OpenAI-compatible endpoint (`OPENAI_COMPATIBLE_*`).
    OpenAiCompatible(EndpointConfig),
    /// Azure OpenAI (`AZURE_OPENAI_*`): a deployment, an `api-key` header.
    AzureOpenAi(AzureConfig),
    /// AWS Bedrock's Converse API (`AWS_*`, `BEDROCK_*`).
    AwsBedrock(BedrockConfig),
    /// Vertex AI's OpenAI-compatible endpoint (`GCP_*`, `VERTEX_AI_*`),
    /// with access tokens the worker obtains and refreshes.
    GcpVertex(VertexConfig),
}

/// An Azure OpenAI deployment: `endpoint.base_url` is `AZURE_OPENAI_ENDPOINT`,
/// `endpoint.model` is `AZURE_OPENAI_DEPLOYMENT`, the key goes in an
/// `api-key` header.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureConfig {
    /// The endpoint settings every provider has.
    pub endpoint: EndpointConfig,
    /// `AZURE_OPENAI_API_VERSION`: unset, the GA v1 surface
    /// (`{endpoint}/openai/v1/chat/completions`, the deployment as `model`, no
    /// api-version); set, the deployment path with that `api-version`.
    pub api_version: Option<String>,
}

impl AzureConfig {
    /// Whether the API accepts `stream_options` (streamed usage): the v1
    /// surface and the previews from 2024-09-01-preview on; not the GA
    /// versions (2024-10-21 included) nor older previews.
    pub fn accepts_stream_options(&self) -> bool {
        match &self.api_version {
            None => true,
            Some(version) => version.strip_suffix("-preview").is_some_and(|date| date >= "2024-09-01"),
        }
    }

    /// Whether the API accepts a JSON-schema `response_format` (structured
    /// outputs): the v1 surface and the api-versions from 2024-08-01-preview
    /// on, GA 2024-10-21 included; older ones get a JSON object.
    pub fn accepts_json_schema(&self) -> bool {
        match &self.api_version {
            None => true,
            Some(version) => version.strip_suffix("-preview").unwrap_or(version) >= "2024-08-01",
        }
    }
}

/// A provider's endpoint and the settings every provider has.
#[derive(Clone, PartialEq)]
pub struct EndpointConfig {
    /// `{P}_BASE_URL`: up to and without `/chat/completions`.
    pub base_url: String,
    /// `{P}_API_KEY`: sent as a bearer token.
    pub api_key: String,
    /// `{P}_MODEL`.
    pub model: String,
    /// `{P}_TIMEOUT` (seconds): connecting, waiting for headers, and any gap in a stream.
    pub timeout: Duration,
    /// `{P}_MAX_RETRIES`: retries on this provider before the next one.
    pub max_retries: u32,
    /// `{P}_PRICE_INPUT_PER_1K`, `{P}_PRICE_OUTPUT_PER_1K`: USD per 1,000 tokens.
    pub prices: (f64, f64),
    /// `{P}_RPM`: requests per minute for the whole fleet; none when unset.
    pub rpm: Option<u32>,
    /// `{P}_TPM`: tokens per minute for the whole fleet; none when unset.
    pub tpm: Option<u32>,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("prices", &self.prices)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .finish()
    }
}

/// How the workers share each provider (`docs/rate-limits.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderPolicy {
    /// `AI_RATE_LIMIT_WINDOW_SECONDS`: the sliding window `{P}_RPM` and
    /// `{P}_TPM` are enforced over, scaled to it (default 60: per minute; 10
    /// enforces a sixth of the budget per 10 s, as Azure does).
    pub rate_window: Duration,
    /// `AI_RATE_LIMIT_MAX_WAIT_MS`: how long a call waits for the limit
    /// before it moves to the next provider (or back to the queue).
    pub rate_max_wait: Duration,
    /// `AI_CIRCUIT_BREAKER_FAILURES`: consecutive failures (5xx, timeouts,
    /// broken connections) that open a provider's circuit.
    pub circuit_failures: u32,
    /// `AI_CIRCUIT_BREAKER_COOLDOWN_SECONDS`: how long an open circuit skips
    /// its provider before one probe request decides.
    pub circuit_cooldown: Duration,
}

/// The worker's settings; the providers' own only for the worker.
pub(super) fn worker(v: &mut Vars, component: Component) -> WorkerConfig {
    let provider_name = provider_name(v, "AI_PROVIDER", "scripted");
    let mut fallback_names: Vec<&'static str> = Vec::new();
    for name in v.list("AI_FALLBACK_PROVIDERS") {
        let known = provider_name_of(v, "AI_FALLBACK_PROVIDERS", &name);
        if known == provider_name || fallback_names.contains(&known) {
            v.problem("AI_FALLBACK_PROVIDERS", format!("{name:?} is already in the chain"));
        } else {
            fallback_names.push(known);
        }
    }
    WorkerConfig {
        turn_concurrency: v.ranged("TURN_WORKER_CONCURRENCY", 64, 1, 10_000),
        batch_concurrency: v.ranged("BATCH_WORKER_CONCURRENCY", 4, 1, 1_000),
        shutdown_timeout: v.seconds("WORKER_SHUTDOWN_TIMEOUT_SECONDS", 30, 1, 3600),
        provider_name,
        providers: (component == Component::Worker).then(|| {
            std::iter::once(provider_name).chain(fallback_names.iter().copied()).map(|n| provider(v, n)).collect()
        }),
        fallback_names,
        scripted_delta_delay: v.millis("SCRIPTED_DELTA_DELAY_MS", 20, 0, 10_000),
        policy: ProviderPolicy {
            rate_window: v.seconds("AI_RATE_LIMIT_WINDOW_SECONDS", 60, 1, 60),
            rate_max_wait: v.millis("AI_RATE_LIMIT_MAX_WAIT_MS", 30_000, 0, 3_600_000),
            circuit_failures: v.ranged("AI_CIRCUIT_BREAKER_FAILURES", 5, 1, 1_000),
            circuit_cooldown: v.seconds("AI_CIRCUIT_BREAKER_COOLDOWN_SECONDS", 30, 1, 86_400),
        },
    }
}

/// `variable` (a provider name, `default` when unset): one built so far.
fn provider_name(v: &mut Vars, variable: &str, default: &str) -> &'static str {
    let name = v.string(variable, default);
    provider_name_of(v, variable, &name)
}

fn provider_name_of(v: &mut Vars, variable: &str, name: &str) -> &'static str {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "scripted" => "scripted",
        "openai_compatible" => "openai_compatible",
        "azure_openai" => "azure_openai",
        "aws_bedrock" => "aws_bedrock",
        "gcp_vertex" => "gcp_vertex",
        other => {
            v.problem(
                variable,
                format!("unknown provider {other:?}; expected scripted, azure_openai, aws_bedrock, gcp_vertex or openai_compatible"),
            );
            "scripted"
        }
    }
}

/// The settings of provider `name` (from [`provider_name`]).
fn provider(v: &mut Vars, name: &str) -> ProviderKind {
    match name {
        "scripted" => ProviderKind::Scripted,
        "openai_compatible" => {
            let base_url = v.required("OPENAI_COMPATIBLE_BASE_URL");
            let api_key = v.required("OPENAI_COMPATIBLE_API_KEY");
            let model = v.required("OPENAI_COMPATIBLE_MODEL");
            ProviderKind::OpenAiCompatible(endpoint(
                v,
                "OPENAI_COMPATIBLE",
                ("OPENAI_COMPATIBLE_BASE_URL", base_url),
                api_key,
                model,
            ))
        }
        "azure_openai" => {
            let endpoint_url = v.required("AZURE_OPENAI_ENDPOINT");
            let api_key = v.required("AZURE_OPENAI_API_KEY");
            let deployment = v.required("AZURE_OPENAI_DEPLOYMENT");
            let api_version = v.get("AZURE_OPENAI_API_VERSION").map(str::to_owned);
            if let Some(version) = &api_version {
                let date = version.strip_suffix("-preview").unwrap_or(version);
                if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
                    v.problem(
                        "AZURE_OPENAI_API_VERSION",
                        format!("{version:?} is not an api-version (YYYY-MM-DD or YYYY-MM-DD-preview; unset for v1)"),
                    );
                }
            }
            let endpoint = endpoint(v, "AZURE_OPENAI", ("AZURE_OPENAI_ENDPOINT", endpoint_url), api_key, deployment);
            ProviderKind::AzureOpenAi(AzureConfig { endpoint, api_version })
        }
        "aws_bedrock" => ProviderKind::AwsBedrock(bedrock::read(v)),
        "gcp_vertex" => ProviderKind::GcpVertex(vertex::read(v)),
        _ => ProviderKind::Scripted,
    }
}

/// Whether `url` is an http(s) URL (or empty: a required variable already reported).
fn is_http_url(url: &str) -> bool {
    url.is_empty() || url.starts_with("http://") || url.starts_with("https://")
}

/// An endpoint from its URL (with the variable it came from, named when it
/// is not an http(s) URL), key and model (read by the caller, whose
/// variables differ per provider) and the `{prefix}_TIMEOUT` and
/// `{prefix}_PRICE_*` variables every provider has.
pub(super) fn endpoint(
    v: &mut Vars,
    prefix: &str,
    (url_variable, base_url): (&str, String),
    api_key: String,
    model: String,
) -> EndpointConfig {
    if !is_http_url(&base_url) {
        v.problem(url_variable, format!("{base_url:?} is not an http(s) URL"));
    }
    let price = |v: &mut Vars, name: String| {
        let price: f64 = v.parse(&name, 0.0);
        if !(price.is_finite() && price >= 0.0) {
            v.problem(&name, format!("{price} is not a price (USD per 1,000 tokens, 0 or more)"));
        }
        price
    };
    EndpointConfig {
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        model,
        timeout: v.seconds(&format!("{prefix}_TIMEOUT"), 60, 1, 600),
        max_retries: v.ranged(&format!("{prefix}_MAX_RETRIES"), 3, 0, 10),
        prices: (price(v, format!("{prefix}_PRICE_INPUT_PER_1K")), price(v, format!("{prefix}_PRICE_OUTPUT_PER_1K"))),
        rpm: v.get(&format!("{prefix}_RPM")).is_some().then(|| v.ranged(&format!("{prefix}_RPM"), 1, 1, 10_000_000)),
        tpm: v.get(&format!("{prefix}_TPM")).is_some().then(|| v.ranged(&format!("{prefix}_TPM"), 1, 1, 1_000_000_000)),
    }
}
