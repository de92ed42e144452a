//! `analytics_aggregation`: one day's aggregates (the day in
//! `SCHEDULER_TIMEZONE`), replacing whatever that day had: sessions started
//! and, of those, completed; the completion rate; turns answered; the AI
//! latency p50 / p95 of those turns; tokens and cost per provider (turns and
//! evaluations). `interview_completion_rate` in `/metrics` reads the result.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{BatchError, Context};

/// Aggregates `day`; returns the row it stored.
pub async fn aggregate(ctx: &Context, day: NaiveDate) -> Result<Value, BatchError> {
    let tz = ctx.config.scheduler.timezone.name();
    let mut tx = ctx.core.db.begin().await?;
    let (started, completed, turns, p50, p95): (i32, i32, i32, Option<i32>, Option<i32>) = sqlx::query_as(
        "WITH bounds AS (
             SELECT ($1::date)::timestamp AT TIME ZONE $2 AS lo, ($1::date + 1)::timestamp AT TIME ZONE $2 AS hi),
         s AS (
             SELECT count(*)::int AS started, (count(*) FILTER (WHERE status = 'completed'))::int AS completed
             FROM sessions, bounds WHERE started_at >= lo AND started_at < hi),
         t AS (
             SELECT count(*)::int AS turns,
                    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::int AS p50,
                    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::int AS p95
             FROM turns, bounds WHERE status = 'completed' AND completed_at >= lo AND completed_at < hi)
         INSERT INTO daily_analytics
             (day, sessions_started, sessions_completed, completion_rate, turns, ai_latency_p50_ms, ai_latency_p95_ms, computed_at)
         SELECT $1, s.started, s.completed, CASE WHEN s.started > 0 THEN s.completed::float8 / s.started END,
                t.turns, t.p50, t.p95, now()
         FROM s, t
         ON CONFLICT (day) DO UPDATE SET sessions_started = excluded.sessions_started,
             sessions_completed = excluded.sessions_completed, completion_rate = excluded.completion_rate,
             turns = excluded.turns, ai_latency_p50_ms = excluded.ai_latency_p50_ms,
             ai_latency_p95_ms = excluded.ai_latency_p95_ms, computed_at = now()
         RETURNING sessions_started, sessions_completed, turns, ai_latency_p50_ms, ai_latency_p95_ms",
    )
    .bind(day)
    .bind(tz)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM daily_provider_usage WHERE day = $1").bind(day).execute(&mut *tx).await?;
    let providers = sqlx::query(
        "WITH bounds AS (
             SELECT ($1::date)::timestamp AT TIME ZONE $2 AS lo, ($1::date + 1)::timestamp AT TIME ZONE $2 AS hi),
         used AS (
             SELECT provider, prompt_tokens, completion_tokens, cost_usd, usage_estimated FROM turns, bounds
             WHERE status = 'completed' AND completed_at >= lo AND completed_at < hi AND provider IS NOT NULL
             UNION ALL
             SELECT provider, prompt_tokens, completion_tokens, cost_usd, usage_estimated FROM evaluations, bounds
             WHERE status = 'completed' AND completed_at >= lo AND completed_at < hi AND provider IS NOT NULL)
         INSERT INTO daily_provider_usage
             (day, provider, requests, prompt_tokens, completion_tokens, cost_usd, estimated_requests)
         SELECT $1, provider, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
                coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE usage_estimated)
         FROM used GROUP BY provider",
    )
    .bind(day)
    .bind(tz)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(json!({
        "date": day.format("%Y-%m-%d").to_string(),
        "sessions_started": started,
        "sessions_completed": completed,
        "turns": turns,
        "ai_latency_p50_ms": p50,
        "ai_latency_p95_ms": p95,
        "providers": providers,
    }))
}
