//! The whole system behind Debian's PgBouncer (1.18) in session pooling
//! mode: a whole interview with its evaluation and every batch through the
//! pooler. (Transaction pooling needs PgBouncer 1.21 or later with
//! `max_prepared_statements`: docs/managed-services.md.)

use std::time::Duration;

use serde_json::json;
use shared::domain::{Batch, BatchStatus};
use tests::pgbouncer::PgBouncer;
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_and_every_batch_run_through_pgbouncer() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let direct = env.vars["DATABASE_URL"].clone();
    let url = reqwest::Url::parse(&direct)?;
    let server = (url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432));
    let bouncer = PgBouncer::start(server, url.username(), url.password().unwrap_or_default()).await?;
    let mut pooled = url.clone();
    pooled.set_host(Some("127.0.0.1"))?;
    pooled.set_port(Some(bouncer.port)).map_err(|()| anyhow::anyhow!("cannot set the port"))?;
    env.set("DATABASE_URL", pooled.as_str());
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
