//! The fleet-wide rate limit of one provider: a sliding-window log in Redis.
//!
//! Each request holds a slot, a member of a sorted set scored by the moment
//! its window starts, with the tokens it was granted beside it. A slot is
//! granted while fewer than the limit are in the window (and the tokens fit);
//! it is scored "in flight" (now + the request's timeout) until the request
//! has reached the provider ([`sent`]: its response began or it failed), then
//! by that moment. So the provider's own count, which starts when the request
//! arrives, always sees the slot expire later than it did: no window of the
//! provider's holds more than the limit, whatever the network's jitter, and
//! however many workers share the log. `docs/rate-limits.md` has the argument.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{LUA_NOW_MS, ProviderKeys};

/// A provider's budget for one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The sliding window.
    pub window: Duration,
    /// Requests per window; none when unlimited.
    pub requests: Option<u32>,
    /// Tokens per window; none when unlimited.
    pub tokens: Option<u32>,
}

impl Budget {
    /// `rpm` and `tpm` (per minute) scaled to `window`, at least 1 each.
    pub fn per_minute(window: Duration, rpm: Option<u32>, tpm: Option<u32>) -> Self {
        let scale = |per_minute: u32| ((u64::from(per_minute) * window.as_millis() as u64 / 60_000) as u32).max(1);
        Self { window, requests: rpm.map(scale), tokens: tpm.map(scale) }
    }

    /// Whether there is anything to limit.
    pub fn is_limited(&self) -> bool {
        self.requests.is_some() || self.tokens.is_some()
    }
}

/// A granted slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot(String);

/// What the window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Requests in the window (sent or in flight).
    pub requests: u64,
    /// Tokens in the window (estimates until corrected).
    pub tokens: u64,
}

impl ProviderKeys {
    fn rate_keys(&self) -> [String; 3] {
        [self.key("rate"), self.key("rate:tokens"), self.key("rate:sum")]
    }
}

/// Expires the slots whose window has passed, then either reports the
/// window's use (`peek`) or grants a slot or says how long until the oldest
/// slot expires.
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{LUA_NOW_MS}{}",
        r"
local window = tonumber(ARGV[1])
local cutoff = now - window
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for i = 1, #expired, 1000 do
    local chunk = {unpack(expired, i, math.min(i + 999, #expired))}
    for _, n in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do freed = freed + (tonumber(n) or 0) end
    redis.call('HDEL', KEYS[2], unpack(chunk))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  redis.call('DECRBY', KEYS[3], freed)
end
local count = redis.call('ZCARD', KEYS[1])
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[7] == '1' then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = 0
  if oldest[2] then wait = tonumber(oldest[2]) + window - now end
  return {count, used, wait}
end
local max_requests, max_tokens, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- A request larger than the whole token budget still runs, alone.
if (max_requests > 0 and count >= max_requests) or (max_tokens > 0 and count > 0 and used + tokens > max_tokens) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = window
  if oldest[2] then wait = tonumber(oldest[2]) + window - now end
  if wait < 1 then wait = 1 end
  return {0, wait, count}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), ARGV[5])
redis.call('HSET', KEYS[2], ARGV[5], tokens)
redis.call('INCRBY', KEYS[3], tokens)
local ttl = window + tonumber(ARGV[6]) + 1000
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl, 'GT'); redis.call('PEXPIRE', KEYS[i], ttl, 'NX') end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {1, count + 1, tonumber(oldest[2]) + window - now}
"
    ))
});

/// Starts the window of a slot now, if it still exists.
static SENT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{LUA_NOW_MS}{}",
        r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]) + 1000, 'GT') end
end
return 1
"
    ))
});

/// Replaces a slot's estimated tokens with the real count.
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('INCRBY', KEYS[3], tonumber(ARGV[2]) - tonumber(old))
end
return 1
",
    )
});

/// Grants a slot for a request of `tokens` (estimated), in flight for at
/// most `in_flight`; or, when the window is full, how long until its oldest
/// slot expires.
pub async fn try_acquire(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    budget: &Budget,
    tokens: u32,
    in_flight: Duration,
) -> redis::RedisResult<Result<Slot, Duration>> {
    Ok(acquire_counted(conn, keys, budget, tokens, in_flight).await?.map(|(slot, _)| slot))
}

/// The window as a grant left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Slots in the window, the new one included.
    pub count: u64,
    /// Until the oldest of them expires.
    pub oldest_expires_in: Duration,
}

/// [`try_acquire`], also saying what the window holds with the new slot.
pub async fn acquire_counted(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    budget: &Budget,
    tokens: u32,
    in_flight: Duration,
) -> redis::RedisResult<Result<(Slot, Held), Duration>> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut invocation = ACQUIRE.prepare_invoke();
    for key in keys.rate_keys() {
        invocation.key(key);
    }
    let (granted, count_or_wait, oldest): (i64, i64, i64) = invocation
        .arg(budget.window.as_millis() as u64)
        .arg(budget.requests.unwrap_or(0))
        .arg(budget.tokens.unwrap_or(0))
        .arg(tokens)
        .arg(&id)
        .arg(in_flight.as_millis() as u64)
        .arg(0)
        .invoke_async(conn)
        .await?;
    Ok(if granted == 1 {
        let held =
            Held { count: count_or_wait.max(0) as u64, oldest_expires_in: Duration::from_millis(oldest.max(0) as u64) };
        Ok((Slot(id), held))
    } else {
        Err(Duration::from_millis(count_or_wait.max(1) as u64))
    })
}

/// The request of `slot` has reached the provider: its window starts now.
pub async fn sent(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    budget: &Budget,
    slot: &Slot,
) -> redis::RedisResult<()> {
    let mut invocation = SENT.prepare_invoke();
    for key in keys.rate_keys() {
        invocation.key(key);
    }
    invocation.arg(&slot.0).arg(budget.window.as_millis() as u64).invoke_async::<i64>(conn).await.map(drop)
}

/// The request of `slot` used `tokens` in all.
pub async fn settle(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    slot: &Slot,
    tokens: u32,
) -> redis::RedisResult<()> {
    let mut invocation = SETTLE.prepare_invoke();
    for key in keys.rate_keys() {
        invocation.key(key);
    }
    invocation.arg(&slot.0).arg(tokens).invoke_async::<i64>(conn).await.map(drop)
}

/// What the window of `window` holds now.
pub async fn usage(conn: &mut ConnectionManager, keys: &ProviderKeys, window: Duration) -> redis::RedisResult<Usage> {
    Ok(peek(conn, keys, window).await?.0)
}

/// What the window of `window` holds now, and how long until its oldest
/// slot expires (zero when empty).
pub async fn peek(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    window: Duration,
) -> redis::RedisResult<(Usage, Duration)> {
    let mut invocation = ACQUIRE.prepare_invoke();
    for key in keys.rate_keys() {
        invocation.key(key);
    }
    let (requests, tokens, wait): (i64, i64, i64) =
        invocation.arg(window.as_millis() as u64).arg(0).arg(0).arg(0).arg("").arg(0).arg(1).invoke_async(conn).await?;
    let usage = Usage { requests: requests.max(0) as u64, tokens: tokens.max(0) as u64 };
    Ok((usage, Duration::from_millis(wait.max(0) as u64)))
}
