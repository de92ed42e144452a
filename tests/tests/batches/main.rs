//! Each batch's effect, checked against the rows it touched, and the alerts
//! it sends to a local Slack / Teams receiver. `data` holds the batches that
//! change or aggregate rows; `checks` the ones that watch the estate
//! (backups, dumps, certificates).

mod checks;
mod data;

use std::time::Duration;

use serde_json::json;
use shared::domain::Batch;
use tests::TestEnv;
use tests::receiver::Receiver;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// An environment whose alerts go to `receiver` (`/slack`, `/teams`).
async fn alerting_env(receiver: &Receiver) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.set("SLACK_WEBHOOK_URL", &format!("{}/slack", receiver.origin))
        .set("TEAMS_WEBHOOK_URL", &format!("{}/teams", receiver.origin));
    Ok(env)
}

/// A recruiter's interview and a candidate, straight into the database.
async fn people(db: &shared::db::Db) -> anyhow::Result<(Uuid, Uuid)> {
    let (recruiter, candidate, interview) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, email, role) in [(recruiter, "r@example.com", "recruiter"), (candidate, "c@example.com", "candidate")] {
        sqlx::query("INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, 'x', $3)")
            .bind(id)
            .bind(email)
            .bind(role)
            .execute(db)
            .await?;
    }
    sqlx::query(
        "INSERT INTO interviews (id, owner_id, title, position, language, topics, max_turns, duration_minutes)
         VALUES ($1, $2, 'Backend', 'Engineer', 'en', '[]', 5, 30)",
    )
    .bind(interview)
    .bind(recruiter)
    .execute(db)
    .await?;
    Ok((interview, candidate))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_batch_is_retried_by_the_queue_policy_then_fails_and_alerts() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let mut env = alerting_env(&receiver).await?;
    env.set("JOB_MAX_ATTEMPTS", "3");
    let ctx = env.batch_context().await?;
    // The aggregates' table is gone: every attempt fails.
    sqlx::query("DROP TABLE daily_provider_usage").execute(&ctx.core.db).await?;
    let _worker = env.start_worker().await?;
    let params = shared::schedule::BatchParams::for_batch(Batch::AnalyticsAggregation, Some("2026-02-15"))
        .map_err(anyhow::Error::msg)?;
    let run_id = ctx.core.enqueue_batch_run(Batch::AnalyticsAggregation, &params, "req_test").await?;
    let run = tests::eventually(WAIT, || {
        let db = ctx.core.db.clone();
        async move {
            let run = shared::db::batch_runs::find(&db, run_id).await?;
            Ok(run.filter(|r| r.status.as_str() == "failed"))
        }
    })
    .await?;
    assert_eq!(run.attempts, 3, "JOB_MAX_ATTEMPTS");
    assert!(run.error.as_deref().unwrap_or_default().contains("daily_provider_usage"), "{run:?}");
    let slack =
        tests::eventually(WAIT, || async { Ok(Some(receiver.posted("/slack")).filter(|p| !p.is_empty())) }).await?;
    assert_eq!(slack[0]["text"], "🟠 MEDIUM: Batch analytics_aggregation failed");
    assert_eq!(slack[0]["blocks"][1]["fields"][1]["text"], "*Status:*\nFailed after 3 attempts");
    Ok(())
}
