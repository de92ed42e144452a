//! `monthly_report`: the previous month (in `SCHEDULER_TIMEZONE`) from the
//! daily aggregates, stored in `monthly_reports` and sent to the alert
//! channels as a summary.

use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};
use shared::alerts::{Alert, Severity};

use super::{BatchError, Context};

/// The first day of the month before `day`'s.
pub fn first_of_previous_month(day: NaiveDate) -> NaiveDate {
    let first = day.with_day(1).unwrap_or(day);
    first.pred_opt().and_then(|d| d.with_day(1)).unwrap_or(first)
}

/// Builds, stores and sends the report of the month `day` falls in.
pub async fn report(ctx: &Context, day: NaiveDate) -> Result<Value, BatchError> {
    let month = day.with_day(1).unwrap_or(day);
    let totals: (i32, i64, i64, i64, Option<f64>, Option<i32>) = sqlx::query_as(
        "SELECT count(*)::int, coalesce(sum(sessions_started), 0), coalesce(sum(sessions_completed), 0),
                coalesce(sum(turns), 0), avg(ai_latency_p50_ms)::float8, max(ai_latency_p95_ms)
         FROM daily_analytics WHERE day >= $1 AND day < ($1::date + interval '1 month')",
    )
    .bind(month)
    .fetch_one(&ctx.core.db)
    .await?;
    let (days, started, completed, turns, mean_p50, worst_p95) = totals;
    let providers: Vec<(String, i64, i64, i64, f64)> = sqlx::query_as(
        "SELECT provider, sum(requests)::int8, sum(prompt_tokens)::int8, sum(completion_tokens)::int8, sum(cost_usd)
         FROM daily_provider_usage WHERE day >= $1 AND day < ($1::date + interval '1 month')
         GROUP BY provider ORDER BY provider",
    )
    .bind(month)
    .fetch_all(&ctx.core.db)
    .await?;
    let cost: f64 = providers.iter().map(|p| p.4).sum();
    let report = json!({
        "month": month.format("%Y-%m").to_string(),
        "days_aggregated": days,
        "sessions_started": started,
        "sessions_completed": completed,
        "completion_rate": if started > 0 { Some(completed as f64 / started as f64) } else { None },
        "turns": turns,
        "ai_latency_p50_ms_daily_mean": mean_p50.map(|v| v.round() as i64),
        "ai_latency_p95_ms_worst_day": worst_p95,
        "providers": providers.iter().map(|(name, requests, prompt, completion, cost)| json!({
            "provider": name, "requests": requests, "prompt_tokens": prompt,
            "completion_tokens": completion, "cost_usd": cost,
        })).collect::<Vec<_>>(),
        "cost_usd": cost,
    });
    sqlx::query(
        "INSERT INTO monthly_reports (month, report) VALUES ($1, $2)
         ON CONFLICT (month) DO UPDATE SET report = excluded.report, created_at = now()",
    )
    .bind(month)
    .bind(&report)
    .execute(&ctx.core.db)
    .await?;
    let rate = report["completion_rate"].as_f64().map_or("n/a".to_owned(), |r| format!("{:.1} %", r * 100.0));
    let summary = Alert {
        severity: Severity::Info,
        title: format!("Monthly report {}", month.format("%Y-%m")),
        service: "Scheduler: monthly_report".into(),
        status: format!("{days} days aggregated"),
        error: format!("{started} sessions started, {completed} completed ({rate}); {turns} turns; AI cost ${cost:.2}"),
        action: "None: for information. The whole report is in monthly_reports.".into(),
        condition: format!("monthly_report:{}", month.format("%Y-%m")),
    };
    let sent = super::alert(ctx, summary).await;
    Ok(json!({ "month": report["month"], "days_aggregated": days, "summary": sent }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_month_starts_on_its_first() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(first_of_previous_month(d("2026-11-01")), d("2026-10-01"));
        assert_eq!(first_of_previous_month(d("2026-03-31")), d("2026-02-01"));
        assert_eq!(first_of_previous_month(d("2026-01-15")), d("2025-12-01"));
    }
}
