//! The scheduled batches of SPEC §8. Each takes what its run asks for and
//! returns counts of what it touched (stored in `batch_runs.counts`). A check
//! that finds a problem (a stale backup, an expiring certificate) alerts and
//! still succeeds: the run did its work. A batch that cannot do its work
//! (the database unreachable) fails, and the queue's policy retries it.

pub mod analytics;
pub mod backups;
pub mod certificates;
pub mod monthly;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use shared::alerts::{Alert, Alerter, Delivery};
use shared::config::Config;
use shared::domain::Batch;
use shared::flow::Core;
pub use shared::schedule::BatchParams as Params;

/// What a batch works with.
#[derive(Clone)]
pub struct Context {
    /// Database, queues, events.
    pub core: Core,
    /// Configuration.
    pub config: Arc<Config>,
    /// The alert sender.
    pub alerter: Alerter,
}

impl Context {
    /// Connects to what `config` names (migrating when `RUN_MIGRATIONS`):
    /// for running a batch outside a worker (`scheduler batch run`, tests).
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let (core, redis) = Core::connect(&config).await?;
        Ok(Self { core, alerter: Alerter::for_config(&config, redis), config: Arc::new(config) })
    }
}

/// A batch that could not do its work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BatchError(pub String);

impl From<shared::db::DbError> for BatchError {
    fn from(e: shared::db::DbError) -> Self {
        BatchError(format!("database: {e}"))
    }
}

impl From<sqlx::Error> for BatchError {
    fn from(e: sqlx::Error) -> Self {
        BatchError(format!("database: {e}"))
    }
}

impl From<shared::flow::FlowError> for BatchError {
    fn from(e: shared::flow::FlowError) -> Self {
        BatchError(e.to_string())
    }
}

/// Runs `batch` as of `now` (its tick, or the moment it was asked for).
pub async fn run(ctx: &Context, batch: Batch, params: &Params, now: DateTime<Utc>) -> Result<Value, BatchError> {
    match batch {
        Batch::ExpiredSessionsCleanup => sessions::expire_idle(ctx).await,
        Batch::TokenCleanup => tokens::clean(ctx).await,
        Batch::AnalyticsAggregation => {
            let today = local_date(ctx, now);
            let day = params.date.unwrap_or_else(|| today.pred_opt().unwrap_or(today));
            analytics::aggregate(ctx, day).await
        }
        Batch::BackupVerification => backups::verify(ctx, now).await,
        Batch::CertificateCheck => certificates::check(ctx).await,
        Batch::MonthlyReport => {
            let day = params.date.unwrap_or_else(|| monthly::first_of_previous_month(local_date(ctx, now)));
            monthly::report(ctx, day).await
        }
    }
}

/// The day `t` falls on in `SCHEDULER_TIMEZONE`.
pub fn local_date(ctx: &Context, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&ctx.config.scheduler.timezone).date_naive()
}

/// Sends `alert`; a channel that fails is logged (the batch's own outcome
/// stands). Returns what happened, for the counts.
pub async fn alert(ctx: &Context, alert: Alert) -> &'static str {
    match ctx.alerter.send(&alert).await {
        Ok(Delivery::Sent) => "sent",
        Ok(Delivery::Suppressed) => "suppressed",
        Ok(Delivery::NoChannel) => "no_channel",
        Err(e) => {
            tracing::error!(error = %e, condition = %alert.condition, "alert not delivered");
            "failed"
        }
    }
}
