//! Job handlers, and the two guards every handler runs behind: payloads are
//! decoded here (a payload that does not decode goes to the dead set instead
//! of killing the pool that fetched it), and apalis's own retries of
//! infrastructure errors stop at `JOB_MAX_ATTEMPTS`.

pub mod batch_run;
pub mod evaluation;
pub mod turn;

use apalis::prelude::{AbortError, Attempt, BoxDynError};
use serde::de::DeserializeOwned;
use shared::history::{self, JobOutcome};
use shared::jobs::QueueName;
use shared::log_throttle::Throttle;

/// Decodes a job payload; an undecodable one is aborted into the dead set
/// with a message naming the problem.
pub fn decode<J: DeserializeOwned>(queue: QueueName, raw: serde_json::Value) -> Result<J, BoxDynError> {
    serde_json::from_value(raw).map_err(|e| {
        tracing::error!(queue = queue.as_str(), error = %e, "undecodable job payload; moved to the dead set");
        AbortError::new(format!("undecodable {} job payload: {e}", queue.as_str())).into()
    })
}

/// Provider failures are retried by the handlers themselves (our backoff,
/// our count). What reaches apalis as an error is infrastructure (PostgreSQL
/// or Redis unreachable): apalis retries it after 1 s, 2 s, 3 s, … and this
/// stops it at `max_attempts`; the reconciler picks the row up again once
/// the infrastructure is back.
pub fn bound<T>(result: Result<T, BoxDynError>, attempt: &Attempt, max_attempts: u32) -> Result<T, BoxDynError> {
    match result {
        Err(e) if !e.is::<AbortError>() && attempt.current() >= max_attempts as usize => {
            tracing::error!(attempt = attempt.current(), error = %e, "job failed at its last attempt; moved to the dead set");
            Err(AbortError::new(e).into())
        }
        other => other,
    }
}

/// How a handler that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Its work is done (or was not its to do).
    Done,
    /// Its attempt failed and it pushed the next one, after a backoff.
    Retried,
}

/// Counts a handled job in this process's series (`jobs_total`): `ok`,
/// `retried` (its attempt failed; the next is queued with backoff), `error`
/// (apalis runs it again) or `dead` (aborted into the dead set); and in the
/// fleet's minute-by-minute history the admin page charts, where a retried
/// attempt counts as failed (a Redis failure there is logged, never the
/// job's). Returns what apalis is to see.
pub async fn record(
    deps: &crate::Deps,
    queue: QueueName,
    result: Result<Handled, BoxDynError>,
    start: std::time::Instant,
) -> Result<(), BoxDynError> {
    let (outcome, counted) = match &result {
        Ok(Handled::Done) => ("ok", JobOutcome::Completed),
        Ok(Handled::Retried) => ("retried", JobOutcome::Failed),
        Err(e) if e.is::<AbortError>() => ("dead", JobOutcome::Dead),
        Err(_) => ("error", JobOutcome::Failed),
    };
    let result = result.map(|_| ());
    deps.core.queues.metrics.job(queue, outcome, start.elapsed());
    let prefix = &deps.config.redis.key_prefix;
    if let Err(e) = history::count_job(&mut deps.core.queues.redis(), prefix, queue, counted).await {
        static NOT_COUNTED: Throttle = Throttle::new(std::time::Duration::from_secs(30));
        if let Some(held_back) = NOT_COUNTED.allow() {
            tracing::warn!(queue = queue.as_str(), error = %e, held_back, "job not counted in the history");
        }
    }
    if let Err(e) = &result
        && outcome == "dead"
    {
        let alert = shared::alerts::Alert {
            severity: shared::alerts::Severity::P3,
            title: format!("Jobs going dead on the {} queue", queue.as_str()),
            service: format!("Worker: {} queue", queue.as_str()),
            status: "Moved to the dead set".into(),
            error: e.to_string(),
            action: format!(
                "List them with `worker dead {q}` or GET /api/v1/admin/queues/{q}/dead; retry or delete them once the cause is fixed.",
                q = queue.as_str()
            ),
            condition: format!("dead_jobs:{}", queue.as_str()),
        };
        deps.alerter.send_in_background(alert);
    }
    result
}
