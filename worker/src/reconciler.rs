//! PostgreSQL is the source of truth; Redis may lose jobs (a flush, a push
//! that failed after the commit, a worker that died holding one). Every
//! `RECONCILE_INTERVAL_SECONDS` this re-enqueues turns, evaluations and batch
//! runs left unattended: `queued` / `pending` longer than `RECONCILE_QUEUED_AFTER_SECONDS`
//! whose job Redis no longer holds, and `running` under an expired lease.
//! Safe to run in every worker: rows are claimed with `SKIP LOCKED`, and
//! handlers are idempotent.

use std::sync::Arc;
use std::time::Duration;

use shared::db;
use shared::jobs::{BatchJob, QueueName, TurnJob};
use shared::log_throttle::Throttle;
use shared::queue::new_job_id;
use tokio_util::sync::CancellationToken;

use crate::Deps;

const PAGE: i64 = 500;

/// How often each worker samples the queues' depth into the history the
/// admin page charts (or every reconcile pass, when that is more often).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Runs until `stop`; samples the queues' depth on the side.
pub async fn run(deps: Arc<Deps>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(deps.config.jobs.reconcile_interval);
    let mut sampler = tokio::time::interval(deps.config.jobs.reconcile_interval.min(SAMPLE_EVERY));
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sampler.tick() => {
                sample_depth(&deps).await;
                continue;
            }
            () = stop.cancelled() => return,
        }
        match pass(&deps).await {
            Ok((0, 0)) => {}
            Ok((turns, batch_jobs)) => tracing::warn!(turns, batch_jobs, "re-enqueued lost work"),
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed"),
        }
    }
}

/// Records the queues' depth as this minute's (every worker does: they
/// read the same keys, and the minute's last sample stands).
async fn sample_depth(deps: &Deps) {
    let prefix = &deps.config.redis.key_prefix;
    let mut conn = deps.core.queues.redis();
    let sampled = match shared::queue_admin::views(&mut conn, prefix).await {
        Ok(views) => shared::history::sample_depth(&mut conn, prefix, &views).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sampled {
        static NOT_SAMPLED: Throttle = Throttle::new(Duration::from_secs(60));
        if let Some(held_back) = NOT_SAMPLED.allow() {
            tracing::warn!(error = %e, held_back, "queue depth not sampled into the history");
        }
    }
}

/// One pass; returns how many turns, and how many evaluations and batch
/// runs, were re-enqueued.
pub async fn pass(deps: &Deps) -> anyhow::Result<(usize, usize)> {
    let core = &deps.core;
    let after = deps.config.jobs.requeue_after;
    let mut turns = 0;
    for turn in db::turns::unattended(&core.db, after, PAGE).await? {
        let lost = match &turn.job_id {
            Some(job) if !turn.lease_expired => !core.queues.holds(QueueName::Turns, job).await?,
            _ => true,
        };
        if !lost {
            continue;
        }
        let job_id = new_job_id();
        db::turns::set_job(&core.db, turn.id, &job_id).await?;
        let request_id = turn.request_id.unwrap_or_else(shared::new_request_id);
        core.queues
            .push_turn(
                &job_id,
                TurnJob { turn_id: turn.id, session_id: turn.session_id, request_id, traceparent: None },
                None,
            )
            .await?;
        turns += 1;
    }
    let mut evaluations = 0;
    for evaluation in db::evaluations::unattended(&core.db, after, PAGE).await? {
        let lost = match &evaluation.job_id {
            Some(job) if !evaluation.lease_expired => !core.queues.holds(QueueName::Batch, job).await?,
            _ => true,
        };
        if !lost {
            continue;
        }
        let job_id = new_job_id();
        db::evaluations::set_job(&core.db, evaluation.session_id, &job_id).await?;
        let request_id = evaluation.request_id.unwrap_or_else(shared::new_request_id);
        core.queues
            .push_batch(&job_id, BatchJob::Evaluation { session_id: evaluation.session_id, request_id }, None)
            .await?;
        evaluations += 1;
    }
    for run in db::batch_runs::unattended(&core.db, after, PAGE).await? {
        let lost = match &run.job_id {
            Some(job) if !run.lease_expired => !core.queues.holds(QueueName::Batch, job).await?,
            _ => true,
        };
        if !lost {
            continue;
        }
        let job_id = new_job_id();
        db::batch_runs::set_job(&core.db, run.id, &job_id).await?;
        let job = BatchJob::Run { run_id: run.id, request_id: shared::new_request_id() };
        core.queues.push_batch(&job_id, job, None).await?;
        evaluations += 1;
    }
    Ok((turns, evaluations))
}

/// How often the `done` sets are trimmed.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Trims the queues' `done` sets to `QUEUE_DONE_RETENTION_HOURS`, at start
/// and every ten minutes, until `stop`. Every worker may run it: removing a
/// removed id is a no-op.
pub async fn trim_done(deps: Arc<Deps>, mut conn: redis::aio::ConnectionManager, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(TRIM_EVERY);
    let prefix = deps.config.redis.key_prefix.clone();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        for queue in QueueName::ALL {
            match shared::queue_admin::trim_done(&mut conn, &prefix, queue, deps.config.jobs.done_retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(queue = queue.as_str(), trimmed = n, "done set trimmed"),
                Err(e) => tracing::warn!(queue = queue.as_str(), error = %e, "done set not trimmed"),
            }
        }
    }
}
