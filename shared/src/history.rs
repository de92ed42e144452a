//! The last day minute by minute, for the admin page's charts: the jobs
//! the workers handled, per queue and outcome, counted as each finishes
//! ([`count_job`]); each queue's depth, sampled by every worker's
//! reconciler ([`sample_depth`]: workers read the same keys, so their
//! samples agree, and a minute's last sample stands); the turns finished
//! and their latency, from PostgreSQL.
//!
//! Redis, one hash per minute (`unix seconds / 60`), kept a day:
//! `{prefix}:history:jobs:{minute}` with counters `{queue}:{outcome}`, and
//! `{prefix}:history:depth:{minute}` with `{queue}:{state}`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::db::{self, Db, DbError};
use crate::jobs::QueueName;
use crate::queue_admin::QueueView;

/// How far back history goes, in minutes.
pub const RETENTION_MINUTES: u32 = 1_440;

/// Keys outlive the retention by a minute, so its oldest minute is whole.
const TTL_SECONDS: i64 = (RETENTION_MINUTES as i64 + 1) * 60;

/// The minute `t` is in (Unix seconds / 60).
pub fn unix_minute(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

/// The job counters of `minute`.
pub fn jobs_key(prefix: &str, minute: i64) -> String {
    format!("{prefix}:history:jobs:{minute}")
}

/// The depth sample of `minute`.
pub fn depth_key(prefix: &str, minute: i64) -> String {
    format!("{prefix}:history:depth:{minute}")
}

/// What became of a job a handler finished with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done (a handler that scheduled the work's next attempt is done too).
    Completed,
    /// An error apalis runs the job again for.
    Failed,
    /// Given up: in the dead set.
    Dead,
}

impl JobOutcome {
    /// The field name's second part.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Failed => "failed",
            JobOutcome::Dead => "dead",
        }
    }
}

/// Counts a job of `queue` that ended with `outcome` now.
pub async fn count_job(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    outcome: JobOutcome,
) -> redis::RedisResult<()> {
    let key = jobs_key(prefix, unix_minute(Utc::now()));
    redis::pipe()
        .hincr(&key, format!("{}:{}", queue.as_str(), outcome.as_str()), 1)
        .ignore()
        .expire(&key, TTL_SECONDS)
        .ignore()
        .exec_async(conn)
        .await
}

/// Records `views` as this minute's depth.
pub async fn sample_depth(conn: &mut ConnectionManager, prefix: &str, views: &[QueueView]) -> redis::RedisResult<()> {
    let key = depth_key(prefix, unix_minute(Utc::now()));
    let fields: Vec<(String, u64)> = views
        .iter()
        .flat_map(|v| {
            let q = v.queue.as_str();
            [
                (format!("{q}:pending"), v.pending),
                (format!("{q}:scheduled"), v.scheduled),
                (format!("{q}:running"), v.running),
                (format!("{q}:dead"), v.dead),
            ]
        })
        .collect();
    redis::pipe().hset_multiple(&key, &fields).ignore().expire(&key, TTL_SECONDS).ignore().exec_async(conn).await
}

/// One queue's jobs in a minute, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobCounts {
    /// Handled without error.
    pub completed: u64,
    /// Failed; apalis runs them again.
    pub failed: u64,
    /// Failed for good (moved to the dead set).
    pub dead: u64,
}

/// One queue's depth at a minute's last sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Depth {
    /// Waiting to be taken.
    pub pending: u64,
    /// Delayed (retries in their backoff).
    pub scheduled: u64,
    /// Held by a worker.
    pub running: u64,
    /// In the dead set.
    pub dead: u64,
}

/// The turns that finished in a minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Turns {
    /// Completed.
    pub completed: i64,
    /// Failed for good.
    pub failed: i64,
    /// Median of the completed ones' time from answer accepted to reply stored (ms).
    pub latency_p50_ms: Option<f64>,
    /// Its 95th percentile (ms).
    pub latency_p95_ms: Option<f64>,
}

/// One minute of history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minute {
    /// Its start.
    pub minute: DateTime<Utc>,
    /// Jobs handled, per queue.
    pub jobs: BTreeMap<&'static str, JobCounts>,
    /// Depth per queue; `null` when no worker sampled it that minute.
    pub depth: BTreeMap<&'static str, Option<Depth>>,
    /// Turns finished.
    pub turns: Turns,
}

/// Why history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Redis.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL.
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// The `minutes` minutes up to `now`'s (included, so the last one is
/// still filling), oldest first, one entry each.
pub async fn read(
    db: &Db,
    conn: &mut ConnectionManager,
    prefix: &str,
    minutes: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Minute>, HistoryError> {
    let last = unix_minute(now);
    let first = last - i64::from(minutes.max(1)) + 1;
    let mut pipe = redis::pipe();
    for minute in first..=last {
        pipe.hgetall(jobs_key(prefix, minute)).hgetall(depth_key(prefix, minute));
    }
    let hashes: Vec<HashMap<String, u64>> = pipe.query_async(conn).await?;
    let start = Utc.timestamp_opt(first * 60, 0).single().unwrap_or(now);
    let mut turns: HashMap<i64, Turns> = db::turns::finished_per_minute(db, start)
        .await?
        .into_iter()
        .map(|m| {
            let turns = Turns {
                completed: m.completed,
                failed: m.failed,
                latency_p50_ms: m.latency_p50_ms.map(round),
                latency_p95_ms: m.latency_p95_ms.map(round),
            };
            (unix_minute(m.minute), turns)
        })
        .collect();
    let mut out = Vec::with_capacity(hashes.len() / 2);
    for (minute, pair) in (first..=last).zip(hashes.chunks(2)) {
        let (jobs, depth) = (&pair[0], pair.get(1).cloned().unwrap_or_default());
        let field = |hash: &HashMap<String, u64>, queue: QueueName, name: &str| {
            hash.get(&format!("{}:{name}", queue.as_str())).copied()
        };
        let mut minute_jobs = BTreeMap::new();
        let mut minute_depth = BTreeMap::new();
        for queue in QueueName::ALL {
            let count = |outcome: JobOutcome| field(jobs, queue, outcome.as_str()).unwrap_or(0);
            let counts = JobCounts {
                completed: count(JobOutcome::Completed),
                failed: count(JobOutcome::Failed),
                dead: count(JobOutcome::Dead),
            };
            minute_jobs.insert(queue.as_str(), counts);
            let sampled = field(&depth, queue, "pending").map(|pending| Depth {
                pending,
                scheduled: field(&depth, queue, "scheduled").unwrap_or(0),
                running: field(&depth, queue, "running").unwrap_or(0),
                dead: field(&depth, queue, "dead").unwrap_or(0),
            });
            minute_depth.insert(queue.as_str(), sampled);
        }
        out.push(Minute {
            minute: Utc.timestamp_opt(minute * 60, 0).single().unwrap_or(now),
            jobs: minute_jobs,
            depth: minute_depth,
            turns: turns.remove(&minute).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Milliseconds to one decimal.
fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_unix_minutes_before_and_after_the_epoch() {
        let at = |secs| DateTime::from_timestamp(secs, 0).expect("a time");
        assert_eq!(unix_minute(at(1_700_000_059)), 28_333_334);
        assert_eq!(unix_minute(at(1_700_000_040)), 28_333_334);
        assert_eq!(unix_minute(at(-1)), -1);
        assert_eq!(jobs_key("p", 5), "p:history:jobs:5");
        assert_eq!(depth_key("p", 5), "p:history:depth:5");
    }
}
