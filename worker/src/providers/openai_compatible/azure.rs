//! Azure OpenAI's two surfaces: the GA v1 API (`{endpoint}/openai/v1`, the
//! deployment as `model`, no `api-version`), and the deployment path with an
//! `api-version` (async-openai's `AzureConfig`). Both take the key in an
//! `api-key` header.

use async_openai::config::{AzureConfig, Config};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use shared::config::AzureConfig as AzureSettings;

/// The v1 surface.
pub(super) struct AzureV1 {
    base: String,
    key: SecretString,
}

impl Config for AzureV1 {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // A key that is no header value is refused by Azure as a missing key.
        if let Ok(value) = HeaderValue::from_str(self.key.expose_secret()) {
            headers.insert("api-key", value);
        }
        headers
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn api_base(&self) -> &str {
        &self.base
    }

    fn api_key(&self) -> &SecretString {
        &self.key
    }
}

/// The async-openai configuration for `settings`.
pub(super) fn config(settings: &AzureSettings) -> std::sync::Arc<dyn Config> {
    let endpoint = &settings.endpoint;
    match &settings.api_version {
        None => std::sync::Arc::new(AzureV1 {
            base: format!("{}/openai/v1", endpoint.base_url),
            key: SecretString::from(endpoint.api_key.clone()),
        }),
        Some(version) => std::sync::Arc::new(
            AzureConfig::new()
                .with_api_base(&endpoint.base_url)
                .with_api_key(&endpoint.api_key)
                .with_deployment_id(&endpoint.model)
                .with_api_version(version),
        ),
    }
}
