//! The circuit breaker of one provider, shared by the fleet.
//!
//! Closed: calls go through, consecutive faults (5xx, timeouts, broken
//! connections or streams) are counted and a success resets the count. At
//! the threshold the circuit opens: calls skip the provider for the
//! cool-down. After it, the first caller becomes the one probe (others still
//! skip, for as long as a probe may take); its success closes the circuit,
//! its failure opens it for another cool-down. 429s and other 4xx are not
//! faults of the provider's health: they do not count.
//!
//! A provider that throttles (a 429, Bedrock's `throttlingException`) pauses
//! its calls for the whole fleet for its `Retry-After` (or a second): every
//! worker waits that out instead of each learning it from a 429 of its own.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::{LUA_NOW_MS, ProviderKeys};

/// Whether a call may go to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go.
    Go,
    /// The cool-down is over and this call is the probe.
    Probe,
    /// Open (or another call is probing): skip it for this long at least.
    Skip(Duration),
    /// The provider throttled the fleet: nothing goes to it for this long.
    Wait(Duration),
}

/// How a call ended, for the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered.
    Success,
    /// 5xx, timeout, broken connection or stream.
    Fault,
}

/// A change of state worth a log line and an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// The circuit opened (or re-opened after a failed probe).
    Opened,
    /// A probe succeeded: closed again.
    Closed,
}

/// The circuit as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitView {
    /// `closed`, `open` or `half_open` (a probe is running).
    pub state: String,
    /// Consecutive faults so far.
    pub consecutive_failures: u64,
    /// While open: milliseconds until a probe may run.
    pub retry_in_ms: Option<u64>,
    /// The last fault.
    pub last_error: Option<String>,
    /// While the provider's throttling pauses the fleet: milliseconds left.
    pub paused_for_ms: Option<u64>,
}

impl ProviderKeys {
    fn circuit_key(&self) -> String {
        self.key("circuit")
    }
}

static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{LUA_NOW_MS}{}",
        r"
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
if now < paused then return {'wait', paused - now} end
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return {'go', 0} end
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ms then return {'skip', until_ms - now} end
-- The cool-down (or a vanished probe's lease) is over: this call probes.
redis.call('HSET', KEYS[1], 'state', 'half_open', 'until', now + tonumber(ARGV[1]))
return {'probe', 0}
"
    ))
});

static PAUSE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{LUA_NOW_MS}{}",
        r"
local until_ms = now + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0') then
  redis.call('HSET', KEYS[1], 'paused_until', until_ms)
end
"
    ))
});

static RECORD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{LUA_NOW_MS}{}",
        r"
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'success' then
  if state == 'half_open' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
    return 'closed'
  end
  if state == 'closed' then redis.call('HSET', KEYS[1], 'failures', 0) end
  return 'none'
end
redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
if state == 'open' then return 'none' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[3]))
  return 'opened'
end
return 'none'
"
    ))
});

/// Whether a call may go to the provider now; a probe holds its turn for
/// `probe_lease` (the longest a call may take).
pub async fn admit(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    probe_lease: Duration,
) -> redis::RedisResult<Admission> {
    let (verdict, wait): (String, i64) =
        ADMIT.key(keys.circuit_key()).arg(probe_lease.as_millis() as u64).invoke_async(conn).await?;
    Ok(match verdict.as_str() {
        "probe" => Admission::Probe,
        "skip" => Admission::Skip(Duration::from_millis(wait.max(1) as u64)),
        "wait" => Admission::Wait(Duration::from_millis(wait.max(1) as u64)),
        _ => Admission::Go,
    })
}

/// The provider throttled: no call goes to it, fleet-wide, for `wait` (a
/// longer pause already set stands).
pub async fn pause(conn: &mut ConnectionManager, keys: &ProviderKeys, wait: Duration) -> redis::RedisResult<()> {
    PAUSE.key(keys.circuit_key()).arg(wait.as_millis() as u64).invoke_async(conn).await
}

/// Records how a call ended; `threshold` consecutive faults open the circuit
/// for `cooldown`.
pub async fn record(
    conn: &mut ConnectionManager,
    keys: &ProviderKeys,
    outcome: Outcome,
    threshold: u32,
    cooldown: Duration,
    error: &str,
) -> redis::RedisResult<Transition> {
    let outcome = match outcome {
        Outcome::Success => "success",
        Outcome::Fault => "fault",
    };
    let transition: String = RECORD
        .key(keys.circuit_key())
        .arg(outcome)
        .arg(threshold)
        .arg(cooldown.as_millis() as u64)
        .arg(error.chars().take(500).collect::<String>())
        .invoke_async(conn)
        .await?;
    Ok(match transition.as_str() {
        "opened" => Transition::Opened,
        "closed" => Transition::Closed,
        _ => Transition::None,
    })
}

/// The circuit now.
pub async fn view(conn: &mut ConnectionManager, keys: &ProviderKeys) -> redis::RedisResult<CircuitView> {
    let (fields, now): (Vec<Option<String>>, (u64, u64)) = redis::pipe()
        .cmd("HMGET")
        .arg(keys.circuit_key())
        .arg(&["state", "failures", "until", "last_error", "paused_until"])
        .cmd("TIME")
        .query_async(conn)
        .await?;
    let field = |i: usize| fields.get(i).cloned().flatten();
    let (state, last_error) = (field(0), field(3));
    let (failures, until) =
        (field(1).and_then(|v| v.parse::<u64>().ok()), field(2).and_then(|v| v.parse::<u64>().ok()));
    let now_ms = now.0 * 1000 + now.1 / 1000;
    let state = state.unwrap_or_else(|| "closed".into());
    let retry_in_ms = (state == "open").then(|| until.unwrap_or(0).saturating_sub(now_ms));
    let paused_for_ms = field(4).and_then(|v| v.parse::<u64>().ok()).filter(|p| *p > now_ms).map(|p| p - now_ms);
    Ok(CircuitView { state, consecutive_failures: failures.unwrap_or(0), retry_in_ms, last_error, paused_for_ms })
}
