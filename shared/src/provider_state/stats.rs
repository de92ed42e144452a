//! Per-provider statistics of the whole fleet: running totals (the
//! Prometheus series `ai_*`), per-minute counts (the recent error rate),
//! the last latencies (p50 / p95) and today's tokens and cost (UTC day).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::ProviderKeys;

/// Upper bounds (ms) of the `ai_request_duration_ms` histogram buckets.
pub const DURATION_BUCKETS_MS: [u64; 10] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// Latencies kept for the percentiles.
const LATENCY_SAMPLES: isize = 1_000;

/// Minutes the recent error rate covers.
pub const RECENT_MINUTES: u64 = 5;

/// How one request to a provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A complete answer.
    Ok,
    /// The provider answered 429.
    RateLimited,
    /// Any other failure.
    Error,
}

impl RequestOutcome {
    /// The `status` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::RateLimited => "rate_limited",
            RequestOutcome::Error => "error",
        }
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord {
    /// How it ended.
    pub outcome: RequestOutcome,
    /// From sending to the end of the stream (or the failure).
    pub duration: Duration,
    /// Prompt and completion tokens, when the provider reported them.
    pub tokens: (u32, u32),
    /// Their estimated cost in USD.
    pub cost_usd: f64,
    /// Whether the tokens are our estimate: the provider reported none.
    pub estimated: bool,
}

impl ProviderKeys {
    fn totals_key(&self) -> String {
        self.key("stats")
    }
    fn minute_key(&self, minute: u64) -> String {
        self.key(&format!("minute:{minute}"))
    }
    fn latency_key(&self) -> String {
        self.key("latency")
    }
    fn day_key(&self, day: &str) -> String {
        self.key(&format!("day:{day}"))
    }
}

fn now_minute() -> u64 {
    (chrono::Utc::now().timestamp().max(0) as u64) / 60
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Adds one request to the provider's statistics.
pub async fn record(conn: &mut ConnectionManager, keys: &ProviderKeys, r: &RequestRecord) -> redis::RedisResult<()> {
    let ms = r.duration.as_millis() as u64;
    let bucket = DURATION_BUCKETS_MS.iter().find(|b| ms <= **b).map_or("+Inf".to_owned(), u64::to_string);
    let failed = r.outcome != RequestOutcome::Ok;
    let (totals, minute, day) = (keys.totals_key(), keys.minute_key(now_minute()), keys.day_key(&today()));
    let mut pipe = redis::pipe();
    pipe.hincr(&totals, format!("requests:{}", r.outcome.as_str()), 1)
        .hincr(&totals, "duration:sum", ms)
        .hincr(&totals, format!("duration:le:{bucket}"), 1)
        .hincr(&minute, "requests", 1)
        .hincr(&minute, "errors", u64::from(failed))
        .expire(&minute, (RECENT_MINUTES as i64 + 2) * 60);
    if r.outcome == RequestOutcome::RateLimited {
        pipe.hincr(&totals, "rate_limited:provider", 1);
    }
    if r.outcome == RequestOutcome::Ok {
        pipe.lpush(keys.latency_key(), ms)
            .ltrim(keys.latency_key(), 0, LATENCY_SAMPLES - 1)
            .expire(keys.latency_key(), 86_400);
    }
    if r.tokens != (0, 0) || r.cost_usd > 0.0 {
        for key in [&totals, &day] {
            pipe.hincr(key, "tokens:prompt", r.tokens.0)
                .hincr(key, "tokens:completion", r.tokens.1)
                .cmd("HINCRBYFLOAT")
                .arg(key)
                .arg("cost_usd")
                .arg(r.cost_usd);
        }
        pipe.expire(&day, 3 * 86_400);
        if r.estimated {
            pipe.hincr(&totals, "estimated:prompt", r.tokens.0).hincr(&totals, "estimated:completion", r.tokens.1);
        }
    }
    pipe.exec_async(conn).await
}

/// Counts a call our own limiter held back (waited, or sent elsewhere).
pub async fn record_limiter_hold(conn: &mut ConnectionManager, keys: &ProviderKeys) -> redis::RedisResult<()> {
    redis::cmd("HINCRBY").arg(keys.totals_key()).arg("rate_limited:limiter").arg(1).exec_async(conn).await
}

/// Everything recorded about one provider.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Requests by outcome (`ok`, `rate_limited`, `error`), since the key began.
    pub requests: BTreeMap<String, u64>,
    /// 429s from the provider and holds by our limiter.
    pub rate_limited: RateLimited,
    /// Prompt and completion tokens, since the key began.
    pub tokens: Tokens,
    /// Of `tokens`, those that are our estimate (the provider reported none).
    pub estimated_tokens: Tokens,
    /// Estimated USD, since the key began.
    pub cost_usd: f64,
    /// Cumulative duration histogram: `(le_ms, count)`, the last `+Inf` as `None`.
    #[serde(skip)]
    pub duration_buckets: Vec<(Option<u64>, u64)>,
    /// Sum of durations (ms).
    #[serde(skip)]
    pub duration_sum_ms: u64,
    /// The last [`RECENT_MINUTES`] minutes.
    pub recent: Recent,
    /// Percentiles of the last 1,000 successful requests.
    pub latency_ms: Latency,
    /// Today (UTC).
    pub today: Today,
}

/// Rate-limit events.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RateLimited {
    /// 429 answers.
    pub provider: u64,
    /// Calls our fleet limiter made wait or sent elsewhere.
    pub limiter: u64,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tokens {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
}

/// Recent requests and errors.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Recent {
    /// Minutes covered.
    pub minutes: u64,
    /// Requests.
    pub requests: u64,
    /// Failed ones.
    pub errors: u64,
    /// errors / requests (0 without requests).
    pub error_rate: f64,
}

/// Latency percentiles.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Samples they come from.
    pub samples: usize,
    /// Median.
    pub p50: Option<u64>,
    /// 95th percentile.
    pub p95: Option<u64>,
}

/// Today's use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Today {
    /// The UTC day.
    pub date: String,
    /// Tokens.
    pub tokens: Tokens,
    /// Estimated USD.
    pub cost_usd: f64,
}

/// The statistics of one provider now.
pub async fn snapshot(conn: &mut ConnectionManager, keys: &ProviderKeys) -> redis::RedisResult<Snapshot> {
    let minute = now_minute();
    let date = today();
    let mut pipe = redis::pipe();
    pipe.hgetall(keys.totals_key()).lrange(keys.latency_key(), 0, LATENCY_SAMPLES - 1).hgetall(keys.day_key(&date));
    for m in 0..RECENT_MINUTES {
        pipe.hgetall(keys.minute_key(minute - m));
    }
    let mut values: Vec<redis::Value> = pipe.query_async(conn).await?;
    let minutes: Vec<HashMap<String, u64>> =
        values.split_off(3.min(values.len())).into_iter().map(redis::from_redis_value).collect::<Result<_, _>>()?;
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(redis::Value::Nil);
    let totals: HashMap<String, String> = redis::from_redis_value(next())?;
    let latencies: Vec<u64> = redis::from_redis_value(next())?;
    let day: HashMap<String, String> = redis::from_redis_value(next())?;
    let int =
        |map: &HashMap<String, String>, field: &str| map.get(field).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let float =
        |map: &HashMap<String, String>, field: &str| map.get(field).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let requests = ["ok", "rate_limited", "error"]
        .into_iter()
        .map(|o| (o.to_owned(), int(&totals, &format!("requests:{o}"))))
        .collect();
    let mut cumulative = 0;
    let mut duration_buckets: Vec<(Option<u64>, u64)> = DURATION_BUCKETS_MS
        .iter()
        .map(|b| {
            cumulative += int(&totals, &format!("duration:le:{b}"));
            (Some(*b), cumulative)
        })
        .collect();
    duration_buckets.push((None, cumulative + int(&totals, "duration:le:+Inf")));
    let (recent_requests, recent_errors) = minutes.iter().fold((0, 0), |(r, e), m| {
        (r + m.get("requests").copied().unwrap_or(0), e + m.get("errors").copied().unwrap_or(0))
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let percentile = |p: f64| {
        (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1])
    };
    Ok(Snapshot {
        requests,
        rate_limited: RateLimited {
            provider: int(&totals, "rate_limited:provider"),
            limiter: int(&totals, "rate_limited:limiter"),
        },
        tokens: Tokens { prompt: int(&totals, "tokens:prompt"), completion: int(&totals, "tokens:completion") },
        estimated_tokens: Tokens {
            prompt: int(&totals, "estimated:prompt"),
            completion: int(&totals, "estimated:completion"),
        },
        cost_usd: float(&totals, "cost_usd"),
        duration_buckets,
        duration_sum_ms: int(&totals, "duration:sum"),
        recent: Recent {
            minutes: RECENT_MINUTES,
            requests: recent_requests,
            errors: recent_errors,
            error_rate: if recent_requests == 0 { 0.0 } else { recent_errors as f64 / recent_requests as f64 },
        },
        latency_ms: Latency { samples: sorted.len(), p50: percentile(0.50), p95: percentile(0.95) },
        today: Today {
            date,
            tokens: Tokens { prompt: int(&day, "tokens:prompt"), completion: int(&day, "tokens:completion") },
            cost_usd: float(&day, "cost_usd"),
        },
    })
}
