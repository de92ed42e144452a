//! The whole system behind Debian's PgBouncer (1.18) in either pooling
//! mode: a whole interview with its evaluation and every batch through the
//! pooler. (`scripts/test` also runs the batch suite, `batches/`, behind
//! one in transaction mode.)

use std::time::Duration;

use serde_json::json;
use shared::domain::{Batch, BatchStatus};
use tests::pgbouncer::PoolMode;
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_and_every_batch_run_through_pgbouncer_in_transaction_mode() -> anyhow::Result<()> {
    interview_and_batches(PoolMode::Transaction).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_and_every_batch_run_through_pgbouncer_in_session_mode() -> anyhow::Result<()> {
    interview_and_batches(PoolMode::Session).await
}

async fn interview_and_batches(mode: PoolMode) -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.behind_pgbouncer(mode).await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let tests::OpenedSession { recruiter, session, mut ws, .. } = api.opened_session(3).await?;
    for number in 1..=3 {
        ws.answer(number, WAIT).await?;
    }
    ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    let evaluation = recruiter.get(&format!("/sessions/{session}/evaluation")).await?;
    assert_eq!(evaluation.body["status"], "completed", "{}", evaluation.body);
    for batch in Batch::ALL {
        let params = match batch {
            Batch::AnalyticsAggregation | Batch::MonthlyReport => json!({ "date": "2026-11-20" }),
            _ => json!({}),
        };
        let run = env.run_batch(*batch, params).await?;
        // The backup and certificate checks have nothing configured to check here.
        let ok = run.status == BatchStatus::Succeeded
            || matches!(batch, Batch::BackupVerification | Batch::CertificateCheck);
        assert!(ok, "{batch}: {run:?}");
    }
    Ok(())
}
