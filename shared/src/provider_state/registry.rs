//! The chain the workers run, as they last registered it at start-up, so
//! the API (which holds no provider keys) can report on it.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::rate_limit::Budget;

/// One provider of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// Provider name.
    pub name: String,
    /// 0 for `AI_PROVIDER`, then the fallbacks in order.
    pub position: usize,
    /// Model (or Azure deployment).
    pub model: String,
    /// The rate-limit window, in seconds.
    pub window_seconds: u64,
    /// Requests allowed per window; none when unlimited.
    pub requests_per_window: Option<u32>,
    /// Tokens allowed per window; none when unlimited.
    pub tokens_per_window: Option<u32>,
}

impl Registered {
    /// The budget it registered.
    pub fn budget(&self) -> Budget {
        Budget {
            window: Duration::from_secs(self.window_seconds),
            requests: self.requests_per_window,
            tokens: self.tokens_per_window,
        }
    }
}

fn key(prefix: &str) -> String {
    format!("{prefix}:providers")
}

/// Replaces the registered chain with `chain`.
pub async fn register(conn: &mut ConnectionManager, prefix: &str, chain: &[Registered]) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic().del(key(prefix));
    for provider in chain {
        pipe.hset(key(prefix), &provider.name, serde_json::to_string(provider).unwrap_or_default());
    }
    pipe.exec_async(conn).await
}

/// The registered chain, primary first; empty before any worker started.
pub async fn chain(conn: &mut ConnectionManager, prefix: &str) -> redis::RedisResult<Vec<Registered>> {
    let entries: Vec<(String, String)> = conn.hgetall(key(prefix)).await?;
    let mut chain: Vec<Registered> = entries.iter().filter_map(|(_, v)| serde_json::from_str(v).ok()).collect();
    chain.sort_by_key(|p| p.position);
    Ok(chain)
}
