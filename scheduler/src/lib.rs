//! The scheduler: the cron table of SPEC §8 turned into batch jobs.
//!
//! Every replica evaluates every enabled batch's schedule in
//! `SCHEDULER_TIMEZONE` and, at each tick, records the run in `batch_runs`
//! and enqueues it. The row's unique `(batch, scheduled_for)` is the lock:
//! whichever replica inserts it first enqueues the run, the others find it
//! taken. PostgreSQL, not Redis, holds it, so a Redis flush cannot make a
//! tick run twice; a run whose push was lost is re-enqueued by the workers'
//! reconciler. At start-up the last tick of each batch, if it is at most
//! `SCHEDULER_CATCH_UP_HOURS` old and has no run, is caught up once.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use shared::config::{BatchSchedule, Config};
use shared::domain::BatchTrigger;
use shared::flow::Core;
use shared::metrics::IntCounterVec;

/// The most ticks of one batch fired in one pass (a process that slept
/// through many per-second ticks does not flood the queue).
const MAX_TICKS_PER_PASS: usize = 100;

/// Runs the cron table until `shutdown`.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let (core, _) = Core::connect(&config).await?;
    sqlx::query("SELECT 1").execute(&core.db).await.context("connecting to PostgreSQL (DATABASE_URL)")?;
    let ticks = shared::metrics::counters(
        &core.registry,
        "scheduler_ticks_total",
        "Cron ticks by result: enqueued here, taken (another replica had it), error (not recorded).",
        &["batch", "result"],
    );
    let listener = shared::metrics::listen(&config.telemetry).await?;
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    tokio::spawn(shared::metrics::serve(
        listener,
        core.registry.clone(),
        config.telemetry.metrics_token.clone(),
        || async {},
        async move { metrics_stop.cancelled().await },
    ));
    let enabled: Vec<&BatchSchedule> = config.scheduler.batches.iter().filter(|b| b.enabled).collect();
    let tz = config.scheduler.timezone;
    for b in &enabled {
        tracing::info!(batch = %b.batch, schedule = %b.schedule.expression, timezone = tz.name(), "scheduled");
    }
    catch_up(&core, &ticks, &config, &enabled, Utc::now()).await;
    // The next tick of each batch.
    let start = Utc::now();
    let mut next: Vec<Option<DateTime<Utc>>> = enabled.iter().map(|b| b.schedule.next_after(start, tz)).collect();
    tokio::pin!(shutdown);
    loop {
        let Some(soonest) = next.iter().flatten().min().copied() else {
            tracing::warn!("no batch is enabled; the scheduler idles");
            shutdown.as_mut().await;
            break;
        };
        let wait = (soonest - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.as_mut() => break,
        }
        let now = Utc::now();
        for (b, tick) in enabled.iter().zip(next.iter_mut()) {
            let mut fired = 0;
            while let Some(t) = *tick
                && t <= now
                && fired < MAX_TICKS_PER_PASS
            {
                fire(&core, &ticks, b, t, BatchTrigger::Schedule).await;
                fired += 1;
                *tick = b.schedule.next_after(t, tz);
            }
            if fired == MAX_TICKS_PER_PASS {
                // Far behind: go on from now (the skipped ticks are not caught up).
                *tick = b.schedule.next_after(now, tz);
            }
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// The last tick of each batch, if recent enough and without its run.
async fn catch_up(core: &Core, ticks: &IntCounterVec, config: &Config, enabled: &[&BatchSchedule], now: DateTime<Utc>) {
    let window = chrono::Duration::from_std(config.scheduler.catch_up_window).unwrap_or_default();
    for b in enabled {
        let Some(last) = b.schedule.last_until(now, config.scheduler.timezone) else { continue };
        if now - last <= window {
            fire(core, ticks, b, last, BatchTrigger::CatchUp).await;
        }
    }
}

async fn fire(core: &Core, ticks: &IntCounterVec, b: &BatchSchedule, tick: DateTime<Utc>, trigger: BatchTrigger) {
    let result = core.enqueue_tick(b.batch, tick, trigger).await;
    let counted = match &result {
        Ok(Some(_)) => "enqueued",
        Ok(None) => "taken",
        Err(_) => "error",
    };
    ticks.with_label_values(&[b.batch.as_str(), counted]).inc();
    match result {
        Ok(Some(run_id)) => {
            tracing::info!(batch = %b.batch, tick = %tick, run_id = %run_id, trigger = trigger.as_str(), "batch enqueued")
        }
        Ok(None) => tracing::debug!(batch = %b.batch, tick = %tick, "tick already taken"),
        // The tick is lost for this replica; another may take it.
        Err(e) => tracing::error!(batch = %b.batch, tick = %tick, error = %e, "tick not recorded"),
    }
}
