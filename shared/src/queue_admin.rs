//! What operators see of the queues and do to them, read from and written
//! to apalis-redis's keys directly (its own 1.0 stats read the wrong keys):
//! per queue the pending, scheduled, running, done and dead counts, the age of
//! the oldest pending job and the live worker pools; dead jobs listed,
//! retried and deleted; the `done` set trimmed.
//!
//! Keys of queue `q` (docs/apalis-redis-findings.md): `q:active` (list, the
//! oldest first), `q:scheduled` (zset scored in seconds: every push, delayed
//! retries), `q:inflight:<apalis worker>` (sets), `q:workers` (zset of apalis
//! worker names), `q:data` (hash id → payload), `q:meta:<id>` (hash),
//! `q:done`, `q:dead` (sets). Job ids are ULIDs, so an id tells when its job
//! was pushed.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::Value;

use crate::jobs::QueueName;
use crate::queue::{POOL_HEARTBEAT, pool_key, queue_config};

/// One queue now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    /// The queue.
    pub queue: QueueName,
    /// Waiting to be taken (the pending list and what is due in the scheduled set).
    pub pending: u64,
    /// Delayed: retries waiting for their backoff, and future runs.
    pub scheduled: u64,
    /// Held by a worker (fetched and not finished).
    pub running: u64,
    /// Finished, not yet trimmed.
    pub done: u64,
    /// Given up: retry or delete them.
    pub dead: u64,
    /// Seconds since the oldest pending job was pushed (or became due).
    pub oldest_pending_age_seconds: Option<f64>,
    /// Worker pools that heartbeated within three intervals.
    pub workers: Vec<WorkerView>,
}

/// One live worker pool of a queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    /// The worker process's name (host, pid, random).
    pub name: String,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// Jobs it holds.
    pub running: u64,
}

/// When a ULID job id was made.
fn pushed_at(id: &str) -> Option<DateTime<Utc>> {
    let ulid: ulid::Ulid = id.parse().ok()?;
    Utc.timestamp_millis_opt(ulid.timestamp_ms() as i64).single()
}

/// Reads `queue` under `prefix`.
pub async fn view(conn: &mut ConnectionManager, prefix: &str, queue: QueueName) -> redis::RedisResult<QueueView> {
    let config = queue_config(prefix, queue);
    let now = Utc::now();
    let now_secs = now.timestamp();
    let alive_after = now.timestamp_millis() - 3 * POOL_HEARTBEAT.as_millis() as i64;
    type Counts = (u64, u64, u64, u64, u64, Vec<String>, Vec<(String, f64)>, Vec<String>, Vec<(String, f64)>);
    let (active, due, scheduled, done, dead, head, first_due, apalis_workers, pools): Counts = redis::pipe()
        .llen(config.active_jobs_list())
        .zcount(config.scheduled_jobs_set(), "-inf", now_secs)
        .zcount(config.scheduled_jobs_set(), format!("({now_secs}"), "+inf")
        .scard(config.done_jobs_set())
        .scard(config.dead_jobs_set())
        .lrange(config.active_jobs_list(), 0, 0)
        .zrangebyscore_limit_withscores(config.scheduled_jobs_set(), "-inf", now_secs, 0, 1)
        .zrange(config.workers_set(), 0, -1)
        .zrangebyscore_withscores(pool_key(prefix, queue), alive_after, "+inf")
        .query_async(conn)
        .await?;
    let mut held = Vec::with_capacity(apalis_workers.len());
    if !apalis_workers.is_empty() {
        let mut pipe = redis::pipe();
        for w in &apalis_workers {
            pipe.scard(format!("{}:{w}", config.inflight_jobs_set()));
        }
        held = pipe.query_async(conn).await?;
    }
    let running: u64 = held.iter().sum();
    // Apalis workers are named `{queue}-{process}-{run}`.
    let workers = pools
        .into_iter()
        .map(|(name, ms)| {
            let own = format!("{}-{name}-", queue.as_str());
            let running = apalis_workers.iter().zip(&held).filter(|(w, _)| w.starts_with(&own)).map(|(_, n)| *n).sum();
            let last_heartbeat = Utc.timestamp_millis_opt(ms as i64).single().unwrap_or(now);
            WorkerView { name, last_heartbeat, running }
        })
        .collect();
    let oldest = head
        .first()
        .and_then(|id| pushed_at(id))
        .into_iter()
        .chain(first_due.first().and_then(|(_, secs)| Utc.timestamp_opt(*secs as i64, 0).single()))
        .min();
    Ok(QueueView {
        queue,
        pending: active + due,
        scheduled,
        running,
        done,
        dead,
        oldest_pending_age_seconds: oldest.map(|t| ((now - t).num_milliseconds().max(0)) as f64 / 1000.0),
        workers,
    })
}

/// Both queues.
pub async fn views(conn: &mut ConnectionManager, prefix: &str) -> redis::RedisResult<Vec<QueueView>> {
    let mut out = Vec::with_capacity(QueueName::ALL.len());
    for queue in QueueName::ALL {
        out.push(view(conn, prefix, queue).await?);
    }
    Ok(out)
}

/// A dead job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    /// Job id.
    pub id: String,
    /// When it was pushed (from its id).
    pub pushed_at: Option<DateTime<Utc>>,
    /// Its payload (a string when it is not JSON).
    pub payload: Value,
    /// Why it died.
    pub error: Option<String>,
    /// Runs apalis counted.
    pub attempts: Option<u64>,
}

/// A stored payload as JSON: a string when it is not JSON, null when gone.
fn as_json(payload: Option<String>) -> Value {
    payload.map_or(Value::Null, |p| serde_json::from_str(&p).unwrap_or(Value::String(p)))
}

/// The dead jobs of `queue`, newest first, at most `limit`.
pub async fn dead_jobs(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    limit: usize,
) -> redis::RedisResult<Vec<DeadJob>> {
    let config = queue_config(prefix, queue);
    let mut ids: Vec<String> = redis::cmd("SMEMBERS").arg(config.dead_jobs_set()).query_async(conn).await?;
    ids.sort_unstable_by(|a, b| b.cmp(a)); // ULIDs: newest first
    ids.truncate(limit);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One round trip for all of them.
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hget(config.job_data_hash(), id).hgetall(format!("{}:{id}", config.job_meta_hash()));
    }
    let mut values = pipe.query_async::<Vec<redis::Value>>(conn).await?.into_iter();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let payload: Option<String> = redis::from_redis_value(values.next().unwrap_or(redis::Value::Nil))?;
        let meta: HashMap<String, String> = redis::from_redis_value(values.next().unwrap_or(redis::Value::Nil))?;
        jobs.push(dead_job_of(id, payload, &meta));
    }
    Ok(jobs)
}

/// A dead job from its payload and apalis's metadata of it.
fn dead_job_of(id: String, payload: Option<String>, meta: &HashMap<String, String>) -> DeadJob {
    // `result` is `{"Err": "..."}` (or `{"Ok": ...}`).
    let error = meta.get("result").map(|r| match serde_json::from_str::<Value>(r) {
        Ok(Value::Object(o)) => o.get("Err").map_or(r.clone(), |e| e.as_str().map_or(e.to_string(), str::to_owned)),
        _ => r.clone(),
    });
    let attempts = meta.get("attempts").and_then(|a| a.parse().ok());
    DeadJob { pushed_at: pushed_at(&id), id, payload: as_json(payload), error, attempts }
}

/// Dead job `id` of `queue`, if it is dead.
pub async fn dead_job(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    id: &str,
) -> redis::RedisResult<Option<DeadJob>> {
    let config = queue_config(prefix, queue);
    let (dead, payload, meta): (bool, Option<String>, HashMap<String, String>) = redis::pipe()
        .sismember(config.dead_jobs_set(), id)
        .hget(config.job_data_hash(), id)
        .hgetall(format!("{}:{id}", config.job_meta_hash()))
        .query_async(conn)
        .await?;
    Ok(dead.then(|| dead_job_of(id.to_owned(), payload, &meta)))
}

/// Moves a dead job back to the pending list with a fresh count.
static RETRY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3] .. ':' .. ARGV[1], 'status', 'Pending', 'attempts', 0)
redis.call('HDEL', KEYS[3] .. ':' .. ARGV[1], 'result', 'done_at', 'locked_at', 'locked_by')
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('LPUSH', KEYS[4], 1)
return 1
",
    )
});

/// Deletes a dead job and what apalis keeps of it.
static DELETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3] .. ':' .. ARGV[1])
return 1
",
    )
});

/// Puts dead job `id` back in line (the caller has reset what it works on);
/// false when it is not dead.
pub async fn retry_dead(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    id: &str,
) -> redis::RedisResult<bool> {
    let config = queue_config(prefix, queue);
    let moved: i64 = RETRY
        .key(config.dead_jobs_set())
        .key(config.active_jobs_list())
        .key(config.job_meta_hash())
        .key(config.signal_list())
        .arg(id)
        .invoke_async(conn)
        .await?;
    if moved == 1 {
        // Idle pools wake on this (see `Queues::notify`).
        let _: Result<(), _> = redis::cmd("PUBLISH").arg(queue.notify_channel(prefix)).arg(id).query_async(conn).await;
    }
    Ok(moved == 1)
}

/// Deletes dead job `id`; false when it is not dead.
pub async fn delete_dead(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    id: &str,
) -> redis::RedisResult<bool> {
    let config = queue_config(prefix, queue);
    let deleted: i64 = DELETE
        .key(config.dead_jobs_set())
        .key(config.job_data_hash())
        .key(config.job_meta_hash())
        .arg(id)
        .invoke_async(conn)
        .await?;
    Ok(deleted == 1)
}

/// Removes from `queue`'s `done` set the jobs pushed more than `keep` ago,
/// with their payload and metadata (apalis never trims it); returns how many.
pub async fn trim_done(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    keep: Duration,
) -> redis::RedisResult<u64> {
    let config = queue_config(prefix, queue);
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or_default();
    let mut cursor: u64 = 0;
    let mut trimmed = 0;
    loop {
        let (next, ids): (u64, Vec<String>) =
            redis::cmd("SSCAN").arg(config.done_jobs_set()).arg(cursor).arg("COUNT").arg(500).query_async(conn).await?;
        let old: Vec<&String> = ids.iter().filter(|id| pushed_at(id).is_some_and(|t| t < cutoff)).collect();
        if !old.is_empty() {
            let mut pipe = redis::pipe();
            pipe.srem(config.done_jobs_set(), &old).hdel(config.job_data_hash(), &old);
            for id in &old {
                pipe.del(format!("{}:{id}", config.job_meta_hash()));
            }
            pipe.exec_async(conn).await?;
            trimmed += old.len() as u64;
        }
        if next == 0 {
            return Ok(trimmed);
        }
        cursor = next;
    }
}

/// Why a dead job was not retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No dead job has that id.
    #[error("no dead job {0} in this queue")]
    NotDead(String),
    /// What it works on has moved on (a newer turn, an ended session, a run
    /// no longer failed): running it again would be wrong.
    #[error("{0}")]
    Stale(String),
    /// Redis.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL.
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
}

/// Retries dead job `id`: what it works on (its turn, evaluation or batch
/// run, failed when it died) goes back to queued with a fresh attempt count,
/// then the job goes back in line. A payload that never decoded is simply
/// put back (it will die again, with its error).
pub async fn retry(
    db: &crate::db::Db,
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    id: &str,
) -> Result<(), RetryError> {
    use crate::jobs::{BatchJob, TurnJob};
    let payload = dead_job(conn, prefix, queue, id).await?.ok_or_else(|| RetryError::NotDead(id.to_owned()))?.payload;
    let reset = match queue {
        QueueName::Turns => match serde_json::from_value::<TurnJob>(payload) {
            Ok(job) => Some(("turn", crate::db::turns::requeue_failed(db, job.turn_id, id).await?)),
            Err(_) => None,
        },
        QueueName::Batch => match serde_json::from_value::<BatchJob>(payload) {
            Ok(BatchJob::Evaluation { session_id, .. }) => {
                Some(("evaluation", crate::db::evaluations::requeue_failed(db, session_id, id).await?))
            }
            Ok(BatchJob::Run { run_id, .. }) => {
                Some(("batch run", crate::db::batch_runs::requeue_failed(db, run_id, id).await?))
            }
            Err(_) => None,
        },
    };
    if let Some((what, false)) = reset {
        return Err(RetryError::Stale(format!(
            "the {what} of job {id} can no longer be retried (it is not failed, or its session has moved on)"
        )));
    }
    if !retry_dead(conn, prefix, queue, id).await? {
        return Err(RetryError::NotDead(id.to_owned()));
    }
    Ok(())
}
