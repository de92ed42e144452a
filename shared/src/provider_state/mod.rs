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

    /// Keys of a sliding-window log that is not a provider's (the API's
    /// request rates and login failures, [`rate_limit::try_acquire`]).
    pub fn limiter(prefix: &str, name: &str) -> Self {
        Self { base: format!("{prefix}:limit:{name}") }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.base)
    }
}

/// Milliseconds since the epoch by Redis's clock, from `TIME`.
pub(crate) const LUA_NOW_MS: &str =
    "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// A provider's rate-limit headroom in the current window.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Headroom {
    /// The window, in seconds.
    pub window_seconds: u64,
    /// Requests: limit, used, remaining; none when unlimited.
    pub requests: Option<Allowance>,
    /// Tokens: limit, used, remaining; none when unlimited.
    pub tokens: Option<Allowance>,
}

/// One limit and its use.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Allowance {
    /// Per window.
    pub limit: u64,
    /// In the window now.
    pub used: u64,
    /// What is left.
    pub remaining: u64,
}

/// Everything the fleet knows about one provider of the chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Provider name.
    pub name: String,
    /// 0 for the primary, then the fallbacks.
    pub position: usize,
    /// Model.
    pub model: String,
    /// Its circuit.
    pub circuit: circuit::CircuitView,
    /// Its rate limit now.
    pub rate_limit: Headroom,
    /// Its statistics.
    #[serde(flatten)]
    pub stats: stats::Snapshot,
}

/// The registered chain, each provider with its circuit, headroom and
/// statistics; empty before a worker has registered one.
pub async fn report(conn: &mut redis::aio::ConnectionManager, prefix: &str) -> redis::RedisResult<Vec<Report>> {
    let mut reports = Vec::new();
    for provider in registry::chain(conn, prefix).await? {
        let keys = ProviderKeys::new(prefix, &provider.name);
        let budget = provider.budget();
        let used = rate_limit::usage(conn, &keys, budget.window).await?;
        let allowance = |limit: Option<u32>, used: u64| {
            limit.map(|l| Allowance { limit: u64::from(l), used, remaining: u64::from(l).saturating_sub(used) })
        };
        reports.push(Report {
            circuit: circuit::view(conn, &keys).await?,
            rate_limit: Headroom {
                window_seconds: budget.window.as_secs(),
                requests: allowance(budget.requests, used.requests),
                tokens: allowance(budget.tokens, used.tokens),
            },
            stats: stats::snapshot(conn, &keys).await?,
            name: provider.name,
            position: provider.position,
            model: provider.model,
        });
    }
    Ok(reports)
}
