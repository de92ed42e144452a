//! The API's settings: `API_*`, `JWT_*`, `WS_*`, `CORS_*` and request limits.

use std::time::Duration;

use super::Vars;

/// The HTTP API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `API_HOST`.
    pub host: String,
    /// `API_PORT`.
    pub port: u16,
    /// `API_PREFIX` (default `/api/v1`).
    pub prefix: String,
    /// `JWT_SECRET_KEY`, and `JWT_SECRET_KEY_NEW` during a rotation.
    pub jwt: JwtConfig,
    /// `CORS_ALLOWED_ORIGINS` and the seed's `ALLOWED_ORIGINS`.
    pub cors_allowed_origins: Vec<String>,
    /// `MAX_REQUEST_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `ANSWER_MAX_CHARS`: longest accepted candidate answer.
    pub answer_max_chars: usize,
    /// `WS_HEARTBEAT_INTERVAL`: seconds between pings; a missed pong closes.
    pub ws_heartbeat: Duration,
    /// `WS_MAX_CONNECTIONS_PER_USER`.
    pub ws_max_connections_per_user: usize,
    /// `WS_MESSAGE_MAX_SIZE`: larger frames close the socket with 1009.
    pub ws_max_message_bytes: usize,
    /// `HEALTH_CHECK_TIMEOUT_MS`: per dependency check.
    pub health_check_timeout: Duration,
    /// `SESSION_TIMEOUT_MINUTES`: idle time after which a session expires.
    pub session_timeout: Duration,
    /// Request rates and login throttling.
    pub limits: super::LimitsConfig,
    /// TOTP MFA.
    pub mfa: super::MfaConfig,
}

/// Token signing.
#[derive(Clone)]
pub struct JwtConfig {
    /// `JWT_SECRET_KEY`: verifies, and signs unless a new key is set.
    pub secret: String,
    /// `JWT_SECRET_KEY_NEW`: during a rotation it signs; both verify.
    pub new_secret: Option<String>,
    /// `JWT_ACCESS_TOKEN_EXPIRE_MINUTES`.
    pub access_ttl: Duration,
    /// `JWT_REFRESH_TOKEN_EXPIRE_DAYS`.
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &"<redacted>")
            .field("new_secret", &self.new_secret.as_ref().map(|_| "<redacted>"))
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

/// The API's settings; `jwt_required` for the API itself (the other parts
/// sign nothing).
pub(super) fn read(v: &mut Vars, jwt_required: bool) -> ApiConfig {
    ApiConfig {
        host: v.string("API_HOST", "0.0.0.0"),
        port: v.parse("API_PORT", 8001),
        prefix: api_prefix(v),
        jwt: jwt(v, jwt_required),
        cors_allowed_origins: {
            let mut origins = v.list("CORS_ALLOWED_ORIGINS");
            origins.extend(v.list("ALLOWED_ORIGINS"));
            origins.dedup();
            origins
        },
        max_body_bytes: v.ranged("MAX_REQUEST_BODY_BYTES", 65_536, 1_024, 16 * 1_048_576),
        answer_max_chars: v.ranged("ANSWER_MAX_CHARS", 8_000, 1, 1_000_000),
        ws_heartbeat: v.seconds("WS_HEARTBEAT_INTERVAL", 30, 1, 3600),
        ws_max_connections_per_user: v.ranged("WS_MAX_CONNECTIONS_PER_USER", 3, 1, 1000),
        ws_max_message_bytes: v.ranged("WS_MESSAGE_MAX_SIZE", 1_048_576, 256, 64 * 1_048_576),
        health_check_timeout: v.millis("HEALTH_CHECK_TIMEOUT_MS", 2_000, 10, 60_000),
        session_timeout: Duration::from_secs(60 * v.ranged("SESSION_TIMEOUT_MINUTES", 60, 1, 100_000)),
        limits: super::limits::read(v),
        mfa: super::mfa::read(v, jwt_required),
    }
}

fn api_prefix(v: &mut Vars) -> String {
    let prefix = v.string("API_PREFIX", "/api/v1");
    if !prefix.starts_with('/') || prefix.ends_with('/') {
        v.problem("API_PREFIX", "must start with '/' and not end with one");
    }
    prefix
}

fn jwt(v: &mut Vars, required: bool) -> JwtConfig {
    let algorithm = v.string("JWT_ALGORITHM", "HS256");
    if algorithm != "HS256" {
        v.problem("JWT_ALGORITHM", format!("only HS256 is supported, got {algorithm:?}"));
    }
    let secret = if required { v.required("JWT_SECRET_KEY") } else { v.string("JWT_SECRET_KEY", "") };
    if required && !secret.is_empty() && secret.len() < 32 {
        v.problem("JWT_SECRET_KEY", "must be at least 32 characters");
    }
    let new_secret = v.get("JWT_SECRET_KEY_NEW").map(str::to_owned);
    if new_secret.as_ref().is_some_and(|s| s.len() < 32) {
        v.problem("JWT_SECRET_KEY_NEW", "must be at least 32 characters");
    }
    JwtConfig {
        secret,
        new_secret,
        access_ttl: Duration::from_secs(60 * v.ranged("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 30, 1, 1440)),
        refresh_ttl: Duration::from_secs(86_400 * v.ranged("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 7, 1, 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Component;
    use super::super::tests::load;

    #[test]
    fn the_api_needs_a_long_jwt_secret_but_the_worker_does_not() {
        let err = load(&[("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY", "short")], Component::Api)
            .expect_err("short secret");
        assert!(err.to_string().contains("JWT_SECRET_KEY: must be at least 32"), "{err}");
        assert!(load(&[("DATABASE_URL", "postgres://x/y")], Component::Worker).is_ok());
        assert!(load(&[("DATABASE_URL", "postgres://x/y")], Component::Migrate).is_ok(), "api migrate");
    }
}
