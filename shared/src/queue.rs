//! Pushing jobs onto the apalis-redis queues, and asking whether Redis still
//! knows a job (the reconciler's test for a lost job).

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config as QueueConfig, RedisStorage};
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::jobs::{BatchJob, QueueName, TurnJob};

/// A push that did not reach Redis.
#[derive(Debug, thiserror::Error)]
#[error("could not enqueue on {queue}: {message}")]
pub struct QueueError {
    /// The queue.
    pub queue: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The apalis configuration of `queue` under `prefix`. Workers add their
/// heartbeat settings to it.
pub fn queue_config(prefix: &str, queue: QueueName) -> QueueConfig {
    QueueConfig::default().queue(queue.key(prefix))
}

/// Producer side of both queues.
#[derive(Clone)]
pub struct Queues {
    turns: RedisStorage<TurnJob>,
    batch: RedisStorage<BatchJob>,
    conn: ConnectionManager,
    prefix: String,
    /// What this process's handlers did with the jobs.
    pub metrics: crate::metrics::JobMetrics,
}

impl Queues {
    /// Queues on `conn` under `prefix`, counting into `metrics`.
    pub fn new(conn: ConnectionManager, prefix: &str, metrics: crate::metrics::JobMetrics) -> Self {
        Self {
            metrics,
            turns: RedisStorage::new(conn.clone()).with_config(queue_config(prefix, QueueName::Turns)),
            batch: RedisStorage::new(conn.clone()).with_config(queue_config(prefix, QueueName::Batch)),
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// Enqueues a turn under `job_id` (from [`new_job_id`], stored with the
    /// turn first), to run now or after `delay` (a retry's backoff).
    pub async fn push_turn(&self, job_id: &str, job: TurnJob, delay: Option<Duration>) -> Result<(), QueueError> {
        self.enqueue(self.turns.clone(), QueueName::Turns, job_id, job, delay).await
    }

    /// Enqueues batch work under `job_id`, now or after `delay`.
    pub async fn push_batch(&self, job_id: &str, job: BatchJob, delay: Option<Duration>) -> Result<(), QueueError> {
        self.enqueue(self.batch.clone(), QueueName::Batch, job_id, job, delay).await
    }

    /// Pushes `job` due after `delay` (its due time taken once), keeps the
    /// delay's milliseconds, and wakes the pools for a job due now.
    async fn enqueue<J>(
        &self,
        mut storage: RedisStorage<J>,
        queue: QueueName,
        job_id: &str,
        job: J,
        delay: Option<Duration>,
    ) -> Result<(), QueueError>
    where
        J: Serialize + DeserializeOwned + Unpin + Send + Sync + 'static,
    {
        // Since the epoch.
        let due =
            delay.map(|d| (std::time::SystemTime::now() + d).duration_since(std::time::UNIX_EPOCH).unwrap_or_default());
        let error = |message: String| QueueError { queue: queue.as_str(), message };
        let id: ulid::Ulid = job_id.parse().map_err(|e| error(format!("job id {job_id:?}: {e}")))?;
        let mut task = TaskBuilder::new(job).task_id(TaskId::from_ulid(id));
        if let Some(due) = due {
            // apalis-redis scores scheduled jobs in whole seconds, due once
            // that second starts: round up, so a job never runs before its
            // delay (a provider's Retry-After must hold); `keep_precise` then
            // writes the milliseconds.
            task = task.run_at_timestamp(due.as_secs() + u64::from(due.subsec_nanos() > 0));
        }
        storage.push_task(task.build()).await.map_err(|e| error(e.to_string()))?;
        if let Some(due) = due.filter(|_| delay.is_some_and(|d| !d.is_zero())) {
            self.keep_precise(queue, job_id, due).await;
        }
        self.notify(queue, delay).await
    }

    /// apalis-redis scores a delayed job in whole seconds (rounded up here,
    /// so it never runs early): the score is rewritten with the delay's
    /// milliseconds, which the workers' promotion reads ([`promote_due`]), so
    /// a 120 ms backoff is 120 ms (within the promotion's 250 ms tick), not a
    /// second. If this write fails the whole-second score stands.
    async fn keep_precise(&self, queue: QueueName, job_id: &str, due: Duration) {
        let due_ms = due.as_millis() as f64;
        let set = queue_config(&self.prefix, queue).scheduled_jobs_set();
        let mut conn = self.conn.clone();
        let written: Result<i64, _> =
            redis::cmd("ZADD").arg(&set).arg("XX").arg(due_ms / 1000.0).arg(job_id).query_async(&mut conn).await;
        if let Err(e) = written {
            tracing::debug!(queue = queue.as_str(), error = %e, "delay kept in whole seconds");
        }
    }

    /// Wakes idle workers. Delayed jobs are woken for by the promotion that
    /// makes them due ([`promote_due`]); workers poll once a second as well.
    async fn notify(&self, queue: QueueName, delay: Option<Duration>) -> Result<(), QueueError> {
        if delay.is_some_and(|d| !d.is_zero()) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let published: Result<i64, _> =
            redis::cmd("PUBLISH").arg(queue.notify_channel(&self.prefix)).arg(1).query_async(&mut conn).await;
        if let Err(e) = published {
            tracing::debug!(queue = queue.as_str(), error = %e, "queue notification not published");
        }
        Ok(())
    }

    /// The connection the queues use, for what is recorded beside them
    /// ([`crate::history`]).
    pub fn redis(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Whether Redis still holds the job as work to do (pending, scheduled or
    /// in flight). False after a flush or a lost push, and for a job that is
    /// done or dead while its row still waits: both mean nobody will run it.
    pub async fn holds(&self, queue: QueueName, job_id: &str) -> Result<bool, redis::RedisError> {
        let config = match queue {
            QueueName::Turns => self.turns.get_config(),
            QueueName::Batch => self.batch.get_config(),
        };
        let mut conn = self.conn.clone();
        let (exists, done, dead): (bool, bool, bool) = redis::pipe()
            .cmd("HEXISTS")
            .arg(config.job_data_hash())
            .arg(job_id)
            .cmd("SISMEMBER")
            .arg(config.done_jobs_set())
            .arg(job_id)
            .cmd("SISMEMBER")
            .arg(config.dead_jobs_set())
            .arg(job_id)
            .query_async(&mut conn)
            .await?;
        Ok(exists && !done && !dead)
    }
}

/// A fresh job id. Stored with the row before the push, so the reconciler can
/// tell whether Redis still holds the job.
pub fn new_job_id() -> String {
    ulid::Ulid::generate().to_string()
}

/// Moves due jobs from a queue's scheduled set to its pending list, at most
/// [`PROMOTE_CHUNK`] per script call, until none is due; returns how many.
///
/// apalis-redis's fetch script promotes every due job in one `unpack`, which
/// Redis's Lua refuses beyond about 8,000 values ("too many results to
/// unpack"): a backlog that size would fail every fetch and stop every pool.
/// Workers run this alongside their pools so the due part of the set stays
/// small; a pool that failed on a backlog before it ran restarts into a
/// drained set.
pub async fn promote_due(
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
) -> Result<u64, redis::RedisError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            local ids = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
            if #ids > 0 then
                redis.call('rpush', KEYS[2], unpack(ids))
                redis.call('zrem', KEYS[1], unpack(ids))
                redis.call('del', KEYS[3])
                redis.call('lpush', KEYS[3], 1)
                redis.call('publish', ARGV[3], #ids)
            end
            return #ids
            ",
        )
    });
    let config = queue_config(prefix, queue);
    // Seconds with milliseconds: scores may carry them (Queues::keep_precise).
    let now_secs = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut moved = 0;
    loop {
        let n: u64 = SCRIPT
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(now_secs)
            .arg(PROMOTE_CHUNK)
            .arg(queue.notify_channel(prefix))
            .invoke_async(conn)
            .await?;
        moved += n;
        if n < PROMOTE_CHUNK {
            return Ok(moved);
        }
    }
}

/// Jobs [`promote_due`] moves per script call.
pub const PROMOTE_CHUNK: u64 = 1_000;

/// How often a worker pool records that it is alive.
pub const POOL_HEARTBEAT: Duration = Duration::from_secs(2);

/// The sorted set of a queue's live worker pools: member = worker name,
/// score = last heartbeat in Unix milliseconds.
pub fn pool_key(prefix: &str, queue: QueueName) -> String {
    format!("{prefix}:pool:{}", queue.as_str())
}
