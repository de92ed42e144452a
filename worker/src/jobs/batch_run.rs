//! A recorded batch run (`batch_runs`), on the `batch` queue: claimed,
//! executed under a lease the worker renews, finished with its counts; a
//! failure is retried with the queue's backoff up to `JOB_MAX_ATTEMPTS`,
//! then the run fails and alerts.

use apalis::prelude::{AbortError, BoxDynError};
use chrono::Utc;
use serde_json::Value;
use shared::alerts::{Alert, Severity};
use shared::db::{self, batch_runs::BatchRun};
use shared::domain::Batch;
use shared::ids::BatchRunId;
use shared::jobs::BatchJob;
use shared::queue::new_job_id;

use tracing::Instrument;

use super::Handled;
use crate::batches::{self, BatchError, Context, Params};
use crate::{Deps, retry};

/// Runs the queued run `run_id` (a worker's job).
pub async fn run(deps: &Deps, run_id: BatchRunId, request_id: &str) -> Result<Handled, BoxDynError> {
    let ctx = deps.batch_context();
    let jobs = &deps.config.jobs;
    let Some(run) = db::batch_runs::claim(&ctx.core.db, run_id, jobs.lease).await? else {
        // Finished already, or another worker holds it.
        return Ok(Handled::Done);
    };
    let attempt = run.attempts;
    let span = tracing::info_span!("batch", batch = %run.batch, run_id = %run.id, attempt, request_id);
    async move {
        let result = if attempt.max(0) as u32 > jobs.max_attempts {
            Err(BatchError(format!("{} earlier attempts never finished", attempt - 1)))
        } else {
            execute(&ctx, &run).await
        };
        match result {
            Ok(counts) => {
                db::batch_runs::finish(&ctx.core.db, run.id, attempt, Ok(&counts)).await?;
                ctx.core.queues.metrics.batch_run(run.batch.as_str(), "succeeded");
                tracing::info!(counts = %counts, "batch run succeeded");
                Ok(Handled::Done)
            }
            // Bad parameters stay bad: no retry.
            Err(e) if retry::may_retry(jobs, attempt.max(0) as u32) && !e.0.starts_with("params:") => {
                let delay = retry::delay(jobs, attempt.max(0) as u32, None);
                let job_id = new_job_id();
                if !db::batch_runs::release(&ctx.core.db, run.id, attempt, &e.0, &job_id).await? {
                    // Another worker took the run over meanwhile: its attempt stands.
                    return Ok(Handled::Done);
                }
                let job = BatchJob::Run { run_id: run.id, request_id: request_id.to_owned() };
                ctx.core.queues.push_batch(&job_id, job, Some(delay)).await?;
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "batch run failed; retrying");
                Ok(Handled::Retried)
            }
            Err(e) => {
                fail(&ctx, &run, attempt, &e).await?;
                Err(AbortError::new(format!("{} failed after {attempt} attempts: {e}", run.batch)).into())
            }
        }
    }
    .instrument(span)
    .await
}

/// Records a run of `batch` by hand with `params` and runs it to its end
/// here and now, without retries (the CLI): the finished row.
pub async fn run_here(ctx: &Context, batch: Batch, params: &Value) -> Result<BatchRun, BatchError> {
    let run_id = db::batch_runs::insert_manual(&ctx.core.db, batch, params, None).await?;
    let run = db::batch_runs::claim(&ctx.core.db, run_id, ctx.config.jobs.lease)
        .await?
        .ok_or_else(|| BatchError(format!("run {run_id} is not queued")))?;
    match execute(ctx, &run).await {
        Ok(counts) => {
            db::batch_runs::finish(&ctx.core.db, run.id, run.attempts, Ok(&counts)).await?;
        }
        Err(e) => fail(ctx, &run, run.attempts, &e).await?,
    }
    db::batch_runs::find(&ctx.core.db, run_id).await?.ok_or_else(|| BatchError(format!("run {run_id} vanished")))
}

/// The batch itself, its lease renewed while it runs.
async fn execute(ctx: &Context, run: &BatchRun) -> Result<Value, BatchError> {
    let params = Params::from_json(&run.params).map_err(|e| BatchError(format!("params: {e}")))?;
    let now = run.scheduled_for.unwrap_or_else(Utc::now);
    let lease = ctx.config.jobs.lease;
    let keep_lease = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            if let Err(e) = db::batch_runs::renew(&ctx.core.db, run.id, run.attempts, lease).await {
                tracing::warn!(error = %e, "batch lease renewal failed");
            }
        }
    };
    tokio::select! {
        result = batches::run(ctx, run.batch, &params, now) => result,
        () = keep_lease => Err(BatchError("lease keeper stopped".into())),
    }
}

async fn fail(ctx: &Context, run: &BatchRun, attempt: i32, error: &BatchError) -> Result<(), BatchError> {
    db::batch_runs::finish(&ctx.core.db, run.id, attempt, Err(&error.0)).await?;
    ctx.core.queues.metrics.batch_run(run.batch.as_str(), "failed");
    tracing::error!(error = %error, "batch run failed");
    let alert = Alert {
        severity: Severity::P3,
        title: format!("Batch {} failed", run.batch),
        service: format!("Scheduler: {}", run.batch),
        status: format!("Failed after {attempt} attempts"),
        error: error.0.clone(),
        action: format!(
            "Look at batch_runs id {} and the worker logs; run it again with `scheduler batch run {}`.",
            run.id, run.batch
        ),
        condition: format!("batch_failed:{}", run.batch),
    };
    batches::alert(ctx, alert).await;
    Ok(())
}
