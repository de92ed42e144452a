//! Reading the whole configuration: the providers' settings and the parts
//! that have no file of their own.

use super::*;
use std::collections::HashMap;

/// The configuration `component` reads from `pairs` (with a
/// `TOTP_SECRET_KEY` unless they set one: MFA is on by default).
pub(super) fn load(pairs: &[(&str, &str)], component: Component) -> Result<Config, ConfigError> {
    let mut map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if !map.contains_key("TOTP_SECRET_KEY_FILE") {
        map.entry("TOTP_SECRET_KEY".into()).or_insert_with(|| SECRET.into());
    }
    Config::from_vars(Vars::from_map(map), component)
}

pub(super) const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn an_openai_compatible_endpoint_needs_its_variables() {
    let err = load(&[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "openai_compatible")], Component::Worker)
        .expect_err("incomplete");
    for name in ["OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_MODEL"] {
        assert!(err.to_string().contains(&format!("{name}: is required")), "{err}");
    }
    let err = load(
        &[
            ("DATABASE_URL", "postgres://x/y"),
            ("AI_PROVIDER", "openai_compatible"),
            ("OPENAI_COMPATIBLE_BASE_URL", "ftp://llm"),
            ("OPENAI_COMPATIBLE_API_KEY", "k"),
            ("OPENAI_COMPATIBLE_MODEL", "m"),
            ("OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K", "-1"),
            ("OPENAI_COMPATIBLE_TIMEOUT", "0"),
        ],
        Component::Worker,
    )
    .expect_err("bad values");
    for name in ["OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K", "OPENAI_COMPATIBLE_TIMEOUT"] {
        assert!(err.to_string().contains(name), "{name} in {err}");
    }
    let c = load(
        &[
            ("DATABASE_URL", "postgres://x/y"),
            ("AI_PROVIDER", "openai_compatible"),
            ("OPENAI_COMPATIBLE_BASE_URL", "http://llm.internal/v1/"),
            ("OPENAI_COMPATIBLE_API_KEY", "k"),
            ("OPENAI_COMPATIBLE_MODEL", "m"),
        ],
        Component::Worker,
    )
    .expect("valid");
    match c.worker.providers.as_deref() {
        Some([ProviderKind::OpenAiCompatible(e)]) => {
            assert_eq!(e.base_url, "http://llm.internal/v1");
            assert_eq!(e.timeout, Duration::from_secs(60));
            assert!(!format!("{e:?}").contains("\"k\""), "the key is redacted");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn azure_and_bedrock_read_their_own_variables() {
    let err = load(&[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "azure_openai")], Component::Worker)
        .expect_err("incomplete");
    for name in ["AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT"] {
        assert!(err.to_string().contains(&format!("{name}: is required")), "{err}");
    }
    let c = load(
        &[
            ("DATABASE_URL", "postgres://x/y"),
            ("AI_PROVIDER", "aws_bedrock"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_BEARER_TOKEN_BEDROCK", "k"),
            ("BEDROCK_MODEL_ID", "m"),
            ("BEDROCK_TIMEOUT", "30"),
        ],
        Component::Worker,
    )
    .expect("valid");
    match c.worker.providers.as_deref() {
        Some([ProviderKind::AwsBedrock(b)]) => {
            assert_eq!((b.endpoint.model.as_str(), b.endpoint.timeout), ("m", Duration::from_secs(30)));
        }
        other => panic!("{other:?}"),
    }
    // Only the worker holds provider keys.
    let api = load(
        &[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "azure_openai"), ("JWT_SECRET_KEY", SECRET)],
        Component::Api,
    )
    .expect("the API needs no Azure settings");
    assert_eq!((api.worker.provider_name, api.worker.providers), ("azure_openai", None));
}

#[test]
fn the_fallback_chain_is_validated() {
    let base = [("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "scripted")];
    let err = load(&[base[0], base[1], ("AI_FALLBACK_PROVIDERS", "scripted, gpt")], Component::Worker)
        .expect_err("bad chain");
    let text = err.to_string();
    assert!(text.contains("AI_FALLBACK_PROVIDERS: \"scripted\" is already in the chain"), "{text}");
    assert!(text.contains("AI_FALLBACK_PROVIDERS: unknown provider \"gpt\""), "{text}");
    let c = load(
        &[
            base[0],
            ("AI_PROVIDER", "aws_bedrock"),
            ("AI_FALLBACK_PROVIDERS", " Scripted "),
            ("AWS_REGION", "us-east-1"),
            ("AWS_BEARER_TOKEN_BEDROCK", "k"),
            ("BEDROCK_MODEL_ID", "m"),
        ],
        Component::Worker,
    )
    .expect("valid");
    assert_eq!(c.worker.fallback_names, ["scripted"]);
    assert!(matches!(c.worker.providers.as_deref(), Some([ProviderKind::AwsBedrock(_), ProviderKind::Scripted])));
}

#[test]
fn rate_limits_and_the_circuit_are_read_and_bad_values_are_named() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("AI_PROVIDER", "aws_bedrock"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_BEARER_TOKEN_BEDROCK", "k"),
        ("BEDROCK_MODEL_ID", "m"),
    ];
    let c = load(
        &[&base[..], &[("BEDROCK_RPM", "120"), ("AI_RATE_LIMIT_WINDOW_SECONDS", "10")]].concat(),
        Component::Worker,
    )
    .expect("valid");
    match c.worker.providers.as_deref() {
        Some([ProviderKind::AwsBedrock(b)]) => assert_eq!((b.endpoint.rpm, b.endpoint.tpm), (Some(120), None)),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.worker.policy.rate_window, Duration::from_secs(10));
    assert_eq!((c.worker.policy.circuit_failures, c.worker.policy.circuit_cooldown), (5, Duration::from_secs(30)));
    let bad = [
        ("BEDROCK_RPM", "lots"),
        ("BEDROCK_TPM", "0"),
        ("AI_RATE_LIMIT_WINDOW_SECONDS", "3600"),
        ("AI_CIRCUIT_BREAKER_FAILURES", "-1"),
    ];
    let text = load(&[&base[..], &bad[..]].concat(), Component::Worker).expect_err("bad values").to_string();
    for name in [
        "BEDROCK_RPM: cannot parse",
        "BEDROCK_TPM: must be between 1",
        "AI_RATE_LIMIT_WINDOW_SECONDS: must be between 1 and 60",
        "AI_CIRCUIT_BREAKER_FAILURES: cannot parse",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
}

#[test]
fn the_seed_database_url_is_accepted() {
    let c =
        load(&[("DATABASE_URL", "postgresql+asyncpg://u:p@db:5432/ai"), ("JWT_SECRET_KEY", SECRET)], Component::Api)
            .expect("valid");
    assert_eq!(c.database.url, "postgres://u:p@db:5432/ai");
    assert_eq!(c.database.max_connections, 30);
    assert!(!c.database.transaction_pooling);
    assert_eq!(c.api.port, 8001);
}

#[test]
fn bad_values_name_their_variable() {
    let err = load(
        &[
            ("DATABASE_URL", "mysql://x"),
            ("API_PORT", "eighty"),
            ("REDIS_KEY_PREFIX", "a:b"),
            ("AI_PROVIDER", "claude"),
            ("WS_MAX_CONNECTIONS_PER_USER", "0"),
            ("DATABASE_TRANSACTION_POOLING", "pgbouncer"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/99"),
            ("RATE_LIMIT_PER_MINUTE", "-1"),
        ],
        Component::Worker,
    )
    .expect_err("bad");
    let text = err.to_string();
    for name in [
        "DATABASE_URL",
        "API_PORT",
        "REDIS_KEY_PREFIX",
        "AI_PROVIDER",
        "WS_MAX_CONNECTIONS_PER_USER",
        "DATABASE_TRANSACTION_POOLING",
        "TRUSTED_PROXIES",
        "RATE_LIMIT_PER_MINUTE",
    ] {
        assert!(text.contains(&format!("{name}:")), "{name} missing from {text}");
    }
}

#[test]
fn redis_password_goes_into_the_url() {
    let c = load(
        &[("DATABASE_URL", "postgres://x/y"), ("REDIS_URL", "redis://r:6379/0"), ("REDIS_PASSWORD", "p@ss")],
        Component::Worker,
    )
    .expect("valid");
    assert_eq!(c.redis.url, "redis://:p%40ss@r:6379/0");
}

#[test]
fn seed_log_levels_map_to_filters() {
    let c = load(&[("DATABASE_URL", "postgres://x/y"), ("LOG_LEVEL", "WARNING")], Component::Worker).expect("valid");
    assert!(c.app.log_filter.starts_with("warn,"));
}

#[test]
fn azure_defaults_to_the_v1_surface_and_knows_which_versions_stream_usage() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("AI_PROVIDER", "azure_openai"),
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ("AZURE_OPENAI_API_KEY", "k"),
        ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o"),
    ];
    let azure = |extra: &[(&str, &str)]| -> Result<AzureConfig, String> {
        let c = load(&[&base[..], extra].concat(), Component::Worker).map_err(|e| e.to_string())?;
        match c.worker.providers.as_deref() {
            Some([ProviderKind::AzureOpenAi(a)]) => Ok(a.clone()),
            other => Err(format!("{other:?}")),
        }
    };
    let v1 = azure(&[]).expect("valid");
    assert_eq!((v1.api_version.as_deref(), v1.accepts_stream_options()), (None, true));
    for (version, streams_usage) in [
        ("2024-10-21", false),
        ("2024-02-15-preview", false),
        ("2024-09-01-preview", true),
        ("2025-04-01-preview", true),
    ] {
        let a = azure(&[("AZURE_OPENAI_API_VERSION", version)]).expect("valid");
        assert_eq!(a.accepts_stream_options(), streams_usage, "{version}");
    }
    let err = azure(&[("AZURE_OPENAI_API_VERSION", "latest")]).expect_err("invalid");
    assert!(err.contains("AZURE_OPENAI_API_VERSION: \"latest\" is not an api-version"), "{err}");
}

#[test]
fn mfa_needs_its_key_in_the_api_and_bad_roles_are_named() {
    let api = |pairs: &[(&str, &str)]| {
        let mut all = vec![("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY", SECRET)];
        all.extend_from_slice(pairs);
        load(&all, Component::Api)
    };
    let err = api(&[("TOTP_SECRET_KEY", "")]).expect_err("no key");
    assert!(err.to_string().contains("TOTP_SECRET_KEY: is required when MFA_ENABLED is true"), "{err}");
    assert!(api(&[("TOTP_SECRET_KEY", ""), ("MFA_ENABLED", "false")]).is_ok(), "MFA off needs no key");
    let err = api(&[("TOTP_SECRET_KEY", "short")]).expect_err("short key");
    assert!(err.to_string().contains("TOTP_SECRET_KEY: must be at least 32"), "{err}");
    let err = api(&[("MFA_REQUIRED_ROLES", "admin,boss")]).expect_err("bad role");
    assert!(err.to_string().contains("MFA_REQUIRED_ROLES:"), "{err}");
    let c = api(&[("MFA_REQUIRED_ROLES", "admin, recruiter")]).expect("valid");
    assert_eq!(c.api.mfa.required_roles, vec![crate::domain::Role::Admin, crate::domain::Role::Recruiter]);
    assert_eq!(c.api.mfa.issuer, "AI Interview System");
}
