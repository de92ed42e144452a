//! The scheduler. Not built yet: the cron table, the exactly-once tick lock,
//! catch-up and the batches are the scheduler issue's work. Today it starts,
//! checks its connections, logs, and waits for SIGTERM, so deployments and
//! `scripts/run` already run it in its final place.

use anyhow::Context;
use shared::config::Config;

/// Connects to PostgreSQL and Redis, then waits for `shutdown`.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let pool = shared::db::pool(&config.database).context("DATABASE_URL")?;
    sqlx::query("SELECT 1").execute(&pool).await.context("connecting to PostgreSQL (DATABASE_URL)")?;
    let mut redis = shared::redis_conn::manager(&config.redis).context("REDIS_URL")?;
    redis::cmd("PING").query_async::<()>(&mut redis).await.context("connecting to Redis (REDIS_URL)")?;
    tracing::warn!("scheduler started; no batches are scheduled yet (the cron table is not built)");
    shutdown.await;
    tracing::info!("scheduler stopped");
    Ok(())
}
