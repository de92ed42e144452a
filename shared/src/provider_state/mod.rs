//! What every worker of the fleet shares about each LLM provider, in Redis:
//! the rate-limit log ([`rate_limit`]), the circuit ([`circuit`]) and the
//! statistics ([`stats`]); and the chain the workers run ([`registry`]).
//! The workers write it; the API reads it for `/health`, `/metrics` and
//! `GET /api/v1/admin/providers`. Times are Redis's clock, one for the fleet.

pub mod circuit;
pub mod rate_limit;
pub mod registry;
pub mod stats;

/// The keys of provider `name` under `prefix`.
#[derive(Debug, Clone)]
pub struct ProviderKeys {
    base: String,
}

impl ProviderKeys {
    /// Keys of `provider` under the `REDIS_KEY_PREFIX` `prefix`.
    pub fn new(prefix: &str, provider: &str) -> Self {
        Self { base: format!("{prefix}:provider:{provider}") }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.base)
    }
}

/// Milliseconds since the epoch by Redis's clock, from `TIME`.
pub(crate) const LUA_NOW_MS: &str =
    "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";
