//! The evaluation job (on the `batch` queue): the session's scorecard on the
//! interview's own criteria, asked for as structured output, validated
//! ([`rubric::parse_scorecard`]), stored, and published.

use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use futures::StreamExt;
use shared::db::{self, DbError, evaluations::Scorecard};
use shared::domain::EvaluationStatus;
use shared::events::{EventKind, Usage};
use shared::ids::SessionId;
use shared::jobs::{BatchJob, QueueName};
use shared::queue::new_job_id;
use shared::rubric;
use tracing::Instrument;

use super::Handled;
use crate::providers::{Chunk, FailureKind, ProviderError};
use crate::{Deps, prompt, retry};

/// The apalis handler for the `batch` queue: evaluations and batch runs.
pub async fn handle(raw: serde_json::Value, deps: Data<Arc<Deps>>, attempt: Attempt) -> Result<(), BoxDynError> {
    let start = std::time::Instant::now();
    let result = match super::decode(QueueName::Batch, raw) {
        Ok(BatchJob::Evaluation { session_id, request_id }) => {
            let span = tracing::info_span!("evaluation", request_id = %request_id, session_id = %session_id);
            super::bound(
                evaluate(&deps, session_id, &request_id).instrument(span).await,
                &attempt,
                deps.config.jobs.max_attempts,
            )
        }
        Ok(BatchJob::Run { run_id, request_id }) => super::bound(
            super::batch_run::run(&deps, run_id, &request_id).await,
            &attempt,
            deps.config.jobs.max_attempts,
        ),
        Err(e) => Err(e),
    };
    super::record(&deps, QueueName::Batch, result, start).await
}

async fn evaluate(deps: &Deps, session_id: SessionId, request_id: &str) -> Result<Handled, BoxDynError> {
    let core = &deps.core;
    let db = &core.db;
    let Some(evaluation) = db::evaluations::find(db, session_id).await? else {
        tracing::warn!("evaluation job for a session without an evaluation; dropped");
        return Ok(Handled::Done);
    };
    if evaluation.status == EvaluationStatus::Completed || evaluation.status == EvaluationStatus::Failed {
        return Ok(Handled::Done);
    }
    let Some(attempt) = db::evaluations::claim(db, session_id, deps.config.jobs.lease).await? else {
        return Ok(Handled::Done);
    };
    let result = if attempt.max(0) as u32 > deps.config.jobs.max_attempts {
        // Re-runs after a crash count too: an evaluation that kills its worker stops here.
        Err(ScoreError::Provider(ProviderError::new(
            deps.provider.name(),
            FailureKind::Rejected,
            format!("{} earlier attempts never finished", attempt - 1),
        )))
    } else {
        score(deps, session_id).await
    };
    let (card, error) = match result {
        Ok(card) => (Some(card), None),
        Err(ScoreError::Provider(e)) => (None, Some(e)),
        Err(ScoreError::Db(e)) => return Err(e.into()),
    };
    if let Some(card) = card {
        let mut tx = db.begin().await?;
        db::sessions::lock(&mut *tx, session_id).await?;
        if db::evaluations::complete(&mut *tx, session_id, attempt, &card).await? {
            let kind = EventKind::EvaluationCompleted {
                scores: card.scores.clone(),
                overall_score: card.overall_score,
                summary: card.summary.clone(),
                recommendation: card.recommendation.clone(),
            };
            core.bus.emit(&mut tx, session_id, kind).await?;
        }
        tx.commit().await?;
        tracing::info!(attempt, recommendation = %card.recommendation, "evaluation completed");
        return Ok(Handled::Done);
    }
    let error = error.unwrap_or_else(|| ProviderError::new("", FailureKind::Fault, "no result"));
    let attempt_no = attempt.max(0) as u32;
    let give_up = !(error.retryable() && retry::may_retry(&deps.config.jobs, attempt_no));
    db::evaluations::release(db, session_id, attempt, &error.message, give_up).await?;
    if give_up {
        tracing::error!(attempt, error = %error, "evaluation failed");
        return Err(AbortError::new(format!("evaluation failed after {attempt} attempts: {error}")).into());
    }
    let delay = retry::delay(&deps.config.jobs, attempt_no, error.retry_after);
    let job_id = new_job_id();
    db::evaluations::set_job(db, session_id, &job_id).await?;
    core.queues
        .push_batch(&job_id, BatchJob::Evaluation { session_id, request_id: request_id.to_owned() }, Some(delay))
        .await?;
    tracing::warn!(attempt, error = %error, "evaluation attempt failed; retrying");
    Ok(Handled::Retried)
}

#[derive(Debug, thiserror::Error)]
enum ScoreError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Asks for the scorecard; on invalid JSON asks once more with the validation
/// error, then gives up with a clear reason.
async fn score(deps: &Deps, session_id: SessionId) -> Result<Scorecard, ScoreError> {
    let db = &deps.core.db;
    let interview = db::interviews::of_session(db, session_id).await?.ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))?;
    let turns = db::turns::list(db, session_id).await?;
    let mut request = prompt::evaluation(&interview, &turns);
    let provider = &deps.provider;
    let start = Instant::now();
    let mut total = Usage::default();
    for round in 0..2 {
        let (text, usage, by) = collect(provider.stream(request.clone())).await?;
        total.prompt_tokens += usage.prompt_tokens;
        total.completion_tokens += usage.completion_tokens;
        total.estimated |= usage.estimated;
        match rubric::parse_scorecard(&text, &interview.criteria.0) {
            Ok(card) => {
                return Ok(Scorecard {
                    overall_score: rubric::overall_score(&interview.criteria.0, &card.scores),
                    scores: card.scores,
                    summary: card.summary,
                    recommendation: card.recommendation,
                    provider: by.provider,
                    model: by.model,
                    usage: total,
                    cost_usd: crate::providers::cost(by.prices, total),
                    latency_ms: start.elapsed().as_millis() as i32,
                });
            }
            Err(problem) if round == 0 => {
                request.messages.push(crate::providers::ChatMessage {
                    speaker: crate::providers::Speaker::Assistant,
                    content: text,
                });
                request.messages.push(crate::providers::ChatMessage {
                    speaker: crate::providers::Speaker::User,
                    content: format!("That was not a valid scorecard ({problem}). Reply with the JSON object only."),
                });
            }
            Err(problem) => {
                let message = format!("invalid scorecard twice: {problem}");
                return Err(ProviderError::new(provider.name(), FailureKind::Rejected, message).into());
            }
        }
    }
    Err(ProviderError::new(provider.name(), FailureKind::Rejected, "no scorecard").into())
}

async fn collect(
    mut stream: futures::stream::BoxStream<'static, Result<Chunk, ProviderError>>,
) -> Result<(String, Usage, crate::providers::Answered), ProviderError> {
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        match chunk? {
            Chunk::Delta(d) => text.push_str(&d),
            Chunk::Reset { .. } => text.clear(),
            Chunk::Done { usage, by } => return Ok((text, usage, by)),
        }
    }
    Err(ProviderError::new("", FailureKind::Fault, "the stream ended without finishing"))
}
