//! AWS Bedrock: the region, the runtime endpoint, how requests are
//! authenticated, and the Converse inference settings.
//!
//! The variables are the AWS SDKs' own (`AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, ...) plus the seed's `BEDROCK_*`.
//! Credentials other than keys in the environment (web identity, profiles,
//! container and instance roles) are found by the AWS SDK's default chain,
//! which reads the process environment itself; what is checked here is
//! what can be wrong before the first call.

use super::providers::{EndpointConfig, endpoint};
use super::{Secret, Vars};

/// A current model every commercial region serves on demand: Claude Sonnet
/// 4.6 through its global cross-Region inference profile.
pub const DEFAULT_MODEL: &str = "global.anthropic.claude-sonnet-4-6";

/// Bedrock through the Converse API.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockConfig {
    /// `endpoint.base_url`: the runtime endpoint (see [`read`]);
    /// `endpoint.model`: `BEDROCK_MODEL_ID`, a model or inference-profile id
    /// or ARN; `endpoint.api_key` is unused (see `auth`).
    pub endpoint: EndpointConfig,
    /// Whether `endpoint.base_url` was configured (else it is the regional
    /// default the SDK derives itself).
    pub endpoint_overridden: bool,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`): where requests go and what they are signed for.
    pub region: String,
    /// How requests are authenticated.
    pub auth: BedrockAuth,
    /// `BEDROCK_MAX_TOKENS`: Converse's `inferenceConfig.maxTokens`.
    pub max_tokens: u32,
    /// `BEDROCK_TEMPERATURE`: `inferenceConfig.temperature`; the model's default when unset.
    pub temperature: Option<f32>,
}

/// How Bedrock requests are authenticated, in the order they are looked for.
#[derive(Debug, Clone, PartialEq)]
pub enum BedrockAuth {
    /// `AWS_BEARER_TOKEN_BEDROCK`: a Bedrock API key, sent as a bearer token; nothing is signed.
    ApiKey(Secret),
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`): SigV4 with these.
    Keys {
        /// `AWS_ACCESS_KEY_ID`.
        access_key_id: String,
        /// `AWS_SECRET_ACCESS_KEY`.
        secret_access_key: Secret,
        /// `AWS_SESSION_TOKEN`, for temporary keys.
        session_token: Option<Secret>,
    },
    /// SigV4 with what the AWS default credential chain finds: web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: EKS IRSA) through
    /// STS, the shared profile files, container credentials (ECS, EKS Pod
    /// Identity), instance metadata. Cached, and refreshed before they expire.
    DefaultChain,
}

/// The Bedrock settings. The endpoint is, first found: `BEDROCK_ENDPOINT`,
/// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, `AWS_ENDPOINT_URL` (the two SDK
/// variables unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`), else
/// `https://bedrock-runtime.{region}.amazonaws.com`.
pub(super) fn read(v: &mut Vars) -> BedrockConfig {
    let region = match v.get("AWS_REGION").or_else(|| v.get("AWS_DEFAULT_REGION")) {
        Some(region) => region.to_owned(),
        None => v.required("AWS_REGION"),
    };
    if !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        v.problem("AWS_REGION", format!("{region:?} is not an AWS region (such as us-east-1)"));
    }
    let ignore_sdk_urls = v.flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", false);
    let mut configured = None;
    for variable in ["BEDROCK_ENDPOINT", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"] {
        if ignore_sdk_urls && variable != "BEDROCK_ENDPOINT" {
            continue;
        }
        if let Some(url) = v.get(variable).map(str::to_owned) {
            if url.trim_end_matches('/').ends_with("/openai/v1") {
                v.problem(
                    variable,
                    "is Bedrock's OpenAI-compatible path; Bedrock is called through ConverseStream: give the \
                     runtime endpoint itself (https://bedrock-runtime.{region}.amazonaws.com)",
                );
            }
            configured = Some((variable, url));
            break;
        }
    }
    let endpoint_overridden = configured.is_some();
    let url = configured.unwrap_or_else(|| ("AWS_REGION", format!("https://bedrock-runtime.{region}.amazonaws.com")));
    let model = v.string("BEDROCK_MODEL_ID", DEFAULT_MODEL);
    let auth = auth(v);
    let temperature = v.get("BEDROCK_TEMPERATURE").is_some().then(|| {
        let t: f32 = v.parse("BEDROCK_TEMPERATURE", 1.0);
        if !(0.0..=1.0).contains(&t) {
            v.problem("BEDROCK_TEMPERATURE", format!("must be between 0 and 1, got {t}"));
        }
        t
    });
    BedrockConfig {
        endpoint: endpoint(v, "BEDROCK", url, String::new(), model),
        endpoint_overridden,
        region,
        auth,
        max_tokens: v.ranged("BEDROCK_MAX_TOKENS", 2_048, 1, 200_000),
        temperature,
    }
}

fn auth(v: &mut Vars) -> BedrockAuth {
    let session_token = v.get("AWS_SESSION_TOKEN").map(|t| Secret(t.to_owned()));
    let keys = match (v.get("AWS_ACCESS_KEY_ID"), v.get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some(BedrockAuth::Keys {
            access_key_id: id.to_owned(),
            secret_access_key: Secret(secret.to_owned()),
            session_token: session_token.clone(),
        }),
        (Some(_), None) => {
            v.problem("AWS_SECRET_ACCESS_KEY", "is required when AWS_ACCESS_KEY_ID is set");
            None
        }
        (None, Some(_)) => {
            v.problem("AWS_ACCESS_KEY_ID", "is required when AWS_SECRET_ACCESS_KEY is set");
            None
        }
        (None, None) => {
            if session_token.is_some() {
                v.problem("AWS_SESSION_TOKEN", "is set without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
            }
            None
        }
    };
    if let Some(key) = v.get("AWS_BEARER_TOKEN_BEDROCK") {
        return BedrockAuth::ApiKey(Secret(key.to_owned()));
    }
    if let Some(keys) = keys {
        return keys;
    }
    // What the default chain's web identity provider will read: a mistake
    // here would otherwise surface only at the first call.
    match (v.get("AWS_WEB_IDENTITY_TOKEN_FILE").map(str::to_owned), v.get("AWS_ROLE_ARN")) {
        (Some(file), Some(_)) => {
            if std::fs::metadata(&file).is_err() {
                v.problem("AWS_WEB_IDENTITY_TOKEN_FILE", format!("{file} cannot be read"));
            }
        }
        (Some(_), None) => v.problem("AWS_ROLE_ARN", "is required when AWS_WEB_IDENTITY_TOKEN_FILE is set"),
        (None, _) => {}
    }
    BedrockAuth::DefaultChain
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::super::{Component, ProviderKind};
    use super::*;

    fn bedrock(pairs: &[(&str, &str)]) -> Result<BedrockConfig, String> {
        let base = [("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "aws_bedrock")];
        match load(&[&base[..], pairs].concat(), Component::Worker).map_err(|e| e.to_string())?.worker.providers {
            Some(providers) => match providers.as_slice() {
                [ProviderKind::AwsBedrock(c)] => Ok(c.clone()),
                other => Err(format!("{other:?}")),
            },
            None => Err("no providers".into()),
        }
    }

    #[test]
    fn the_seed_s_keys_sign_in_the_region_with_a_current_default_model() {
        let c = bedrock(&[("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s")])
            .expect("valid");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.base_url, "https://bedrock-runtime.eu-west-1.amazonaws.com");
        assert!(!c.endpoint_overridden);
        assert_eq!(c.endpoint.model, DEFAULT_MODEL);
        assert!(
            matches!(&c.auth, BedrockAuth::Keys { access_key_id, session_token: None, .. } if access_key_id == "AKID")
        );
        assert!(!format!("{c:?}").contains("\"s\""), "the secret is redacted: {c:?}");
        assert_eq!((c.max_tokens, c.temperature), (2_048, None));
    }

    #[test]
    fn an_api_key_wins_and_endpoints_follow_the_sdk_s_precedence() {
        let c = bedrock(&[
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-key"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:2"),
        ])
        .expect("valid");
        assert_eq!(c.auth, BedrockAuth::ApiKey(Secret("bedrock-key".into())));
        assert_eq!((c.region.as_str(), c.endpoint.base_url.as_str()), ("us-west-2", "http://127.0.0.1:2"));
        let c = bedrock(&[("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/")]).expect("valid");
        assert_eq!((c.endpoint.base_url.as_str(), c.endpoint_overridden), ("http://127.0.0.1:1", true));
        assert_eq!(c.auth, BedrockAuth::DefaultChain);
        let c = bedrock(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ("BEDROCK_ENDPOINT", "http://127.0.0.1:3"),
        ])
        .expect("valid");
        assert_eq!(c.endpoint.base_url, "http://127.0.0.1:3");
    }

    #[test]
    fn mistakes_name_their_variable() {
        let err = bedrock(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("BEDROCK_ENDPOINT", "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1"),
            ("BEDROCK_TEMPERATURE", "3"),
            ("BEDROCK_MAX_TOKENS", "0"),
        ])
        .expect_err("invalid");
        for problem in [
            "AWS_REGION: is required",
            "AWS_SECRET_ACCESS_KEY: is required when AWS_ACCESS_KEY_ID is set",
            "BEDROCK_ENDPOINT: is Bedrock's OpenAI-compatible path",
            "BEDROCK_TEMPERATURE: must be between 0 and 1",
            "BEDROCK_MAX_TOKENS: must be between 1",
        ] {
            assert!(err.contains(problem), "{problem} in {err}");
        }
        let err = bedrock(&[("AWS_REGION", "US East"), ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token")])
            .expect_err("invalid");
        assert!(err.contains("AWS_REGION: \"US East\" is not an AWS region"), "{err}");
        assert!(err.contains("AWS_ROLE_ARN: is required when AWS_WEB_IDENTITY_TOKEN_FILE is set"), "{err}");
        let err = bedrock(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/worker"),
        ])
        .expect_err("invalid");
        assert!(err.contains("AWS_WEB_IDENTITY_TOKEN_FILE: /nonexistent/token cannot be read"), "{err}");
    }
}
