//! The turn job: claim the turn, stream the interviewer's reply to the
//! session channel, store it with usage and cost, publish `turn.completed`.
//!
//! Idempotent: a finished turn's job publishes the stored outcome again
//! (sockets drop the duplicate `seq`); a turn another worker holds under a
//! live lease is left alone; a takeover after a crash first publishes
//! `turn.reset` so the client drops the dead attempt's partial text.

use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use futures::{FutureExt, StreamExt};
use shared::db::{self, DbError, turns::Claim, turns::Reply, turns::Turn};
use shared::domain::TurnStatus;
use shared::events::{Event, EventKind, Usage};
use shared::jobs::{BatchJob, QueueName, TurnJob};
use shared::queue::new_job_id;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Handled;
use crate::Deps;
use crate::providers::{Answered, Chunk, FailureKind, ProviderError};
use crate::{prompt, retry};

/// Sequence numbers reserved for a turn's deltas at a time.
const DELTA_BLOCK: i64 = 256;

/// The apalis handler.
pub async fn handle(raw: serde_json::Value, deps: Data<Arc<Deps>>, attempt: Attempt) -> Result<(), BoxDynError> {
    let start = std::time::Instant::now();
    let result = match super::decode::<TurnJob>(QueueName::Turns, raw) {
        Ok(job) => {
            let span = tracing::info_span!(
                "turn",
                otel.kind = tracing::field::Empty,
                request_id = %job.request_id,
                turn_id = %job.turn_id,
                session_id = %job.session_id,
                trace_id = tracing::field::Empty,
            );
            if shared::telemetry::traces::enabled() {
                span.record("otel.kind", "consumer");
                shared::telemetry::traces::continue_trace(&span, job.traceparent.as_deref());
            }
            super::bound(run(&deps, &job).instrument(span).await, &attempt, deps.config.jobs.max_attempts)
        }
        Err(e) => Err(e),
    };
    super::record(&deps, QueueName::Turns, result, start).await
}

enum Outcome {
    Completed,
    /// The lease was lost to another worker; its result wins.
    Superseded,
    /// Shutdown deadline: the turn went back to the queue.
    HandedBack,
}

async fn run(deps: &Deps, job: &TurnJob) -> Result<Handled, BoxDynError> {
    let core = &deps.core;
    let db = &core.db;
    // Claimed, and its turn.reset / turn.started stored and published, in
    // one statement and one transaction.
    let mut tx = db.begin().await?;
    let lease = deps.config.jobs.lease;
    let Some(started) =
        db::turns::start(&mut *tx, job.turn_id, &deps.name, lease, deps.config.jobs.max_attempts, DELTA_BLOCK).await?
    else {
        tx.rollback().await?;
        // Not claimable: unknown, finished, or held by another worker.
        match db::turns::find(db, job.turn_id).await? {
            None => tracing::warn!("turn job for an unknown turn; dropped"),
            Some(turn) if matches!(turn.status, TurnStatus::Completed | TurnStatus::Failed) => {
                if let Some(event) = db::events::turn_outcome(db, turn.session_id, turn.id).await? {
                    core.bus.publish(&event).await;
                }
                tracing::info!(status = %turn.status, "turn already finished; outcome published again");
            }
            Some(_) => tracing::info!("turn held by another worker"),
        }
        return Ok(Handled::Done);
    };
    for event in &started.events {
        core.bus.publish_json(job.session_id, event).await;
    }
    tx.commit().await?;
    let db::turns::Started { turn, claim, first_delta, .. } = started;
    let Some(first_delta) = first_delta else {
        // Crashes and hand-backs count too (apalis does not count re-runs of
        // a job whose worker died): a turn that kills its worker stops here.
        let reason = format!("{} earlier attempts never finished", claim.attempt - 1);
        return settle_failure(deps, job, &turn, claim, &reason, false, None).await;
    };
    match attempt(deps, job, &turn, claim, first_delta).await {
        Ok(Outcome::Completed) => Ok(Handled::Done),
        Ok(Outcome::Superseded) => {
            tracing::warn!(attempt = claim.attempt, "lease lost; another worker finishes the turn");
            Ok(Handled::Done)
        }
        Ok(Outcome::HandedBack) => {
            tracing::info!(attempt = claim.attempt, "turn handed back at shutdown");
            Ok(Handled::Done)
        }
        Err(AttemptError::Provider(e)) => {
            settle_failure(deps, job, &turn, claim, &e.message, e.retryable(), e.retry_after).await
        }
        Err(AttemptError::Db(e)) => Err(e.into()),
    }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for AttemptError {
    fn from(e: sqlx::Error) -> Self {
        AttemptError::Db(e.into())
    }
}

async fn attempt(
    deps: &Deps,
    job: &TurnJob,
    turn: &Turn,
    claim: Claim,
    first_delta: i64,
) -> Result<Outcome, AttemptError> {
    let core = &deps.core;
    let db = &core.db;
    let interview =
        db::interviews::of_session(db, turn.session_id).await?.ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))?;
    let earlier: Vec<Turn> = db::turns::list(db, turn.session_id)
        .await?
        .into_iter()
        .filter(|t| t.number < turn.number && t.status == TurnStatus::Completed)
        .collect();
    let request = prompt::turn(&interview, &earlier, turn);

    let mut next_seq = first_delta;
    let mut block_end = first_delta + DELTA_BLOCK - 1;

    let lost = CancellationToken::new();
    let keeper = tokio::spawn(
        keep_lease(deps.core.db.clone(), turn.id, claim.attempt, deps.config.jobs.lease, lost.clone())
            .in_current_span(),
    );
    let _stop_keeper = AbortOnDrop(keeper);

    let start = Instant::now();
    let mut stream = deps.provider.stream(request);
    let mut message = String::new();
    let mut lookahead = None;
    let (usage, by): (Usage, Answered) = loop {
        let chunk = tokio::select! {
            chunk = next_chunk(&mut stream, &mut lookahead) => chunk,
            () = lost.cancelled() => return Ok(Outcome::Superseded),
            () = deps.hand_back.cancelled() => {
                hand_back(deps, job, turn, claim).await?;
                return Ok(Outcome::HandedBack);
            }
        };
        match chunk {
            Some(Ok(Chunk::Delta(mut text))) => {
                // Deltas already waiting go out as one event: the same text
                // in fewer messages when the provider outpaces us.
                while let Some(next) = stream.next().now_or_never() {
                    match next {
                        Some(Ok(Chunk::Delta(more))) => text.push_str(&more),
                        other => {
                            lookahead = Some(other);
                            break;
                        }
                    }
                }
                if next_seq > block_end {
                    next_seq = db::sessions::reserve_seqs(db, turn.session_id, DELTA_BLOCK).await?;
                    block_end = next_seq + DELTA_BLOCK - 1;
                }
                message.push_str(&text);
                let delta = Event {
                    seq: next_seq,
                    session_id: turn.session_id,
                    kind: EventKind::TurnDelta { turn_id: turn.id, text },
                };
                next_seq += 1;
                core.bus.publish(&delta).await;
            }
            Some(Ok(Chunk::Reset { reason })) => {
                // The chain moved to the next provider mid-reply: the client
                // drops the partial text; new deltas follow a fresh block.
                message.clear();
                let mut tx = db.begin().await?;
                let reset = core
                    .bus
                    .emit_reserving(
                        &mut tx,
                        turn.session_id,
                        EventKind::TurnReset { turn_id: turn.id, reason },
                        DELTA_BLOCK,
                    )
                    .await?;
                tx.commit().await?;
                next_seq = reset.seq + 1;
                block_end = reset.seq + DELTA_BLOCK;
            }
            Some(Ok(Chunk::Done { usage, by })) => break (usage, by),
            Some(Err(e)) => return Err(e.into()),
            None => {
                let message = "the stream ended without finishing";
                return Err(ProviderError::new(deps.provider.name(), FailureKind::Fault, message).into());
            }
        }
    };
    let latency_ms = start.elapsed().as_millis() as i32;
    let reply = Reply {
        message: &message,
        usage,
        provider: &by.provider,
        model: &by.model,
        cost_usd: crate::providers::cost(by.prices, usage),
        latency_ms,
    };

    let completed = Event {
        seq: 0,
        session_id: turn.session_id,
        kind: EventKind::TurnCompleted { turn_id: turn.id, number: turn.number, message: message.clone(), usage },
    };
    // Stored with turn.completed, and the session ended when this was its
    // last turn, in one statement; published before the commit.
    let evaluation_job_id = new_job_id();
    let mut tx = db.begin().await?;
    let Some(events) =
        db::turns::complete(&mut *tx, turn.id, claim.attempt, &reply, &completed, &job.request_id, &evaluation_job_id)
            .await?
    else {
        return Ok(Outcome::Superseded);
    };
    for event in &events {
        core.bus.publish_json(turn.session_id, event).await;
    }
    tx.commit().await?;
    if events.len() > 1 {
        let evaluation = BatchJob::Evaluation { session_id: turn.session_id, request_id: job.request_id.clone() };
        core.push_batch(&evaluation_job_id, evaluation).await;
    }
    tracing::info!(
        attempt = claim.attempt,
        provider = reply.provider,
        latency_ms,
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        "turn completed"
    );
    Ok(Outcome::Completed)
}

/// Retries with backoff while attempts remain; otherwise fails the turn for
/// good, tells the client, and aborts the job into the dead set.
async fn settle_failure(
    deps: &Deps,
    job: &TurnJob,
    turn: &Turn,
    claim: Claim,
    message: &str,
    retryable: bool,
    retry_after: Option<std::time::Duration>,
) -> Result<Handled, BoxDynError> {
    let core = &deps.core;
    let attempt = claim.attempt.max(0) as u32;
    if retryable && retry::may_retry(&deps.config.jobs, attempt) {
        let delay = retry::delay(&deps.config.jobs, attempt, retry_after);
        if db::turns::release(&core.db, turn.id, claim.attempt, message).await? {
            let job_id = new_job_id();
            db::turns::set_job(&core.db, turn.id, &job_id).await?;
            core.queues.push_turn(&job_id, job.clone(), Some(delay)).await?;
            tracing::warn!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = message,
                "turn attempt failed; retrying"
            );
            return Ok(Handled::Retried);
        }
        // Another worker took the turn over meanwhile: its attempt stands.
        return Ok(Handled::Done);
    }
    let mut tx = core.db.begin().await?;
    db::sessions::lock(&mut *tx, turn.session_id).await?;
    if db::turns::fail(&mut *tx, turn.id, claim.attempt, message).await? {
        let reason = if retryable {
            format!("the interviewer could not answer after {attempt} attempts: {message}")
        } else {
            format!("the interviewer could not answer: {message}")
        };
        core.bus
            .emit(
                &mut tx,
                turn.session_id,
                EventKind::TurnFailed { turn_id: turn.id, number: turn.number, reason, retryable },
            )
            .await?;
    }
    tx.commit().await?;
    tracing::error!(attempt, error = message, "turn failed");
    Err(AbortError::new(format!("turn failed after {attempt} attempts: {message}")).into())
}

/// Gives the turn back to the queue (shutdown deadline): another worker
/// restarts it, and the client gets `turn.reset`.
async fn hand_back(deps: &Deps, job: &TurnJob, turn: &Turn, claim: Claim) -> Result<(), DbError> {
    let core = &deps.core;
    if db::turns::release(&core.db, turn.id, claim.attempt, "handed back at worker shutdown").await? {
        let job_id = new_job_id();
        db::turns::set_job(&core.db, turn.id, &job_id).await?;
        if let Err(e) = core.queues.push_turn(&job_id, job.clone(), None).await {
            tracing::warn!(error = %e, "hand-back push failed; the reconciler will re-enqueue");
        }
    }
    Ok(())
}

/// Renews the lease every third of its length; cancels `lost` if another
/// worker took the turn over.
async fn keep_lease(
    db: shared::db::Db,
    turn: shared::ids::TurnId,
    attempt: i32,
    lease: std::time::Duration,
    lost: CancellationToken,
) {
    let mut ticker = tokio::time::interval(lease / 3);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match db::turns::renew(&db, turn, attempt, lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
    }
}

/// The chunk read ahead while merging deltas, else the stream's next one.
async fn next_chunk<S: futures::Stream + Unpin>(
    stream: &mut S,
    lookahead: &mut Option<Option<S::Item>>,
) -> Option<S::Item> {
    match lookahead.take() {
        Some(chunk) => chunk,
        None => stream.next().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
